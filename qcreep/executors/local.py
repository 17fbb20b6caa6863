"""The local executor: runs train in this process, one after another or seed-parallel.

:class:`DataCache` loads each dataset once per sweep and carves each validation split once.
:func:`run_one` trains one config and turns a diverged tuning trial into a failed trial.
:class:`LocalExecutor` runs a list of configs in this process; with ``seed_parallel=K`` the
seeds of one rung train K at a time as one stacked model (:mod:`qcreep.stacked`).

Example:
    >>> from qcreep.config import TrainConfig
    >>> from qcreep.executors.local import LocalExecutor, seed_groups
    >>> configs = [TrainConfig(dataset="digits", level=lv, seed=s).validate() for lv in (0, 2) for s in (0, 1)]
    >>> [[c.seed for c in group] for group in seed_groups(configs)]
    [[0, 1], [0, 1]]
    >>> LocalExecutor(seed_parallel=2).seed_parallel
    2
"""

from __future__ import annotations

import torch

from qcreep.checks import check_int
from qcreep.config import TrainConfig
from qcreep.datasources import load_for, run_data_key
from qcreep.errors import ConfigError
from qcreep.records import read_record, record_path
from qcreep.train import DivergedError, RunData, fit, prepare_data
from qcreep.tuning import is_diverged, mark_diverged


def data_key(config: TrainConfig) -> tuple:
    """What identifies loaded data: the spec, folder, first-N limits, test options and the files' stamps."""
    return run_data_key(config)


def split_key(config: TrainConfig) -> tuple:
    """What identifies a run's data: the dataset and its validation split."""
    return (data_key(config), config.val_fraction, config.split_seed)


class DataCache:
    """Datasets loaded once per sweep, and their validation splits once per (fraction, seed)."""

    def __init__(self):
        self._raw: dict = {}
        self._split: dict = {}

    def raw(self, config: TrainConfig):
        key = data_key(config)
        if key not in self._raw:
            self._raw[key] = load_for(config)[:2]
        return self._raw[key]

    def run_data(self, config: TrainConfig) -> RunData:
        key = split_key(config)
        if key not in self._split:
            self._split[key] = prepare_data(config, self.raw(config))
        return self._split[key]


def run_one(config: TrainConfig, out_dir, *, resume: bool, progress, log, data: DataCache | RunData,
            tolerate_divergence: bool = False, on_epoch=None) -> dict | None:
    """:func:`~qcreep.train.fit` one config; a diverged tuning trial is marked and gives None.

    ``data`` is the sweep's :class:`DataCache` or the run's :class:`~qcreep.train.RunData`;
    ``on_epoch`` is passed to :func:`~qcreep.train.fit`.
    """
    kwargs = {} if log is None else {"log": log}
    if tolerate_divergence and is_diverged(config, out_dir):
        return None
    run_data = data if isinstance(data, RunData) else data.run_data(config)
    try:
        return fit(config, out_dir, resume=resume, progress=progress, data=run_data, on_epoch=on_epoch, **kwargs)
    except DivergedError as err:
        if not tolerate_divergence:
            raise
        mark_diverged(config, out_dir, str(err))
        if log is not None:
            log(f"[{config.dataset} {config.rung_label} lr {config.lr:g}] diverged; kept as a failed trial")
        return None


class LocalExecutor:
    """Runs configs in this process, loading each dataset once.

    Args:
        seed_parallel: train up to this many seeds of one rung together as one stacked model
            (1: one run at a time). Tuning trials always run one at a time.
    """

    name = "local"

    def __init__(self, seed_parallel: int = 1):
        self.seed_parallel = check_int(seed_parallel, "seed_parallel", 1, error=ConfigError)

    def run(self, configs, out_dir, *, resume=False, progress=None, log=None, data=None,
            tolerate_divergence=False) -> list[dict | None]:
        from qcreep.executors.progress import SweepProgress, log_skipped, skip_complete

        data = data or DataCache()
        what = "tuning trials" if tolerate_divergence else "runs"
        records, todo = skip_complete(configs, out_dir, resume=resume, tolerate_divergence=tolerate_divergence)
        log_skipped(records, log, what)
        done = {c.run_id: c.epochs for c in configs if c.run_id in records}
        done.update({c.run_id: epochs_on_disk(out_dir, c) for c in todo})
        with SweepProgress(configs, done=done, progress=progress, what=what, log=log) as sweep:
            write = sweep.write if log is not None else None
            kwargs = {} if write is None else {"log": write}

            def on_epoch(tracker) -> None:
                sweep.epoch(tracker.config.run_id, tracker.record["epochs_completed"])

            groups = [todo] if self.seed_parallel == 1 or tolerate_divergence else seed_groups(todo)
            for group in groups:
                if self.seed_parallel > 1 and not tolerate_divergence and len(group) > 1:
                    from qcreep.stacked import fit_stacked
                    for start in range(0, len(group), self.seed_parallel):
                        chunk = group[start:start + self.seed_parallel]
                        for config in chunk:
                            sweep.started(config.run_id)
                        for config, rec in zip(chunk, fit_stacked(chunk, out_dir, resume=resume, progress=progress,
                                                                  data=data.run_data(chunk[0]), on_epoch=on_epoch,
                                                                  **kwargs)):
                            records[config.run_id] = rec
                            sweep.finished(config.run_id)
                else:
                    for config in group:
                        sweep.started(config.run_id)
                        records[config.run_id] = run_one(config, out_dir, resume=resume, progress=progress,
                                                         log=write, data=data,
                                                         tolerate_divergence=tolerate_divergence, on_epoch=on_epoch)
                        sweep.finished(config.run_id)
        return [records[c.run_id] for c in configs]

    def close(self) -> None:
        """Nothing to release (the same interface as executors that hold a cluster)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def epochs_on_disk(folder, config: TrainConfig) -> int:
    """Epochs of ``config``'s run already recorded in ``folder`` (0 without a record)."""
    path = record_path(folder, config)
    return int(read_record(path).get("epochs_completed", 0)) if path.exists() else 0


def seed_groups(configs: list[TrainConfig]) -> list[list[TrainConfig]]:
    """Configs that differ only by seed, grouped in plan order."""
    groups: dict[str, list[TrainConfig]] = {}
    for config in configs:
        groups.setdefault(config.config_hash, []).append(config)
    return list(groups.values())


def default_seed_parallel(device: str, n_seeds: int) -> int:
    """Seed-parallel where it pays: on a GPU all seeds of a rung at once (up to 5); on a CPU one at a time."""
    return min(max(n_seeds, 1), 5) if torch.device(device).type == "cuda" else 1
