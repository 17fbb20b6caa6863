"""Equal-budget tuning of every rung on the validation split.

A fair ladder gives every rung the same chance to find its settings. For every point of a fixed
grid (the learning rate by default, and any other named setting) :func:`trial_configs` makes one
trial per tuning seed (``seeds`` of them, from ``seed``: by default one, seed 0), each for the same
number of epochs. :func:`choose` scores a point by its trials' best validation accuracy, averaged
over the seeds (lower mean validation loss breaks ties), and returns the ``tuning`` block that the
final runs carry in their records:

.. code-block:: text

    {"split": "validation", "metric": "best validation accuracy within the trial",
     "chosen": {"lr": 0.003},
     "candidates": [{"settings": {"lr": 1e-05}, "val_acc": 0.41, "val_loss": 1.9, "best_epoch": 10,
                     "epochs": 10, "status": "complete", "run_id": "..."}, ...],
     "budget": {"trials": 9, "epochs": 10, "seed": 0, "seeds": [0], "grid": {"lr": [1e-05, ...]}}}

With more than one tuning seed a candidate's ``val_acc`` and ``val_loss`` are the means over its
seeds, and its ``per_seed`` list holds each seed's entry (``seed``, ``val_acc``, ``val_loss``,
``best_epoch``, ``epochs``, ``status``, ``run_id``) in place of the single trial's ``best_epoch``
and ``run_id``. A point with a diverged seed is diverged.

The test split is never looked at: trials score only the validation split, and their records hold
no test metrics. Trials are ordinary runs written under ``out/tuning/``, so an interrupted tuning
resumes where it stopped and finished trials are reused (also those of seed 0 when the number of
tuning seeds is raised). A trial whose loss diverges is kept as ``"status": "diverged"`` and scores
below every trial that did not.

Example:
    >>> from qcreep.config import STRUCTURE_KEYS, TrainConfig
    >>> from qcreep.tuning import TuningSpec, trial_configs
    >>> spec = TuningSpec.default(epochs=5)
    >>> spec.n_trials, spec.grid["lr"][0], spec.grid["lr"][-1]
    (9, 1e-05, 0.1)
    >>> two = TuningSpec.default(epochs=5, seeds=2)
    >>> two.seed_list, len(trial_configs(TrainConfig(dataset="digits").validate(), two))
    ([0, 1], 18)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from qcreep.checks import check_choice, check_int, check_number
from qcreep.config import STRUCTURE_KEYS, TrainConfig
from qcreep.errors import ConfigError
from qcreep.layers.reupload import BIAS_INITS, OUTPUT_SCALES
from qcreep.records import read_record, record_path, write_record

# A half-decade log grid from 1e-5 to 1e-1: wide enough that every rung finds its learning rate.
DEFAULT_LR_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
TUNABLE = {
    "lr": DEFAULT_LR_GRID,
    "output_scale": OUTPUT_SCALES,
    "bias_init": BIAS_INITS,
    "batch_size": (50, 100, 200, 500),
    "n_reps": (1, 3, 10),
    # the families' structure (qcreep.config.STRUCTURE_KEYS): tuned for rungs with quantum layers only;
    # a classical twin takes the structure its quantum rung chose, so their parameter counts stay matched
    "layers": (1, 2, 4),
    "depth": (2, 4, 6),
    "width": (4, 6, 8),
}
METRIC = "best validation accuracy within the trial (lower validation loss breaks ties)"
TUNING_DIR = "tuning"


@dataclass
class TuningSpec:
    """What is searched, and the budget that every rung gets.

    ``grid`` maps a :class:`~qcreep.config.TrainConfig` field to its candidate values; the points
    are their Cartesian product. Each point is trained from ``seeds`` seeds (``seed``,
    ``seed + 1``, ...) and scored by the mean over them. ``epochs``, ``seed`` and ``seeds`` are the
    same for every point and rung.
    """

    grid: dict[str, tuple] = field(default_factory=lambda: {"lr": DEFAULT_LR_GRID})
    epochs: int = 10
    seed: int = 0
    seeds: int = 1

    @classmethod
    def default(cls, settings=("lr",), epochs: int = 10, seed: int = 0, lr_grid=None, seeds: int = 1) -> TuningSpec:
        """The default grid of each named setting (``lr_grid`` replaces the learning rates)."""
        grid = {}
        for name in settings:
            check_choice(name, "a tuned setting", tuple(TUNABLE), error=ConfigError)
            grid[name] = tuple(lr_grid) if (name == "lr" and lr_grid) else TUNABLE[name]
        return cls(grid, epochs, seed, seeds).validate()

    def validate(self) -> TuningSpec:
        if not self.grid:
            raise ConfigError("tuning needs at least one setting to search, e.g. lr")
        for name, values in self.grid.items():
            check_choice(name, "a tuned setting", tuple(TUNABLE), error=ConfigError)
            if not values:
                raise ConfigError(f"the tuning grid of {name} is empty")
            if name == "lr":
                self.grid[name] = tuple(check_number(v, "a learning rate in the tuning grid", error=ConfigError)
                                        for v in values)
            if name in STRUCTURE_KEYS:
                self.grid[name] = tuple(check_int(v, f"a value of {name} in the tuning grid", 1, error=ConfigError)
                                        for v in values)
        self.epochs = check_int(self.epochs, "tuning epochs", 1, error=ConfigError)
        self.seed = check_int(self.seed, "tuning seed", 0, error=ConfigError)
        self.seeds = check_int(self.seeds, "tune_seeds (seeds per tuning trial)", 1, error=ConfigError)
        return self

    @property
    def seed_list(self) -> list[int]:
        """The seeds every point is trained from."""
        return list(range(self.seed, self.seed + self.seeds))

    @property
    def n_trials(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    def points(self) -> list[dict]:
        names = list(self.grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*(self.grid[n] for n in names))]

    def budget(self) -> dict:
        """What every rung got: ``trials`` grid points, ``epochs`` each, from the seeds ``seeds``."""
        return {"trials": self.n_trials, "epochs": self.epochs, "seed": self.seed, "seeds": self.seed_list,
                "grid": {k: list(v) for k, v in self.grid.items()}}


def check_tunable(configs: list[TrainConfig]) -> None:
    """Refuse to tune runs without a validation split (``val_fraction`` 0): the choice is made on it."""
    if any(c.val_fraction == 0 for c in configs):
        raise ConfigError("tuning chooses each rung's settings on the validation split, but val_fraction is 0 "
                          "(no validation split); use --val-fraction > 0 (default 0.1), or --no-tune (with --lr "
                          "for a fixed learning rate)")


def trial_configs(base: TrainConfig, spec: TuningSpec) -> list[TrainConfig]:
    """The trials of ``base``'s rung: for each grid point, one config per tuning seed (point-major).

    Each is ``base`` with the point's settings and the budget's epochs and seed; ``extra["trial"]``
    holds the point, which marks the run as a trial (it scores no test split).
    """
    return [with_settings(base, point, epochs=spec.epochs, seed=seed, tuning=None, extra={"trial": point})
            for point in spec.points() for seed in spec.seed_list]


def with_settings(config: TrainConfig, settings: dict, **changes) -> TrainConfig:
    """``config`` with tuned ``settings``: config fields set, structural options merged into ``structure``."""
    fields = {k: v for k, v in settings.items() if k not in STRUCTURE_KEYS}
    shape = {k: v for k, v in settings.items() if k in STRUCTURE_KEYS}
    if shape:
        changes["structure"] = {**(config.structure or {}), **shape}
    return config.replace(**fields, **changes)


def structural(spec: TuningSpec) -> tuple[str, ...]:
    """The structural settings a spec tunes."""
    return tuple(k for k in spec.grid if k in STRUCTURE_KEYS)


def without(spec: TuningSpec, names) -> TuningSpec | None:
    """``spec`` without the settings ``names`` (None when nothing is left to search)."""
    grid = {k: v for k, v in spec.grid.items() if k not in names}
    return TuningSpec(grid, spec.epochs, spec.seed, spec.seeds) if grid else None


def tuning_dir(out_dir) -> Path:
    return Path(out_dir) / TUNING_DIR


def score_trial(config: TrainConfig, trial_dir) -> dict:
    """The candidate entry of a finished (or diverged) trial, read from its record in ``trial_dir``."""
    rec = read_record(record_path(trial_dir, config))
    accs, losses = rec.get("val_accs") or [], rec.get("val_losses") or []
    best = rec.get("best_epoch")
    entry = {"val_acc": accs[best - 1] if best else None, "val_loss": losses[best - 1] if best else None,
             "best_epoch": best, "epochs": rec.get("epochs_completed", 0), "status": rec.get("status"),
             "run_id": rec.get("run_id")}
    return entry


def mark_diverged(config: TrainConfig, trial_dir, message: str) -> None:
    """Record that a trial diverged, so that a resumed tuning does not train it again."""
    path = record_path(trial_dir, config)
    rec = read_record(path) if path.exists() else {"run_id": config.run_id, "config": config.to_dict(),
                                                   "epochs_completed": 0}
    rec.update(status="diverged", error=message)
    write_record(path, rec)


def is_diverged(config: TrainConfig, trial_dir) -> bool:
    path = record_path(trial_dir, config)
    return path.exists() and read_record(path).get("status") == "diverged"


def _mean_entry(entries: list[dict], seeds: list[int]) -> dict:
    """One candidate from the entries of its seeds: mean scores; diverged if any seed diverged."""
    if len(entries) == 1:
        return dict(entries[0])
    statuses = [e["status"] for e in entries]
    status = ("diverged" if "diverged" in statuses else
              "complete" if all(s == "complete" for s in statuses) else next(s for s in statuses if s != "complete"))
    accs, losses = [e["val_acc"] for e in entries], [e["val_loss"] for e in entries]
    scored = status == "complete" and None not in accs
    return {"val_acc": sum(accs) / len(accs) if scored else None,
            "val_loss": sum(losses) / len(losses) if scored and None not in losses else None,
            "epochs": min(e["epochs"] for e in entries), "status": status,
            "per_seed": [{"seed": seed, **e} for seed, e in zip(seeds, entries)]}


def choose(spec: TuningSpec, trials: list[TrainConfig], trial_dir) -> dict:
    """The tuning block of one rung from its finished trials (records in ``trial_dir``, as
    :func:`trial_configs` ordered them)."""
    k = spec.seeds
    candidates = []
    for i, point in enumerate(spec.points()):
        entry = _mean_entry([score_trial(c, trial_dir) for c in trials[i * k:(i + 1) * k]], spec.seed_list)
        entry["settings"] = dict(point)
        candidates.append(entry)
    usable = [c for c in candidates if c["status"] == "complete" and c["val_acc"] is not None]
    if not usable:
        raise ConfigError(f"every tuning trial of {trials[0].rung_label} on {trials[0].dataset} diverged or "
                          "failed; widen the grid towards smaller learning rates")
    best = min(usable, key=lambda c: (-c["val_acc"], c["val_loss"], candidates.index(c)))
    return {"split": "validation", "metric": METRIC, "chosen": dict(best["settings"]),
            "candidates": candidates, "budget": spec.budget()}


def final_config(base: TrainConfig, block: dict, seed: int, epochs: int) -> TrainConfig:
    """A final run of the rung with the chosen settings and the tuning block in its record."""
    return with_settings(base, block["chosen"], seed=seed, epochs=epochs, tuning=block)
