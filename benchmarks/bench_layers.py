#!/usr/bin/env python
"""Speed and memory of qcreep's quantum layers at the sizes of the paper (arXiv:2409.17583).

    python benchmarks/bench_layers.py [--quick] [--device cpu|cuda] [--solver auto|eigh|expm]
                                      [--repeats N] [--json PATH]

Sizes: batch 200; FlippedQuanv3x3 1->32 on 32x32 then 32->16 on 30x30; DataReUploadingLinear
12544 -> 10 with 7 qubits and 10 re-uploads; the paper's HybridNet at levels 0, 1 and 2.

What is measured (everything on ``--device``; ``--solver`` is the solver of the quantum layers,
``auto`` by default, and the report names the solver it resolves to):

1. the FlippedQuanv3x3 pair against the ``nn.Conv2d`` pair of the same shapes;
2. the DataReUploadingLinear head against one batched ``torch.linalg.eigh`` of the 200 data
   Hamiltonians (the floor of any method that decomposes them), and that batched eigh against the
   same decompositions spread over the CPU threads (``qcreep.sim.parallel.eigh``);
3. the head with each solver, eigh and expm, side by side (what ``auto`` should pick here);
4. a full training step (forward, cross-entropy, backward, Adam step) of the model at every
   replacement level, ``build_model((1, 32, 32), level=L)``, and the ratios to level 0;
5. each fast path against its reference path (``forward_reference``), on a smaller batch;
6. peak memory of one full level-2 training step, in a fresh subprocess (peak RSS growth; on CUDA
   also ``torch.cuda.max_memory_allocated``);
7. a profile of the head's forward + backward (top operators by self time).

Timing method. The machine may be shared and noisy, so contenders are always timed side by side:
each repeat times every contender of a group once (one measurement = the mean of ``inner``
back-to-back calls, ``inner`` chosen at warm-up so a measurement lasts at least ``--min-time``), and
the order is reversed on every other repeat so that neither contender systematically runs first.
On CUDA every measurement is bracketed by ``torch.cuda.synchronize()``. Reported: the median over
repeats of the per-repeat ratio, and the median of each absolute time. Forward passes run with
autograd enabled (as in training), since parameters require grad. Backward is that of
``out.sum()``; gradients are reset to ``None`` inside every timed call.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from qcreep.layers import DataReUploadingLinear, FlippedQuanv3x3  # noqa: E402
from qcreep.models import build_model  # noqa: E402
from qcreep.sim import parallel, resolve_solver  # noqa: E402

BATCH = 200
IMAGE = 32
HEAD_IN = 16 * 28 * 28  # 12544
HEAD_OUT = 10
N_QUBITS = 7
N_REPS = 10
LEARNING_RATE = 5e-4

TARGET_CONV_RATIO = 1.2  # FlippedQuanv3x3 fast / nn.Conv2d, forward + backward
TARGET_HEAD_VS_EIGH = 1.0  # head fast forward+backward / one batched eigh
TARGET_LEVEL2_VS_LEVEL0 = 4.0  # level-2 training step / level-0 training step
TARGET_MEMORY_GB = 3.0  # peak memory growth of one level-2 training step

MEMORY_MARKER = "QCREEP_MEMORY_JSON "


# ----------------------------------------------------------------------------------------------
# timing


class Timer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn, inner: int = 1) -> float:
        """Seconds per call, averaged over ``inner`` back-to-back calls."""
        self.sync()
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        self.sync()
        return (time.perf_counter() - start) / inner


def interleaved(timer: Timer, contenders: dict, repeats: int, min_time: float, max_inner: int = 50,
                budget_s: float | None = None, min_repeats: int = 2):
    """Time contenders side by side.

    ``contenders`` maps a name to ``(callable, n_warmup)``. The last warm-up call also calibrates
    ``inner``. With ``budget_s``, the repeats are cut (to no fewer than ``min_repeats``) when the
    warm-up timings say they would take longer, so that a loaded machine still finishes in time.
    Returns ``(times, inner, repeats)``: per-repeat seconds per call for each name, the number of
    calls per measurement, and the repeats actually run.
    """
    names = list(contenders)
    inner, per_repeat = {}, 0.0
    for name in names:
        fn, n_warmup = contenders[name]
        elapsed = None
        for _ in range(max(1, n_warmup)):
            elapsed = timer.time(fn, 1)
        inner[name] = max(1, min(max_inner, math.ceil(min_time / max(elapsed, 1e-9))))
        per_repeat += inner[name] * elapsed
    if budget_s is not None and repeats * per_repeat > budget_s:
        cut = max(min_repeats, int(budget_s // per_repeat))
        if cut < repeats:
            print(f"    (repeats cut from {repeats} to {cut}: ~{per_repeat:.1f} s per repeat at warm-up, "
                  f"budget {budget_s:g} s)")
            repeats = cut
    gc.collect()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(timer.time(contenders[name][0], inner[name]))
    return times, inner, repeats


def median(values) -> float:
    return float(statistics.median(values))


def ratio_stats(numerator, denominator, scale: float = 1.0) -> dict:
    """Median / min / max over repeats of ``scale * numerator[r] / denominator[r]``."""
    per = [scale * a / b for a, b in zip(numerator, denominator)]
    return {"median": median(per), "min": float(min(per)), "max": float(max(per)), "per_repeat": per}


def time_stats(values) -> dict:
    return {"median_s": median(values), "min_s": float(min(values)), "max_s": float(max(values)),
            "per_repeat_s": list(values)}


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:9.2f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def images(batch: int, device: torch.device) -> torch.Tensor:
    """Random 1x32x32 images in [-1, 1], like the paper's normalised MNIST."""
    return torch.rand(batch, 1, IMAGE, IMAGE, device=device) * 2 - 1


