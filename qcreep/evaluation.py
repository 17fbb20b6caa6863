"""Finished runs evaluated as on hardware: test accuracy against shots and against gate noise.

For every complete run with a quantum layer in a results folder, :func:`evaluate_folder` rebuilds
the trained network from its checkpoint (:mod:`qcreep.trained`), scores the test split exactly
and then under each setting of a :class:`HardwareSpec` (:mod:`qcreep.hardware.execution`):

* finite shots ``S``: each quantum layer's measured values are estimated from ``S`` samples;
* local depolarising noise ``p`` on every qubit after every gate block, simulated exactly with
  density matrices.

It also estimates the hardware resources of the run's quantum layers
(:mod:`qcreep.hardware.resources`). Each run's results go to ``OUT/hardware/RUN.json``
(written atomically); ``qcreep report`` turns them into the "From simulation to hardware" section.
A run whose file already holds the same settings is not evaluated again.

Runs with complex angles (the published code's non-unitary mode) have no physical circuit; they
are listed as skipped.

Example:
    >>> from qcreep.evaluation import HardwareSpec, evaluate_folder
    >>> spec = HardwareSpec(shots=(100, 1000), noise=(1e-3,), max_test=200)
    >>> results = evaluate_folder("qcreep-results", spec)  # doctest: +SKIP
    >>> results[0]["shots"][0]["shots"], results[0]["exact"]["test_acc"]  # doctest: +SKIP
    (100, 0.96)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import qcreep
from qcreep.checks import check_int, check_number
from qcreep.config import DTYPES
from qcreep.errors import ConfigError
from qcreep.files import atomic_write_json
from qcreep.records import read_record
from qcreep.train import prepare_data
from qcreep.trained import TrainedRun, load_trained, trained_runs

HARDWARE_VERSION = 1
HARDWARE_DIR = "hardware"
DEFAULT_SHOTS = (100, 1000, 10000, 100000)
DEFAULT_NOISE = (1e-4, 1e-3, 1e-2)
DEFAULT_PRECISION = 0.01


@dataclass(frozen=True)
class HardwareSpec:
    """What to evaluate: shot counts, per-qubit depolarising probabilities, the sampling seed.

    Args:
        shots: shot counts, each ``>= 1``.
        noise: depolarising probabilities ``p`` per qubit and gate block, each in ``(0, 3/4]``.
        seed: seed of the shot sampling.
        max_test: score the first ``max_test`` test images (default: all the run used).
        batch_size: images per batch.
        precision: standard error per output for the shots-per-image estimate.
        transpile: count two-qubit gates and depth with Qiskit (needs ``qcreep[hardware]``).
    """

    shots: tuple = DEFAULT_SHOTS
    noise: tuple = DEFAULT_NOISE
    seed: int = 0
    max_test: int | None = None
    batch_size: int = 250
    precision: float = DEFAULT_PRECISION
    transpile: bool = True

    def validate(self) -> HardwareSpec:
        shots = tuple(check_int(s, "shots", 1, error=ConfigError) for s in self.shots)
        noise = tuple(check_number(p, "noise", high=0.75, high_open=False, error=ConfigError) for p in self.noise)
        object.__setattr__(self, "shots", tuple(sorted(set(shots))))
        object.__setattr__(self, "noise", tuple(sorted(set(noise))))
        check_int(self.seed, "shot seed", 0, error=ConfigError)
        if self.max_test is not None:
            check_int(self.max_test, "max_test", 1, error=ConfigError)
        check_int(self.batch_size, "batch_size", 1, error=ConfigError)
        check_number(self.precision, "precision", high=1.0, error=ConfigError)
        return self

    def key(self) -> dict:
        """The settings that change the numbers (a saved file with other settings is evaluated again)."""
        return {"shots": list(self.shots), "noise": list(self.noise), "seed": self.seed, "max_test": self.max_test,
                "precision": self.precision, "transpile": self.transpile}


def hardware_path(out_dir, run_id: str) -> Path:
    return Path(out_dir) / HARDWARE_DIR / f"{run_id}.json"


def evaluate_run(run: TrainedRun, spec: HardwareSpec, *, log=None) -> dict:
    """Score one trained run exactly, under each shot count and each noise level; estimate its resources."""
    from qcreep.hardware.execution import Execution, evaluate_execution
    from qcreep.hardware.resources import estimate_resources

    config, model = run.config, run.model
    test = prepare_data(config).test
    x, y = test.x, test.y
    if spec.max_test is not None:
        x, y = x[:spec.max_test], y[:spec.max_test]
    dtype = DTYPES[config.dtype]
    started = time.perf_counter()

    def score(execution, **label):
        t0 = time.perf_counter()
        result = evaluate_execution(model, x.to(dtype), y, execution, spec.batch_size)
        row = {**label, "test_acc": result["accuracy"], "test_loss": result["loss"],
               "seconds": time.perf_counter() - t0}
        if log is not None:
            what = ", ".join(f"{k} {v:g}" for k, v in label.items()) or "exact"
            log(f"[{config.dataset} {config.rung_label} seed {config.seed}] {what}: test acc {row['test_acc']:.2%}")
        return row

    exact = score(Execution())
    shots = [score(Execution(shots=s, seed=spec.seed), shots=s) for s in spec.shots]
    noise = [score(Execution(noise=p, seed=spec.seed), noise=p) for p in spec.noise]
    resources = estimate_resources(model, _input_shape(config), precision=spec.precision, transpile=spec.transpile)
    return {
        "hardware_version": HARDWARE_VERSION, "qcreep_version": qcreep.__version__,
        "run_id": config.run_id, "dataset": config.dataset, "model": config.model,
        "data": {"kind": _data_info(config).kind}, "label": config.rung_label,
        "twin_of": config.twin_of, "angles": config.angles, "seed": config.seed, "config_hash": config.config_hash,
        "epochs_completed": run.epochs_completed, "n_test": int(len(y)), "settings": spec.key(),
        "exact": exact, "shots": shots, "noise": noise, "resources": resources,
        "seconds": time.perf_counter() - started,
    }


def _data_info(config):
    from qcreep.datasources import info_for

    return info_for(config)


def _input_shape(config) -> tuple:
    return tuple(_data_info(config).input_shape)


def evaluate_folder(out_dir, spec: HardwareSpec, *, run_ids=None, log=None) -> list[dict]:
    """Evaluate every complete quantum run in ``out_dir`` (or those in ``run_ids``); write ``OUT/hardware/``.

    Returns the hardware results, one dict per run, in record order. Runs already evaluated with
    the same settings are read back, not evaluated again.
    """
    spec = spec.validate()
    results = []
    for ckpt in trained_runs(out_dir):
        if run_ids is not None and ckpt.stem not in run_ids:
            continue
        path = hardware_path(out_dir, ckpt.stem)
        if path.is_file():
            saved = read_record(path)
            if saved.get("hardware_version") == HARDWARE_VERSION and saved.get("settings") == spec.key():
                results.append(saved)
                continue
        run = load_trained(ckpt)
        if run.config.angles != "real":
            if log is not None:
                log(f"[{run.config.dataset} {run.config.rung_label} seed {run.config.seed}] skipped: complex angles "
                    "make no physical circuit")
            continue
        result = evaluate_run(run, spec, log=log)
        atomic_write_json(path, result)
        results.append(result)
    return results
