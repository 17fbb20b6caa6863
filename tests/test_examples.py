"""The two examples in ``examples/`` run the fair ladder end to end, from Python and from the CLI.

Each example runs at a tiny budget (1 seed, 1 epoch, a one-point tuning grid, 1 re-upload, one
thread): from Python through its ``main``, and through the ``qcreep`` console script with the
command its docstring gives. The tests check that every rung of the cumulative ladder and every
twin has a complete record with its tuning block, that the report is written, and that the
command line and the Python API plan the same runs and get the same numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TINY = ["--seeds", "1", "--epochs", "1", "--tune-epochs", "1", "--lr-grid", "1e-2", "--n-reps", "1", "--threads", "1",
        "--no-progress"]
CNN_LABELS = ["level 0", "level 1", "level 1 twin", "level 2", "level 2 twin", "level 3", "level 3 twin"]
MLP_LABELS = ["level 0", "level 1", "level 1 twin", "level 2", "level 2 twin"]


def _console_script() -> list[str]:
    """The installed ``qcreep`` entry point of this interpreter, else the one on PATH (as tests/test_cli.py)."""
    beside = Path(sys.executable).parent / "qcreep"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("qcreep")
    return [found] if found else [sys.executable, "-m", "qcreep.cli"]


def _example(name: str):
    """An example file imported as a module (``examples/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(f"qcreep_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(out: Path) -> dict[str, dict]:
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    return {r["label"]: r for r in records}


def _check_ladder(out: Path, labels: list[str]) -> dict[str, dict]:
    records = _records(out)
    assert sorted(records) == labels
    for label, r in records.items():
        assert r["status"] == "complete" and r["epochs_completed"] == 1, label
        assert r["tuning"]["chosen"]["lr"] == 1e-2, label  # every rung tuned with the same one-point budget
        assert r["tuning"]["budget"]["trials"] == 1 and r["tuning"]["budget"]["epochs"] == 1, label
        assert (r["twin_of"] is not None) == label.endswith("twin"), label
    for label in labels:
        if label.endswith("twin"):
            assert records[label]["twin_of"] == label.removesuffix(" twin")
            # a twin matches its quantum rung's parameter count
            assert records[label]["n_params"] == records[label.removesuffix(" twin")]["n_params"]
    report = (out / "report.md").read_text()
    assert "## Statistics" in report and "level 1 twin" in report
    assert (out / "summary.csv").is_file() and (out / "sweep.csv").is_file()
    return records


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Both examples' qcreep commands (as in their docstrings, at the tiny budget), two at a time."""
    root = tmp_path_factory.mktemp("examples_cli")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    csv_path = root / "breast_cancer.csv"
    written = subprocess.run([sys.executable, str(EXAMPLES / "tabular_mlp.py"), "--csv-only", "--csv", str(csv_path)],
                             capture_output=True, text=True, timeout=120)
    assert written.returncode == 0, written.stderr
    commands = {
        "cnn": ["run", "--model", "examples/small_cnn.py:SmallCNN", "--data", "digits", "--max-train", "100",
                *TINY, "--out", str(root / "cnn")],
        "mlp": ["run", "--model", "examples/tabular_mlp.py:mlp", "--data", str(csv_path), "--target", "diagnosis",
                "--batch-size", "32", "--max-train", "80", *TINY, "--out", str(root / "mlp")],
    }

    def run(argv):
        return subprocess.run([*_console_script(), *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)

    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(run, argv) for name, argv in commands.items()}
        return root, {name: f.result() for name, f in futures.items()}


def test_small_cnn_from_the_cli(cli_runs):
    root, results = cli_runs
    assert results["cnn"].returncode == 0, results["cnn"].stderr
    records = _check_ladder(root / "cnn", CNN_LABELS)
    # cumulative: level k has the first k slots (forward order) quantum, the rest the user's own layers
    quantum = {"conv": "flipped_quanv3x3", "fc1": "data_reuploading", "fc2": "data_reuploading"}
    twins = {"conv": "conv3x3_twin", "fc1": "dense_twin", "fc2": "dense_twin"}
    for k in range(4):
        expected = {slot: (quantum[slot] if i < k else "original") for i, slot in enumerate(quantum)}
        assert records[f"level {k}"]["assignment"] == expected
        if k:
            twin = {slot: (twins[slot] if i < k else "original") for i, slot in enumerate(twins)}
            assert records[f"level {k} twin"]["assignment"] == twin
    assert "level 3 twin" in results["cnn"].stdout


def test_tabular_mlp_from_the_cli(cli_runs):
    root, results = cli_runs
    assert results["mlp"].returncode == 0, results["mlp"].stderr
    records = _check_ladder(root / "mlp", MLP_LABELS)
    data = records["level 0"]["data"]
    assert (data["kind"], data["classes"], data["input_shape"]) == ("csv", ["benign", "malignant"], [30])
    assert records["level 0"]["config"]["target"] == "diagnosis"


def test_small_cnn_from_python(cli_runs, tmp_path, capsys):
    root, results = cli_runs
    small_cnn = _example("small_cnn")
    assert small_cnn.main(["--max-train", "100", *TINY, "--out", str(tmp_path / "cnn")]) == 0
    out = capsys.readouterr()
    assert "level 3 twin" in out.out and "slot conv" in out.err
    records = _check_ladder(tmp_path / "cnn", CNN_LABELS)
    # the command in the docstring is the same ladder: the same runs, the same numbers
    from_cli = _records(root / "cnn")
    assert {k: r["run_id"] for k, r in records.items()} == {k: r["run_id"] for k, r in from_cli.items()}
    assert {k: r["test_accs"] for k, r in records.items()} == {k: r["test_accs"] for k, r in from_cli.items()}


def test_tabular_mlp_from_python(cli_runs, tmp_path, capsys):
    root, results = cli_runs
    tabular_mlp = _example("tabular_mlp")
    csv_path = root / "breast_cancer.csv"  # written again, with the same content, where the CLI run read it
    assert tabular_mlp.main(["--csv", str(csv_path), "--batch-size", "32", "--max-train", "80", *TINY,
                             "--out", str(tmp_path / "mlp")]) == 0
    assert "level 2 twin" in capsys.readouterr().out
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 570 and lines[0].endswith(",diagnosis") and lines[1].rsplit(",", 1)[1] in ("benign",
                                                                                                   "malignant")
    records = _check_ladder(tmp_path / "mlp", MLP_LABELS)
    from_cli = _records(root / "mlp")
    assert {k: r["run_id"] for k, r in records.items()} == {k: r["run_id"] for k, r in from_cli.items()}
    assert {k: r["test_accs"] for k, r in records.items()} == {k: r["test_accs"] for k, r in from_cli.items()}
