"""Tests of the real ``qcreep`` console script, run as a subprocess.

Each subprocess imports torch, which takes seconds on a busy machine, so all of them are started
by one module-scoped fixture, a few at a time, and the tests then check the results: the two
chains of dependent runs (the default ladder with its reruns; kill-and-resume, which also covers
TOML and YAML config files; both marked ``slow``) and the independent commands (listings,
summaries, error paths). Runs use the bundled digits data, one thread and tiny subsets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from qcreep import __version__
from qcreep.cli import load_config_file
from qcreep.errors import QcreepError


def _console_script() -> list[str]:
    """The installed ``qcreep`` entry point of this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "qcreep"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("qcreep")
    if found:
        return [found]
    return [sys.executable, "-m", "qcreep.cli"]


QCREEP = _console_script()
TINY = ["--seeds", "1", "--max-train", "60", "--max-test", "40", "--n-reps", "2", "--threads", "1",
        "--no-progress"]
PARALLEL = 3  # independent subprocesses at a time; each runs torch on one thread
METRICS = ("train_losses", "test_losses", "train_accs", "test_accs")




class Cli:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"  # $QCREEP_DATA: empty, so file-based datasets are missing
        self.data.mkdir()
        self.env = dict(os.environ, QCREEP_DATA=str(self.data), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                        MPLBACKEND="Agg")

    def argv(self, *args) -> list[str]:
        return [*QCREEP, *map(str, args)]

    def __call__(self, *args, timeout=300) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, *args, log: Path) -> subprocess.Popen:
        with open(log, "w") as fh:
            return subprocess.Popen(self.argv(*args), cwd=self.root, env=self.env, stdout=fh,
                                    stderr=subprocess.STDOUT)


def assert_error(result, *fragments, strict_one_line=True):
    """Exit code 2, one ``qcreep: error:`` line (the only stderr line when ``strict_one_line``)."""
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    assert result.returncode == 2, out
    lines = result.stderr.strip().splitlines()
    if strict_one_line:
        assert len(lines) == 1, result.stderr
    error_lines = [line for line in lines if line.startswith("qcreep: error:")]
    assert len(error_lines) == 1 and lines[-1] == error_lines[0], result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]
    return error_lines[0]


def snapshot(directory: Path) -> dict:
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def records(out: Path) -> dict:
    """Records by run id without its config hash (``digits_level0_real_seed0.json``)."""
    found = {}
    for p in sorted((out / "records").glob("*.json")):
        rec = json.loads(p.read_text())
        assert p.stem == rec["run_id"] and rec["run_id"].endswith("_" + rec["config_hash"])
        found[p.stem.rsplit("_", 1)[0] + ".json"] = rec
    return found


def one_path(directory: Path, pattern: str) -> Path:
    """The one file matching ``pattern`` (run ids end in a config hash)."""
    matches = sorted(directory.glob(pattern))
    assert len(matches) == 1, matches
    return matches[0]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    return Cli(tmp_path_factory.mktemp("cli"))


# ------------------------------------------------------------------- independent commands, batched


