"""``qcreep evaluate``, ``qcreep export``, ``qcreep summary --resources`` and ``qcreep run --shots``.

The commands run in this process through :func:`qcreep.cli.main` on one tiny trained ladder
(digits, levels 1 and 2, one seed, one epoch), so the results can be checked against the model.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from qcreep.cli import main
from qcreep.config import DTYPES
from qcreep.creep import quantum_layers
from qcreep.train import prepare_data
from qcreep.trained import load_trained

TINY = ["--dataset", "digits", "--seeds", "1", "--epochs", "1", "--max-train", "200", "--max-test", "30",
        "--n-reps", "2", "--no-tune", "--lr", "0.01", "--no-twins", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    out = tmp_path_factory.mktemp("hw") / "ladder"
    assert main(["run", "--levels", "0", "1", "2", *TINY, "--out", str(out)]) == 0
    return out


def _records(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def test_evaluate_writes_results_beside_the_records_and_the_report_shows_them(ladder, capsys):
    code = main(["evaluate", str(ladder), "--shots", "100", "10000", "--noise", "0.001", "0.3", "--no-transpile"])
    assert code == 0
    out = capsys.readouterr().out
    results = {p.stem: json.loads(p.read_text()) for p in (ladder / "hardware").glob("*.json")}
    records = _records(ladder)
    quantum = {k for k, r in records.items() if r["level"] in (1, 2)}
    assert set(results) == quantum  # level 0 has no circuit
    for run_id, res in results.items():
        # the exact row rescored the checkpoint: it equals the record's final test accuracy
        assert res["exact"]["test_acc"] == records[run_id]["test_accs"][-1]
        assert [e["shots"] for e in res["shots"]] == [100, 10000]
        assert [e["noise"] for e in res["noise"]] == [0.001, 0.3]
        assert all(0.0 <= e["test_acc"] <= 1.0 for e in res["shots"] + res["noise"])
        assert res["n_test"] == 30 and res["settings"]["transpile"] is False
        assert [r["slot"] for r in res["resources"]] == (["conv1", "conv2", "head"] if records[run_id]["level"] == 2
                                                         else ["conv1", "conv2"])
        assert f"seed 0: exact {res['exact']['test_acc']:.2%}" in out
    report = (ladder / "report.md").read_text()
    assert "## From simulation to hardware" in report
    assert "| shots S | 100 | 10,000 | exact |" in report
    assert (ladder / "hardware_digits.png").stat().st_size > 0
    # the same settings again: read back, not evaluated again (the files are unchanged)
    before = {p: p.stat().st_mtime_ns for p in (ladder / "hardware").glob("*.json")}
    assert main(["evaluate", str(ladder), "--shots", "100", "10000", "--noise", "0.001", "0.3",
                 "--no-transpile"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (ladder / "hardware").glob("*.json")} == before


def test_evaluate_errors_are_one_line_exit_2(ladder, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(ladder), "--noise", "0.9"]) == 2
    err = capsys.readouterr().err
    assert "depolarising probability in (0, 0.75]" in err and err.count("\n") == 1
    assert main(["evaluate", str(ladder), "--shots", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err
    assert main(["evaluate", str(ladder), "--seeds", "5", "--shots", "100"]) == 2  # the ladder has seed 0 only
    assert "no complete quantum run" in capsys.readouterr().err
    classical = tmp_path / "classical"
    assert main(["run", "--levels", "0", *TINY, "--out", str(classical)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(classical), "--shots", "100"]) == 2
    assert "no complete quantum run" in capsys.readouterr().err


def _head_input(run):
    test = prepare_data(run.config).test
    captured = {}
    layer = quantum_layers(run.model)["head"]
    hook = layer.register_forward_pre_hook(lambda mod, inputs: captured.__setitem__("x", inputs[0]))
    with torch.no_grad():
        run.model(test.x[:1].to(DTYPES[run.config.dtype]))
    hook.remove()
    return layer, captured["x"]


def test_export_qiskit_file_reproduces_the_trained_head(ladder, tmp_path, capsys):
    qpy = pytest.importorskip("qiskit.qpy")
    from qiskit.quantum_info import Statevector

    from qcreep.hardware.export import apply_readout, readout_parameters

    ckpt = next((ladder / "checkpoints").glob("digits_level2_*.pt"))
    target = tmp_path / "head.qpy"
    assert main(["export", str(ckpt), "--layer", "head", "--format", "qiskit", "--output", str(target)]) == 0
    assert "written" in capsys.readouterr().err
    with open(target, "rb") as handle:
        circuit = qpy.load(handle)[0]
    run = load_trained(ckpt)
    layer, x = _head_input(run)
    probs = Statevector(circuit).probabilities()
    outputs = apply_readout(readout_parameters(layer), probs)
    with torch.no_grad():  # the export computes in float64; so does the reference
        expected = copy.deepcopy(layer).double()(x.double())[0]
        trained = layer(x)[0].double()
    assert torch.allclose(torch.tensor(outputs, dtype=torch.float64), expected, atol=1e-8)
    assert torch.allclose(expected, trained, rtol=1e-3, atol=1e-3)  # float32 rounding of the trained layer


def test_export_qasm3_parses_and_names_the_qubits(ladder, tmp_path, capsys):
    openqasm3 = pytest.importorskip("openqasm3")
    ckpt = next((ladder / "records").glob("digits_level2_*.json"))  # a record finds its checkpoint
    assert main(["export", str(ckpt), "--layer", "head", "--format", "qasm3", "--measure"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("OPENQASM 3")
    program = openqasm3.parse(text)
    assert len(program.statements) > 10


def test_export_quanvolution_draws_its_state_preparation(ladder, capsys):
    ckpt = next((ladder / "checkpoints").glob("digits_level1_*.pt"))
    assert main(["export", str(ckpt), "--layer", "conv2", "--format", "qiskit", "--channel", "3", "5",
                 "--position", "1", "2"]) == 0
    captured = capsys.readouterr()
    assert "SU(4)" in captured.out
    assert "(1/32) sum_c <H_c>" in captured.err


def test_export_errors_are_one_line_exit_2(ladder, tmp_path, capsys):
    level1 = next((ladder / "checkpoints").glob("digits_level1_*.pt"))
    assert main(["export", str(level1), "--layer", "head"]) == 2
    assert "holds no quantum layer; quantum slots: conv1, conv2" in capsys.readouterr().err
    assert main(["export", str(level1), "--layer", "conv1", "--image", "100000"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["export", str(level1), "--layer", "conv1", "--channel", "99", "0"]) == 2
    assert "out_channel" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope.pt"), "--layer", "head"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert main(["export", str(level1), "--layer", "conv1", "--format", "svg"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_summary_resources_text_and_json(capsys):
    assert main(["summary", "--dataset", "digits", "--level", "2", "--n-reps", "2", "--resources",
                 "--no-transpile"]) == 0
    out = capsys.readouterr().out
    assert "circuits / image" in out and "data_reuploading" in out
    assert main(["summary", "--dataset", "digits", "--level", "2", "--n-reps", "2", "--resources",
                 "--no-transpile", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["resources"]
    assert [r["slot"] for r in rows] == ["conv1", "conv2", "head"]
    assert rows[2]["executions_per_image"] == 1 and rows[2]["two_qubit_gates"] is None


def test_run_with_shots_evaluates_its_quantum_runs(tmp_path):
    out = tmp_path / "withshots"
    assert main(["run", "--levels", "0", "1", *TINY, "--shots", "50", "--noise", "0.01", "--out", str(out)]) == 0
    results = [json.loads(p.read_text()) for p in (out / "hardware").glob("*.json")]
    assert [r["label"] for r in results] == ["level 1"]
    assert results[0]["settings"]["shots"] == [50] and results[0]["settings"]["noise"] == [0.01]
    assert "## From simulation to hardware" in (out / "report.md").read_text()


def test_run_refuses_noise_it_cannot_simulate_before_training(tmp_path, capsys):
    out = tmp_path / "toolarge"
    argv = ["run", "--assign", "conv1=conv2d,conv2=conv2d,head=dressed_circuit", "--structure", "width=11", *TINY,
            "--noise", "0.01", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "on 11 qubits" in err and "at most 10 qubits" in err and "nothing was trained" in err
    assert not out.exists()
    # shots alone have no such limit for the same rung: it trains and is scored
    argv[argv.index("--noise"):argv.index("--noise") + 2] = ["--shots", "20"]
    assert main(argv) == 0
    assert len(list((out / "hardware").glob("*.json"))) == 1
