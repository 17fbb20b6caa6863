"""Your own CNN on the built-in digits: the quantum creeps in, one layer at a time.

``SmallCNN`` is an ordinary PyTorch network (a 5x5 convolution, ReLU, max pooling, two Linear
layers). qcreep finds its three slots (``conv``, ``fc1``, ``fc2``) and runs the fair ladder:
level k makes the first k slots quantum (the 5x5 convolution becomes a flipped quanvolution on 3
qubits; each Linear a data re-uploading circuit), each quantum rung gets a classical twin of the
same shape and parameter count, every rung gets the same learning-rate tuning on a validation
split, and the report compares the rungs seed by seed.

From the command line (from the repository root; the same ladder at this script's default budget)::

    qcreep run --model examples/small_cnn.py:SmallCNN --data digits --seeds 6 --epochs 15 \\
        --tune-epochs 4 --lr-grid 3e-3 1e-2 3e-2 --n-reps 2 --out runs/small_cnn

From Python, this file::

    python examples/small_cnn.py          # the budget above: about 1.5 minutes on 2 CPU cores
    python examples/small_cnn.py --seeds 1 --epochs 1 --tune-epochs 1 --max-train 100 --out /tmp/quick

Each prints the table; ``OUT/report.md`` adds the paired statistics (each rung against level 0,
each quantum rung against its twin, over 6 seeds: the fewest with which a two-sided Wilcoxon test
can reach p < 0.05) and every tuning trial. The budget is small (15 epochs, 2 re-uploads), so
treat the numbers as a demonstration of the method, not as a result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

SPEC = f"{Path(__file__).resolve()}:SmallCNN"
"""The model spec of this file (records keep it, so ``qcreep report`` and ``evaluate`` rebuild the model)."""


class SmallCNN(nn.Module):
    """A 5x5 convolution (zero padding 2), ReLU, 2x2 max pooling, then Linear, ReLU, Linear.

    Args:
        input_shape: ``(C, H, W)`` of one example, ``(1, 12, 12)`` for digits.
        num_classes: outputs of the last layer.
        channels: output channels of the convolution.
        hidden: width of the hidden Linear layer.
    """

    def __init__(self, input_shape, num_classes: int, channels: int = 4, hidden: int = 16):
        super().__init__()
        c, h, w = input_shape
        self.conv = nn.Conv2d(c, channels, kernel_size=5, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(channels * (h // 2) * (w // 2), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The fair ladder of SmallCNN on digits (cumulative rungs, "
                                                 "classical twins, tuning, paired statistics).")
    parser.add_argument("--seeds", type=int, default=6, help="seeds 0..N-1 per rung (default 6)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per final run (default 15)")
    parser.add_argument("--tune-epochs", type=int, default=4, help="epochs per tuning trial (default 4)")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2],
                        help="learning rates tried for every rung (default 3e-3 1e-2 3e-2)")
    parser.add_argument("--max-train", type=int, default=None, help="train on the first N images (default all 1347)")
    parser.add_argument("--n-reps", type=int, default=2, help="re-uploads of the quantum dense layers (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default="runs/small_cnn", help="results folder (default runs/small_cnn)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Find the slots, plan the ladder, tune and train every rung, write and print the report."""
    import qcreep  # noqa: PLC0415 - the example reads top-down: the model first, then qcreep
    from qcreep.report import load_records, markdown_table, summarize, write_report  # noqa: PLC0415
    from qcreep.sweep import plan, run_sweep  # noqa: PLC0415
    from qcreep.tuning import TuningSpec  # noqa: PLC0415

    args = parse_args(argv)
    found = qcreep.creep(SmallCNN((1, 12, 12), 10), torch.zeros(1, 1, 12, 12))
    for slot in found.slots:
        print(f"slot {slot.name}: {slot.describe()}, qubits if quantum: {slot.qubits}", file=sys.stderr)

    configs = plan(["digits"], levels=range(len(found.slots) + 1), seeds=range(args.seeds), twins=True,
                   model=SPEC, epochs=args.epochs, max_train=args.max_train, n_reps=args.n_reps,
                   threads=args.threads)
    tuning = TuningSpec.default(["lr"], epochs=args.tune_epochs, lr_grid=args.lr_grid)
    run_sweep(configs, args.out, tuning=tuning, progress=args.progress)
    paths = write_report(args.out)
    print(markdown_table(summarize(load_records(args.out))))
    print(f"\nreport: {paths['report']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