def _batch_commands(cli) -> dict:
    """Independent commands (listings, summaries, most error paths) and the files they need."""
    root = cli.root
    (root / "empty_data").mkdir()
    corrupt = root / "corrupt_data" / "MNIST" / "raw"
    corrupt.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (corrupt / f"{name}.gz").write_bytes(b"this is not gzip data \x00\xff" * 8)
    (root / "empty_results").mkdir()
    (root / "invalid.toml").write_text("epochs = = 1\n")
    (root / "unknown_key.toml").write_text("epochs = 1\nlearning_rate = 0.1\n")
    (root / "wrong_type.toml").write_text('epochs = "two"\n')
    (root / "a_file").write_text("not a folder\n")
    out = root / "err_out"
    commands = {
        "list": ["list"],
        "list_json": ["list", "--json"],
        "summary_0": ["summary", "--dataset", "mnist", "--level", "0", "--json"],
        "summary_1": ["summary", "--dataset", "mnist", "--level", "1", "--json"],
        "summary_2": ["summary", "--dataset", "mnist", "--level", "2", "--json", "--output-scale", "none"],
        "summary_2_text": ["summary", "--dataset", "mnist", "--level", "2"],
        "summary_2_twin": ["summary", "--dataset", "mnist", "--level", "2", "--twin", "--json"],
        "summary_complex": ["summary", "--dataset", "mnist", "--level", "2", "--angles", "complex"],
        "summary_assign": ["summary", "--dataset", "mnist", "--json", "--assign",
                           "conv1=flipped_quanv3x3,conv2=flipped_quanv3x3,head=data_reuploading"],
        # error paths
        "unknown_dataset": ["run", "--dataset", "imagenet", *TINY, "--out", out],
        "unknown_level": ["run", "--levels", "7", *TINY, "--out", out],
        "unknown_slot": ["run", "--assign", "conv9=flipped_quanv3x3", *TINY, "--out", out],
        "unknown_layer": ["run", "--assign", "conv1=quanv9", *TINY, "--out", out],
        "epochs_0": ["run", "--epochs", "0", *TINY, "--out", out],
        "lr_negative": ["run", "--lr", "-1", *TINY, "--out", out],
        "lr_text": ["run", "--lr", "abc", *TINY, "--out", out],
        "seeds_text": ["run", "--seeds", "x", "--out", out],
        "few_qubits": ["summary", "--dataset", "mnist", "--level", "2", "--n-qubits", "3"],
        "missing_data": ["run", "--dataset", "mnist", "--data-dir", root / "empty_data", "--levels", "0", *TINY,
                         "--out", root / "missing_out"],
        "corrupt_data": ["run", "--dataset", "mnist", "--data-dir", root / "corrupt_data", "--levels", "0", *TINY,
                         "--out", root / "corrupt_out"],
        "invalid_toml": ["run", "--config", "invalid.toml", "--out", out],
        "unknown_key": ["run", "--config", "unknown_key.toml", "--out", out],
        "wrong_type": ["run", "--config", "wrong_type.toml", "--out", out],
        "out_is_file": ["run", "--levels", "0", *TINY, "--out", root / "a_file"],
        "few_qubits_run": ["run", "--levels", "0", "2", "--n-qubits", "2", *TINY, "--out", root / "few_out"],
        "huge_reps": ["run", "--levels", "2", *TINY, "--n-reps", "1000000", "--out", root / "huge_out"],
        # summary builds the model: its parameters alone (6 TiB here) are refused before allocation
        "huge_reps_summary": ["summary", "--dataset", "mnist", "--level", "2", "--n-reps", "100000000"],
        "huge_reps_summary_twin": ["summary", "--dataset", "mnist", "--level", "2", "--twin", "--n-reps",
                                   "100000000", "--json"],
        "report_empty": ["report", root / "empty_results"],
        "val_fraction_0": ["run", *TINY, "--val-fraction", "0", "--out", root / "val0_out"],
        "max_train_5": ["run", *TINY, "--max-train", "5", "--out", root / "max5_out"],
        "tune_seeds_untuned": ["run", *TINY, "--no-tune", "--tune-seeds", "2", "--out", root / "ts_out"],
        "report_missing": ["report", root / "no_such_results"],
    }
    return commands


@pytest.fixture(scope="module")
def scenarios(cli, request):
    """Every CLI subprocess of this module, started together in one pool of PARALLEL workers: the
    two chains of dependent runs (only when a selected test needs them), then the independent
    commands. The kill chain runs two processes at once for a while."""
    wanted = {name for item in request.session.items for name in ("batch", "killed", "ladder")
              if name in getattr(item, "fixturenames", ())}
    commands = _batch_commands(cli) if "batch" in wanted else {}
    with ThreadPoolExecutor(PARALLEL) as pool:
        chains = {}
        if "killed" in wanted:
            chains["killed"] = pool.submit(_kill_scenario, cli)
        if "ladder" in wanted:
            chains["ladder"] = pool.submit(_ladder_scenario, cli)
        futures = {name: pool.submit(cli, *args) for name, args in commands.items()}
        batch = {name: f.result() for name, f in futures.items()}
        batch["err_out_created"] = (cli.root / "err_out").exists()
        results = {name: f.result() for name, f in chains.items()}
    results["batch"] = batch
    return results


@pytest.fixture(scope="module")
def batch(scenarios):
    return scenarios["batch"]


@pytest.fixture(scope="module")
def ladder(scenarios):
    return scenarios["ladder"]


