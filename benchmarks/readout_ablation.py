"""Which physical readouts of the re-uploading head train, at the published learning rate and beyond.

The head measures probabilities in [0, 1] (about 2**-n each at the start) and adds biases. This
script trains the physical (real-angle) level 2 for each readout,

- ``output_scale``: ``none`` (published) or ``learned`` (a trainable scale on the probabilities),
- ``bias_init``: ``normal`` (published N(0, 1)) or ``zero``,

at each learning rate of ``--lrs`` (the published 5e-4 first), with the same seeds, epochs and
validation split, and prints final test accuracy (mean ± population sd over seeds):

    python benchmarks/readout_ablation.py                       # digits, 30 epochs, 3 seeds
    python benchmarks/readout_ablation.py --epochs 50 --seeds 5

Each cell is a sub-folder of ``--out`` (default ``benchmarks/results/readout-<dataset>``);
``ablation.md`` gathers them. Finished runs are skipped when the command is run again.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

from qcreep.errors import QcreepError
from qcreep.files import atomic_write_text
from qcreep.report import load_records
from qcreep.sweep import plan, run_sweep

HERE = Path(__file__).resolve().parent
READOUTS = [("none", "normal"), ("none", "zero"), ("learned", "normal"), ("learned", "zero")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-4, 5e-3, 5e-2])
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--max-test", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    out = Path(args.out or HERE / "results" / f"readout-{args.dataset}")
    cells = {}
    try:
        for (scale, bias), lr in itertools.product(READOUTS, args.lrs):
            cell = out / f"{scale}-{bias}-lr{lr:g}"
            configs = plan([args.dataset], levels=[2], seeds=range(args.seeds), epochs=args.epochs, lr=lr,
                           output_scale=scale, bias_init=bias, max_train=args.max_train, max_test=args.max_test,
                           data_dir=args.data_dir, threads=args.threads)
            run_sweep(configs, cell, resume=True, progress=False)
            accs = [100 * r["test_accs"][-1] for r in load_records(cell) if r["status"] == "complete"]
            cells[(scale, bias, lr)] = accs
    except QcreepError as err:
        print(f"readout_ablation: error: {err}", file=sys.stderr)
        return 2
    head = " | ".join(f"lr {lr:g}" for lr in args.lrs)
    lines = [f"# Physical level 2 on {args.dataset}: readout x learning rate", "",
             f"{args.epochs} epochs, {args.seeds} seeds, batch 200, Adam, real angles, 10 re-uploads, 10% validation "
             "split; final test accuracy %, mean ± population sd over seeds. Chance is 10%.", "",
             f"| output scale | bias init | {head} |", "|---|---|" + "---|" * len(args.lrs)]
    for scale, bias in READOUTS:
        row = []
        for lr in args.lrs:
            accs = cells[(scale, bias, lr)]
            row.append(f"{statistics.fmean(accs):.2f} ± {statistics.pstdev(accs):.2f}" if accs else "n/a")
        lines.append(f"| {scale} | {bias} | " + " | ".join(row) + " |")
    atomic_write_text(out / "ablation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
