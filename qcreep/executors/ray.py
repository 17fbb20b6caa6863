"""The Ray executor: every run is a Ray task, on this machine or on a cluster.

Who writes what:

- The **driver** (the ``qcreep run`` process) holds the results folder's lock, checks every run
  against the records already there (:func:`~qcreep.train.preflight`, with the user's
  ``resume``), puts each dataset split into Ray's object store once, and submits one task per
  run with its resources declared (:func:`resources_for`). It shows the runs done, running and
  left with an ETA, and relays the workers' log lines.
- A **task** trains its run with :func:`~qcreep.executors.local.run_one` in a private scratch
  folder on whatever node it lands on. Before training it fetches the run's record and
  checkpoint from the sink, so a task that Ray retries after its worker died resumes from the last
  finished epoch, on any node. After every epoch it sends the checkpoint and record bytes to the
  sink without waiting (a task blocked on Ray gives its CPU away, and other runs would start on
  it), and before it returns it waits until all of them are written, so a write that failed on the
  driver's side fails the run. Workers need qcreep (same version) and torch, but no data files and
  no shared file system.
- The **sink** is one small actor (no CPU) pinned to the driver's node. It is the only process
  that writes into the results folder during the runs, with the atomic writes of
  :mod:`qcreep.files`, so a worker's disk never holds the only copy of a result.

A run gives the same metrics as under the local executor for the same seed, thread count and
device, to rounding: the task runs the same :func:`~qcreep.train.fit` on the same data, in another
process (and on a cluster, on another CPU, whose maths library may round differently).

``ray`` is imported only when this executor connects; without it installed the error says how to
install it.

Example:
    >>> from qcreep.config import TrainConfig
    >>> from qcreep.executors.ray import resources_for
    >>> resources_for(TrainConfig(dataset="digits", threads=2))
    {'num_cpus': 2, 'num_gpus': 0}
    >>> resources_for(TrainConfig(dataset="digits", device="cuda"), gpu_fraction=0.5)
    {'num_cpus': 1, 'num_gpus': 0.5}
    >>> from qcreep.executors.ray import RayExecutor
    >>> with RayExecutor(address="auto") as executor:  # doctest: +SKIP
    ...     records = executor.run(configs, "runs/cluster")
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path, PurePosixPath

import torch

import qcreep
from qcreep.checks import check_int, check_number
from qcreep.config import TrainConfig
from qcreep.datasources import info_for, remember_info
from qcreep.errors import ConfigError, QcreepError
from qcreep.executors.local import DataCache, epochs_on_disk, run_one, split_key
from qcreep.executors.progress import SweepProgress, log_skipped, skip_complete
from qcreep.files import atomic_write_bytes, ensure_dir
from qcreep.records import checkpoint_path, read_record, record_path

#: How to install the optional Ray dependency.
RAY_INSTALL = 'pip install "qcreep[ray]"'
#: Share of one GPU that a run declares with ``device="cuda"`` (four runs per GPU).
DEFAULT_GPU_FRACTION = 0.25
#: How often a task whose worker died is started again.
DEFAULT_RETRIES = 3


def require_ray():
    """The ``ray`` module, or a one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise QcreepError(f"the ray executor needs Ray, which is not installed; install it with {RAY_INSTALL}, "
                          "or use --executor local") from None
    return ray


def resources_for(config: TrainConfig, gpu_fraction: float = DEFAULT_GPU_FRACTION) -> dict:
    """The resources one run's task declares: its torch threads as CPUs, and a GPU share on CUDA.

    CPUs are ``config.threads`` (1 when unset: the task then trains on one thread). A run on
    ``cuda`` declares ``gpu_fraction`` of a GPU, so ``1 / gpu_fraction`` runs share one GPU.
    """
    gpus = check_number(gpu_fraction, "gpu_fraction", high=1.0, high_open=False, error=ConfigError)
    return {"num_cpus": config.threads or 1, "num_gpus": gpus if torch.device(config.device).type == "cuda" else 0}