@pytest.fixture(scope="module")
def killed(scenarios):
    return scenarios["killed"]


def test_help(cli):
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "list", "summary", "report"):
        assert command in result.stdout
    assert result.stderr == ""
    result = cli("run", "--help")
    assert result.returncode == 0
    for flag in ("--config", "--levels", "--assign", "--resume", "--out", "--threads"):
        assert flag in result.stdout
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"qcreep {__version__}"


def test_list(batch):
    result = batch["list"]
    assert result.returncode == 0, result.stderr
    for word in ("digits", "mnist", "fashion-mnist", "cifar10", "conv2d", "flipped_quanv3x3", "linear",
                 "data_reuploading", "conv1", "conv2", "head"):
        assert word in result.stdout


def test_list_json(batch):
    result = batch["list_json"]
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert [d["name"] for d in info["datasets"]] == ["cifar10", "digits", "fashion-mnist", "mnist"]
    digits = next(d for d in info["datasets"] if d["name"] == "digits")
    assert digits["input_shape"] == [1, 12, 12] and digits["needs_files"] is False
    layers = {(e["slot_kind"], e["name"]): e["quantum"] for e in info["layers"]}
    assert layers[("conv", "conv2d")] is False
    assert layers[("conv", "flipped_quanv3x3")] is True
    assert layers[("dense", "linear")] is False
    assert layers[("dense", "data_reuploading")] is True
    assert [s["slot"] for s in info["slots"]] == ["conv1", "conv2", "head"]
    assert info["levels"] == {"0": [], "1": ["conv1", "conv2"], "2": ["conv1", "conv2", "head"]}


@pytest.mark.parametrize("level,total", [(0, 130_394), (1, 133_658), (2, 172_048)])
def test_summary_json_totals(batch, level, total):
    result = batch[f"summary_{level}"]
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["total_params"] == total
    assert summary["level"] == level
    assert summary["dataset"] == "mnist"
    assert summary["input_shape"] == [1, 32, 32]
    assert [r["output"] for r in summary["slots"]] == [[32, 30, 30], [16, 28, 28], [10]]


def test_summary_assign(batch):
    full = json.loads(batch["summary_assign"].stdout)
    assert full["total_params"] == 172_048 + 1  # the learned output scale of qcreep run's default readout
    assert full["level"] == 2
    head = full["slots"][-1]
    assert head["n_qubits"] == 7 and head["n_reps"] == 10 and head["output_scale"] == "learned"


def test_summary_text_shows_qubits_twins_and_complex_counting(batch):
    text = batch["summary_2_text"].stdout
    assert "7 qubits; 10 re-uploads; readout scale learned, bias init zero" in text
    twin = json.loads(batch["summary_2_twin"].stdout)
    quantum = json.loads(batch["summary_assign"].stdout)
    assert [r["layer"] for r in twin["slots"]] == ["conv3x3_twin", "conv3x3_twin", "dense_twin"]
    assert abs(twin["total_params"] - quantum["total_params"]) <= 0.01 * quantum["total_params"]
    assert "each complex angle or bias counts as one parameter" in batch["summary_complex"].stdout


# --------------------------------------------------------------------------------- error paths


