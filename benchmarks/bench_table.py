#!/usr/bin/env python
"""Wall time of the paper's whole table on the device at hand, measured or projected.

    python benchmarks/bench_table.py [--device cpu|cuda] [--steps N] [--seed-parallel K] [--json PATH]

The published protocol is 40 runs of 50 epochs at batch 200 on 60,000 training and 10,000 test
images per dataset: MNIST and FashionMNIST, levels 0 and 1, level 2 with real and with complex
angles, 5 seeds each (2 datasets x 4 rungs x 5 seeds). The two datasets have the same shapes, so
one dataset's rungs are timed and counted twice.

For each rung this script times ``--steps`` training steps (forward, cross-entropy, backward,
Adam) at batch 200 after a warm-up, on random data of the right shape (the arithmetic does not
depend on the pixel values), with ``K`` seeds stacked into one model where ``--seed-parallel K``
(default: 5 on a GPU, 1 on a CPU), and times the evaluation of the 10,000 test images in batches
of 1000. The table's time is then projected:

    per rung: ceil(5 / K) x 50 epochs x (300 steps x step time + K x evaluation time)

and the total is the sum over rungs, times 2 datasets. The output says that it is a projection from
measured steps; the command that measures the table outright is
``python benchmarks/reproduce_paper.py --device DEVICE`` (its records hold every epoch's time).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from qcreep.config import TrainConfig  # noqa: E402
from qcreep.stacked import StackedModel  # noqa: E402
from qcreep.sweep import default_seed_parallel  # noqa: E402
from qcreep.train import build_run_model, solver_used  # noqa: E402

RUNGS = [("level 0", 0, "real"), ("level 1", 1, "real"), ("level 2", 2, "real"), ("level 2 complex", 2, "complex")]
SEEDS, EPOCHS, TRAIN, TEST, BATCH, EVAL_BATCH, DATASETS = 5, 50, 60_000, 10_000, 200, 1000, 2


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rung(level: int, angles: str, device: torch.device, k: int, steps: int, solver: str) -> dict:
    configs = [TrainConfig(dataset="mnist", level=level, angles=angles, seed=s, device=str(device), solver=solver,
                           output_scale="none", bias_init="normal", val_fraction=0.0).validate() for s in range(k)]
    models = [build_run_model(c) for c in configs]
    solver_name = solver_used(models[0])
    x = torch.randn(k, BATCH, 1, 32, 32, device=device)
    y = torch.randint(0, 10, (k, BATCH), device=device)
    if k > 1:
        stacked = StackedModel(models)
        params = list(stacked.params.values())

        def forward():
            return stacked(x)
    else:
        model = models[0]
        params = list(model.parameters())

        def forward():
            return model(x[0]).unsqueeze(0)
    optimizer = torch.optim.Adam(params, lr=5e-4)

    def step():
        out = forward()
        loss = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(k, -1).mean(1).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    step_time = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    # evaluation of the test images by one lone model, in batches of 1000 (timed on 2 batches)
    lone = models[0].eval()
    xe = torch.randn(EVAL_BATCH, 1, 32, 32, device=device)
    with torch.no_grad():
        lone(xe)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(2):
            lone(xe)
        sync(device)
    eval_time = (time.perf_counter() - t0) / 2 * (TEST // EVAL_BATCH)
    steps_per_epoch = math.ceil(TRAIN / BATCH)
    groups = math.ceil(SEEDS / k)
    projected = groups * EPOCHS * (steps_per_epoch * step_time + k * eval_time)
    return {"step_seconds": step_time, "steps_per_second_per_seed": k / step_time, "eval_seconds": eval_time,
            "projected_seconds": projected, "peak_gpu_bytes": peak, "solver": solver_name}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed-parallel", type=int, default=None)
    parser.add_argument("--solver", default="auto", choices=["auto", "eigh", "expm"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    k = args.seed_parallel or default_seed_parallel(args.device, SEEDS)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"seeds stacked K = {k}, {args.steps} timed steps per rung")
    results = {}
    total = 0.0
    for label, level, angles in RUNGS:
        r = time_rung(level, angles, device, k, args.steps, args.solver)
        results[label] = r
        total += DATASETS * r["projected_seconds"]
        peak = f", peak GPU {r['peak_gpu_bytes'] / 2**30:.2f} GiB" if r["peak_gpu_bytes"] is not None else ""
        print(f"  {label:<16} step {1e3 * r['step_seconds']:8.1f} ms for {k} seed(s) "
              f"({r['steps_per_second_per_seed']:.1f} seed-steps/s), test eval {r['eval_seconds']:.2f} s, "
              f"solver {r['solver']}{peak}; 5 seeds x 50 epochs: {r['projected_seconds'] / 3600:.2f} h")
    base = results["level 0"]["step_seconds"]
    print(f"level-2 step / level-0 step: {results['level 2']['step_seconds'] / base:.2f}x")
    print(f"whole published table (2 datasets x 4 rungs x 5 seeds x 50 epochs), PROJECTED from measured steps: "
          f"{total / 3600:.2f} h")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "device_name": name, "k": k,
                                               "steps": args.steps, "rungs": results,
                                               "projected_table_seconds": total}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
