"""A run of your own model on your own data gets the machinery a HybridNet run gets: its identity in
the fingerprint, resume, a rebuilt trained model, rungs over its slots, the summary of its slots,
and shots, noise and export on its quantum layers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qcreep.cli import main
from qcreep.config import TrainConfig
from qcreep.models import rung_assignments
from qcreep.sweep import plan
from qcreep.train import evaluate, fit, prepare_data
from qcreep.trained import load_trained

MODELS = '''
import torch
from torch import nn


def mlp(input_shape, num_classes):
    return nn.Sequential(nn.Linear(input_shape[0], 6), nn.Tanh(), nn.Linear(6, num_classes))


class Wide(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.a = nn.Linear(input_shape[0], 12)
        self.b = nn.Linear(12, num_classes)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))
'''


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A folder with a model file and a small CSV of 4 features and 3 string classes."""
    (tmp_path / "nets.py").write_text(MODELS)
    rng = np.random.default_rng(0)
    centres = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0]], dtype=float)
    labels = rng.integers(0, 3, 150)
    x = centres[labels] + rng.normal(size=(150, 4))
    names = np.array(["cat", "dog", "eel"])
    lines = ["f1,f2,f3,f4,animal"] + [",".join(f"{v:.5f}" for v in row) + f",{names[k]}" for row, k in zip(x, labels)]
    (tmp_path / "animals.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _config(**changes) -> TrainConfig:
    values = dict(dataset="animals.csv", model="nets.py:mlp", level=1, epochs=3, lr=1e-2, n_reps=1, batch_size=32,
                  threads=1)
    values.update(changes)
    return TrainConfig(**values).validate()


def test_identity_of_the_model_and_data_is_in_the_run_id(project):
    a = _config()
    before = a.config_hash
    assert a.run_id.startswith("animals_mlp_level1_real_seed0_")
    assert a.assignment == {"0": "data_reuploading", "2": "original"}
    fingerprint = a.fingerprint()
    assert fingerprint["model"].endswith("nets.py:mlp") and len(fingerprint["model_hash"]) == 12
    assert len(fingerprint["data_digest"]) == 16
    assert _config(model="nets.py:Wide").config_hash != a.config_hash
    # other data, same model and rung: another file
    (project / "animals.csv").write_text((project / "animals.csv").read_text().replace("cat", "cow"))
    assert _config().config_hash != before  # the digest is of the file as it is now
    # the paper's network on a built-in dataset keeps the keys it always had
    assert "model" not in TrainConfig(dataset="digits", level=2).validate().fingerprint()


def test_resume_rebuild_and_rescoring(project):
    config = _config()
    whole = fit(config, project / "a", progress=False, log=lambda m: None)
    fit(config, project / "b", progress=False, log=lambda m: None, stop_after=1)
    resumed = fit(config, project / "b", progress=False, log=lambda m: None, resume=True)
    for key in ("train_losses", "val_accs", "test_accs", "test_losses"):
        assert resumed[key] == whole[key], key  # same process, threads and shapes: bitwise
    assert whole["data"]["classes"] == ["cat", "dog", "eel"] and whole["model"].endswith("nets.py:mlp")
    run = load_trained(project / "a" / "records" / f"{config.run_id}.json")
    data = prepare_data(run.config)
    _, acc = evaluate(run.model, data.test.x, data.test.y, 1000, torch.device("cpu"), torch.float32)
    assert acc == whole["test_accs"][-1]
    assert type(run.model[0]).__name__ == "DataReUploadingLinear"


def test_the_seed_gives_the_initial_weights_of_kept_modules(project):
    from qcreep.train import build_run_model

    one, again, other = (build_run_model(_config(seed=s, level=0)) for s in (3, 3, 4))
    assert torch.equal(one[0].weight, again[0].weight)
    assert not torch.equal(one[0].weight, other[0].weight)


def test_rungs_over_the_slots_and_their_twins(project):
    backbone = _config().backbone()
    assert backbone.levels == {0: (), 1: ("0",), 2: ("0", "2")}
    single = rung_assignments(backbone, "single")
    assert single == [{"0": "original", "2": "original"}, {"0": "data_reuploading", "2": "original"},
                      {"0": "original", "2": "data_reuploading"}]
    assert len(rung_assignments(backbone, "all")) == 4
    configs = plan(["animals.csv"], assignments=[{"2": "data_reuploading"}], levels=[0], seeds=[0], twins=True,
                   model="nets.py:mlp", epochs=1)
    labels = [c.rung_label for c in configs]
    assert labels == ["level 0", "0=original,2=data_reuploading", "0=original,2=data_reuploading twin"]
    assert configs[-1].assignment == {"0": "original", "2": "dense_twin"}


def test_cli_ladder_then_evaluate_and_export(project, capsys):
    out = project / "runs"
    code = main(["run", "--model", "nets.py:mlp", "--data", "animals.csv", "--seeds", "2", "--epochs", "2",
                 "--no-tune", "--lr", "1e-2", "--n-reps", "1", "--batch-size", "32", "--threads", "1",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    assert sorted({r["label"] for r in records}) == ["level 0", "level 1", "level 1 twin", "level 2", "level 2 twin"]
    assert all(r["status"] == "complete" for r in records)
    twin = next(r for r in records if r["label"] == "level 2 twin")
    quantum = next(r for r in records if r["label"] == "level 2")
    assert twin["n_params"] == quantum["n_params"]
    capsys.readouterr()
    assert main(["evaluate", str(out), "--shots", "100", "--seeds", "0"]) == 0
    assert len(list((out / "hardware").glob("*.json"))) == 2  # the quantum runs of seed 0: levels 1 and 2
    ckpt = next((out / "checkpoints").glob("animals_mlp_level2_real_seed0_*.pt"))
    assert main(["export", str(ckpt), "--layer", "2", "--format", "qasm3", "-o", str(project / "l2.qasm")]) == 0
    assert (project / "l2.qasm").read_text().startswith("OPENQASM 3.0;")


def test_summary_of_own_model(project, capsys):
    assert main(["summary", "--model", "nets.py:Wide", "--data", "animals.csv", "--json", "--level", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    slots = result["slots_found"]["slots"]
    assert [(s["slot"], s["kind"], s["input"], s["output"], s["qubits"]) for s in slots] == [
        ("a", "dense", [4], [12], {"amplitude_circuit": 4, "angle_reuploading": 12, "data_reuploading": 4,
                                   "dressed_circuit": 4}),
        ("b", "dense", [12], [3], {"amplitude_circuit": 4, "angle_reuploading": 4, "data_reuploading": 2,
                                   "dressed_circuit": 4})]
    assert result["rung"]["assignment"] == {"a": "data_reuploading", "b": "original"}
    assert main(["summary", "--model", "nets.py:Wide", "--data", "animals.csv"]) == 0
    text = capsys.readouterr().out
    assert "data animals.csv: csv, input 4, 3 classes" in text.replace(str(project) + "/", "")
    assert ("a     Linear  dense  4      12      60      amplitude_circuit 4, angle_reuploading 12, "
            "data_reuploading 4") in text
