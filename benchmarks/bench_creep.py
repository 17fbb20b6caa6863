"""The cost of going through qcreep's surgery: a model built by ``creep(...).build()`` with every slot
classical against the user's own model, one training step each, measured side by side.

Issue target: the built model's training step costs at most 1.05x the original's. The two are
timed in alternation (ABAB...), on the same inputs, in one process, so that the machine's load
affects both alike; the ratio of medians is reported with the spread of per-round ratios.

    python benchmarks/bench_creep.py                  # 3 models, 30 rounds of 20 steps each
    python benchmarks/bench_creep.py --rounds 10      # quicker
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qcreep.creep import creep
from qcreep.models import HybridNet


class SmallCNN(nn.Module):
    """ReLU, max pooling, a 5x5 convolution and two Linear layers (examples/small_cnn.py's shape)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 5, padding=2), nn.ReLU())
        self.fc1 = nn.Linear(16 * 6 * 6, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.features(x).flatten(1))))


class ResidualMLP(nn.Module):
    """Tabular features through two residual blocks with layer norm."""

    def __init__(self, features=30, width=64, classes=2):
        super().__init__()
        self.inp = nn.Linear(features, width)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
                                     for _ in range(2)])
        self.out = nn.Linear(width, classes)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def step_time(model, optimizer, x, y, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - t0) / steps


def measure(name, make, x, y, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    original = make()
    built = creep(original, x[:2]).build()  # every slot keeps the user's module
    opt_a = torch.optim.Adam(original.parameters(), lr=1e-3)
    opt_b = torch.optim.Adam(built.parameters(), lr=1e-3)
    step_time(original, opt_a, x, y, 3)  # warm-up
    step_time(built, opt_b, x, y, 3)
    a, b = [], []
    for _ in range(rounds):
        a.append(step_time(original, opt_a, x, y, steps))
        b.append(step_time(built, opt_b, x, y, steps))
    ratios = sorted(bb / aa for aa, bb in zip(a, b))
    return {"model": name, "batch": int(x.shape[0]), "rounds": rounds, "steps_per_round": steps,
            "original_ms": 1e3 * statistics.median(a), "built_ms": 1e3 * statistics.median(b),
            "ratio_of_medians": statistics.median(b) / statistics.median(a),
            "ratio_p10": ratios[len(ratios) // 10], "ratio_p90": ratios[(9 * len(ratios)) // 10]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    cases = [
        ("HybridNet digits (level 0)", lambda: HybridNet((1, 12, 12)), torch.randn(200, 1, 12, 12, generator=gen),
         torch.randint(0, 10, (200,), generator=gen)),
        ("SmallCNN digits", SmallCNN, torch.randn(200, 1, 12, 12, generator=gen),
         torch.randint(0, 10, (200,), generator=gen)),
        ("ResidualMLP tabular", ResidualMLP, torch.randn(200, 30, generator=gen),
         torch.randint(0, 2, (200,), generator=gen)),
    ]
    results = [measure(name, make, x, y, args.rounds, args.steps) for name, make, x, y in cases]
    print(f"training step (forward, cross-entropy, backward, Adam), batch 200, {args.threads} thread(s), "
          f"{args.rounds} alternating rounds of {args.steps} steps")
    print(f"{'model':<28} {'original ms':>12} {'built ms':>10} {'ratio':>7} {'p10-p90 of round ratios':>24}")
    for r in results:
        print(f"{r['model']:<28} {r['original_ms']:>12.3f} {r['built_ms']:>10.3f} {r['ratio_of_medians']:>7.3f} "
              f"{r['ratio_p10']:>11.3f} - {r['ratio_p90']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