@pytest.mark.parametrize("name,fragments", [
    ("unknown_dataset", ["unknown data 'imagenet': not a built-in dataset (cifar10, digits, fashion-mnist, mnist)"]),
    ("unknown_level", ["unknown replacement level 7 for hybridnet; valid levels: 0, 1, 2"]),
    ("unknown_slot", ["unknown slot 'conv9'; slots of hybridnet: conv1, conv2, head"]),
    ("unknown_layer", ["unknown layer 'quanv9' for slot 'conv1'", "valid: conv2d, conv3x3_twin, flipped_quanv3x3"]),
    ("epochs_0", ["argument --epochs", "expected a positive integer, got '0'"]),
    ("lr_negative", ["argument --lr", "expected a positive number, got '-1'"]),
    ("lr_text", ["argument --lr", "expected a positive number, got 'abc'"]),
    ("seeds_text", ["argument --seeds", "expected a positive integer, got 'x'"]),
    ("few_qubits", ["slot 'head'", "needs at least 7 qubits", "n_qubits=3"]),
    ("missing_data", ["mnist data not found", "train-images-idx3-ubyte", "empty_data", "--data-dir"]),
    ("invalid_toml", ["invalid.toml is not valid TOML"]),
    ("unknown_key", ["unknown key 'learning_rate' in", "valid keys:"]),
    ("wrong_type", ["key 'epochs' in", "takes int values, got 'two'"]),
    ("out_is_file", ["a_file is an existing file, not a folder; choose another --out"]),
    ("few_qubits_run", ["needs at least 5 qubits", "n_qubits=2"]),
    ("huge_reps", ["n_reps=1000000", "this machine has", "--n-reps"]),
    ("huge_reps_summary", ["need about 6.0 TiB (parameters: 6.0 TiB 1,638,", "this machine has", "--n-reps"]),
    ("huge_reps_summary_twin", ["need about 6.0 TiB (parameters:", "this machine has", "--n-reps"]),
    ("report_empty", ["no run records (*.json) found under", "empty_results"]),
    ("val_fraction_0", ["tuning chooses each rung's settings on the validation split, but val_fraction is 0",
                        "--val-fraction > 0", "--no-tune"]),
    ("max_train_5", ["a stratified validation split of 5 training examples needs at least 2 of each class",
                     "--max-train"]),
    ("tune_seeds_untuned", ["tune_seeds 2 needs tuning, which is off"]),
    ("report_missing", ["results directory", "no_such_results", "does not exist"]),
])
def test_error_exits_2_with_one_line(batch, name, fragments):
    assert_error(batch[name], *fragments)


def test_errors_before_running_write_nothing(cli, batch):
    assert not batch["err_out_created"]
    assert not (cli.root / "missing_out").exists()
    # every rung is built and checked before the first epoch: level 0 never trained
    assert not (cli.root / "few_out").exists() and not (cli.root / "huge_out").exists()
    assert not (cli.root / "corrupt_out").exists()
    assert not (cli.root / "val0_out").exists() and not (cli.root / "max5_out").exists()
    assert (cli.root / "a_file").read_text() == "not a folder\n"
    assert not (cli.root / "no_such_results").exists()
    assert list((cli.root / "empty_data").iterdir()) == []
    assert list(cli.data.iterdir()) == []


def test_corrupt_data(batch):
    assert_error(batch["corrupt_data"], "cannot read gzip file", "train-images-idx3-ubyte.gz",
                 "truncated or corrupt", strict_one_line=False)


# --------------------------------------------------------------------------- the default ladder


LADDER = ("run", "--epochs", "1", "--tune-epochs", "1", "--lr-grid", "1e-3", "3e-2", *TINY)


def _ladder_scenario(cli) -> dict:
    """The default ladder (tuned, with twins) at a tiny budget, an identical rerun, then a rerun with --lr."""
    out = cli.root / "ladder"
    first = cli(*LADDER, "--out", out)
    before = snapshot(out) if out.exists() else {}
    second = cli(*LADDER, "--out", out)
    after_second = snapshot(out) if out.exists() else {}
    other = cli("run", "--epochs", "1", *TINY, "--no-twins", "--lr", "0.01", "--out", out)
    after_other = snapshot(out) if out.exists() else {}
    return dict(out=out, first=first, second=second, other=other, before=before, after_second=after_second,
                after_other=after_other)


RUNGS = ("level 0", "level 1", "level 1 twin", "level 2", "level 2 twin")


