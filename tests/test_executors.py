"""Executors without a cluster: choosing one, the resources a Ray task declares, the error without Ray
installed, the sink's writes, the command-line and config-file keys, and the modules' examples."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

from qcreep import cli
from qcreep.config import TrainConfig
from qcreep.errors import ConfigError, QcreepError
from qcreep.executors import EXECUTORS, LocalExecutor, make_executor
from qcreep.executors.ray import DEFAULT_GPU_FRACTION, RAY_INSTALL, ResultSink, require_ray, resources_for

# ------------------------------------------------------------------------------ resources


def test_a_task_declares_its_threads_as_cpus():
    assert resources_for(TrainConfig(dataset="digits", threads=3)) == {"num_cpus": 3, "num_gpus": 0}
    assert resources_for(TrainConfig(dataset="digits")) == {"num_cpus": 1, "num_gpus": 0}


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_cuda_task_declares_a_share_of_a_gpu(device):
    config = TrainConfig(dataset="digits", device=device, threads=2)  # not validated: no GPU needed here
    assert resources_for(config) == {"num_cpus": 2, "num_gpus": DEFAULT_GPU_FRACTION}
    assert resources_for(config, gpu_fraction=0.5) == {"num_cpus": 2, "num_gpus": 0.5}
    assert resources_for(config, gpu_fraction=1) == {"num_cpus": 2, "num_gpus": 1.0}


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, "half", True])
def test_a_gpu_fraction_outside_0_1_is_refused(bad):
    with pytest.raises(ConfigError, match=r"gpu_fraction must be a number in \(0, 1\]"):
        resources_for(TrainConfig(dataset="digits", device="cuda"), gpu_fraction=bad)


# ------------------------------------------------------------------------------ choosing


def test_make_executor_by_name():
    assert EXECUTORS == ("local", "ray")
    local = make_executor("local", seed_parallel=3)
    assert isinstance(local, LocalExecutor) and local.seed_parallel == 3
    with pytest.raises(ConfigError, match="executor must be one of local, ray, got 'dask'"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--ray-address is for the ray executor"):
        make_executor("local", ray_address="auto")
    with pytest.raises(ConfigError, match="seed_parallel 2 is for the local executor"):
        make_executor("ray", seed_parallel=2)


def test_ray_executor_options_are_checked():
    pytest.importorskip("ray")
    from qcreep.executors.ray import RayExecutor

    executor = make_executor("ray", ray_address="10.0.0.1:6379", gpu_fraction=0.5)
    assert isinstance(executor, RayExecutor)
    assert (executor.address, executor.gpu_fraction) == ("10.0.0.1:6379", 0.5)
    assert make_executor("ray").address is None  # a local instance
    with pytest.raises(ConfigError, match="ray address must be"):
        RayExecutor(address="  ")
    with pytest.raises(ConfigError, match="max_retries must be an integer >= 0"):
        RayExecutor(max_retries=-1)


def test_old_import_paths_still_work():
    from qcreep.sweep import DataCache, Executor, LocalExecutor, default_seed_parallel, run_one  # noqa: F401


# ------------------------------------------------------------------------------ without Ray


def test_missing_ray_is_a_one_line_error_that_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(QcreepError) as err:
        require_ray()
    assert str(err.value) == (f"the ray executor needs Ray, which is not installed; install it with {RAY_INSTALL}, "
                              "or use --executor local")
    with pytest.raises(QcreepError, match=r'pip install "qcreep\[ray\]"'):
        make_executor("ray")
    assert isinstance(make_executor("local"), LocalExecutor)  # the local executor never needs it


def test_missing_ray_on_the_command_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "out"
    code = cli.main(["run", "--levels", "0", "--seeds", "1", "--epochs", "1", "--no-tune", "--executor", "ray",
                     "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert lines == [f"qcreep: error: the ray executor needs Ray, which is not installed; install it with "
                     f"{RAY_INSTALL}, or use --executor local"]
    assert not out.exists()  # refused before anything was written


def test_missing_ray_in_a_fresh_process(tmp_path):
    """The same from the installed command, in a process where Ray cannot be imported."""
    code = ("import sys; sys.modules['ray'] = None; from qcreep.cli import main; "
            f"sys.exit(main(['run', '--levels', '0', '--seeds', '1', '--no-tune', '--executor', 'ray', "
            f"'--out', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"qcreep: error: the ray executor needs Ray, which is not installed; install it with {RAY_INSTALL}, "
        "or use --executor local"]


# ------------------------------------------------------------------------------ command line and config files


def test_executor_keys_in_config_files(tmp_path):
    toml = tmp_path / "sweep.toml"
    toml.write_text('executor = "ray"\nray_address = "auto"\ngpu_fraction = 0.5\n')
    assert cli.load_config_file(toml) == {"executor": "ray", "ray_address": "auto", "gpu_fraction": 0.5}
    yaml = tmp_path / "sweep.yaml"
    yaml.write_text("executor: local\nray-address: 10.0.0.1:6379\n")
    assert cli.load_config_file(yaml) == {"executor": "local", "ray_address": "10.0.0.1:6379"}
    args = cli.build_parser().parse_args(["run", "--config", str(toml), "--ray-address", "10.0.0.2:6379"])
    settings = cli.run_settings(args)
    assert (settings["executor"], settings["ray_address"], settings["gpu_fraction"]) == ("ray", "10.0.0.2:6379", 0.5)


def test_bad_executor_values(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('executor = "slurm"\nlevels = [0]\nseeds = 1\ntune = []\n')
    assert cli.main(["run", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == "qcreep: error: executor must be one of local, ray, got 'slurm'"
    assert cli.main(["run", "--executor", "dask"]) == 2
    assert "invalid choice: 'dask'" in capsys.readouterr().err
    assert cli.main(["run", "--executor", "ray", "--gpu-fraction", "2"]) == 2
    assert "expected a number in (0, 1], got '2'" in capsys.readouterr().err
    assert cli.main(["run", "--levels", "0", "--seeds", "1", "--no-tune", "--ray-address", "auto",
                     "--out", str(tmp_path / "o")]) == 2
    assert "--ray-address is for the ray executor" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the sink (no Ray needed)


def test_sink_writes_in_order_keeps_the_latest_epoch_and_stays_inside_the_folder(tmp_path):
    sink = ResultSink()
    folder = str(tmp_path)
    assert sink.fetch(folder, ["checkpoints/r.pt", "records/r.json"]) == {"checkpoints/r.pt": None,
                                                                         "records/r.json": None}
    assert sink.put(folder, "r", [("checkpoints/r.pt", b"ckpt2"), ("records/r.json", b"rec2")], 2)
    assert sink.fetch(folder, ["checkpoints/r.pt", "records/r.json"]) == {"checkpoints/r.pt": b"ckpt2",
                                                                         "records/r.json": b"rec2"}
    # a late message of an earlier attempt does not overwrite a later epoch; the same epoch may (a final record)
    assert not sink.put(folder, "r", [("records/r.json", b"rec1")], 1)
    assert sink.put(folder, "r", [("records/r.json", b"rec2 complete")], 2)
    assert (tmp_path / "records" / "r.json").read_bytes() == b"rec2 complete"
    sink.started("r", "host", 123)
    sink.log("a line")
    logs, events = sink.drain()
    assert logs == ["a line"]
    assert [e["kind"] for e in events] == ["epoch", "epoch", "start"]
    assert sink.drain() == ([], [])
    for name in ("../escape.json", "/etc/passwd"):
        with pytest.raises(QcreepError, match="outside the results folder"):
            sink.put(folder, "x", [(name, b"no")], 1)
    assert not (tmp_path.parent / "escape.json").exists()


# ------------------------------------------------------------------------------ progress of a sweep


class Log(list):
    def __call__(self, message):
        self.append(message)


@pytest.mark.parametrize("seed_parallel", [1, 2])
def test_local_sweep_shows_runs_and_epochs_done_and_a_rerun_says_one_line(tmp_path, capsys, seed_parallel):
    configs = [TrainConfig(dataset="digits", level=0, seed=s, epochs=2, max_train=60, max_test=20, threads=1).validate()
               for s in range(3)]
    log = Log()
    LocalExecutor(seed_parallel=seed_parallel).run(configs, tmp_path, progress=True, log=log)
    err = capsys.readouterr().err
    # one bar over the sweep, counted in epochs, naming the runs done, running and left
    assert "runs:" in err and "/6 [" in err and "epoch" in err
    assert "runs done 0/3, running 1, left 2" in err or "runs done 0/3, running 2, left 1" in err
    assert "runs done 3/3, running 0, left 0" in err
    assert sum("] done: test acc" in m for m in log) == 3  # each run's final line, through the bar
    # a rerun: one line for every skipped run, none per run
    log = Log()
    LocalExecutor(seed_parallel=seed_parallel).run(configs, tmp_path, progress=False, log=log)
    assert log == ["3 runs already complete, skipped"]
    assert capsys.readouterr().err == ""  # --no-progress: no bar


def test_skipped_line():
    from qcreep.executors.progress import skipped_line

    assert skipped_line(83, 0, "runs") == "83 runs already complete, skipped"
    assert skipped_line(1, 0, "runs") == "1 run already complete, skipped"
    assert skipped_line(40, 5, "tuning trials") == "40 tuning trials already complete, 5 kept as diverged, skipped"
    assert skipped_line(0, 0, "runs") is None


# ------------------------------------------------------------------------------ examples


@pytest.mark.parametrize("name", ["qcreep.executors", "qcreep.executors.local", "qcreep.executors.progress",
                                  "qcreep.executors.ray"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
