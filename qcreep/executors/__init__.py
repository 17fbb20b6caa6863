"""Executors: what runs a sweep's configs, in this process or on a Ray cluster.

An executor has one method, ``run(configs, out_dir, *, resume, progress, log, data,
tolerate_divergence)``, which trains every config and returns their records in order (None for a
tuning trial that diverged), and ``close()``, which releases what it holds. Every executor writes
the same files into ``out_dir``: records, checkpoints and tuning trials as :func:`qcreep.train.fit`
writes them.

- :class:`~qcreep.executors.local.LocalExecutor` (``"local"``, the default): this process, one
  run after another, or the seeds of a rung as one stacked model.
- :class:`~qcreep.executors.ray.RayExecutor` (``"ray"``): one Ray task per run, on this machine
  or a cluster; needs the optional ``ray`` dependency (``pip install "qcreep[ray]"``).

Example:
    >>> from qcreep.executors import make_executor
    >>> make_executor("local").name
    'local'
    >>> make_executor("slurm")
    Traceback (most recent call last):
    ...
    qcreep.errors.ConfigError: executor must be one of local, ray, got 'slurm'
"""

from __future__ import annotations

from typing import Protocol

from qcreep.checks import check_choice
from qcreep.config import TrainConfig
from qcreep.errors import ConfigError
from qcreep.executors.local import (
    DataCache,
    LocalExecutor,
    data_key,
    default_seed_parallel,
    run_one,
    seed_groups,
    split_key,
)

#: The executors by name.
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    name: str

    def run(self, configs: list[TrainConfig], out_dir, *, resume: bool, progress, log,
            data: DataCache | None = None, tolerate_divergence: bool = False) -> list[dict | None]: ...

    def close(self) -> None: ...


def make_executor(name: str = "local", *, seed_parallel: int = 1, ray_address: str | None = None,
                  gpu_fraction: float | None = None) -> Executor:
    """The executor called ``name``, with its options.

    ``seed_parallel`` is the local executor's (with Ray every run is its own task, so more than 1
    is an error there); ``ray_address`` and ``gpu_fraction`` are the Ray executor's. Ray is not
    imported here: it is imported when the Ray executor first runs something.
    """
    check_choice(name, "executor", EXECUTORS, error=ConfigError)
    if name == "local":
        if ray_address is not None:
            raise ConfigError("--ray-address is for the ray executor; add --executor ray")
        return LocalExecutor(seed_parallel=seed_parallel)
    if seed_parallel != 1:
        raise ConfigError(f"seed_parallel {seed_parallel} is for the local executor; with the ray executor every "
                          "run is its own task (drop --seed-parallel or use --executor local)")
    from qcreep.executors.ray import DEFAULT_GPU_FRACTION, RayExecutor, require_ray

    require_ray()
    return RayExecutor(ray_address, gpu_fraction=DEFAULT_GPU_FRACTION if gpu_fraction is None else gpu_fraction)


__all__ = ["DataCache", "EXECUTORS", "Executor", "LocalExecutor", "data_key", "default_seed_parallel",
           "make_executor", "run_one", "seed_groups", "split_key"]
