"""Separate what level 2 owes to non-unitary gates from the other protocol differences.

The published PyTorch runs (complex angles, 10 re-uploads, learning rate 5e-4) and the published
JAX runs (real angles, 1 re-upload, learning rate 5e-3) differ in three things at once. This
script trains level 2 over the grid angles x re-uploads x learning rate, with everything else fixed
(the published readout: probabilities plus N(0, 1) biases with no output scale; no validation
split), so each factor can be read off on its own:

    python benchmarks/physicality_ablation.py                      # digits, 50 epochs, 2 seeds
    python benchmarks/physicality_ablation.py --dataset mnist --epochs 5 --max-train 10000
    python benchmarks/physicality_ablation.py --table-only         # rebuild ablation.md, no training

Each cell of the grid is a sub-folder of ``--out`` (default
``benchmarks/results/physicality-<dataset>``) named ``lr<lr>-reps<reps>``, with its own records.
``ablation.md`` gathers the cells into one table. Its unitarity column is the largest
|U^dagger U - I| over the quantum layers' trainable gates, taken over every epoch of every seed
(the records' per-epoch ``unitarity_errors``), and next to it the same quantity at the last epoch
only.

``--table-only`` trains nothing: it reads the records already in each cell folder and rewrites
``ablation.md``. Without ``--lrs`` / ``--reps`` it uses every ``lr*-reps*`` folder under ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
from pathlib import Path

from qcreep.errors import QcreepError
from qcreep.files import atomic_write_text
from qcreep.report import load_records, summarize
from qcreep.report.records import PATH_KEY
from qcreep.sweep import plan, run_sweep

HERE = Path(__file__).resolve().parent
DEFAULT_LRS = [5e-4, 5e-3]
DEFAULT_REPS = [1, 10]
CELL_NAME = re.compile(r"^lr(?P<lr>[0-9.eE+-]+)-reps(?P<reps>[0-9]+)$")


def cell_dir(out: Path, lr: float, reps: int) -> Path:
    return out / f"lr{lr:g}-reps{reps}"


def cells_on_disk(out: Path) -> list[tuple[float, int]]:
    """``(lr, reps)`` of every ``lr<lr>-reps<reps>`` folder under ``out``, sorted."""
    found = []
    if out.is_dir():
        for path in out.iterdir():
            match = CELL_NAME.match(path.name)
            if path.is_dir() and match:
                try:
                    found.append((float(match["lr"]), int(match["reps"])))
                except ValueError:
                    continue
    return sorted(found)


def _numbers(values) -> list[float]:
    return [float(v) for v in values or [] if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _worst(values: list[float]) -> float | None:
    if not values:
        return None
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values)


def unitarity_columns(row: dict, by_path: dict) -> tuple[float | None, float | None]:
    """``(largest over all epochs and seeds, largest at the last epoch over seeds)`` for one row.

    Both come from the per-epoch ``unitarity_errors`` of the row's runs (measured after each
    epoch). When a run has no per-epoch list, its final ``unitarity`` block stands in for its last
    epoch and for its maximum (so the maximum can then only be a lower bound).
    """
    overall, last = [], []
    for path in row.get("paths") or []:
        rec = by_path.get(path)
        if rec is None:
            continue
        per_epoch = _numbers(rec.get("unitarity_errors"))
        if per_epoch:
            overall.extend(per_epoch)
            last.append(per_epoch[-1])
            continue
        final = _numbers([(rec.get("unitarity") or {}).get("max_unitarity_error")])
        overall.extend(final)
        last.extend(final)
    return _worst(overall), _worst(last)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2g}"


def cell_rows(cell: Path, lr: float, reps: int) -> list[tuple]:
    """Table rows of one cell, read from the records already in ``cell`` (nothing is trained)."""
    if not cell.is_dir():
        raise QcreepError(f"cell folder {cell} does not exist; train it first (run without --table-only)")
    records = load_records(cell)
    by_path = {rec[PATH_KEY]: rec for rec in records}
    rows = []
    for row in summarize(records):
        worst, at_end = unitarity_columns(row, by_path)
        batches = {(by_path[p].get("config") or {}).get("batch_size") for p in row.get("paths") or [] if p in by_path}
        rows.append((lr, reps, row, worst, at_end, batches))
    return rows


def _joined(values) -> str:
    values = sorted(values, key=str)
    return ", ".join("?" if v is None else str(v) for v in values)


def table(dataset: str, rows: list[tuple]) -> str:
    epochs = {row["epochs"] for _, _, row, _, _, _ in rows}
    batches = set().union(*(b for *_, b in rows)) if rows else set()
    intro = (f"{_joined(epochs)} epochs, batch {_joined(batches)}, Adam, the published readout "
             "(probabilities plus N(0, 1) biases, no output scale), no validation split. Test accuracy %, "
             "mean ± population sd over seeds: *final* at the last epoch; *best* is each seed's best "
             "epoch, picked on the test set (optimistic). Unitarity: the largest |U†U − I| over the "
             "trainable gates of all quantum layers, measured after every epoch; *max over all epochs* "
             "takes the largest over every epoch of every seed, *at last epoch* the largest over seeds "
             "after the last epoch.")
    header = ("| lr | re-uploads | angles | seeds | final | best | max \\|U†U − I\\| over all epochs "
              "| \\|U†U − I\\| at last epoch |")
    lines = [f"# Level 2 on {dataset}: angles x re-uploads x learning rate", "", intro, "", header,
             "|---|---|---|---|---|---|---|---|"]
    for lr, reps, row, worst, at_end, _ in rows:
        angles = row["angles"] if row["label"] == "level 2" else f"{row['angles']} ({row['label']})"
        lines.append(f"| {lr:g} | {reps} | {angles} | {row['n_seeds']} | "
                     f"{row['final_test_mean']:.2f} ± {row['final_test_sd']:.2f} | "
                     f"{row['best_test_mean']:.2f} ± {row['best_test_sd']:.2f} | "
                     f"{_fmt(worst)} | {_fmt(at_end)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lrs", type=float, nargs="+",
                        help=f"learning rates (default {' '.join(f'{v:g}' for v in DEFAULT_LRS)}; "
                             "with --table-only: every cell folder on disk)")
    parser.add_argument("--reps", type=int, nargs="+",
                        help=f"re-upload counts (default {' '.join(map(str, DEFAULT_REPS))}; "
                             "with --table-only: every cell folder on disk)")
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--max-test", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing; rebuild ablation.md from the records already in the cell folders")
    args = parser.parse_args(argv)
    out = Path(args.out or HERE / "results" / f"physicality-{args.dataset}")
    if args.table_only and args.lrs is None and args.reps is None:
        cells = cells_on_disk(out)
        if not cells:
            print(f"physicality_ablation: error: no lr<lr>-reps<reps> cell folders under {out}; "
                  "run without --table-only first", file=sys.stderr)
            return 2
    else:
        cells = list(itertools.product(args.lrs or DEFAULT_LRS, args.reps or DEFAULT_REPS))
    rows = []
    try:
        for lr, reps in cells:
            cell = cell_dir(out, lr, reps)
            if not args.table_only:
                configs = plan([args.dataset], levels=[2], seeds=range(args.seeds), angles=["real", "complex"],
                               epochs=args.epochs, lr=lr, n_reps=reps, max_train=args.max_train,
                               output_scale="none", bias_init="normal", val_fraction=0.0,
                               max_test=args.max_test, data_dir=args.data_dir, threads=args.threads)
                run_sweep(configs, cell, resume=True, progress=False)
            rows.extend(cell_rows(cell, lr, reps))
    except QcreepError as err:
        print(f"physicality_ablation: error: {err}", file=sys.stderr)
        return 2
    text = table(args.dataset, rows)
    atomic_write_text(out / "ablation.md", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