def _relative(path: Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


# ------------------------------------------------------------------------------------------------
# the sink: the one writer of the results folder, on the driver's node


class ResultSink:
    """Receives the runs' files and writes them into results folders on its own node (a Ray actor).

    Files are named by a folder (absolute, on the driver's machine) and a path inside it. A
    checkpoint is written before its record, each atomically. A late message from an attempt that
    was superseded (fewer epochs than already written for that run) is ignored.
    """

    def __init__(self):
        self._epochs: dict[tuple[str, str], int] = {}
        self._logs: list[str] = []
        self._events: list[dict] = []

    @staticmethod
    def _path(folder: str, name: str) -> Path:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise QcreepError(f"refusing to write {name!r} outside the results folder {folder}")
        return Path(folder) / rel

    def fetch(self, folder: str, names: list[str]) -> dict[str, bytes | None]:
        """The current bytes of each named file (None where there is none)."""
        found = {}
        for name in names:
            path = self._path(folder, name)
            found[name] = path.read_bytes() if path.exists() else None
        return found

    def put(self, folder: str, run_id: str, files: list[tuple[str, bytes]], epochs: int) -> bool:
        """Write ``files`` in order (atomically each) unless a later epoch of the run is already written."""
        key = (folder, run_id)
        if epochs < self._epochs.get(key, -1):
            return False
        for name, blob in files:
            atomic_write_bytes(self._path(folder, name), blob)
        self._epochs[key] = epochs
        self._events.append({"kind": "epoch", "run_id": run_id, "epochs": epochs})
        return True

    def started(self, run_id: str, host: str, pid: int) -> None:
        self._events.append({"kind": "start", "run_id": run_id, "host": host, "pid": pid})

    def log(self, line: str) -> None:
        self._logs.append(line)

    def drain(self) -> tuple[list[str], list[dict]]:
        """The log lines and events (a run started, an epoch written) received since the last call."""
        logs, events = self._logs, self._events
        self._logs, self._events = [], []
        return logs, events

    def flush(self) -> bool:
        """Returns once every message sent before it has been handled."""
        return True


# ------------------------------------------------------------------------------------------------
# the task


class _Shipper:
    """Sends a run's checkpoint and record from the scratch folder to the sink, and its log lines."""

    def __init__(self, ray, sink, folder: str, config: TrainConfig, scratch: Path):
        self.ray, self.sink, self.folder, self.scratch = ray, sink, folder, scratch
        self.run_id = config.run_id
        self.ckpt = _relative(checkpoint_path(scratch, config), scratch)
        self.rec = _relative(record_path(scratch, config), scratch)
        self.sent_record: bytes | None = None
        self.writes: list = []

    def log(self, line: str) -> None:
        self.sink.log.remote(line)

    def fetch(self) -> None:
        """Copy the run's files from the results folder into the scratch folder."""
        found = self.ray.get(self.sink.fetch.remote(self.folder, [self.ckpt, self.rec]))
        for name, blob in found.items():
            if blob is not None:
                atomic_write_bytes(self.scratch / name, blob)
        self.sent_record = found.get(self.rec)

    def epoch(self, tracker) -> None:
        record = tracker.rec_path.read_bytes()
        files = [(self.ckpt, tracker.ckpt_path.read_bytes()), (self.rec, record)]
        self.writes.append(self.sink.put.remote(self.folder, self.run_id, files, tracker.record["epochs_completed"]))
        self.sent_record = record

    def final(self) -> None:
        """Send the record if it changed after the last epoch (a run marked complete or diverged), then
        wait until every file sent is written (a failed write raises here)."""
        path = self.scratch / self.rec
        if path.exists():
            record = path.read_bytes()
            if record != self.sent_record:
                epochs = int(read_record(path).get("epochs_completed", 0))
                self.writes.append(self.sink.put.remote(self.folder, self.run_id, [(self.rec, record)], epochs))
                self.sent_record = record
        self.ray.get(self.writes)
        self.writes = []


def _on_this_worker(config: TrainConfig, ray) -> TrainConfig:
    """The config as this worker runs it: Ray shows a task its GPU as ``cuda`` (index 0)."""
    if torch.device(config.device).type == "cuda" and ray.get_gpu_ids():
        return dataclasses.replace(config, device="cuda")
    return config


def train_task(config: TrainConfig, data, sink, folder: str, tolerate_divergence: bool, version: str):
    """One run on a Ray worker; returns its record, None (a diverged trial) or the QcreepError it met."""
    import ray

    if qcreep.__version__ != version:
        return QcreepError(f"a Ray worker on {socket.gethostname()} has qcreep {qcreep.__version__}, the driver "
                           f"{version}; install the same qcreep version on every node")
    data, info = data
    remember_info(config, info)
    sink.started.remote(config.run_id, socket.gethostname(), os.getpid())
    scratch = Path(tempfile.mkdtemp(prefix="qcreep-run-"))
    shipper = _Shipper(ray, sink, folder, config, scratch)
    previous_threads = torch.get_num_threads()
    try:
        shipper.fetch()
        torch.set_num_threads(config.threads or 1)
        try:
            record = run_one(_on_this_worker(config, ray), scratch, resume=True, progress=False, log=shipper.log,
                             data=data, tolerate_divergence=tolerate_divergence, on_epoch=shipper.epoch)
        except QcreepError as err:
            shipper.final()
            return err
        shipper.final()
        return record
    finally:
        torch.set_num_threads(previous_threads)
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# the driver


class RayExecutor:
    """Runs configs as Ray tasks; the results land in ``out_dir`` on this machine.

    Args:
        address: None or ``"local"`` starts a Ray instance on this machine (stopped by
            :meth:`close`); ``"auto"`` joins the cluster running here (``ray start --head``);
            ``"HOST:PORT"`` joins the cluster at that address. If Ray is already initialised in
            this process, that instance is used and left running.
        gpu_fraction: share of a GPU that each run on ``cuda`` declares.
        max_retries: how often a run whose worker died is started again (it resumes from its last
            finished epoch).
        num_cpus: CPUs of a local instance (default: all of this machine's).
        poll_seconds: how often the driver collects progress and log lines.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, gpu_fraction: float = DEFAULT_GPU_FRACTION,
                 max_retries: int = DEFAULT_RETRIES, num_cpus: int | None = None, poll_seconds: float = 0.2):
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError(f"ray address must be 'local', 'auto' or HOST:PORT, got {address!r}")
        self.address = address.strip() if address else None
        self.gpu_fraction = check_number(gpu_fraction, "gpu_fraction", high=1.0, high_open=False, error=ConfigError)
        self.max_retries = check_int(max_retries, "max_retries", 0, error=ConfigError)
        self.num_cpus = None if num_cpus is None else check_int(num_cpus, "num_cpus", 1, error=ConfigError)
        self.poll_seconds = check_number(poll_seconds, "poll_seconds", error=ConfigError)
        #: The runs whose tasks have started and not yet returned: run id -> {"host", "pid"}.
        self.running: dict[str, dict] = {}
        self._ray = None
        self._owns_ray = False
        self._sink = None
        self._task = None
        self._data_refs: dict = {}
        self._progress: SweepProgress | None = None
        self._folder: Path | None = None

    # -------------------------------------------------------------------------- connection

    def connect(self):
        """Start or join Ray (once); returns the ``ray`` module."""
        if self._ray is not None:
            return self._ray
        ray = require_ray()
        if not ray.is_initialized():
            quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
            try:
                if self.address in (None, "local"):
                    ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, **quiet)
                else:
                    ray.init(address=self.address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as err:
                message = " ".join(str(err).split())[:300]
                raise QcreepError(f"cannot reach a Ray cluster at {self.address}: {message}; start one with "
                                  "'ray start --head' or check --ray-address (a cluster with token "
                                  "authentication also needs RAY_AUTH_MODE=token here)") from None
            self._owns_ray = True
        self._ray = ray
        return ray

    def close(self) -> None:
        """Stop the sink, and the Ray instance if this executor started or joined it."""
        ray = self._ray
        if ray is None:
            return
        if self._sink is not None:
            with contextlib.suppress(Exception):
                ray.kill(self._sink)
        self._sink, self._task, self._data_refs = None, None, {}
        if self._owns_ray:
            ray.shutdown()
        self._ray, self._owns_ray = None, False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _sink_actor(self, ray):
        if self._sink is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
            self._sink = ray.remote(num_cpus=0, max_restarts=0)(ResultSink).options(scheduling_strategy=here).remote()
        return self._sink

    def _data_ref(self, ray, data: DataCache, config: TrainConfig):
        key = split_key(config)
        if key not in self._data_refs:
            # the data's description travels with it: a worker rebuilds the model and checks the
            # fingerprint from it, without the data files
            self._data_refs[key] = ray.put((data.run_data(config), info_for(config)))
        return self._data_refs[key]

    # -------------------------------------------------------------------------- running

    def run(self, configs, out_dir, *, resume=False, progress=None, log=None, data=None,
            tolerate_divergence=False) -> list[dict | None]:
        """Run ``configs`` as Ray tasks; records land in ``out_dir`` here. Arguments as the local executor's."""
        data = data or DataCache()
        out_dir = ensure_dir(Path(out_dir).resolve())
        self._folder = out_dir
        what = "tuning trials" if tolerate_divergence else "runs"
        # the user's resume rule, checked here before anything runs
        results, todo = skip_complete(configs, out_dir, resume=resume, tolerate_divergence=tolerate_divergence)
        log_skipped(results, log, what)
        if todo:
            ray = self.connect()
            sink = self._sink_actor(ray)
            if self._task is None:
                self._task = ray.remote(train_task)
            pending = {}
            for config in todo:
                options = {**resources_for(config, self.gpu_fraction), "max_retries": self.max_retries,
                           "retry_exceptions": False}
                ref = self._task.options(**options).remote(config, self._data_ref(ray, data, config), sink,
                                                           str(out_dir), tolerate_divergence, qcreep.__version__)
                pending[ref] = config
            self._wait(ray, sink, pending, results, configs, progress, log, what)
        return [results[c.run_id] for c in configs]

    def _wait(self, ray, sink, pending: dict, results: dict, configs: list, progress, log, what: str) -> None:
        """Collect the tasks' results, relay their log lines and show the sweep's progress
        (:class:`~qcreep.executors.progress.SweepProgress`) until all are done."""
        done = {c.run_id: c.epochs for c in configs if c.run_id in results}
        done.update({c.run_id: epochs_on_disk(self._folder, c) for c in pending.values()})
        sweep = SweepProgress(configs, done=done, progress=progress, what=what, log=log)
        self._progress = sweep
        write = sweep.write
        try:
            while pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=self.poll_seconds)
                self._drain(ray, sink, write)
                # after the drain, so that a run that ended as another started is not counted running
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for ref in ready:
                    config = pending.pop(ref)
                    self.running.pop(config.run_id, None)
                    result = self._result(ray, ref, config)
                    if isinstance(result, BaseException):
                        raise result
                    results[config.run_id] = result
                    sweep.finished(config.run_id)
            self._drain(ray, sink, write)
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            with contextlib.suppress(Exception):  # the writes already sent finish before we return
                ray.get(sink.flush.remote(), timeout=30)
            with contextlib.suppress(Exception):
                self._drain(ray, sink, write)
            raise
        finally:
            self.running.clear()
            self._progress = None
            sweep.close()

    def _result(self, ray, ref, config: TrainConfig):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError:
            raise  # an unexpected error inside the run: its traceback is the useful message
        except ray.exceptions.RayError as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            return QcreepError(f"run {config.run_id} failed on Ray after {self.max_retries} retries "
                               f"({type(err).__name__}: {first}); finished epochs are kept, continue with --resume")

    def _drain(self, ray, sink, write) -> None:
        logs, events = ray.get(sink.drain.remote())
        sweep = self._progress
        for event in events:
            if event["kind"] == "start":
                self.running[event["run_id"]] = {"host": event["host"], "pid": event["pid"]}
                if sweep is not None:
                    sweep.started(event["run_id"])
            elif sweep is not None:
                sweep.epoch(event["run_id"], event["epochs"])
        for line in logs:
            write(line)


__all__ = ["DEFAULT_GPU_FRACTION", "DEFAULT_RETRIES", "RAY_INSTALL", "RayExecutor", "ResultSink",
           "require_ray", "resources_for", "train_task"]