@pytest.mark.slow
def test_run_ladder(ladder):
    result, out = ladder["first"], ladder["out"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    table = result.stdout
    # the answer comes first: each quantum rung against level 0 and its twin, then the table
    assert table.lstrip().startswith("**Answer (digits, real angles)**")
    assert "- **level 2 vs level 0**: " in table and "- **level 2 vs level 2 twin**: " in table
    assert table.index("**Answer") < table.index("| dataset |")
    for rung in RUNGS:
        assert f"| {rung} |" in table
    assert "| digits |" in table
    # the files as the first run left them (the later scenario steps add runs of another config)
    first_files = ladder["before"]
    recs = {}
    for path, data in first_files.items():
        if path.parts[0] == "records":
            rec = json.loads(data)
            recs[rec["run_id"].rsplit("_", 1)[0] + ".json"] = rec
    assert len(recs) == 5
    assert sorted(recs) == sorted([f"digits_level{level}_real_seed0.json" for level in (0, 1, 2)]
                                  + [f"digits_level{level}twin_real_seed0.json" for level in (1, 2)])
    for rec in recs.values():
        assert rec["status"] == "complete" and rec["epochs_completed"] == 1
        assert rec["config"]["threads"] == 1 and rec["environment"]["threads"] == 1
        assert rec["config"]["max_train"] == 60 and rec["config"]["n_reps"] == 2
        tuning = rec["tuning"]
        assert tuning["split"] == "validation" and set(tuning["chosen"]) == {"lr"}
        assert [c["settings"]["lr"] for c in tuning["candidates"]] == [1e-3, 3e-2]
        assert tuning["budget"] == {"trials": 2, "epochs": 1, "seed": 0, "seeds": [0], "grid": {"lr": [1e-3, 3e-2]}}
        assert rec["config"]["lr"] == tuning["chosen"]["lr"]
        assert len(rec["val_accs"]) == 1 and rec["best_epoch"] == 1
    twin = recs["digits_level2twin_real_seed0.json"]
    quantum = recs["digits_level2_real_seed0.json"]
    assert twin["twin_of"] == "level 2" and twin["label"] == "level 2 twin"
    assert abs(twin["n_params"] - quantum["n_params"]) <= 0.01 * quantum["n_params"]
    # 5 rungs x 2 trials, each an ordinary run under tuning/
    assert len([p for p in first_files if p.parts[:2] == ("tuning", "records")]) == 10
    assert len([p for p in first_files if p.parts[0] == "checkpoints"]) == 5
    sweep = first_files[Path("sweep.csv")].decode().splitlines()
    assert len(sweep) == 6 and sweep[0].startswith("run_id,")
    assert (out / "report.md").is_file()
    assert "level 2" in (out / "report.md").read_text()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["levels"] == [0, 1, 2] and saved["epochs"] == 1 and saved["seeds"] == 1
    assert saved["tune"] == ["lr"] and saved["twins"] is True
    assert "run(s) ->" not in result.stderr  # the plan line is for terminals only
    assert "epoch 1/1:" not in result.stderr  # a line per finished run, not per epoch
    assert result.stderr.count("] done: test acc") == 5
    # the trials were scored on validation alone, and the log says so
    assert result.stderr.count(", seed 0] done: best val acc") == 10
    assert result.stderr.count("tuned on validation: lr=") == 5
    assert result.stderr.count("(best val acc ") == 5
    for path, data in first_files.items():
        if path.parts[:2] == ("tuning", "records"):
            assert json.loads(data)["test_accs"] == []


@pytest.mark.slow
def test_rerun_skips_complete_runs(ladder):
    result = ladder["second"]
    assert result.returncode == 0, result.stderr
    # one line for the skipped trials and one for the skipped runs, none per run
    assert "10 tuning trials already complete, skipped" in result.stderr
    assert "5 runs already complete, skipped" in result.stderr
    assert "already complete (" not in result.stderr
    assert "] done:" not in result.stderr
    for rung in RUNGS:
        assert f"| {rung} |" in result.stdout
    before, after = ladder["before"], ladder["after_second"]
    assert set(before) == set(after)
    for path, data in before.items():
        if path.parts[0] in ("records", "checkpoints", "tuning") or path.name == "config.yaml":
            assert after[path] == data, path


@pytest.mark.slow
def test_rerun_with_other_config_keeps_both(ladder):
    # another --lr is another config: its runs land on their own paths and nothing earlier changes
    other = ladder["other"]
    assert other.returncode == 0, other.stderr
    before, after = ladder["after_second"], ladder["after_other"]
    for path, data in before.items():
        if path.parts[0] in ("records", "checkpoints", "tuning"):
            assert after[path] == data, path
    new = sorted(set(after) - set(before))
    assert len([p for p in new if p.parts[0] == "records"]) == 3
    assert Path("config-2.yaml") in new
    # sweep.csv lists every run in the folder, the earlier ones too
    assert len((ladder["out"] / "sweep.csv").read_text().splitlines()) == 1 + 5 + 3


# ------------------------------------------------------------------------------ kill and resume


KILL_ARGS = ("run", "--levels", "0", "--epochs", "4", "--seeds", "1", "--max-train", "1347", "--max-test", "50",
             "--batch-size", "20", "--threads", "1", "--no-progress", "--no-tune")
# The same settings as KILL_ARGS, from config files whose epochs the --epochs 4 flag overrides. The
# uninterrupted run B reads the TOML file and the resumed run A the YAML file, so equal metrics also
# show that a config file and the flags give the same run.
KILL_TOML = """\
# the kill-and-resume run, as a TOML file
datasets = ["digits"]
levels = [0]
seeds = 1
epochs = 1
max_train = 1347
max_test = 50
batch_size = 20
threads = 1
tune = []
"""
KILL_YAML = """\
dataset: digits
level: 0
seeds: 1
epochs: 2
max-train: 1347
max-test: 50
batch-size: 20
threads: 1
tune: []
"""


def _kill_scenario(cli) -> dict:
    """Run A is SIGKILLed after its first checkpointed epoch; B runs the same thing uninterrupted.

    All of digits (1347 images) in batches of 20 makes an epoch long enough (a quarter of a second
    or more) to kill the run reliably between its first and its last epoch. After the kill, A is
    rerun without --resume (refused), then resumed to completion.
    """
    a, b = cli.root / "kill_a", cli.root / "kill_b"
    (cli.root / "kill.toml").write_text(KILL_TOML)
    (cli.root / "kill.yaml").write_text(KILL_YAML)
    records_a = a / "records"
    proc_b = cli.popen("run", "--config", "kill.toml", "--epochs", "4", "--no-progress", "--out", b,
                       log=cli.root / "kill_b.log")
    proc_a = cli.popen(*KILL_ARGS, "--out", a, log=cli.root / "kill_a.log")
    seen = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc_a.poll() is None:
            found = list(records_a.glob("digits_level0_real_seed0_*.json"))
            if found and list((a / "checkpoints").glob("*.pt")):
                try:
                    seen = json.loads(found[0].read_text())
                except ValueError:
                    seen = None
                if seen and seen.get("epochs_completed", 0) >= 1:
                    proc_a.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.01)
    finally:
        if proc_a.poll() is None and not (seen and seen.get("epochs_completed", 0) >= 1):
            proc_a.kill()
        proc_a.wait(timeout=60)
        proc_b.wait(timeout=300)
    state = dict(a=a, b=b, seen=seen, a_returncode=proc_a.returncode, b_returncode=proc_b.returncode,
                 a_log=(cli.root / "kill_a.log").read_text(), b_log=(cli.root / "kill_b.log").read_text())
    state["after_kill"] = snapshot(a)
    state["no_resume"] = cli(*KILL_ARGS, "--out", a)
    state["after_no_resume"] = snapshot(a)
    state["resumed"] = cli("run", "--config", "kill.yaml", "--epochs", "4", "--resume", "--no-progress", "--out", a)
    return state


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(killed):
    a, b = killed["a"], killed["b"]
    assert killed["seen"] is not None, "run A ended before a checkpointed epoch was seen:\n" + killed["a_log"]
    assert killed["a_returncode"] == -signal.SIGKILL, killed["a_log"]
    assert killed["b_returncode"] == 0, killed["b_log"]
    # killed mid-run: the record on disk says unfinished
    name = one_path(a / "records", "digits_level0_real_seed0_*.json").name
    killed_rec = json.loads(killed["after_kill"][Path("records") / name])
    assert killed_rec["status"] == "running"
    assert 1 <= killed_rec["epochs_completed"] < 4
    assert len(killed_rec["test_accs"]) == killed_rec["epochs_completed"]
    assert Path("checkpoints") / name.replace(".json", ".pt") in killed["after_kill"]
    # resumed to completion
    resumed = killed["resumed"]
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {killed_rec['epochs_completed']}" in resumed.stderr
    assert "| level 0 |" in resumed.stdout
    rec_a = records(a)["digits_level0_real_seed0.json"]
    rec_b = records(b)["digits_level0_real_seed0.json"]
    assert rec_a["status"] == rec_b["status"] == "complete"
    assert rec_a["epochs_completed"] == rec_b["epochs_completed"] == 4
    for key in METRICS:
        assert len(rec_a[key]) == 4
        assert rec_a[key] == rec_b[key], key
    # the epochs before the kill are the ones recorded then
    for key in METRICS:
        assert rec_a[key][:killed_rec["epochs_completed"]] == killed_rec[key]


