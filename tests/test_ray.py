"""The Ray executor on a real local Ray instance with two CPUs: the metrics of the local executor (to rounding),
tuning with a diverged trial, a worker killed mid-run that resumes from its checkpoint, and a driver
interrupted with SIGINT and resumed with --resume.

One Ray instance serves the whole module; the interrupted driver is a ``qcreep run`` subprocess that
starts its own."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from qcreep.config import TrainConfig
from qcreep.errors import QcreepError
from qcreep.executors import DataCache, LocalExecutor
from qcreep.executors.ray import RayExecutor
from qcreep.files import LOCK_NAME
from qcreep.records import record_path
from qcreep.sweep import plan, run_sweep
from qcreep.train import fit
from qcreep.tuning import TuningSpec, tuning_dir

ray = pytest.importorskip("ray")

SMALL = dict(max_train=300, max_test=150, threads=1)
METRICS = ("train_losses", "train_accs", "val_losses", "val_accs", "test_losses", "test_accs")


class Log(list):
    def __call__(self, message):
        self.append(message)


def metrics(record: dict) -> dict:
    return {k: record[k] for k in METRICS}


# A Ray task trains in another process, with the threads that Ray sets up for it, and on a cluster
# on another CPU; its metrics agree with a local run's to rounding, not bitwise. Over 20 float32
# epochs of these runs, weights nudged by 2e-7 at the start moved the losses by at most 3e-6
# (relative) and no accuracy. A rounding difference may still flip a near tie between two
# logits, so an accuracy may differ by one image; a wrong seed, split or resumed epoch moves the
# losses by far more than the tolerance.
LOSS_RTOL = 1e-4
SPLIT_OF = {"train": "fit", "val": "validation", "best_val": "validation", "test": "test"}


def assert_agree(a, b, where: str = "", images: dict | None = None) -> None:
    """``a == b`` up to rounding: losses to ``LOSS_RTOL``, accuracies to one image of their split
    (``images``: a record's ``split`` sizes), everything else exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_agree(a[key], b[key], key if isinstance(key, str) else where, images)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for u, v in zip(a, b):
            assert_agree(u, v, where, images)
    elif isinstance(a, float) and isinstance(b, float) and "loss" in where:
        assert b == pytest.approx(a, rel=LOSS_RTOL), where
    elif isinstance(a, float) and isinstance(b, float) and "acc" in where:
        assert abs(a - b) <= 1 / images[SPLIT_OF[where.split("_acc")[0]]] + 1e-12, where
    else:
        assert a == b, where


def assert_same_run(local: dict, remote: dict, *keys: str) -> None:
    """The metrics (and ``keys``) of a run under Ray agree with the local run's to rounding."""
    assert local["split"] == remote["split"]
    assert_agree(metrics(local), metrics(remote), local["run_id"], local["split"])
    for key in keys:
        assert_agree(local[key], remote[key], key, local["split"])


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with two CPUs, shared by the module's tests."""
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def data():
    return DataCache()


def wait_for(predicate, seconds: float, what: str, step: float = 0.005):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def files(folder) -> list[str]:
    """The results under ``folder`` (the lock file that a local run leaves is not a result)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.name != LOCK_NAME)


def epochs_in(path) -> int:
    try:
        return json.loads(path.read_text()).get("epochs_completed", 0)
    except (OSError, ValueError):
        return 0


# ------------------------------------------------------------------------------ same results


def test_the_rounding_comparison_passes_rounding_and_catches_a_different_run():
    split = {"fit": 270, "validation": 30, "test": 150}
    run = {"run_id": "r", "split": split, "train_losses": [2.0, 1.5], "train_accs": [0.5, 0.6],
           "val_losses": [2.1, 1.6], "val_accs": [0.5, 0.6], "test_losses": [2.2, 1.7], "test_accs": [0.4, 0.5],
           "tuning": {"chosen": {"lr": 0.01}, "candidates": [{"val_acc": 0.6, "val_loss": 1.6, "epochs": 1}]}}

    def changed(key, index, by):
        other = json.loads(json.dumps(run))
        if key == "tuning":
            other["tuning"]["candidates"][0]["val_loss"] += by
        else:
            other[key][index] += by
        return other

    assert_same_run(run, changed("test_losses", 1, 1.7 * 1e-6), "tuning")  # rounding
    assert_same_run(run, changed("test_accs", 0, 1 / 150))  # one near tie flipped
    for key, index, by in (("train_losses", 0, 2e-3), ("test_accs", 1, 2 / 150), ("val_accs", 0, 2 / 30),
                           ("tuning", None, 1e-3)):
        with pytest.raises(AssertionError):
            assert_same_run(run, changed(key, index, by), "tuning")


@pytest.mark.slow
def test_same_metrics_and_tuning_as_local(cluster, tmp_path, data):
    """A tuned sweep: the same tuning blocks (a genuinely diverged trial included) and final metrics."""
    configs = plan(["digits"], levels=[0], seeds=range(2), epochs=2, **SMALL)
    spec = TuningSpec.default(epochs=1, lr_grid=[1e-2, 1e15])  # Adam at 1e15 overflows to NaN in epoch 1
    local = run_sweep(configs, tmp_path / "local", executor=LocalExecutor(), tuning=spec, progress=False,
                      log=Log(), data=data)
    log = Log()
    with RayExecutor() as executor:
        remote = run_sweep(configs, tmp_path / "ray", executor=executor, tuning=spec, progress=False, log=log,
                           data=data)
    assert [r["run_id"] for r in remote] == [r["run_id"] for r in local]
    for a, b in zip(local, remote):
        assert_same_run(a, b, "tuning")
        assert a["status"] == b["status"] == "complete"
        assert [c["status"] for c in b["tuning"]["candidates"]] == ["complete", "diverged"]
    assert any("diverged; kept as a failed trial" in m for m in log)
    assert any("done: test acc" in m for m in log)  # the workers' log lines reach the driver
    # every file landed in the driver's folder, written by the sink, and nothing else is there
    for name in ("records", "checkpoints"):
        assert sorted(p.name for p in (tmp_path / "ray" / name).iterdir()) == \
               sorted(p.name for p in (tmp_path / "local" / name).iterdir())
    assert files(tuning_dir(tmp_path / "ray")) == files(tuning_dir(tmp_path / "local"))
    assert (tmp_path / "ray" / "sweep.csv").exists()
    # a second sweep finds everything complete and trains nothing
    log = Log()
    with RayExecutor() as executor:
        again = run_sweep(configs, tmp_path / "ray", executor=executor, tuning=spec, resume=True,
                          progress=False, log=log, data=data)
    assert [metrics(r) for r in again] == [metrics(r) for r in remote]  # read back: bitwise
    assert all("already complete" in m or "tuned on validation" in m or m.startswith("tuning ") for m in log)


def test_unfinished_run_without_resume_is_refused_before_anything_runs(cluster, tmp_path, data):
    config = TrainConfig(dataset="digits", level=0, epochs=3, lr=1e-2, **SMALL).validate()
    fit(config, tmp_path, progress=False, log=Log(), data=data.run_data(config), stop_after=1)
    with RayExecutor() as executor, pytest.raises(QcreepError, match="earlier checkpoint"):
        executor.run([config], tmp_path, progress=False, log=Log(), data=data)


# ------------------------------------------------------------------------------ faults


@pytest.mark.slow
def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(cluster, tmp_path, data):
    config = TrainConfig(dataset="digits", level=0, seed=3, epochs=20, lr=1e-2, max_train=600, max_test=150,
                         threads=1).validate()
    out = tmp_path / "ray"
    executor = RayExecutor(poll_seconds=0.02)
    killed: dict = {}

    def kill_after_first_epoch():
        def ready():
            worker = executor.running.get(config.run_id)
            done = epochs_in(record_path(out, config))
            return (worker, done) if worker and done >= 1 else None
        try:
            worker, done = wait_for(ready, 120, "the first epoch")
        except AssertionError:
            return
        os.kill(worker["pid"], signal.SIGKILL)
        killed.update(pid=worker["pid"], after=done)

    killer = threading.Thread(target=kill_after_first_epoch, daemon=True)
    killer.start()
    log = Log()
    with executor:
        [record] = executor.run([config], out, progress=False, log=log, data=data)
    killer.join()
    assert killed, "the worker was never seen running"
    assert 1 <= killed["after"] < config.epochs, killed
    with pytest.raises(ProcessLookupError):  # really gone
        os.kill(killed["pid"], 0)
    # the retry resumed after the last epoch the driver had, not from scratch
    assert record["status"] == "complete" and record["epochs_completed"] == config.epochs
    [resumed_after] = record["resumed_after"]
    assert killed["after"] <= resumed_after < config.epochs
    assert any(f"resuming after epoch {resumed_after}" in m for m in log)
    on_disk = json.loads(record_path(out, config).read_text())
    assert on_disk["resumed_after"] == [resumed_after] and on_disk["status"] == "complete"
    # and it ends where an uninterrupted local run ends
    alone = fit(config, tmp_path / "local", progress=False, log=Log(), data=data.run_data(config))
    assert_same_run(alone, record)


INTERRUPTED = ["run", "--dataset", "digits", "--levels", "0", "--seeds", "2", "--epochs", "20", "--no-tune",
               "--no-twins", "--lr", "0.01", "--threads", "1", "--max-train", "600", "--max-test", "150",
               "--executor", "ray", "--no-progress"]


@pytest.mark.slow
def test_interrupted_driver_resumes_to_the_same_metrics(cluster, tmp_path, data):
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "qcreep.cli", *INTERRUPTED, "--out", str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        records = out / "records"
        wait_for(lambda: records.is_dir() and any(epochs_in(p) >= 1 for p in records.glob("*.json")), 120,
                 "the first finished epoch", step=0.01)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    kept = {p.name: epochs_in(p) for p in records.glob("*.json")}
    assert kept and max(kept.values()) >= 1
    assert min(kept.values()) < 20, kept  # stopped mid-sweep
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stderr
    final = {p.name: json.loads(p.read_text()) for p in records.glob("*.json")}
    assert set(kept) <= set(final) and len(final) == 2  # a run not started at the interrupt ran now
    assert all(r["status"] == "complete" and r["epochs_completed"] == 20 for r in final.values())
    assert any(r.get("resumed_after") for r in final.values())
    # the same metrics as an uninterrupted sweep
    configs = plan(["digits"], levels=[0], seeds=range(2), epochs=20, lr=0.01, threads=1, max_train=600,
                   max_test=150)
    for config in configs:
        alone = fit(config, tmp_path / "alone", progress=False, log=Log(), data=data.run_data(config))
        assert_same_run(alone, final[f"{config.run_id}.json"])
