"""The size guard (qcreep.guard): memory estimate and refusal of settings that cannot fit."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from qcreep import guard
from qcreep.errors import ConfigError
from qcreep.guard import available_memory, check_memory, estimate_memory, format_bytes

MiB = 2**20
GiB = 2**30
REPO = Path(__file__).resolve().parents[1]


def test_paper_default_fits_in_a_few_hundred_mib():
    est = estimate_memory(batch_size=200, n_qubits=7, n_reps=10)
    assert 100 * MiB < est["total"] < 2 * GiB
    assert est["total"] == sum(est["terms"].values())
    assert est["settings"]["n_qubits"] == 7 and est["settings"]["in_features"] == 12544
    # with the training default's evaluation batch of 1000 it is still well under 2 GiB
    assert estimate_memory(batch_size=200, n_reps=10, eval_batch_size=1000)["total"] < 2 * GiB


@pytest.mark.parametrize("level, n_params", [(0, 130_394), (1, 133_658), (2, 172_048)])
def test_parameter_counts_of_the_paper_network(level, n_params):
    est = estimate_memory(level=level)
    assert est["settings"]["n_params"] == n_params
    assert est["terms"]["parameters"] == 4 * n_params
    assert est["terms"]["gradients and Adam state"] == 3 * 4 * n_params


def test_re_uploading_terms_follow_the_formula():
    est = estimate_memory(batch_size=3, n_qubits=7, n_reps=5, eval_batch_size=1)
    n = 2**7
    assert est["terms"]["re-uploading gates"] == guard.GATE_COPIES * 5 * n * n * 8
    assert est["terms"]["data Hamiltonians"] == guard.HAMILTONIAN_COPIES * 3 * n * n * 4
    assert est["terms"]["re-upload states"] == guard.STATE_COPIES * 3 * 5 * n * 8
    conv = 3 * 4 * (32 * 32 + guard.CONV_COPIES * (32 * 30 * 30 + 16 * 28 * 28))
    assert est["terms"]["convolution activations"] == conv
    assert est["terms"]["evaluation batch"] == 0


def test_classical_head_has_no_quantum_terms():
    est = estimate_memory(level=0)
    for term in ("re-uploading gates", "data Hamiltonians", "re-upload states"):
        assert est["terms"][term] == 0
    assert estimate_memory(assignment={"conv1": "conv2d", "conv2": "conv2d", "head": "data_reuploading"}
                           )["terms"]["re-uploading gates"] > 0


def test_a_million_re_uploads_is_refused_with_the_cause_named():
    est = estimate_memory(batch_size=200, n_qubits=7, n_reps=1_000_000)
    assert est["dominant"] == "re-uploading gates"
    with pytest.raises(ConfigError) as info:
        check_memory(est, available=int(21.3 * GiB))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("these settings need about ")
    assert "(re-uploading gates: " in message and "for n_reps=1000000 at 7 qubits)" in message
    assert "but this machine has 21.3 GiB available" in message
    assert message.endswith("lower --n-reps, --n-qubits or --batch-size")


def test_large_batch_names_the_hamiltonians():
    est = estimate_memory(batch_size=200_000, n_qubits=7)
    with pytest.raises(ConfigError, match=r"\(data Hamiltonians: .* for batch_size=200000 at 7 qubits\).*"
                                          r"lower --batch-size or --n-qubits"):
        check_memory(est, available=8 * GiB)


def test_evaluation_batch_is_named_when_it_dominates():
    est = estimate_memory(batch_size=1, n_qubits=10, eval_batch_size=50_000)
    assert est["dominant"] == "evaluation batch"
    with pytest.raises(ConfigError, match="lower --eval-batch-size"):
        check_memory(est, available=8 * GiB)


def test_threshold_is_eighty_percent_of_available():
    est = estimate_memory()
    total = est["total"]
    assert check_memory(est, available=math.ceil(total / 0.8)) == math.ceil(total / 0.8)
    with pytest.raises(ConfigError):
        check_memory(est, available=total)  # 100% of the memory is more than allowed
    assert check_memory(est, available=total, fraction=1.0) == total


def test_config_like_objects_and_overrides():
    config = SimpleNamespace(batch_size=100, eval_batch_size=None, n_reps=3, n_qubits=None, dtype="float64",
                             angles="real", level=2, assignment=None, dataset="digits", device="cpu")
    est = estimate_memory(config)
    assert est["settings"]["input_shape"] == (1, 12, 12)
    assert est["settings"]["in_features"] == 16 * 8 * 8 and est["settings"]["n_qubits"] == 5
    assert est["settings"]["dtype_bytes"] == 8 and est["settings"]["eval_batch_size"] == 100
    assert estimate_memory(config, batch_size=7)["settings"]["batch_size"] == 7
    as_dict = estimate_memory(dict(vars(config)))
    assert as_dict == est
    cifar = estimate_memory({"dataset": "cifar10"})
    assert cifar["settings"]["input_shape"] == (3, 32, 32)


def test_dtype_angles_and_stacked_models_scale_the_estimate():
    base = estimate_memory()
    assert estimate_memory(dtype="float64")["total"] == 2 * base["total"]
    assert estimate_memory(dtype_bytes=8)["total"] == 2 * base["total"]
    complex_angles = estimate_memory(angles="complex")
    assert complex_angles["terms"]["parameters"] == 2 * base["terms"]["parameters"]
    assert complex_angles["terms"]["re-uploading gates"] == base["terms"]["re-uploading gates"]
    stacked = estimate_memory(n_models=5)
    assert stacked["terms"] == {k: 5 * v for k, v in base["terms"].items()}
    with pytest.raises(ConfigError, match="5 models.*train fewer models at once"):
        check_memory(stacked, available=stacked["total"] // 5)


@pytest.mark.parametrize("settings, match", [
    (dict(n_reps=0), "n_reps must be an integer >= 1"),
    (dict(batch_size=True), "batch_size must be an integer"),
    (dict(batch_size=2.5), "batch_size must be an integer"),
    (dict(dtype="int8"), "dtype must be float32 or float64"),
    (dict(angles="imaginary"), "angles must be real or complex"),
    (dict(n_qubits=3), "needs at least 7 qubits"),
    (dict(input_shape=(1, 4, 4)), "too small for 2 3x3 convolutions"),
    (dict(input_shape=(32, 32)), r"input_shape must be \(channels, height, width\)"),
])
def test_bad_settings_are_config_errors(settings, match):
    with pytest.raises(ConfigError, match=match):
        estimate_memory(**settings)


def test_estimate_allocates_nothing():
    # 10 qubits, a billion re-uploads: an estimate, not an allocation
    est = estimate_memory(n_qubits=10, n_reps=10**9, batch_size=10**6)
    assert est["total"] > 2**60
    assert format_bytes(est["total"]).endswith(("EiB", " B"))


def test_format_bytes():
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(int(812.4 * GiB)) == "812.4 GiB"
    assert format_bytes(3 * 2**60) == "3.0 EiB"
    # what a user met: "14001593384960.0 PiB"
    assert format_bytes(14001593384960.0 * 2**50) == "1.6e+28 B"
    assert format_bytes(2**100) == "1.3e+30 B"
    # never more than 1023.9 of a unit, and never 1024.0 from rounding
    assert format_bytes(1023.97 * GiB) == "1.0 TiB"
    for power in range(10, 120, 3):
        for n in (2**power, 2**power * 1000.7):
            text = format_bytes(n)
            number, unit = text.split(" ")
            assert unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "B"), text
            assert float(number) < 1024 or (unit == "B" and "e+" in number), text


def test_build_estimate_counts_the_parameters_of_a_quantum_rung_and_its_twin():
    from qcreep.guard import build_estimate, guard_build

    quantum = {"conv1": "flipped_quanv3x3", "conv2": "flipped_quanv3x3", "head": "data_reuploading"}
    twin = {"conv1": "conv3x3_twin", "conv2": "conv3x3_twin", "head": "dense_twin"}
    est = build_estimate(assignment=quantum, n_reps=10**6, dataset="mnist")
    assert list(est["terms"]) == ["parameters"] and est["total"] == est["terms"]["parameters"]
    assert est["total"] == 4 * est["settings"]["n_params"] and est["settings"]["n_params"] > 16 * 10**9
    # a twin is sized like its quantum rung, so building it needs as much
    assert build_estimate(assignment=twin, n_reps=10**6, dataset="mnist")["total"] == pytest.approx(est["total"],
                                                                                                   rel=1e-3)
    with pytest.raises(ConfigError, match=r"need about 61\.0 GiB \(parameters: 61\.0 GiB 16,383,\d{3},\d{3} "
                                          r"parameters\) but this machine has 16\.0 GiB available; lower --n-reps"):
        guard_build(assignment=quantum, n_reps=10**6, dataset="mnist", available=16 * GiB)
    assert guard_build(assignment=quantum, n_reps=10, dataset="mnist", available=16 * GiB)["total"] < 2**20


def test_available_cpu_memory_is_read(monkeypatch):
    found = available_memory("cpu")
    assert found is None or found > 0
    monkeypatch.setattr(guard, "_meminfo_available", lambda: None)
    monkeypatch.setattr(guard, "_cgroup_available", lambda: None)
    fallback = available_memory("cpu")
    assert fallback is None or fallback > 0
    monkeypatch.setattr(guard, "_sysconf_available", lambda: None)
    assert available_memory("cpu") is None
    assert check_memory(estimate_memory(n_reps=10**6)) is None  # unknown: nothing refused


def test_cgroup_limit_caps_available(monkeypatch):
    monkeypatch.setattr(guard, "_meminfo_available", lambda: 64 * GiB)
    monkeypatch.setattr(guard, "_cgroup_available", lambda: 2 * GiB)
    assert available_memory() == 2 * GiB
    with pytest.raises(ConfigError, match="this machine has 2.0 GiB available"):
        check_memory(estimate_memory(n_reps=10_000))


def test_meminfo_is_parsed(monkeypatch, tmp_path):
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   22334567 kB\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(fake if path == "/proc/meminfo" else path,
                                                                         *a, **k))
    assert guard._meminfo_available() == 22334567 * 1024


def test_cuda_free_memory_is_used(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * GiB, 80 * GiB))
    assert available_memory("cuda:0") == 3 * GiB
    with pytest.raises(ConfigError, match="but cuda:0 has 3.0 GiB available"):
        check_memory(estimate_memory(n_reps=10_000), device="cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert available_memory("cuda") is None


def test_guard_returns_the_estimate_or_refuses():
    config = {"batch_size": 200, "n_reps": 10, "device": "cpu"}
    assert guard.guard(config, available=64 * GiB)["total"] < 2 * GiB
    with pytest.raises(ConfigError):
        guard.guard(config, available=64 * GiB, n_reps=1_000_000)


@pytest.mark.slow
def test_estimate_matches_a_measured_training_step_of_the_head():
    """Peak resident memory of one forward/backward/Adam step of the re-uploading head (7 qubits,
    300 re-uploads, batch 2) in a fresh process, against the estimate for that head alone."""
    code = textwrap.dedent("""
        import json, resource
        import torch
        import torch.nn.functional as F
        from qcreep.layers import DataReUploadingLinear
        torch.set_num_threads(1)
        # one small step first, so that one-time library set-up is not counted
        warm = DataReUploadingLinear(12544, 10, n_reps=1)
        warm_opt = torch.optim.Adam(warm.parameters(), lr=5e-4)
        F.cross_entropy(warm(torch.randn(1, 12544)), torch.zeros(1, dtype=torch.long)).backward()
        warm_opt.step()
        del warm, warm_opt
        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        # The peak RSS of a child starts at its parent's at the fork (a test process that loaded
        # MNIST holds over a GiB), so reset this process's peak first where Linux allows it.
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            peak = lambda: status("VmHWM")
        except OSError:
            peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        base = max(status("VmRSS"), peak())
        head = DataReUploadingLinear(12544, 10, n_reps=300)
        opt = torch.optim.Adam(head.parameters(), lr=5e-4)
        x = torch.randn(2, 12544, requires_grad=True)
        F.cross_entropy(head(x), torch.tensor([1, 2])).backward()
        opt.step()
        print(json.dumps({"bytes": peak() - base}))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout.strip().splitlines()[-1])["bytes"]
    est = estimate_memory(channels=(), input_shape=(1, 1, 12544), n_reps=300, batch_size=2)
    assert est["dominant"] == "re-uploading gates"
    assert 0.6 < measured / est["total"] < 1.5, (format_bytes(measured), format_bytes(est["total"]))
