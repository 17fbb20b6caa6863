"""Tests for training runs: records, checkpoints, determinism, resuming, refusals, config checks,
physicality diagnostics and sweeps. Everything runs on the bundled digits data, tiny subsets."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil

import pytest
import torch

import qcreep
from qcreep.data import load_dataset
from qcreep.errors import CheckpointError, ConfigError, QcreepError
from qcreep.sweep import SWEEP_COLUMNS, plan, run_sweep
from qcreep.train import RECORD_VERSION, TrainConfig, checkpoint_path, fit, record_path

METRICS = ("train_losses", "test_losses", "train_accs", "test_accs")
TINY = dict(dataset="digits", max_train=60, max_test=50, n_reps=2, batch_size=20)




@pytest.fixture(scope="module")
def digits_data():
    return load_dataset("digits", max_train=TINY["max_train"], max_test=TINY["max_test"])


def config(**changes) -> TrainConfig:
    settings = dict(TINY, level=0, epochs=1, seed=0)
    settings.update(changes)
    return TrainConfig(**settings)


class Log(list):
    def __call__(self, message):
        self.append(message)


def run(cfg, out, data, **kwargs):
    kwargs.setdefault("log", Log())
    return fit(cfg, out, progress=False, data=data, **kwargs)


def metrics(record):
    return {k: record[k] for k in METRICS}


def snapshot(directory):
    """Bytes of every file under ``directory``."""
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# -------------------------------------------------------------------------------------- records


def test_fit_writes_a_complete_record(tmp_path, digits_data):
    cfg = config(level=2, epochs=2)
    record = run(cfg, tmp_path, digits_data)
    path = record_path(tmp_path, cfg)
    assert path == tmp_path / "records" / f"{cfg.run_id}.json"
    assert re.fullmatch(r"digits_level2_real_seed0_[0-9a-f]{8}", cfg.run_id)
    on_disk = json.loads(path.read_text())
    assert on_disk == record
    assert record["record_version"] == RECORD_VERSION == 2
    assert record["qcreep_version"] == qcreep.__version__
    assert record["dataset"] == "digits"
    assert record["level"] == 2
    assert record["assignment"] == {"conv1": "flipped_quanv3x3", "conv2": "flipped_quanv3x3",
                                    "head": "data_reuploading"}
    assert record["label"] == "level 2"
    assert record["angles"] == "real"
    assert record["seed"] == 0
    assert record["status"] == "complete"
    assert record["epochs_completed"] == 2
    assert record["run_id"] == cfg.run_id
    # 5-qubit head with 2 re-uploads: 2 * (4**5 - 1) + 10 + a learned output scale; quanv layers 32*15+32 and
    # 16*32*15+16
    assert record["n_params"] == 2 * 1023 + 10 + 1 + 512 + 7696
    assert record["readout"] == {"output_scale": "learned", "bias_init": "zero"}
    # 10% of the 60 training examples, stratified by class, hold out for validation
    assert record["split"]["fit"] + record["split"]["validation"] == 60 and record["split"]["test"] == 50
    # about 6 examples per class: round(0.6) = 1 each, at least one per class
    assert record["split"]["validation"] == 10
    assert len(record["val_accs"]) == len(record["val_losses"]) == 2
    best = record["best_epoch"]
    assert best in (1, 2) and record["best_val_acc"] == max(record["val_accs"])
    assert record["test_acc_at_best"] == record["test_accs"][best - 1]
    assert record["tuning"] is None and record["twin_of"] is None
    assert [row["slot"] for row in record["summary"]] == ["conv1", "conv2", "head"]
    cfg_rec = record["config"]
    assert cfg_rec["dataset"] == "digits" and cfg_rec["epochs"] == 2 and cfg_rec["lr"] == 5e-4
    assert cfg_rec["max_train"] == 60 and cfg_rec["max_test"] == 50 and cfg_rec["n_reps"] == 2
    assert cfg_rec["batch_size"] == 20 and cfg_rec["optimizer"] == "adam"
    env = record["environment"]
    assert env["torch"] == torch.__version__
    assert env["threads"] == 1
    assert env["device"] == "cpu"
    assert env["qcreep"] == qcreep.__version__
    for key in METRICS + ("epoch_times", "eval_times"):
        assert isinstance(record[key], list) and len(record[key]) == 2, key
    for key in ("train_accs", "test_accs"):
        for value in record[key]:
            assert 0.0 <= value <= 1.0
            # fractions of the (50 fitted / 50 test) examples; 10 of the 60 are held out for validation
            n = 50 if key == "train_accs" else 50
            assert abs(value * n - round(value * n)) < 1e-9
    for key in ("train_losses", "test_losses"):
        assert all(0 < v < 100 for v in record[key])
    assert all(t >= 0 for t in record["epoch_times"] + record["eval_times"])
    assert checkpoint_path(tmp_path, cfg).is_file()
    assert checkpoint_path(tmp_path, cfg) == tmp_path / "checkpoints" / f"{cfg.run_id}.pt"
    assert not list(tmp_path.rglob("*.tmp"))


def test_record_of_an_assignment(tmp_path, digits_data):
    cfg = config(level=None, assignment="head=data_reuploading")
    record = run(cfg, tmp_path, digits_data)
    assert record["level"] is None
    assert record["assignment"] == {"conv1": "conv2d", "conv2": "conv2d", "head": "data_reuploading"}
    assert record["label"] == "conv1=conv2d,conv2=conv2d,head=data_reuploading"
    assert record["run_id"].startswith("digits_conv1-conv2d_conv2-conv2d_head-data_reuploading_real_seed0_")
    assert record_path(tmp_path, cfg).is_file()


def test_fit_loads_data_itself(tmp_path):
    record = fit(config(), tmp_path, progress=False, log=Log())
    assert record["status"] == "complete"


# ---------------------------------------------------------------------------------- determinism


def test_same_seed_same_metrics_other_seed_differs(tmp_path, digits_data):
    a = run(config(level=2, epochs=2, seed=3), tmp_path / "a", digits_data)
    b = run(config(level=2, epochs=2, seed=3), tmp_path / "b", digits_data)
    c = run(config(level=2, epochs=2, seed=4), tmp_path / "c", digits_data)
    assert metrics(a) == metrics(b)
    assert metrics(a) != metrics(c)
    assert c["run_id"].startswith("digits_level2_real_seed4_")
    assert c["run_id"].split("_")[-1] == a["run_id"].split("_")[-1]  # the hash leaves out the seed


def test_resume_equals_uninterrupted(tmp_path, digits_data):
    full = run(config(level=2, epochs=3, seed=1), tmp_path / "full", digits_data)
    log = Log()
    part = run(config(level=2, epochs=3, seed=1), tmp_path / "part", digits_data, stop_after=1, log=log)
    assert part["status"] == "running"
    assert part["epochs_completed"] == 1
    on_disk = json.loads(record_path(tmp_path / "part", config(level=2, epochs=3, seed=1)).read_text())
    assert on_disk["status"] == "running" and on_disk["epochs_completed"] == 1
    assert len(on_disk["test_accs"]) == 1
    log = Log()
    resumed = run(config(level=2, epochs=3, seed=1), tmp_path / "part", digits_data, resume=True, log=log)
    assert any("resuming after epoch 1" in m for m in log)
    assert resumed["status"] == "complete"
    assert resumed["epochs_completed"] == 3
    assert metrics(resumed) == metrics(full)
    assert len(resumed["epoch_times"]) == 3
    # the model weights are the same too
    a = torch.load(checkpoint_path(tmp_path / "full", config(level=2, seed=1)), weights_only=True)["model"]
    b = torch.load(checkpoint_path(tmp_path / "part", config(level=2, seed=1)), weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_complete_run_is_skipped_and_more_epochs_continue(tmp_path, digits_data):
    cfg = config(epochs=1)
    first = run(cfg, tmp_path, digits_data)
    rec, ckpt = record_path(tmp_path, cfg), checkpoint_path(tmp_path, cfg)
    stamps = (rec.stat().st_mtime_ns, ckpt.stat().st_mtime_ns)
    before = snapshot(tmp_path)
    log = Log()
    again = run(config(epochs=1), tmp_path, digits_data, log=log)
    assert again == first
    assert any("already complete (1 epochs), skipped" in m for m in log)
    assert (rec.stat().st_mtime_ns, ckpt.stat().st_mtime_ns) == stamps
    assert snapshot(tmp_path) == before
    # skipping does not need --resume either way
    assert run(config(epochs=1), tmp_path, digits_data, resume=True) == first
    # more epochs without resume: refused, nothing touched
    with pytest.raises(QcreepError, match=r"--resume"):
        run(config(epochs=3), tmp_path, digits_data)
    assert snapshot(tmp_path) == before
    # more epochs with resume: continues from epoch 1, equal to a straight 3-epoch run
    more = run(config(epochs=3), tmp_path, digits_data, resume=True)
    assert more["status"] == "complete" and more["epochs_completed"] == 3
    assert more["train_losses"][0] == first["train_losses"][0]
    straight = run(config(epochs=3), tmp_path / "straight", digits_data)
    assert metrics(more) == metrics(straight)


# ------------------------------------------------------------------------------------- refusals


@pytest.fixture
def unfinished(tmp_path, digits_data):
    """An unfinished run (1 of 3 epochs) in ``tmp_path / 'out'``."""
    out = tmp_path / "out"
    run(config(epochs=3), out, digits_data, stop_after=1)
    return out


def test_unfinished_run_needs_resume(unfinished, digits_data):
    before = snapshot(unfinished)
    with pytest.raises(QcreepError) as info:
        run(config(epochs=3), unfinished, digits_data)
    assert not isinstance(info.value, CheckpointError)
    message = str(info.value)
    assert "digits_level0_real_seed0" in message
    assert "earlier checkpoint (1 epochs)" in message
    assert "resume it (--resume on the command line, resume=True in Python), or use another --out" in message
    assert snapshot(unfinished) == before


def test_checkpoint_without_record_needs_resume(unfinished, digits_data):
    record_path(unfinished, config()).unlink()
    with pytest.raises(QcreepError, match=r"earlier checkpoint \(\? epochs\); resume it"):
        run(config(epochs=3), unfinished, digits_data)


def test_record_of_another_config(unfinished, digits_data):
    # runs with other settings land on other paths: the earlier run's files are never touched
    before = snapshot(unfinished)
    other = config(epochs=3, lr=1e-3)
    assert other.run_id != config(epochs=3).run_id
    run(other, unfinished, digits_data)
    after = snapshot(unfinished)
    assert all(after[name] == data for name, data in before.items())
    # a record whose own config disagrees with its run id (copied in from elsewhere) is refused
    path = record_path(unfinished, config())
    rec = json.loads(path.read_text())
    rec["config"]["lr"] = 0.25
    path.write_text(json.dumps(rec))
    before = snapshot(unfinished)
    for resume in (False, True):
        with pytest.raises(CheckpointError, match=r"belongs to a run with another config "
                                                  r"\(lr 0.25 there vs 0.0005 now\); use another --out"):
            run(config(epochs=3), unfinished, digits_data, resume=resume)
    assert snapshot(unfinished) == before


def test_complete_record_of_another_config(tmp_path, digits_data):
    first = run(config(), tmp_path, digits_data)
    before = snapshot(tmp_path)
    second = run(config(n_reps=3), tmp_path, digits_data)
    assert second["run_id"] != first["run_id"]
    after = snapshot(tmp_path)
    assert all(after[name] == data for name, data in before.items())


def test_checkpoint_of_another_config(unfinished, digits_data):
    # a checkpoint that disagrees with its own record (e.g. copied in from elsewhere)
    ckpt = checkpoint_path(unfinished, config())
    saved = torch.load(ckpt, weights_only=True)
    fingerprint = json.loads(saved["fingerprint"])
    fingerprint["lr"] = 0.25
    saved["fingerprint"] = json.dumps(fingerprint, sort_keys=True)
    torch.save(saved, ckpt)
    before = snapshot(unfinished)
    with pytest.raises(CheckpointError, match=r"was written for another config \(lr 0.25 there vs 0.0005 now\)"):
        run(config(epochs=3), unfinished, digits_data, resume=True)
    assert snapshot(unfinished) == before


def test_checkpoint_of_another_version(unfinished, digits_data):
    ckpt = checkpoint_path(unfinished, config())
    saved = torch.load(ckpt, weights_only=True)
    assert saved["qcreep_version"] == qcreep.__version__
    saved["qcreep_version"] = "0.0.0"
    torch.save(saved, ckpt)
    before = snapshot(unfinished)
    with pytest.raises(CheckpointError) as info:
        run(config(epochs=3), unfinished, digits_data, resume=True)
    message = str(info.value)
    assert "written by qcreep 0.0.0" in message
    assert f"this is {qcreep.__version__}" in message
    assert snapshot(unfinished) == before


@pytest.mark.parametrize("garbage", [b"", b"not a checkpoint at all \x00\x01\x02" * 10])
def test_corrupt_checkpoint(unfinished, digits_data, garbage):
    ckpt = checkpoint_path(unfinished, config())
    ckpt.write_bytes(garbage)
    before = snapshot(unfinished)
    with pytest.raises(CheckpointError, match=r"checkpoint .*digits_level0_real_seed0_[0-9a-f]{8}.pt cannot be read"):
        run(config(epochs=3), unfinished, digits_data, resume=True)
    assert snapshot(unfinished) == before


def test_checkpoint_of_another_format(unfinished, digits_data):
    ckpt = checkpoint_path(unfinished, config())
    torch.save({"format": 99}, ckpt)
    with pytest.raises(CheckpointError, match=r"is not a qcreep checkpoint of format 2 \(found 99\)"):
        run(config(epochs=3), unfinished, digits_data, resume=True)


def test_missing_checkpoint_with_record(unfinished, digits_data):
    checkpoint_path(unfinished, config()).unlink()
    before = snapshot(unfinished)
    with pytest.raises(CheckpointError, match=r"records 1 epochs but its checkpoint .* is missing"):
        run(config(epochs=3), unfinished, digits_data, resume=True)
    assert snapshot(unfinished) == before


def test_unreadable_record(unfinished, digits_data):
    record_path(unfinished, config()).write_text("{ not json")
    with pytest.raises(QcreepError, match=r"run record .* cannot be read .*move it away to rerun this run"):
        run(config(epochs=3), unfinished, digits_data, resume=True)


def test_resume_after_crash_between_final_checkpoint_and_record(tmp_path, digits_data):
    cfg = config(epochs=2)
    run(cfg, tmp_path / "full", digits_data)
    run(config(epochs=2), tmp_path / "crashed", digits_data, stop_after=1)
    # the crash: the epoch-2 checkpoint is in place, the record still says 1 epoch
    shutil.copy(checkpoint_path(tmp_path / "full", cfg), checkpoint_path(tmp_path / "crashed", cfg))
    resumed = run(config(epochs=2), tmp_path / "crashed", digits_data, resume=True)
    on_disk = json.loads(record_path(tmp_path / "crashed", cfg).read_text())
    assert resumed["status"] == "complete" and resumed.get("epochs_completed") == 2
    assert on_disk["status"] == "complete" and len(on_disk["test_accs"]) == 2


# ------------------------------------------------------------------------------ config checking


@pytest.mark.parametrize("changes,error,message", [
    ({"epochs": 0}, ConfigError, r"^epochs must be an integer >= 1, got 0$"),
    ({"epochs": 1.5}, ConfigError, r"^epochs must be an integer >= 1, got 1.5$"),
    ({"seed": -1}, ConfigError, r"^seed must be an integer >= 0, got -1$"),
    ({"batch_size": True}, ConfigError, r"^batch_size must be an integer >= 1, got True$"),
    ({"max_train": 0}, ConfigError, r"^max_train must be an integer >= 1, got 0$"),
    ({"n_qubits": 0}, ConfigError, r"^n_qubits must be an integer >= 1, got 0$"),
    ({"lr": -1}, ConfigError, r"^lr must be a number in \(0, inf\), got -1$"),
    ({"lr": 0}, ConfigError, r"^lr must be a number in \(0, inf\), got 0$"),
    ({"lr": float("nan")}, ConfigError, r"^lr must be a number in \(0, inf\), got nan$"),
    ({"lr": float("inf")}, ConfigError, r"^lr must be a number in \(0, inf\), got inf$"),
    ({"lr": "fast"}, ConfigError, r"^lr must be a number in \(0, inf\), got 'fast'$"),
    ({"val_fraction": 1.0}, ConfigError, r"^val_fraction must be a number in \[0, 1\), got 1.0$"),
    ({"output_scale": "big"}, ConfigError, r"^output_scale must be one of none, learned"),
    ({"bias_init": "uniform"}, ConfigError, r"^bias_init must be one of normal, zero"),
    ({"solver": "qr"}, ConfigError, r"^solver must be one of auto, eigh, expm, got 'qr'$"),
    ({"angles": "foo"}, ConfigError, r"^angles must be one of real, complex \('complex' is the non-physical "
                                     r"published-code mode\), got 'foo'$"),
    ({"dtype": "float16"}, ConfigError, r"^dtype must be one of float32, float64, got 'float16'$"),
    ({"optimizer": "sgd"}, ConfigError, r"^optimizer must be one of adam, got 'sgd'$"),
    ({"device": "tpu"}, ConfigError, r"^device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'$"),
    ({"dataset": "imagenet"}, QcreepError,
     r"^unknown data 'imagenet': not a built-in dataset \(cifar10, digits, fashion-mnist, mnist\) and no such "
     r"file or folder; give a .npz or .csv file or an image folder$"),
    ({"level": 5}, QcreepError, r"^unknown replacement level 5 for hybridnet; valid levels: 0, 1, 2$"),
    ({"level": None, "assignment": None}, ConfigError, r"^a run needs a level \(0, 1, 2\) or an assignment"),
    ({"level": 0, "assignment": "conv1=flipped_quanv3x3"}, ConfigError, r"^give level or assignment, not both$"),
    ({"level": None, "assignment": "conv9=conv2d"}, QcreepError, r"^unknown slot 'conv9'"),
])
def test_validate_errors(changes, error, message):
    with pytest.raises(error, match=message):
        config(**changes).validate()


def test_validate_cuda_unavailable():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match=r"^device 'cuda' was requested but CUDA is not available here; "
                                          r"use --device cpu$"):
        config(device="cuda").validate()
    with pytest.raises(ConfigError, match=r"device 'cuda:1' was requested"):
        config(device="cuda:1").validate()


def test_validate_fills_and_normalises():
    cfg = config(dataset=" Digits ", level=1, lr=1).validate()
    assert cfg.dataset == "digits"
    assert cfg.assignment == {"conv1": "flipped_quanv3x3", "conv2": "flipped_quanv3x3", "head": "linear"}
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    # level and the same assignment together are fine
    same = config(level=0, assignment="conv1=conv2d").validate()
    assert same.assignment == {"conv1": "conv2d", "conv2": "conv2d", "head": "linear"}


def test_invalid_config_writes_nothing(tmp_path):
    with pytest.raises(ConfigError):
        fit(config(epochs=0), tmp_path / "out", progress=False, log=Log())
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------- physicality


def test_physicality_of_a_real_run(tmp_path, digits_data):
    record = run(config(level=2, epochs=2), tmp_path, digits_data)
    unit = record["unitarity"]
    assert unit["max_unitarity_error"] < 1e-4
    assert abs(unit["min_state_norm"] - 1) < 1e-4
    assert abs(unit["max_state_norm"] - 1) < 1e-4
    assert set(unit["per_layer"]) == {"conv1", "conv2", "head"}
    head = unit["per_layer"]["head"]
    assert abs(head["min_state_norm"] - 1) < 1e-4 and abs(head["max_state_norm"] - 1) < 1e-4
    assert len(record["unitarity_errors"]) == 2
    assert all(e < 1e-4 for e in record["unitarity_errors"])


def test_classical_run_has_no_physicality(tmp_path, digits_data):
    record = run(config(level=0), tmp_path, digits_data)
    assert record["unitarity"] is None
    assert record["unitarity_errors"] == [None]


def test_complex_angles_run(tmp_path, digits_data):
    cfg = config(level=2, epochs=2, angles="complex", lr=0.05)
    record = run(cfg, tmp_path, digits_data)
    assert record["angles"] == "complex"
    assert record["run_id"] == cfg.run_id and cfg.run_id.startswith("digits_level2_complex_seed0_")
    assert record["status"] == "complete"
    on_disk = json.loads((tmp_path / "records" / f"{cfg.run_id}.json").read_text())
    assert on_disk["angles"] == "complex" and on_disk["config"]["angles"] == "complex"
    assert all(0 <= a <= 1 for a in record["test_accs"])
    # training moved the imaginary parts, so the gates are no longer unitary
    assert record["unitarity"]["max_unitarity_error"] > 1e-6


def test_float64_run(tmp_path, digits_data):
    record = run(config(level=2, dtype="float64"), tmp_path, digits_data)
    assert record["config"]["dtype"] == "float64"
    assert record["status"] == "complete"


# ----------------------------------------------------------------------------------------- sweep


def test_sweep_writes_csv_and_skips_complete_runs(tmp_path):
    configs = plan(["digits"], levels=[0, 2], assignments=["head=data_reuploading"], seeds=[0, 1],
                   epochs=1, max_train=60, max_test=50, n_reps=2, batch_size=30)
    assert [c.run_id.rsplit("_", 1)[0] for c in configs] == [
        "digits_level0_real_seed0", "digits_level0_real_seed1", "digits_level2_real_seed0",
        "digits_level2_real_seed1", "digits_conv1-conv2d_conv2-conv2d_head-data_reuploading_real_seed0",
        "digits_conv1-conv2d_conv2-conv2d_head-data_reuploading_real_seed1",
    ]
    log = Log()
    records = run_sweep(configs, tmp_path, progress=False, log=log)
    assert len(records) == 6 and all(r["status"] == "complete" for r in records)
    with open(tmp_path / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert tuple(rows[0]) == SWEEP_COLUMNS
    assert [r["run_id"] for r in rows] == [c.run_id for c in configs]
    for row, rec in zip(rows, records):
        assert row["status"] == "complete" and row["epochs_completed"] == "1"
        assert int(row["n_params"]) == rec["n_params"]
        assert float(row["final_test_acc"]) == rec["test_accs"][-1]
    assert rows[0]["max_unitarity_error"] == ""
    assert float(rows[2]["max_unitarity_error"]) < 1e-4
    assert len(list((tmp_path / "records").glob("*.json"))) == 6
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "records").iterdir()}
    ckpts = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()}
    log = Log()
    again = run_sweep(configs, tmp_path, progress=False, log=log)
    assert [r["run_id"] for r in again] == [r["run_id"] for r in records]
    assert log == ["6 runs already complete, skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "records").iterdir()} == stamps
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()} == ckpts
    with open(tmp_path / "sweep.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6


def test_plan_errors():
    with pytest.raises(ConfigError, match=r"a sweep needs levels"):
        plan(["digits"], seeds=[0])
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) epoch; valid: "):
        plan(["digits"], levels=[0], epoch=3)
    with pytest.raises(ConfigError, match=r"a sweep needs at least one seed"):
        plan(["digits"], levels=[0], seeds=[])
    with pytest.raises(ConfigError, match=r"epochs must be an integer >= 1, got 0"):
        plan(["digits"], levels=[0], epochs=0)
    with pytest.raises(QcreepError, match=r"unknown data 'nope'"):
        plan(["nope"], levels=[0])


def test_plan_deduplicates():
    configs = plan(["digits", "Digits"], levels=[0, 0], assignments=["conv1=conv2d"], seeds=[0], epochs=1)
    # an assignment equal to a level is that level: the same model is planned once
    assert [c.run_id.rsplit("_", 1)[0] for c in configs] == ["digits_level0_real_seed0"]
    configs = plan(["digits"], levels=[0], assignments=["conv1=flipped_quanv3x3"], seeds=[0], epochs=1)
    assert [c.rung_label for c in configs] == ["level 0", "conv1=flipped_quanv3x3,conv2=conv2d,head=linear"]


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path, digits_data):
    fresh = run(config(epochs=2), tmp_path / "fresh", digits_data, resume=True)
    plain = run(config(epochs=2), tmp_path / "plain", digits_data)
    assert fresh["status"] == "complete" and metrics(fresh) == metrics(plain)


def test_threads_setting_is_recorded(tmp_path, digits_data):
    """``threads`` in the config applies to the run (recorded in the environment)."""
    record = run(config(threads=1), tmp_path, digits_data)
    assert record["environment"]["threads"] == 1
    assert os.path.exists(record_path(tmp_path, config()))


def test_a_quantum_rung_that_diverges_inside_a_decomposition_is_a_diverged_run(tmp_path):
    """NaN parameters of a quanvolution fail in eigh before any loss: that is divergence, not a crash."""
    from qcreep.train import DivergedError, diverged_or

    config = TrainConfig(dataset="digits", level=1, epochs=3, max_train=200, max_test=50, lr=1e15)
    with pytest.raises(DivergedError, match="parameters are not finite"):
        fit(config, tmp_path, progress=False, log=lambda m: None)
    # finite parameters: the decomposition error itself is kept
    err = torch.linalg.LinAlgError("eigh failed")
    assert diverged_or(err, [torch.ones(3)], 0) is err
    assert isinstance(diverged_or(err, [torch.tensor([1.0, float("nan")])], 0), DivergedError)
