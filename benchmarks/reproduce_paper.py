"""Reproduce the paper's table on one dataset: levels 0, 1, 2 with physical (real) angles, and
level 2 again with the published code's complex (non-unitary) angles.

    python benchmarks/reproduce_paper.py --dataset fashion-mnist --quick
    python benchmarks/reproduce_paper.py --dataset mnist             # full protocol: 50 epochs, 5 seeds
    python benchmarks/reproduce_paper.py --dataset cifar10 --data-dir DIR

The protocol is the published PyTorch one (Adam, lr 5e-4, batch 200, 10 re-uploads) on the full
data. ``--quick`` keeps that protocol and the full data but trains 5 epochs with 2 seeds, so the
numbers compare with the published ones at epochs 1 and 5. Runs go seed by seed (every rung of
seed 0, then of seed 1, ...), so a stopped reproduction still has every rung at the first seed;
rerun the same command to continue (finished runs are skipped, unfinished ones resume from their
checkpoints). Writes records, ``sweep.csv``, ``report.md``, plots, ``machine.json`` and
``command.txt`` into ``--out`` (default ``benchmarks/results/<dataset>[-quick]``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from qcreep.data import ensure_available
from qcreep.errors import QcreepError
from qcreep.report import write_report
from qcreep.sweep import plan, run_sweep
from qcreep.train import atomic_write_json, check_device, environment

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=["mnist", "fashion-mnist", "cifar10", "digits"])
    parser.add_argument("--quick", action="store_true", help="5 epochs, 2 seeds (about an hour per dataset on 2 cores)")
    parser.add_argument("--epochs", type=int, help="override the protocol's epochs")
    parser.add_argument("--seeds", type=int, help="override the protocol's number of seeds")
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-complex", action="store_true", help="skip the complex-angle level-2 runs")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    epochs = args.epochs or (5 if args.quick else 50)
    n_seeds = args.seeds or (2 if args.quick else 5)
    out = Path(args.out or HERE / "results" / (args.dataset + ("-quick" if args.quick else "")))
    settings = dict(epochs=epochs, batch_size=200, lr=5e-4, n_reps=10, data_dir=args.data_dir,
                    device=args.device, threads=args.threads)
    try:
        ensure_available(args.dataset, args.data_dir)
        configs = []
        for seed in range(n_seeds):
            configs += plan([args.dataset], levels=args.levels, seeds=[seed], angles=["real"], **settings)
            if 2 in args.levels and not args.no_complex:
                configs += plan([args.dataset], levels=[2], seeds=[seed], angles=["complex"], **settings)
        out.mkdir(parents=True, exist_ok=True)
        (out / "command.txt").write_text("python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]) + "\n")
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        atomic_write_json(out / "machine.json", environment(check_device(args.device)))
        start = time.perf_counter()
        run_sweep(configs, out, resume=True, progress=False)
        paths = write_report(out)
    except QcreepError as err:
        print(f"reproduce_paper: error: {err}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - start:.0f} s; report: {paths['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