@pytest.mark.slow
def test_config_files_and_flags_give_the_same_run(cli, killed):
    a, b = killed["a"], killed["b"]
    assert killed["b_returncode"] == 0, killed["b_log"]
    assert killed["resumed"].returncode == 0, killed["resumed"].stderr
    rec_a = records(a)["digits_level0_real_seed0.json"]
    rec_b = records(b)["digits_level0_real_seed0.json"]
    # --epochs 4 beat epochs = 1 (TOML) and epochs: 2 (YAML)
    assert rec_b["epochs_completed"] == rec_a["epochs_completed"] == 4
    assert rec_b["config"] == rec_a["config"]
    assert rec_b["config"]["batch_size"] == 20 and rec_b["config"]["max_train"] == 1347
    # the settings are saved next to the results; flags (A) and TOML (B) saved the same text, and the
    # YAML resume of A found its settings already saved
    saved_a = (a / "config.yaml").read_text()
    assert (b / "config.yaml").read_text() == saved_a
    assert sorted(p.name for p in a.glob("config*.yaml")) == ["config.yaml"]
    saved = yaml.safe_load(saved_a)
    assert saved["epochs"] == 4 and saved["levels"] == [0] and saved["max_train"] == 1347
    assert saved["batch_size"] == 20 and saved["seeds"] == 1 and saved["datasets"] == ["digits"]
    # the saved settings are themselves a valid config file
    assert load_config_file(a / "config.yaml") == saved
    toml = load_config_file(cli.root / "kill.toml")
    assert toml == {"datasets": ["digits"], "levels": [0], "seeds": 1, "epochs": 1, "max_train": 1347,
                    "max_test": 50, "batch_size": 20, "threads": 1, "tune": []}
    assert load_config_file(cli.root / "kill.yaml") == dict(toml, epochs=2)


