"""Your own MLP on your own CSV: scikit-learn's breast cancer data, written out as a file.

``write_csv`` writes the 569 examples as ``breast_cancer.csv``: a header row, 30 numeric feature
columns, and the label column ``diagnosis`` with the text labels ``benign`` / ``malignant`` (qcreep
maps them to classes 0 and 1 in sorted order and records the map). ``mlp`` is an ordinary PyTorch
factory: qcreep calls it with the keyword arguments it names (``input_shape = (30,)``,
``num_classes = 2``), finds its two Linear slots (``0`` and ``2``) and runs the fair ladder: level
k makes the first k Linear layers data re-uploading circuits (3 qubits for 30 -> 8, 2 qubits for
8 -> 2), each quantum rung gets a classical twin with the same parameter count, every rung gets the
same learning-rate tuning on a validation split, and the report compares them seed by seed. The
CSV has no test split, so 20% of it (stratified, fixed seed) is held out for testing, and the
features are standardised with the statistics of the part that is trained on.

From the command line (from the repository root)::

    python examples/tabular_mlp.py --csv-only         # writes breast_cancer.csv here
    qcreep run --model examples/tabular_mlp.py:mlp --data breast_cancer.csv --target diagnosis \\
        --seeds 6 --epochs 20 --tune-epochs 5 --lr-grid 3e-3 1e-2 3e-2 --batch-size 32 --n-reps 2 \\
        --out runs/tabular_mlp

From Python, this file writes the CSV and runs the same ladder (about a minute on 2 CPU cores)::

    python examples/tabular_mlp.py
    python examples/tabular_mlp.py --seeds 1 --epochs 1 --tune-epochs 1 --out /tmp/quick   # a smoke test

The budget is small, so treat the numbers as a demonstration of the method, not as a result.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from torch import nn

SPEC = f"{Path(__file__).resolve()}:mlp"
"""The model spec of this file (records keep it, so ``qcreep report`` and ``evaluate`` rebuild the model)."""
TARGET = "diagnosis"


def mlp(input_shape, num_classes: int, hidden: int = 8) -> nn.Sequential:
    """Linear, ReLU, Linear: ``prod(input_shape)`` features -> ``hidden`` -> ``num_classes`` logits."""
    return nn.Sequential(nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def write_csv(path) -> Path:
    """scikit-learn's breast cancer data as a CSV with a header and a text label column ``diagnosis``."""
    from sklearn.datasets import load_breast_cancer  # noqa: PLC0415 - only to write the file

    data = load_breast_cancer()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*data.feature_names, TARGET])
        for row, label in zip(data.data, data.target):
            writer.writerow([*(f"{v:.6g}" for v in row), data.target_names[label]])
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write breast_cancer.csv, then run the fair ladder of an MLP on "
                                                 "it (cumulative rungs, classical twins, tuning, paired statistics).")
    parser.add_argument("--csv", default="breast_cancer.csv", help="where to write the CSV (default: here)")
    parser.add_argument("--csv-only", action="store_true", help="write the CSV and stop (for the qcreep command)")
    parser.add_argument("--seeds", type=int, default=6, help="seeds 0..N-1 per rung (default 6)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per final run (default 20)")
    parser.add_argument("--tune-epochs", type=int, default=5, help="epochs per tuning trial (default 5)")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2],
                        help="learning rates tried for every rung (default 3e-3 1e-2 3e-2)")
    parser.add_argument("--batch-size", type=int, default=32, help="default 32")
    parser.add_argument("--max-train", type=int, default=None, help="train on the first N examples (default all)")
    parser.add_argument("--n-reps", type=int, default=2, help="re-uploads of the quantum layers (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default="runs/tabular_mlp", help="results folder (default runs/tabular_mlp)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Write the CSV, plan the ladder over the MLP's slots, tune and train every rung, report."""
    import torch  # noqa: PLC0415 - the example reads top-down: the model first, then qcreep

    import qcreep  # noqa: PLC0415
    from qcreep.report import load_records, markdown_table, summarize, write_report  # noqa: PLC0415
    from qcreep.sweep import plan, run_sweep  # noqa: PLC0415
    from qcreep.tuning import TuningSpec  # noqa: PLC0415

    args = parse_args(argv)
    path = write_csv(args.csv)
    print(f"wrote {path}", file=sys.stderr)
    if args.csv_only:
        return 0
    found = qcreep.creep(mlp((30,), 2), torch.zeros(1, 30))
    for slot in found.slots:
        print(f"slot {slot.name}: {slot.describe()}, qubits if quantum: {slot.qubits}", file=sys.stderr)

    configs = plan([str(path)], levels=range(len(found.slots) + 1), seeds=range(args.seeds), twins=True,
                   model=SPEC, target=TARGET, epochs=args.epochs, batch_size=args.batch_size,
                   max_train=args.max_train, n_reps=args.n_reps, threads=args.threads)
    tuning = TuningSpec.default(["lr"], epochs=args.tune_epochs, lr_grid=args.lr_grid)
    run_sweep(configs, args.out, tuning=tuning, progress=args.progress)
    paths = write_report(args.out)
    print(markdown_table(summarize(load_records(args.out))))
    print(f"\nreport: {paths['report']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