SOLVER = "auto"  # the solver of the quantum layers (--solver)


def make_quanv_pair(device, solver=None):
    solver = solver or SOLVER
    return (FlippedQuanv3x3(1, 32, solver=solver, device=device),
            FlippedQuanv3x3(32, 16, solver=solver, device=device))


def make_head(device, solver=None):
    return DataReUploadingLinear(HEAD_IN, HEAD_OUT, n_qubits=N_QUBITS, n_reps=N_REPS, solver=solver or SOLVER,
                                 device=device)


def head_features(batch: int, device: torch.device) -> torch.Tensor:
    """Head inputs as in the level-2 network: the output of the two quanvolutions, flattened."""
    q1, q2 = make_quanv_pair(device)
    with torch.no_grad():
        return q2(q1(images(batch, device))).flatten(1)


def forward_backward(fn, inputs, params):
    """A callable: reset grads, ``fn(*inputs).sum().backward()``."""
    params = list(params)
    grad_inputs = [t for t in inputs if t.requires_grad]

    def step():
        for p in params:
            p.grad = None
        for t in grad_inputs:
            t.grad = None
        fn(*inputs).sum().backward()

    return step


# ----------------------------------------------------------------------------------------------
# 1. FlippedQuanv3x3 vs nn.Conv2d


def bench_conv(device, timer, repeats, min_time, budget):
    print(f"\n[1] FlippedQuanv3x3 fast path (solver {resolve_solver(SOLVER, device)}) vs nn.Conv2d  "
          f"(1->32 on 32x32 then 32->16 on 30x30, batch {BATCH}; input no grad, parameters grad)")
    torch.manual_seed(0)
    q1, q2 = make_quanv_pair(device)
    c1, c2 = nn.Conv2d(1, 32, 3, device=device), nn.Conv2d(32, 16, 3, device=device)
    x = images(BATCH, device)

    def quanv(t):
        return q2(q1(t))

    def conv(t):
        return c2(c1(t))

    contenders = {
        "quanv_fwd": (lambda: quanv(x), 3),
        "conv_fwd": (lambda: conv(x), 3),
        "quanv_fwd_bwd": (forward_backward(quanv, [x], [*q1.parameters(), *q2.parameters()]), 3),
        "conv_fwd_bwd": (forward_backward(conv, [x], [*c1.parameters(), *c2.parameters()]), 3),
    }
    times, inner, repeats = interleaved(timer, contenders, repeats, min_time, budget_s=budget, min_repeats=3)
    res = {"times": {k: time_stats(v) for k, v in times.items()}, "inner": inner, "repeats": repeats,
           "ratio_fwd": ratio_stats(times["quanv_fwd"], times["conv_fwd"]),
           "ratio_fwd_bwd": ratio_stats(times["quanv_fwd_bwd"], times["conv_fwd_bwd"]),
           "target": TARGET_CONV_RATIO}
    res["pass_fwd"] = res["ratio_fwd"]["median"] <= TARGET_CONV_RATIO
    res["pass_fwd_bwd"] = res["ratio_fwd_bwd"]["median"] <= TARGET_CONV_RATIO
    for kind, label in (("fwd", "forward"), ("fwd_bwd", "forward+backward")):
        r = res[f"ratio_{kind}"]
        print(f"    {label:17s} quanv {ms(res['times'][f'quanv_{kind}']['median_s'])}   "
              f"conv {ms(res['times'][f'conv_{kind}']['median_s'])}   "
              f"ratio {r['median']:.3f}x [{r['min']:.2f}-{r['max']:.2f}]   "
              f"target <= {TARGET_CONV_RATIO}x  {verdict(res[f'pass_{kind}'])}")
    return res


# ----------------------------------------------------------------------------------------------
# 2. DataReUploadingLinear vs one batched eigh