@pytest.mark.slow
def test_unfinished_run_without_resume_is_refused(killed):
    line = assert_error(killed["no_resume"], "digits_level0_real_seed0", "earlier checkpoint",
                        "resume it (--resume on the command line", strict_one_line=False)
    assert "epochs)" in line
    before, after = killed["after_kill"], killed["after_no_resume"]
    for path, data in before.items():
        if path.parts[0] in ("records", "checkpoints"):
            assert after[path] == data, path


# ------------------------------------------------------------------------- errors found after planning


def test_corrupt_data_error_is_one_line(batch):
    assert_error(batch["corrupt_data"], strict_one_line=True)


@pytest.mark.slow
def test_no_resume_error_is_one_line(killed):
    assert_error(killed["no_resume"], strict_one_line=True)





def test_yaml_reads_exponent_floats(tmp_path):
    # YAML 1.1 reads 5e-4 (no dot) as a string; the README writes learning rates that way
    path = tmp_path / "sweep.yaml"
    path.write_text("lr: 5e-4\nlr_grid: [1e-5, 3e-3]\nval_fraction: 0.2\n")
    assert load_config_file(path) == {"lr": 5e-4, "lr_grid": [1e-5, 3e-3], "val_fraction": 0.2}
    path.write_text("lr: fast\n")
    with pytest.raises(QcreepError, match=r"key 'lr' in .* takes float values, got 'fast'"):
        load_config_file(path)


def test_fixed_lr_turns_off_its_tuning():
    from qcreep.cli import build_parser, run_settings

    parser = build_parser()
    assert run_settings(parser.parse_args(["run"]))["tune"] == ["lr"]
    assert run_settings(parser.parse_args(["run", "--lr", "0.01"]))["tune"] == []
    assert run_settings(parser.parse_args(["run", "--lr", "0.01", "--tune", "lr"]))["tune"] == ["lr"]
    assert run_settings(parser.parse_args(["run", "--no-tune"]))["tune"] == []
    assert run_settings(parser.parse_args(["run"]))["twins"] is True
    assert run_settings(parser.parse_args(["run", "--no-twins"]))["twins"] is False


# ------------------------------------------------------------------------------ help and defaults


