"""Grids of runs: datasets x rungs (levels or assignments) x angle modes x seeds.

:func:`plan` turns a grid into validated :class:`~qcreep.train.TrainConfig` objects (so a bad value
fails before anything trains). An executor runs them. :class:`LocalExecutor` runs them one after
another in this process and loads each dataset once. Runs are independent and each writes its own
record and checkpoint, so an executor that spreads them over workers (for example Ray tasks that
call :func:`qcreep.train.fit`) needs nothing more than the same ``out_dir`` on shared storage.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Protocol

from qcreep.errors import ConfigError
from qcreep.train import TrainConfig, atomic_write_bytes, fit


def plan(datasets, *, levels=None, assignments=None, seeds=(0,), angles=("real",), **settings) -> list[TrainConfig]:
    """Validated configs for every combination, ordered dataset, rung, angle mode, seed.

    ``levels`` and ``assignments`` may both be given; their rungs are concatenated. ``settings``
    are any other :class:`TrainConfig` fields (``epochs``, ``lr``, ``max_train``...).
    """
    if not levels and not assignments:
        raise ConfigError("a sweep needs levels (e.g. 0 1 2) or assignments (e.g. conv1=flipped_quanv3x3)")
    unknown = sorted(set(settings) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(sorted(TrainConfig.__dataclass_fields__))}")
    if not list(seeds):
        raise ConfigError("a sweep needs at least one seed")
    rungs = [{"level": lv, "assignment": None} for lv in (levels or [])]
    rungs += [{"level": None, "assignment": a} for a in (assignments or [])]
    configs, seen = [], set()
    for dataset in datasets:
        for rung in rungs:
            for mode in angles:
                for seed in seeds:
                    config = TrainConfig(dataset=dataset, seed=seed, angles=mode, **rung, **settings).validate()
                    if config.run_id in seen:
                        continue
                    seen.add(config.run_id)
                    configs.append(config)
    return configs


class Executor(Protocol):
    def run(self, configs: list[TrainConfig], out_dir, *, resume: bool, progress, log) -> list[dict]: ...


class LocalExecutor:
    """Runs configs one at a time in this process, loading each dataset once."""

    def run(self, configs, out_dir, *, resume=False, progress=None, log=None) -> list[dict]:
        from qcreep.data import load_dataset

        cache = {}
        records = []
        kwargs = {} if log is None else {"log": log}
        for config in configs:
            key = (config.dataset, config.data_dir, config.max_train, config.max_test)
            if key not in cache:
                cache.clear()  # keep one dataset in memory at a time
                cache[key] = load_dataset(*key)
            records.append(fit(config, out_dir, resume=resume, progress=progress, data=cache[key], **kwargs))
        return records


def run_sweep(configs: list[TrainConfig], out_dir, *, executor: Executor | None = None, resume: bool = False,
              progress=None, log=None) -> list[dict]:
    """Run every config (complete runs are skipped) and write ``sweep.csv`` with one row per run."""
    executor = executor or LocalExecutor()
    records = executor.run(configs, out_dir, resume=resume, progress=progress, log=log)
    write_sweep_csv(records, Path(out_dir) / "sweep.csv")
    return records


SWEEP_COLUMNS = ("run_id", "dataset", "label", "angles", "seed", "status", "epochs_completed", "n_params",
                 "final_test_acc", "best_test_acc", "final_train_acc", "final_test_loss", "mean_epoch_seconds",
                 "max_unitarity_error")


def write_sweep_csv(records: list[dict], path: Path) -> None:
    """One row per run, accuracies as fractions (as in the records)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SWEEP_COLUMNS)
    writer.writeheader()
    for rec in records:
        times = rec.get("epoch_times") or []
        unit = rec.get("unitarity") or {}
        writer.writerow({
            "run_id": rec["run_id"], "dataset": rec["dataset"], "label": rec["label"], "angles": rec["angles"],
            "seed": rec["seed"], "status": rec["status"], "epochs_completed": rec.get("epochs_completed", 0),
            "n_params": rec["n_params"],
            "final_test_acc": _last(rec.get("test_accs")), "best_test_acc": max(rec.get("test_accs") or [float("nan")]),
            "final_train_acc": _last(rec.get("train_accs")), "final_test_loss": _last(rec.get("test_losses")),
            "mean_epoch_seconds": sum(times) / len(times) if times else "",
            "max_unitarity_error": unit.get("max_unitarity_error", ""),
        })
    atomic_write_bytes(path, buffer.getvalue().encode())


def _last(values):
    return values[-1] if values else ""