def bench_head_vs_eigh(device, timer, repeats, min_time, budget):
    print(f"\n[2] DataReUploadingLinear({HEAD_IN}, {HEAD_OUT}, n_qubits={N_QUBITS}, n_reps={N_REPS}), solver "
          f"{SOLVER!r} -> {resolve_solver(SOLVER, device)}, vs one batched torch.linalg.eigh of the {BATCH} data "
          "Hamiltonians (input requires grad); and that eigh spread over the CPU threads")
    torch.manual_seed(1)
    head = make_head(device)
    feats = head_features(BATCH, device).requires_grad_(True)
    h = head.data_hamiltonians(feats.detach())  # built outside the timed region

    contenders = {
        "head_fwd_bwd": (forward_backward(head, [feats], head.parameters()), 2),
        "head_fwd": (lambda: head(feats), 2),
        "eigh": (lambda: torch.linalg.eigh(h), 2),
        "eigh_threaded": (lambda: parallel.eigh(h), 2),
    }
    times, inner, repeats = interleaved(timer, contenders, repeats, min_time, budget_s=budget, min_repeats=3)
    res = {"times": {k: time_stats(v) for k, v in times.items()}, "inner": inner, "repeats": repeats,
           "solver": resolve_solver(SOLVER, device),
           "ratio_fwd_bwd_vs_eigh": ratio_stats(times["head_fwd_bwd"], times["eigh"]),
           "ratio_fwd_vs_eigh": ratio_stats(times["head_fwd"], times["eigh"]),
           "ratio_threaded_vs_eigh": ratio_stats(times["eigh_threaded"], times["eigh"]),
           "ratio_fwd_bwd_vs_threaded_eigh": ratio_stats(times["head_fwd_bwd"], times["eigh_threaded"]),
           "target": TARGET_HEAD_VS_EIGH}
    res["pass"] = res["ratio_fwd_bwd_vs_eigh"]["median"] <= TARGET_HEAD_VS_EIGH
    t = res["times"]
    print(f"    eigh ({BATCH} x {2**N_QUBITS}x{2**N_QUBITS}), one batched call   {ms(t['eigh']['median_s'])}")
    r = res["ratio_threaded_vs_eigh"]
    print(f"    the same, spread over {torch.get_num_threads()} threads    {ms(t['eigh_threaded']['median_s'])}   "
          f"ratio to eigh {r['median']:.3f}x [{r['min']:.2f}-{r['max']:.2f}]")
    r = res["ratio_fwd_bwd_vs_eigh"]
    print(f"    head forward+backward {ms(t['head_fwd_bwd']['median_s'])}   ratio to eigh {r['median']:.3f}x "
          f"[{r['min']:.2f}-{r['max']:.2f}]   target <= {TARGET_HEAD_VS_EIGH}x  {verdict(res['pass'])}")
    r = res["ratio_fwd_vs_eigh"]
    print(f"    head forward only     {ms(t['head_fwd']['median_s'])}   ratio to eigh {r['median']:.3f}x "
          f"[{r['min']:.2f}-{r['max']:.2f}]   (no target)")
    return res


# ----------------------------------------------------------------------------------------------
# 3. the head with each solver


def bench_solvers(device, timer, repeats, min_time, budget):
    print(f"\n[3] The head's forward+backward with each solver, side by side (what 'auto' should pick on "
          f"{device.type}; it picks {resolve_solver('auto', device)!r})")
    torch.manual_seed(5)
    heads = {solver: make_head(device, solver) for solver in ("eigh", "expm")}
    heads["expm"].load_state_dict(heads["eigh"].state_dict())
    feats = head_features(BATCH, device).requires_grad_(True)
    with torch.no_grad():
        diff = float((heads["eigh"](feats) - heads["expm"](feats)).abs().max())
    contenders = {f"head_{solver}": (forward_backward(head, [feats], head.parameters()), 1)
                  for solver, head in heads.items()}
    times, inner, repeats = interleaved(timer, contenders, repeats, min_time, budget_s=budget, min_repeats=2)
    res = {"times": {k: time_stats(v) for k, v in times.items()}, "inner": inner, "repeats": repeats,
           "ratio_expm_vs_eigh": ratio_stats(times["head_expm"], times["head_eigh"]),
           "auto": resolve_solver("auto", device), "max_abs_diff": diff}
    faster = "expm" if res["ratio_expm_vs_eigh"]["median"] < 1 else "eigh"
    res["faster"] = faster
    r = res["ratio_expm_vs_eigh"]
    print(f"    eigh {ms(res['times']['head_eigh']['median_s'])}   expm {ms(res['times']['head_expm']['median_s'])}   "
          f"expm / eigh {r['median']:.3f}x [{r['min']:.2f}-{r['max']:.2f}]   faster here: {faster}; auto picks "
          f"{res['auto']} ({'agrees' if faster == res['auto'] else 'DISAGREES'}); max |eigh - expm| output {diff:.1e}")
    return res


# ----------------------------------------------------------------------------------------------
# 4. training steps of every level