def _subparsers():
    import argparse

    from qcreep.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _stated_default(text: str) -> str | None:
    """What a help text gives as the default: ``(default 0.1)``, ``(default 6: ...)``, ``learned (default)``."""
    import re

    text = " ".join(text.split())
    found = re.search(r"([\w.-]+) \(default[),]", text) or re.search(r"(?:\(|^)default:? ([^):;,]+)", text)
    return found.group(1).strip() if found else None


def test_run_help_states_the_real_defaults():
    from qcreep.cli.run import DEFAULT_LEVELS, DEFAULTS
    from qcreep.config import TrainConfig
    from qcreep.diagnose import DiagnoseSpec
    from qcreep.evaluation import HardwareSpec
    from qcreep.executors.ray import DEFAULT_GPU_FRACTION
    from qcreep.models import PAPER_FAMILIES
    from qcreep.tuning import DEFAULT_LR_GRID

    train = TrainConfig()
    real = {
        "seeds": DEFAULTS["seeds"], "epochs": train.epochs, "batch_size": train.batch_size,
        "tune_epochs": DEFAULTS["tune_epochs"], "tune_seeds": DEFAULTS["tune_seeds"],
        "val_fraction": train.val_fraction,
        "split_seed": train.split_seed, "output_scale": train.output_scale, "bias_init": train.bias_init,
        "n_reps": train.n_reps, "solver": train.solver, "executor": "local", "ray_address": "local",
        "gpu_fraction": DEFAULT_GPU_FRACTION, "eval_batch_size": train.eval_batch_size, "dtype": train.dtype,
        "device": train.device, "shot_seed": HardwareSpec().seed, "lr": "tuned",
        "test_fraction": train.test_fraction, "model": "hybridnet", "quantum": PAPER_FAMILIES,
        "classes": "all" if train.classes is None else train.classes,
    }
    diag = DiagnoseSpec()
    real.update(diag_inputs=diag.inputs, diag_inits=diag.inits, diag_samples=diag.samples,
                diag_sizes=" ".join(map(str, diag.sizes)), diag_seed=diag.seed,
                scan_qubits=" ".join(map(str, diag.scan_qubits)), scan_inits=diag.scan_inits)
    helps = {a.dest: a.help or "" for a in _subparsers()["run"]._actions}
    stated = {dest: _stated_default(text) for dest, text in helps.items()}
    for dest, value in real.items():
        assert stated[dest] is not None, (dest, helps[dest])
        assert stated[dest].startswith(str(value)), (dest, stated[dest], value)
    # every stated default is checked above (a new one must be added there)
    assert {d for d, v in stated.items() if v is not None} - set(real) <= {"datasets", "levels", "twins", "tune",
                                                                           "n_qubits", "seed_parallel", "out",
                                                                           "lr_grid", "target", "standardize"}
    assert "without tuning 5e-4" in helps["lr"] and train.lr == 5e-4
    grid = [float(t) for t in _stated_default(helps["lr_grid"]).split() if t != "..."]
    assert grid == [*DEFAULT_LR_GRID[:2], *DEFAULT_LR_GRID[-2:]]
    assert "digits (default)" in helps["datasets"] and DEFAULTS["datasets"] == ["digits"]
    assert f"default {' '.join(map(str, DEFAULT_LEVELS))}" in helps["levels"]
    description = " ".join(_subparsers()["run"].description.split())
    assert (f"levels {' '.join(map(str, DEFAULT_LEVELS))} and their twins on the embedded digits data, "
            f"{DEFAULTS['seeds']} seeds, {train.epochs} epochs") in description


def test_other_commands_state_their_argparse_defaults():
    for name, parser in _subparsers().items():
        for action in parser._actions:
            stated = _stated_default(action.help or "")
            if stated is None or action.default is None or isinstance(action.default, bool):
                continue
            default = action.default
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
            stated = stated.removeprefix("./")
            assert stated.startswith(shown) or shown.startswith(stated), (name, action.dest, stated, default)
    from qcreep.config import TrainConfig
    summary = {a.dest: a.default for a in _subparsers()["summary"]._actions}
    train = TrainConfig()
    assert (summary["n_reps"], summary["output_scale"], summary["bias_init"]) == (
        train.n_reps, train.output_scale, train.bias_init)
