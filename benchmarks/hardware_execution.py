"""Does a trained rung's accuracy survive finite shots and gate noise? Digits, levels 1 and 2.

Trains a small HybridNet on scikit-learn's digits at replacement levels 1 and 2 (a short Adam run
with the learned readout scale, so that level 2 trains in a few epochs; seeded), then evaluates the
test set under :func:`qcreep.hardware.execution.evaluate_grid`: accuracy against shots (exact,
100 ... 100,000; noiseless) and against the depolarising probability per qubit and block (0,
1e-4 ... 1e-1; exact expectation values), with the wall time of each evaluation:

    python benchmarks/hardware_execution.py                   # 10 epochs, 5 re-uploads
    python benchmarks/hardware_execution.py --epochs 20 --n-reps 10

Writes ``grid.json`` and ``grid.txt`` to ``--out`` (default
``benchmarks/results/hardware-execution``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from qcreep.data import get_spec, load_dataset
from qcreep.hardware.execution import DEFAULT_NOISE, DEFAULT_SHOTS, evaluate_grid
from qcreep.models import build_model

HERE = Path(__file__).resolve().parent


def train(level: int, x, y, *, epochs: int, n_reps: int, lr: float, batch_size: int, seed: int):
    torch.manual_seed(seed)
    model = build_model(get_spec("digits").input_shape, level=level, n_reps=n_reps,
                        output_scale="learned", bias_init="zero")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for first in range(0, len(y), batch_size):
            batch = order[first:first + batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-reps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "hardware-execution")
    args = parser.parse_args(argv)

    train_split, test_split = load_dataset("digits")
    results, lines = [], []

    def log(message: str) -> None:
        print(message, flush=True)
        lines.append(message)

    log(f"digits: {len(train_split.y)} training and {len(test_split.y)} test images; {args.epochs} epochs, "
        f"{args.n_reps} re-uploads, lr {args.lr:g}, batch {args.batch_size}, seed {args.seed}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for level in args.levels:
        start = time.perf_counter()
        model = train(level, train_split.x, train_split.y, epochs=args.epochs, n_reps=args.n_reps, lr=args.lr,
                      batch_size=args.batch_size, seed=args.seed)
        log(f"\nlevel {level}: trained in {time.perf_counter() - start:.1f} s")
        rows = evaluate_grid(model, test_split.x, test_split.y, DEFAULT_SHOTS, DEFAULT_NOISE, seed=args.seed,
                             batch_size=200, log=log)
        results.append({"level": level, "rows": rows})
    args.out.mkdir(parents=True, exist_ok=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "grid.json").write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")
    (args.out / "grid.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
