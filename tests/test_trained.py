"""Rebuilding finished runs from their checkpoints (qcreep.trained)."""

from __future__ import annotations

import json

import pytest
import torch

from qcreep.config import DTYPES, TrainConfig
from qcreep.errors import CheckpointError, QcreepError
from qcreep.records import checkpoint_path, record_path
from qcreep.train import evaluate, fit, prepare_data
from qcreep.trained import config_from_fingerprint, load_trained, trained_runs


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    configs = [TrainConfig(dataset="digits", level=level, epochs=2, max_train=300, max_test=120, n_reps=2,
                           lr=0.01, seed=1).validate() for level in (0, 2)]
    records = [fit(c, out, progress=False, log=lambda m: None) for c in configs]
    return out, configs, records


def test_loaded_model_scores_the_recorded_test_accuracy(finished):
    out, configs, records = finished
    for config, record in zip(configs, records):
        run = load_trained(checkpoint_path(out, config))
        assert run.config.run_id == config.run_id
        assert run.epochs_completed == 2
        test = prepare_data(config).test
        loss, acc = evaluate(run.model, test.x, test.y, 1000, torch.device("cpu"), DTYPES[config.dtype])
        assert acc == pytest.approx(record["test_accs"][-1], abs=0)
        assert loss == pytest.approx(record["test_losses"][-1], rel=1e-6)


def test_record_path_and_checkpoint_path_give_the_same_run(finished):
    out, configs, _ = finished
    a = load_trained(record_path(out, configs[1]))
    b = load_trained(checkpoint_path(out, configs[1]))
    assert a.config.run_id == b.config.run_id == configs[1].run_id
    for (name, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(p, q), name


def test_trained_runs_lists_quantum_runs_only_unless_asked(finished):
    out, configs, _ = finished
    assert [p.stem for p in trained_runs(out)] == [configs[1].run_id]
    assert sorted(p.stem for p in trained_runs(out, quantum_only=False)) == sorted(c.run_id for c in configs)


def test_config_from_fingerprint_recovers_the_level_and_run_id(finished):
    out, configs, _ = finished
    raw = torch.load(checkpoint_path(out, configs[1]), weights_only=True)
    config = config_from_fingerprint(json.loads(raw["fingerprint"]))
    assert config.level == 2 and config.run_id == configs[1].run_id


def test_a_lone_checkpoint_without_its_record_still_loads(finished, tmp_path):
    out, configs, _ = finished
    lone = tmp_path / "elsewhere.pt"
    lone.write_bytes(checkpoint_path(out, configs[1]).read_bytes())
    run = load_trained(lone)
    assert run.config.fingerprint() == configs[1].fingerprint()


def test_bad_paths_are_one_line_errors(finished, tmp_path):
    with pytest.raises(QcreepError, match="no checkpoint at"):
        load_trained(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_trained(corrupt)
    other = tmp_path / "records" / "x.json"
    other.parent.mkdir()
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(QcreepError, match="not a qcreep run record"):
        load_trained(other)


def test_fingerprint_missing_keys_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="lacks"):
        config_from_fingerprint({"dataset": "digits"})
