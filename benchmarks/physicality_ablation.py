"""Separate what level 2 owes to non-unitary gates from the other protocol differences.

The published PyTorch runs (complex angles, 10 re-uploads, learning rate 5e-4) and the published
JAX runs (real angles, 1 re-upload, learning rate 5e-3) differ in three things at once. This
script trains level 2 over the grid angles x re-uploads x learning rate, with everything else fixed,
so each factor can be read off on its own:

    python benchmarks/physicality_ablation.py                      # digits, 50 epochs, 2 seeds
    python benchmarks/physicality_ablation.py --dataset mnist --epochs 5 --max-train 10000

Each cell of the grid is a sub-folder of ``--out`` (default
``benchmarks/results/physicality-<dataset>``) with its own records and report. ``ablation.md``
gathers the cells into one table.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from qcreep.errors import QcreepError
from qcreep.report import load_records, summarize
from qcreep.sweep import plan, run_sweep

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-4, 5e-3])
    parser.add_argument("--reps", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--max-test", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    out = Path(args.out or HERE / "results" / f"physicality-{args.dataset}")
    rows = []
    try:
        for lr, reps in itertools.product(args.lrs, args.reps):
            cell = out / f"lr{lr:g}-reps{reps}"
            configs = plan([args.dataset], levels=[2], seeds=range(args.seeds), angles=["real", "complex"],
                           epochs=args.epochs, lr=lr, n_reps=reps, max_train=args.max_train,
                           output_scale="none", bias_init="normal", val_fraction=0.0,
                           max_test=args.max_test, data_dir=args.data_dir, threads=args.threads)
            run_sweep(configs, cell, resume=True, progress=False)
            for row in summarize(load_records(cell)):
                rows.append((lr, reps, row))
    except QcreepError as err:
        print(f"physicality_ablation: error: {err}", file=sys.stderr)
        return 2
    lines = [f"# Level 2 on {args.dataset}: angles x re-uploads x learning rate",
             "", f"{args.epochs} epochs, batch 200, Adam; mean ± population sd over seeds (test accuracy %).",
             "", "| lr | re-uploads | angles | seeds | final | best | max unitarity error |",
             "|---|---|---|---|---|---|---|"]
    for lr, reps, row in rows:
        unit = (row.get("unitarity") or {}).get("max_unitarity_error")
        lines.append(f"| {lr:g} | {reps} | {row['angles']} | {row['n_seeds']} | "
                     f"{row['final_test_mean']:.2f} ± {row['final_test_sd']:.2f} | {row['best_test_mean']:.2f} ± {row['best_test_sd']:.2f} | "
                     f"{'' if unit is None else f'{unit:.2g}'} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