def _train_step(model, optimizer, x, y):
    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def bench_levels(device, timer, repeats, min_time, budget):
    print(f"\n[4] One training step (forward, cross-entropy, backward, Adam step) of build_model((1, 32, 32), "
          f"level=L), batch {BATCH}, solver {SOLVER!r} -> {resolve_solver(SOLVER, device)}")
    x = images(BATCH, device)
    y = torch.randint(0, HEAD_OUT, (BATCH,), device=device)
    contenders = {}
    for level in (0, 1, 2):
        torch.manual_seed(10 + level)
        model = build_model((1, IMAGE, IMAGE), level=level, solver=SOLVER, device=device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        contenders[f"level{level}"] = (_train_step(model, optimizer, x, y), 2)
    times, inner, repeats = interleaved(timer, contenders, repeats, min_time, budget_s=budget, min_repeats=3)
    res = {"times": {k: time_stats(v) for k, v in times.items()}, "inner": inner, "repeats": repeats,
           "solver": resolve_solver(SOLVER, device),
           "ratio_level1_vs_level0": ratio_stats(times["level1"], times["level0"]),
           "ratio_level2_vs_level0": ratio_stats(times["level2"], times["level0"]),
           "target": TARGET_LEVEL2_VS_LEVEL0}
    res["pass"] = res["ratio_level2_vs_level0"]["median"] <= TARGET_LEVEL2_VS_LEVEL0
    for level in (0, 1, 2):
        line = f"    level {level} step {ms(res['times'][f'level{level}']['median_s'])}"
        if level:
            r = res[f"ratio_level{level}_vs_level0"]
            line += f"   ratio to level 0 {r['median']:.3f}x [{r['min']:.2f}-{r['max']:.2f}]"
            if level == 2:
                line += f"   target <= {TARGET_LEVEL2_VS_LEVEL0}x  {verdict(res['pass'])}"
        print(line)
    return res


# ----------------------------------------------------------------------------------------------
# 5. fast vs reference paths


def bench_reference(device, timer, repeats, ref_batch, min_time, budget):
    scale = BATCH / ref_batch
    print(f"\n[5] Fast path vs reference path (forward_reference). The reference paths are timed on a batch "
          f"of {ref_batch} and scaled per sample (x{scale:g}) to batch {BATCH}; the fast path is timed at "
          f"batch {BATCH} and also at batch {ref_batch} (same-batch speed-up). Up to {repeats} repeats.")
    res = {"ref_batch": ref_batch, "batch": BATCH, "scale": scale, "repeats": repeats}

    # -- quanvolution pair
    torch.manual_seed(2)
    q1, q2 = make_quanv_pair(device)
    q_params = [*q1.parameters(), *q2.parameters()]
    x_big, x_small = images(BATCH, device), images(ref_batch, device)

    def q_fast(t):
        return q2(q1(t))

    def q_ref(t):
        return q2.forward_reference(q1.forward_reference(t))

    with torch.no_grad():
        q_diff = float((q_fast(x_small) - q_ref(x_small)).abs().max())
        q_scale = float(q_fast(x_small).abs().max())

    # -- head
    torch.manual_seed(3)
    head = make_head(device)
    f_big = head_features(BATCH, device).requires_grad_(True)
    f_small = head_features(ref_batch, device).requires_grad_(True)
    with torch.no_grad():
        h_diff = float((head(f_small) - head.forward_reference(f_small)).abs().max())

    groups = {
        "quanv": (q_fast, q_ref, x_big, x_small, q_params),
        "head": (head, head.forward_reference, f_big, f_small, list(head.parameters())),
    }
    for name, (fast, ref, big, small, params) in groups.items():
        contenders = {
            "fast_fwd_full": (lambda f=fast, x=big: f(x), 2),
            "fast_fwd_small": (lambda f=fast, x=small: f(x), 2),
            "ref_fwd_small": (lambda f=ref, x=small: f(x), 1),
            "fast_fwd_bwd_full": (forward_backward(fast, [big], params), 2),
            "fast_fwd_bwd_small": (forward_backward(fast, [small], params), 2),
            "ref_fwd_bwd_small": (forward_backward(ref, [small], params), 1),
        }
        t0 = time.perf_counter()
        times, inner, n_rep = interleaved(timer, contenders, repeats, min_time, budget_s=budget, min_repeats=2)
        g = {"times": {k: time_stats(v) for k, v in times.items()}, "inner": inner, "repeats": n_rep,
             "wall_s": time.perf_counter() - t0}
        for kind in ("fwd", "fwd_bwd"):
            g[f"speedup_{kind}_scaled"] = ratio_stats(times[f"ref_{kind}_small"], times[f"fast_{kind}_full"], scale)
            g[f"speedup_{kind}_same_batch"] = ratio_stats(times[f"ref_{kind}_small"], times[f"fast_{kind}_small"])
            g[f"ref_{kind}_scaled_to_batch_s"] = scale * g["times"][f"ref_{kind}_small"]["median_s"]
        g["max_abs_diff_fast_vs_ref"] = q_diff if name == "quanv" else h_diff
        if name == "quanv":
            g["max_abs_output"] = q_scale
        res[name] = g

    labels = {"quanv": "FlippedQuanv3x3 1->32->16", "head": "DataReUploadingLinear head"}
    for name, g in ((k, res[k]) for k in groups):
        print(f"    {labels[name]}  ({g['repeats']} repeats; max |fast - reference| at batch {ref_batch}: "
              f"{g['max_abs_diff_fast_vs_ref']:.2e})")
        for kind, label in (("fwd", "forward"), ("fwd_bwd", "forward+backward")):
            t = g["times"]
            s, sb = g[f"speedup_{kind}_scaled"], g[f"speedup_{kind}_same_batch"]
            print(f"      {label:17s} reference {ms(t[f'ref_{kind}_small']['median_s'])} @ {ref_batch} "
                  f"(-> {g[f'ref_{kind}_scaled_to_batch_s']:8.2f} s @ {BATCH}, scaled)   "
                  f"fast {ms(t[f'fast_{kind}_full']['median_s'])} @ {BATCH}, "
                  f"{ms(t[f'fast_{kind}_small']['median_s'])} @ {ref_batch}")
            print(f"      {'':17s} speed-up {s['median']:8.1f}x at batch {BATCH} (reference scaled per sample), "
                  f"{sb['median']:8.1f}x at the same batch {ref_batch}")
    return res


# ----------------------------------------------------------------------------------------------
# 6. memory of a level-2 training step (fresh subprocess)


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _proc_status_mib(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc/self/status (Linux), in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_child(device_name: str) -> None:
    """Run inside a fresh interpreter: two level-2 training steps, print the numbers as JSON."""
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build_model((1, IMAGE, IMAGE), level=2, solver=SOLVER, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    x = images(BATCH, device)
    y = torch.randint(0, HEAD_OUT, (BATCH,), device=device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    before = _peak_rss_mib()
    hwm_before = _proc_status_mib("VmHWM")
    result = {"device": str(device), "batch": BATCH, "threads": torch.get_num_threads(),
              "solver": resolve_solver(SOLVER, device),
              "n_parameters": sum(p.numel() for p in model.parameters()),
              "peak_rss_before_mib": before, "current_rss_before_mib": _proc_status_mib("VmRSS"),
              "vmhwm_before_mib": hwm_before, "steps": []}
    for _ in range(2):  # step 1 also creates the Adam state; step 2 is the steady state
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        result["steps"].append({"seconds": time.perf_counter() - start, "loss": float(loss),
                                "peak_rss_mib": _peak_rss_mib()})
    result["peak_rss_after_mib"] = _peak_rss_mib()
    result["peak_rss_growth_mib"] = result["peak_rss_after_mib"] - before
    hwm_after = _proc_status_mib("VmHWM")
    if hwm_before is not None and hwm_after is not None:
        # VmHWM belongs to this process's own address space; ru_maxrss can carry a peak inherited
        # from the launching process (see bench_memory), so the two are compared as a check.
        result["vmhwm_after_mib"] = hwm_after
        result["vmhwm_growth_mib"] = hwm_after - hwm_before
        result["ru_maxrss_inherited"] = before > hwm_before + 64
    if cuda:
        result["cuda_base_allocated_mib"] = cuda_base / 2**20
        result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["cuda_growth_mib"] = (torch.cuda.max_memory_allocated() - cuda_base) / 2**20
    print(MEMORY_MARKER + json.dumps(result), flush=True)


def bench_memory(device_name: str):
    print(f"\n[6] Peak memory of one level-2 training step at batch {BATCH} (build_model((1, 32, 32), level=2, "
          f"solver={SOLVER!r}); cross-entropy; Adam), fresh subprocess, ru_maxrss before/after")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_memory-child", "--device", device_name,
           "--solver", SOLVER]
    # On Linux ru_maxrss survives execve: a child spawned straight from this (large) process starts
    # with this process's peak RSS as its own (Python's subprocess uses vfork, so it is the peak,
    # not even the current RSS), which would hide any growth below it. A tiny /bin/sh in between
    # forks the interpreter from its own few-MiB address space, so the child's ru_maxrss starts clean.
    # ("; exit $?" stops the shell from exec-ing the command in place of itself.)
    if os.name == "posix" and os.path.exists("/bin/sh"):
        cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MEMORY_MARKER)]
    if proc.returncode != 0 or not lines:
        print(f"    memory subprocess failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        return {"error": proc.stderr[-2000:], "returncode": proc.returncode, "pass": False}
    res = json.loads(lines[-1][len(MEMORY_MARKER):])
    if res.get("ru_maxrss_inherited"):
        # should not happen with the /bin/sh launch; fall back to the child's own high-water mark
        print("    note: ru_maxrss carried a peak inherited from the launcher; using VmHWM growth instead")
        res["peak_rss_growth_mib"] = res["vmhwm_growth_mib"]
    growth_gb = res["peak_rss_growth_mib"] / 1024
    res["target_gb"] = TARGET_MEMORY_GB
    res["pass"] = growth_gb < TARGET_MEMORY_GB
    if "cuda_growth_mib" in res:
        res["pass"] = res["pass"] and res["cuda_growth_mib"] / 1024 < TARGET_MEMORY_GB
    print(f"    peak RSS before the step {res['peak_rss_before_mib']:8.1f} MiB (imports, model, data)")
    for i, step in enumerate(res["steps"], 1):
        print(f"    after step {i}: peak RSS {step['peak_rss_mib']:8.1f} MiB   "
              f"({step['seconds']:.2f} s, loss {step['loss']:.3f})")
    print(f"    peak RSS growth {res['peak_rss_growth_mib']:8.1f} MiB = {growth_gb:.3f} GB   "
          f"target < {TARGET_MEMORY_GB} GB  {verdict(growth_gb < TARGET_MEMORY_GB)}")
    if "vmhwm_growth_mib" in res:
        print(f"    cross-check /proc VmHWM: {res['vmhwm_before_mib']:.1f} -> {res['vmhwm_after_mib']:.1f} MiB "
              f"(growth {res['vmhwm_growth_mib']:.1f} MiB)")
    if "cuda_max_allocated_mib" in res:
        print(f"    CUDA max_memory_allocated {res['cuda_max_allocated_mib']:.1f} MiB "
              f"(growth over model+data {res['cuda_growth_mib']:.1f} MiB)")
    return res


# ----------------------------------------------------------------------------------------------
# 7. profile of the head


def profile_head(device, timer, top: int = 8):
    print(f"\n[7] Profile of one DataReUploadingLinear forward+backward at batch {BATCH}, solver "
          f"{resolve_solver(SOLVER, device)} (torch.profiler, top {top} ops by self {'CUDA' if timer.cuda else 'CPU'} "
          "time" + ("" if timer.cuda else "; on one thread, so that every operator runs in the profiled thread: "
                    "where the work goes, not the wall time") + ")")
    from torch.profiler import ProfilerActivity, profile, record_function

    torch.manual_seed(4)
    head = make_head(device)
    feats = head_features(BATCH, device).requires_grad_(True)

    def step():
        head.zero_grad(set_to_none=True)
        feats.grad = None
        with record_function("head.forward"):
            out = head(feats).sum()
        with record_function("head.backward"):
            out.backward()

    threads = torch.get_num_threads()
    if not timer.cuda:
        torch.set_num_threads(1)  # the chunks then run in this thread, where the profiler sees them
    try:
        for _ in range(2):
            step()
        timer.sync()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if timer.cuda else [])
        with profile(activities=activities) as prof:
            step()
            timer.sync()
    finally:
        torch.set_num_threads(threads)
    events = prof.key_averages()
    attr = "self_device_time_total" if timer.cuda else "self_cpu_time_total"
    unit = "CUDA" if timer.cuda else "CPU"
    total_self = sum(getattr(e, attr, 0.0) for e in events) or 1.0
    rows = sorted(events, key=lambda e: getattr(e, attr, 0.0), reverse=True)[:top]
    res = {"unit": unit, "total_self_ms": total_self / 1e3, "top": []}
    for label in ("head.forward", "head.backward"):
        match = [e for e in events if e.key == label]
        if match:
            res[f"{label}_cpu_total_ms"] = match[0].cpu_time_total / 1e3
    print(f"    {'op':44s} {'calls':>6s} {'self ' + unit:>11s} {'share':>7s}")
    for e in rows:
        value = getattr(e, attr, 0.0)
        share = 100 * value / total_self
        res["top"].append({"op": e.key, "calls": e.count, "self_ms": value / 1e3, "share_pct": share})
        print(f"    {e.key[:44]:44s} {e.count:6d} {value / 1e3:8.2f} ms {share:6.1f}%")
    print(f"    total self {unit} {total_self / 1e3:.1f} ms; forward "
          f"{res.get('head.forward_cpu_total_ms', float('nan')):.1f} ms, backward "
          f"{res.get('head.backward_cpu_total_ms', float('nan')):.1f} ms (CPU totals incl. children, "
          "profiler overhead included)")
    return res


# ----------------------------------------------------------------------------------------------
# environment, summary, main


def _loadavg():
    try:
        return list(os.getloadavg())
    except (OSError, AttributeError):
        return None


def environment(device) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = None
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    env = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
           "cpu_model": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "torch_interop_threads": torch.get_num_interop_threads(), "device": str(device),
           "git_commit": commit, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if device.type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(device)
    return env


def summary(results: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    c = results.get("conv")
    if c:
        rows.append((f"1 FlippedQuanv3x3 pair / nn.Conv2d pair ({c['repeats']} repeats)", "", "", ""))
        rows.append(("  ratio forward", f"{c['ratio_fwd']['median']:.3f}x", "", ""))
        rows.append(("  ratio forward+backward", f"{c['ratio_fwd_bwd']['median']:.3f}x",
                     f"<= {TARGET_CONV_RATIO}x", verdict(c["pass_fwd_bwd"])))
        for k, label in (("quanv_fwd_bwd", "quanv fwd+bwd"), ("conv_fwd_bwd", "conv2d fwd+bwd")):
            rows.append((f"    {label} (median)", ms(c["times"][k]["median_s"]).strip(), "", ""))
    h = results.get("head_vs_eigh")
    if h:
        rows.append((f"2 head ({h['solver']}) / one batched eigh ({h['repeats']} repeats)", "", "", ""))
        rows.append(("  ratio head fwd+bwd / eigh", f"{h['ratio_fwd_bwd_vs_eigh']['median']:.3f}x",
                     f"<= {TARGET_HEAD_VS_EIGH}x", verdict(h["pass"])))
        rows.append(("  ratio head forward / eigh", f"{h['ratio_fwd_vs_eigh']['median']:.3f}x", "", ""))
        rows.append(("  ratio threaded eigh / batched eigh", f"{h['ratio_threaded_vs_eigh']['median']:.3f}x", "", ""))
        rows.append(("  ratio head fwd+bwd / threaded eigh",
                     f"{h['ratio_fwd_bwd_vs_threaded_eigh']['median']:.3f}x", "", ""))
        for k, label in (("head_fwd_bwd", "head fwd+bwd"), ("head_fwd", "head forward"), ("eigh", "batched eigh"),
                         ("eigh_threaded", "threaded eigh")):
            rows.append((f"    {label} (median)", ms(h["times"][k]["median_s"]).strip(), "", ""))
    v = results.get("solvers")
    if v:
        rows.append((f"3 head fwd+bwd, expm / eigh ({v['repeats']} repeats)",
                     f"{v['ratio_expm_vs_eigh']['median']:.3f}x", "", ""))
        rows.append((f"  faster here: {v['faster']}; auto picks", v["auto"], "",
                     "agrees" if v["faster"] == v["auto"] else "DISAGREES"))
    lv = results.get("levels")
    if lv:
        rows.append((f"4 training step, solver {lv['solver']} ({lv['repeats']} repeats)", "", "", ""))
        rows.append(("  ratio level 2 / level 0", f"{lv['ratio_level2_vs_level0']['median']:.3f}x",
                     f"<= {TARGET_LEVEL2_VS_LEVEL0}x", verdict(lv["pass"])))
        rows.append(("  ratio level 1 / level 0", f"{lv['ratio_level1_vs_level0']['median']:.3f}x", "", ""))
        for level in (0, 1, 2):
            rows.append((f"    level {level} step (median)", ms(lv["times"][f"level{level}"]["median_s"]).strip(),
                         "", ""))
    r = results.get("reference")
    if r:
        for name, label in (("quanv", "quanv"), ("head", "head")):
            g = r[name]
            rows.append((f"5 {label}: reference / fast, fwd+bwd, same batch {r['ref_batch']} ({g['repeats']} repeats)",
                         f"{g['speedup_fwd_bwd_same_batch']['median']:.1f}x", "", ""))
    m = results.get("memory")
    if m:
        if "peak_rss_growth_mib" in m:
            rows.append(("6 level-2 training step, peak RSS growth", f"{m['peak_rss_growth_mib']:.0f} MiB",
                         f"< {TARGET_MEMORY_GB} GB", verdict(m["pass"])))
            rows.append(("  peak RSS (absolute)", f"{m['peak_rss_after_mib']:.0f} MiB", "", ""))
            if "cuda_max_allocated_mib" in m:
                rows.append(("  CUDA max_memory_allocated", f"{m['cuda_max_allocated_mib']:.0f} MiB", "", ""))
        else:
            rows.append(("6 level-2 step memory", "error", f"< {TARGET_MEMORY_GB} GB", "FAIL"))
    p = results.get("profile")
    if p and p["top"]:
        rows.append((f"7 head fwd+bwd profile, share of self {p['unit']}", "", "", ""))
        for i, e in enumerate(p["top"][:3]):
            rows.append((f"  #{i + 1} {e['op'][:36]}", f"{e['share_pct']:.1f}%", "", ""))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller reference batch (< ~1 min)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats of items 1 and 2 (default 15, 5 with --quick); the reference "
                             "comparisons use about a third of it (at least 2)")
    parser.add_argument("--ref-batch", type=int, default=None,
                        help="batch of the reference-path timings (default 20, 5 with --quick)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="minimum seconds per measurement, sets the calls averaged (default 0.2, 0.1 quick)")
    parser.add_argument("--no-budget", action="store_true",
                        help="never cut repeats to keep a slow (loaded) machine within the time budget")
    parser.add_argument("--json", type=Path, default=None, help="write all numbers to this JSON file")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--solver", default="auto", choices=["auto", "eigh", "expm"],
                        help="solver of the quantum layers' unitaries (default auto: eigh on CPU, expm on GPUs)")
    parser.add_argument("--_memory-child", dest="memory_child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global SOLVER
    SOLVER = args.solver

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    if args.memory_child:
        memory_child(args.device)
        return 0

    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 15)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    ref_repeats = max(2, math.ceil(repeats / 3)) if args.repeats is not None else (2 if args.quick else 5)
    ref_batch = args.ref_batch or (5 if args.quick else 20)
    if not 1 <= ref_batch <= BATCH:
        parser.error(f"--ref-batch must be between 1 and {BATCH}")
    min_time = args.min_time if args.min_time is not None else (0.1 if args.quick else 0.2)
    # seconds of timed repeats per group (items 1-4, 5-quanv, 5-head); an explicit --repeats is obeyed
    budget = None if (args.no_budget or args.repeats is not None) else (6.0 if args.quick else 35.0)

    device = torch.device(args.device)
    timer = Timer(device)
    env = environment(device)
    print(f"qcreep layer benchmarks  (torch {env['torch']}, python {env['python']}, {env['platform']})")
    print(f"cpu: {env['cpu_model']} x{env['cpu_count']}   torch threads: {env['torch_threads']} "
          f"(interop {env['torch_interop_threads']}, left at default)   device: {device}"
          + (f" ({env['cuda_device']})" if "cuda_device" in env else ""))
    print(f"solver: {SOLVER!r} -> {resolve_solver(SOLVER, device)} on {device.type} "
          f"('auto' picks {resolve_solver('auto', device)!r} here)")
    print(f"repeats: {repeats} (reference comparisons: {ref_repeats}), reference batch {ref_batch}, "
          f"min {min_time:g} s per measurement, contenders interleaved (order reversed every other repeat); "
          "ratios are medians of per-repeat ratios [min-max]"
          + (f"; repeats cut if a group would exceed {budget:g} s" if budget else ""))
    load_start = _loadavg()
    if load_start is not None:
        print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} "
              f"(on {env['cpu_count']} CPUs)")
        if load_start[0] > 0.75 * (os.cpu_count() or 1):
            print("WARNING: the machine is busy with other work; absolute times and ratios will be noisy")

    wall = time.perf_counter()
    results = {"environment": env,
               "settings": {"quick": args.quick, "repeats": repeats, "ref_repeats": ref_repeats,
                            "ref_batch": ref_batch, "min_time_s": min_time, "budget_s_per_group": budget,
                            "batch": BATCH, "solver": SOLVER, "solver_resolved": resolve_solver(SOLVER, device),
                            "auto_picks": resolve_solver("auto", device),
                            "head": {"in": HEAD_IN, "out": HEAD_OUT, "n_qubits": N_QUBITS, "n_reps": N_REPS}}}
    results["conv"] = bench_conv(device, timer, repeats, min_time, budget)
    results["head_vs_eigh"] = bench_head_vs_eigh(device, timer, repeats, min_time, budget)
    results["solvers"] = bench_solvers(device, timer, max(2, repeats // 2), min_time, budget)
    results["levels"] = bench_levels(device, timer, repeats, min_time, budget)
    results["reference"] = bench_reference(device, timer, ref_repeats, ref_batch, min_time, budget)
    results["memory"] = bench_memory(args.device)
    results["profile"] = profile_head(device, timer)
    results["wall_s"] = time.perf_counter() - wall
    load_end = _loadavg()
    env["loadavg_start"], env["loadavg_end"] = load_start, load_end

    rows = summary(results)
    width = max(len(r[0]) for r in rows)
    print(f"\nSUMMARY  (batch {BATCH}; {env['cpu_model']}, {env['torch_threads']} threads, torch {env['torch']}, "
          f"device {device}" + (f" {env['cuda_device']}" if "cuda_device" in env else "")
          + f", solver {SOLVER!r} -> {resolve_solver(SOLVER, device)})")
    print(f"  {'measure':{width}s}  {'value':>12s}  {'target':>9s}  result")
    print(f"  {'-' * width}  {'-' * 12}  {'-' * 9}  ------")
    for name, value, target, status in rows:
        print(f"  {name:{width}s}  {value:>12s}  {target:>9s}  {status}")
    print(f"  * reference timed at batch {ref_batch} and scaled per sample to batch {BATCH}")
    loads = "" if load_end is None else (f"; load average start {load_start[0]:.2f}, end {load_end[0]:.2f} "
                                          f"on {env['cpu_count']} CPUs")
    print(f"  total wall time {results['wall_s']:.1f} s{loads}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
