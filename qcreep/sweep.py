"""Grids of runs: datasets x rungs (levels, assignments, their classical twins) x angle modes x seeds.

:func:`plan` turns a grid into validated :class:`~qcreep.config.TrainConfig` objects, so a bad
value fails before anything trains. :func:`preflight_sweep` builds every rung's model, checks its
memory estimate, loads every dataset and checks every existing record, all before the first
epoch and without writing anything. :func:`run_sweep` tunes each rung on the validation split
with the same budget (:mod:`qcreep.tuning`), trains the final seeds with the chosen settings
through an executor (:mod:`qcreep.executors`: this process, or Ray tasks on a cluster), and
writes ``sweep.csv``. The results folder is locked for the whole sweep (one writer per folder).

Example:
    >>> from qcreep.sweep import plan
    >>> configs = plan(["digits"], levels=[0, 2], seeds=range(2), twins=True, epochs=3)
    >>> [(c.rung_label, c.seed) for c in configs]  # doctest: +NORMALIZE_WHITESPACE
    [('level 0', 0), ('level 0', 1), ('level 2', 0), ('level 2', 1), ('level 2 twin', 0), ('level 2 twin', 1)]
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import torch

from qcreep.config import STRUCTURE_KEYS, TrainConfig
from qcreep.datasources import info_for
from qcreep.errors import ConfigError, QcreepError
from qcreep.executors import DataCache, Executor, LocalExecutor, data_key, default_seed_parallel, run_one
from qcreep.files import atomic_write_bytes, atomic_write_json, results_lock
from qcreep.models import (
    families_label,
    is_quantum_assignment,
    level_assignment,
    level_of,
    parse_assignment,
    parse_families,
    twin_assignment,
    with_families,
)
from qcreep.records import read_record
from qcreep.train import build_run_model, preflight
from qcreep.tuning import (
    TuningSpec,
    check_tunable,
    choose,
    final_config,
    structural,
    trial_configs,
    tuning_dir,
    with_settings,
    without,
)


def plan(datasets, *, levels=None, assignments=None, seeds=(0,), angles=("real",), twins: bool = False,
         quantum=None, **settings) -> list[TrainConfig]:
    """Validated configs for every combination, ordered dataset, rung (each twin after its rung), angle mode, seed.

    ``levels`` and ``assignments`` may both be given; their rungs are concatenated. An assignment
    equal to a replacement level is that level (the same model is never planned twice under two
    labels). ``twins`` adds, after each quantum rung, the same network with every quantum layer
    replaced by its classical twin (``twin_of`` = the quantum rung's label; twins are classical, so
    they are planned once, in the real angle mode). ``settings`` are any other
    :class:`TrainConfig` fields (``epochs``, ``lr``, ``max_train``...).

    ``quantum`` is a list of family choices (:func:`qcreep.models.parse_families`, e.g.
    ``["paper", "dense=dressed_circuit"]``): every rung is planned once per choice, with its quantum
    slots refilled by the chosen families, so one ladder compares families rung by rung, each with
    its twin. A refilled level is labelled ``level K (head=dressed_circuit)``.
    """
    if not levels and not assignments:
        raise ConfigError("a sweep needs levels (e.g. 0 1 2) or assignments (e.g. conv1=flipped_quanv3x3)")
    reserved = {"level", "assignment", "seed", "angles", "twin_of", "label", "dataset"}
    unknown = sorted(set(settings) - (set(TrainConfig.__dataclass_fields__) - reserved))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(sorted(set(TrainConfig.__dataclass_fields__) - reserved))}")
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("a sweep needs at least one seed")
    configs, seen = [], set()

    def add(config: TrainConfig) -> None:
        key = (config.dataset, tuple(config.assignment.items()), config.angles, config.seed)
        if key not in seen:
            seen.add(key)
            configs.append(config)

    for dataset in datasets:
        backbone = TrainConfig(dataset=dataset, level=None, assignment=None, **settings).backbone()
        rungs = [{"level": lv, "assignment": None} for lv in (levels or [])]
        for item in assignments or []:
            filled = parse_assignment(item, backbone)
            level = level_of(backbone, filled)
            rungs.append({"level": level, "assignment": None} if level is not None
                         else {"level": None, "assignment": filled})
        choices = [(q, parse_or_config_error(q, backbone)) for q in (quantum or [None])]
        rungs = [_refill(backbone, rung, spec, families) for spec, families in choices for rung in rungs]
        for rung in rungs:
            for mode in angles:
                for seed in seeds:
                    add(TrainConfig(dataset=dataset, seed=seed, angles=mode, **rung, **settings).validate())
            base = TrainConfig(dataset=dataset, **rung, **settings).validate()
            if twins and is_quantum_assignment(backbone, base.assignment):
                twin = twin_assignment(backbone, base.assignment)
                for seed in seeds:
                    add(TrainConfig(dataset=dataset, level=None, assignment=twin, seed=seed, angles="real",
                                    twin_of=base.rung_label, label=f"{base.rung_label} twin", **settings).validate())
    return configs


def parse_or_config_error(spec, backbone) -> dict[str, str]:
    try:
        return parse_families(spec, backbone)
    except ConfigError:
        raise
    except QcreepError as err:
        raise ConfigError(f"--quantum {spec}: {err}") from None


def _refill(backbone, rung: dict, spec, families: dict[str, str]) -> dict:
    """A planned rung with its quantum slots refilled by ``families`` (unchanged when nothing changes)."""
    if not families:
        return rung
    assignment = level_assignment(backbone, rung["level"]) if rung["level"] is not None else rung["assignment"]
    refilled = with_families(backbone, assignment, families)
    if refilled == assignment:
        return rung
    level = level_of(backbone, refilled)
    if level is not None:
        return {"level": level, "assignment": None}
    label = f"level {rung['level']} ({families_label(spec, backbone, refilled)})" if rung["level"] is not None else None
    return {"level": None, "assignment": refilled, "label": label}


# ------------------------------------------------------------------------------------------------
# checks before anything is written


def preflight_sweep(configs: list[TrainConfig], out_dir, *, resume: bool = False, data: DataCache | None = None,
                    check_records: bool = True, check_model=None) -> DataCache:
    """Check the whole sweep before anything trains or is written.

    Loads every dataset (a missing or corrupt file fails here), carves its validation split,
    builds every distinct rung's model once (too few qubits, a layer that does not fit its slot),
    checks its memory estimate against the machine, and checks the records already in ``out_dir``.
    ``check_model(config, model)``, if given, is called with each distinct rung's freshly built
    model (for example, that the shots and noise to score it with afterwards can be simulated) and
    raises :class:`QcreepError` to refuse the sweep. Returns the loaded data for the sweep to reuse.
    """
    data = data or DataCache()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise QcreepError(f"output folder {out_dir} is an existing file, not a folder; choose another --out")
    built = set()
    for config in configs:
        data.run_data(config)
        key = (config.dataset, tuple(config.assignment.items()), config.angles, config.n_reps, config.n_qubits,
               config.output_scale, config.bias_init, config.dtype, config.device)
        if key not in built:
            built.add(key)
            check_memory_of(config)
            with torch.random.fork_rng(devices=[]):
                model = build_run_model(config)
            if check_model is not None:
                check_model(config, model)
        if check_records:
            preflight(config, out_dir, resume=resume)
    return data


def check_memory_of(config: TrainConfig, n_models: int = 1) -> None:
    """Refuse settings whose memory estimate exceeds the machine (see :mod:`qcreep.guard`)."""
    from qcreep.guard import guard

    if config.model != "hybridnet":
        from qcreep.guard import guard_backbone

        guard_backbone(config, config.backbone(), n_models=n_models)
        return
    info = info_for(config)
    guard(config, device=config.device, input_shape=info.input_shape, out_features=info.num_classes,
          n_models=n_models)


# ------------------------------------------------------------------------------------------------
# the sweep


def run_sweep(configs: list[TrainConfig], out_dir, *, executor: Executor | None = None,
              tuning: TuningSpec | None = None, resume: bool = False, progress=None, log=None,
              data: DataCache | None = None) -> list[dict]:
    """Tune (if ``tuning``), then train every config (complete runs are skipped); write ``sweep.csv``
    (one row per run in the folder, earlier sweeps' runs included).

    With ``tuning``, the configs' values of the tuned settings are ignored: each rung (the configs
    that differ only by seed) gets the values chosen on the validation split, with the same budget
    for every rung, and each final record carries the rung's ``tuning`` block.
    """
    executor = executor or LocalExecutor()
    data = data or DataCache()
    out_dir = Path(out_dir)
    if tuning is not None:
        check_tunable(configs)  # before the lock creates the folder
    with results_lock(out_dir):
        finals = list(configs)
        if tuning is not None:
            finals = tune_and_finalise(configs, out_dir, tuning, executor=executor, progress=progress, log=log,
                                       data=data, resume=resume)
        for config in finals:
            preflight(config, out_dir, resume=resume)
        records = executor.run(finals, out_dir, resume=resume, progress=progress, log=log, data=data)
        write_sweep_csv(folder_records(out_dir, records), out_dir / "sweep.csv")
    return records


def folder_records(out_dir, records: list[dict | None]) -> list[dict]:
    """Every run record in ``out_dir/records`` (this sweep's and earlier ones), this sweep's first."""
    ours = [r for r in records if r is not None]
    seen = {r["run_id"] for r in ours}
    others = []
    for path in sorted((Path(out_dir) / "records").glob("*.json")):
        rec = read_record(path)
        if rec.get("run_id") not in seen and "record_version" in rec:
            others.append(rec)
    return ours + others


def rung_groups(configs: list[TrainConfig], tuned: tuple[str, ...] = ()) -> list[list[TrainConfig]]:
    """Configs grouped by rung and protocol: equal but for the seed and the ``tuned`` settings."""
    groups: dict[str, list[TrainConfig]] = {}
    fields = [k for k in tuned if k not in STRUCTURE_KEYS]
    shape = [k for k in tuned if k in STRUCTURE_KEYS]
    for config in configs:
        kept = {k: v for k, v in (config.structure or {}).items() if k not in shape} or None
        neutral = config.replace(seed=0, structure=kept, **{k: getattr(TrainConfig, k) for k in fields})
        groups.setdefault(neutral.config_hash + neutral.rung_label, []).append(config)
    return list(groups.values())


def tune_and_finalise(configs, out_dir, spec: TuningSpec, *, executor, progress, log, data,
                      resume) -> list[TrainConfig]:
    """Run every rung's trials (resuming finished ones), choose, and return the final configs.

    Structural settings (``layers``, ``depth``, ``width``) are tuned for the rungs with quantum layers
    only; each classical twin then takes the structure its quantum rung chose (so that their
    parameter counts stay matched) and tunes the other settings, with the same budget as each other.
    """
    spec.validate()
    check_tunable(configs)
    shape = structural(spec)
    groups = rung_groups(configs, tuple(spec.grid))
    twins = [g for g in groups if shape and g[0].twin_of]
    first = [g for g in groups if not (shape and g[0].twin_of)]
    specs = [spec if not shape or _has_quantum(g[0]) else without(spec, shape) for g in first]
    if log is not None:
        seeds = f"seed {spec.seed}" if spec.seeds == 1 else f"the mean over seeds {_seeds_text(spec.seed_list)}"
        log(f"tuning {len(groups)} rung(s) on the validation split: {spec.n_trials} trial(s) x {spec.epochs} "
            f"epoch(s) each ({', '.join(spec.grid)}), scored by {seeds}"
            + (f"; {', '.join(shape)} for the quantum rungs only, their twins following them" if shape else ""))
    blocks = _tune(first, specs, out_dir, executor=executor, progress=progress, log=log, data=data)
    finals = [_finals(group, block) for group, block in zip(first, blocks)]
    if twins:
        inherited = []
        for group in twins:
            rung = _controlled_rung(group[0], first)
            chosen = blocks[first.index(rung)]["chosen"] if rung is not None and blocks[first.index(rung)] else {}
            settings = {k: chosen[k] for k in shape if k in chosen}
            group[:] = [with_settings(c, settings) for c in group]
            inherited.append((rung, settings))
        rest = without(spec, shape)
        twin_blocks = _tune(twins, [rest] * len(twins), out_dir, executor=executor, progress=progress, log=log,
                            data=data)
        for group, block, (rung, settings) in zip(twins, twin_blocks, inherited):
            if block is not None:
                block["inherited"] = {"from": rung[0].rung_label if rung else None, "settings": settings}
            finals.append(_finals(group, block))
    return [c for group in finals for c in group]


def _has_quantum(config: TrainConfig) -> bool:
    return is_quantum_assignment(config.backbone(), config.assignment)


def _controlled_rung(twin: TrainConfig, groups):
    """The group of the quantum rung a twin controls (its real-angle runs where there are several)."""
    matches = [g for g in groups if g[0].dataset == twin.dataset and g[0].rung_label == twin.twin_of
               and not g[0].twin_of]
    return next((g for g in matches if g[0].angles == "real"), matches[0] if matches else None)


def _finals(group: list[TrainConfig], block: dict | None) -> list[TrainConfig]:
    if block is None:
        return list(group)
    return [final_config(c, block, c.seed, c.epochs) for c in group]


def _tune(groups, specs, out_dir, *, executor, progress, log, data) -> list[dict | None]:
    """The tuning block of each group under its spec (None where a group has nothing to tune)."""
    trials_of = [trial_configs(group[0], sp) if sp is not None else [] for group, sp in zip(groups, specs)]
    all_trials = [t for trials in trials_of for t in trials]
    if all_trials:
        executor.run(all_trials, tuning_dir(out_dir), resume=True, progress=progress, log=log, data=data,
                     tolerate_divergence=True)
    blocks = []
    for group, sp, trials in zip(groups, specs, trials_of):
        if sp is None:
            blocks.append(None)
            continue
        block = choose(sp, trials, tuning_dir(out_dir))
        base = group[0]
        seeds = "" if sp.seeds == 1 else f"_seeds{sp.seeds}"
        name = f"{_stem(base)}_{base.angles}_{trials[0].config_hash}{seeds}.json"
        atomic_write_json(tuning_dir(out_dir) / name,
                          {"dataset": base.dataset, "label": base.rung_label, "angles": base.angles, **block})
        if log is not None:
            chosen = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in block["chosen"].items())
            score = next(c["val_acc"] for c in block["candidates"] if c["settings"] == block["chosen"])
            over = "" if sp.seeds == 1 else f", mean over seeds {_seeds_text(sp.seed_list)}"
            log(f"[{base.dataset} {base.rung_label} {base.angles}] tuned on validation: {chosen} "
                f"(best val acc {100 * score:.2f}%{over})")
        blocks.append(block)
    return blocks


def _seeds_text(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds))


def _stem(config: TrainConfig) -> str:
    """The run id without its angle mode, seed and hash: data, model and rung."""
    return config.run_id.split(f"_{config.angles}_seed")[0]


SWEEP_COLUMNS = ("run_id", "dataset", "label", "twin_of", "angles", "seed", "status", "epochs_completed", "n_params",
                 "lr", "tuned", "final_test_acc", "test_acc_at_best", "best_epoch", "best_val_acc",
                 "final_train_acc", "final_test_loss", "mean_epoch_seconds", "max_unitarity_error", "solver")


def write_sweep_csv(records: list[dict], path: Path) -> None:
    """One row per run, accuracies as fractions (as in the records)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SWEEP_COLUMNS)
    writer.writeheader()
    for rec in records:
        if rec is None:
            continue
        times = rec.get("epoch_times") or []
        unit = rec.get("unitarity") or {}
        writer.writerow({
            "run_id": rec["run_id"], "dataset": rec["dataset"], "label": rec["label"],
            "twin_of": rec.get("twin_of") or "", "angles": rec["angles"], "seed": rec["seed"],
            "status": rec["status"], "epochs_completed": rec.get("epochs_completed", 0), "n_params": rec["n_params"],
            "lr": rec.get("config", {}).get("lr", ""), "tuned": "yes" if rec.get("tuning") else "no",
            "final_test_acc": _last(rec.get("test_accs")), "test_acc_at_best": _blank(rec.get("test_acc_at_best")),
            "best_epoch": _blank(rec.get("best_epoch")), "best_val_acc": _blank(rec.get("best_val_acc")),
            "final_train_acc": _last(rec.get("train_accs")), "final_test_loss": _last(rec.get("test_losses")),
            "mean_epoch_seconds": sum(times) / len(times) if times else "",
            "max_unitarity_error": unit.get("max_unitarity_error", ""), "solver": rec.get("solver") or "",
        })
    atomic_write_bytes(path, buffer.getvalue().encode())


def _last(values):
    return values[-1] if values else ""


def _blank(value):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


# The executors lived here first; they are re-exported for callers of earlier versions.
__all__ = ["DataCache", "Executor", "LocalExecutor", "SWEEP_COLUMNS", "data_key", "default_seed_parallel",
           "plan", "preflight_sweep", "run_one", "run_sweep", "rung_groups", "tune_and_finalise", "write_sweep_csv"]
