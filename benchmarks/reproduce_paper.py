"""Reproduce the paper's table: levels 0, 1, 2 with physical (real) angles, and level 2 again with
the published code's complex (non-unitary) angles, on one or more datasets.

    python benchmarks/reproduce_paper.py                                   # MNIST + FashionMNIST, full protocol
    python benchmarks/reproduce_paper.py --device cuda --data-dir DIR      # the whole table on one GPU
    python benchmarks/reproduce_paper.py --dataset fashion-mnist --quick
    python benchmarks/reproduce_paper.py --dataset cifar10 --data-dir DIR

The protocol is the published PyTorch one (Adam, lr 5e-4, batch 200, 10 re-uploads, the published
readout with N(0, 1) biases and no output scale, no validation split, no tuning) on the full
data. On a GPU the 5 seeds of each rung train together as one stacked model (``--seed-parallel``).
``--quick`` keeps that protocol and the full data but trains 5 epochs with 2 seeds, so the
numbers compare with the published ones at epochs 1 and 5. Runs go seed by seed (every rung of
seed 0, then of seed 1, ...), so a stopped reproduction still has every rung at the first seed;
rerun the same command to continue (finished runs are skipped, unfinished ones resume from their
checkpoints). Writes records, ``sweep.csv``, ``report.md``, plots, ``machine.json`` and
``command.txt`` into ``--out`` (default ``benchmarks/results/<dataset>[-quick]``). Records and
checkpoints are small (a few MB per run), so a reproduction can move between machines: copy the
folder, rerun the command there, and finished runs are skipped.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from qcreep.config import check_device
from qcreep.data import ensure_available
from qcreep.errors import QcreepError
from qcreep.files import atomic_write_json, atomic_write_text
from qcreep.records import environment
from qcreep.report import write_report
from qcreep.sweep import LocalExecutor, default_seed_parallel, plan, run_sweep

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", "--datasets", dest="datasets", nargs="+", default=["mnist", "fashion-mnist"],
                        choices=["mnist", "fashion-mnist", "cifar10", "digits"])
    parser.add_argument("--quick", action="store_true", help="5 epochs, 2 seeds (about an hour per dataset on 2 cores)")
    parser.add_argument("--epochs", type=int, help="override the protocol's epochs")
    parser.add_argument("--seeds", type=int, help="override the protocol's number of seeds")
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-complex", action="store_true", help="skip the complex-angle level-2 runs")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed-parallel", type=int, default=None,
                        help="seeds trained together as one stacked model (default: all on a GPU, 1 on a CPU)")
    parser.add_argument("--out", default=None, help="results folder (one dataset) or parent folder (several)")
    args = parser.parse_args(argv)
    status = 0
    for dataset in args.datasets:
        out = args.out if len(args.datasets) == 1 else (Path(args.out) / dataset if args.out else None)
        status = max(status, reproduce(args, dataset, out))
    return status


def reproduce(args, dataset: str, out) -> int:

    epochs = args.epochs or (5 if args.quick else 50)
    n_seeds = args.seeds or (2 if args.quick else 5)
    out = Path(out or HERE / "results" / (dataset + ("-quick" if args.quick else "")))
    settings = dict(epochs=epochs, batch_size=200, lr=5e-4, n_reps=10, data_dir=args.data_dir,
                    device=args.device, threads=args.threads, output_scale="none", bias_init="normal",
                    val_fraction=0.0)
    try:
        ensure_available(dataset, args.data_dir)
        seed_parallel = args.seed_parallel or default_seed_parallel(args.device, n_seeds)
        seed_groups = [range(n_seeds)] if seed_parallel > 1 else [[seed] for seed in range(n_seeds)]
        configs = []
        for seeds in seed_groups:
            configs += plan([dataset], levels=args.levels, seeds=seeds, angles=["real"], **settings)
            if 2 in args.levels and not args.no_complex:
                configs += plan([dataset], levels=[2], seeds=seeds, angles=["complex"], **settings)
        atomic_write_text(out / "command.txt",
                          "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]) + "\n")
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        atomic_write_json(out / "machine.json", environment(check_device(args.device)))
        start = time.perf_counter()
        run_sweep(configs, out, executor=LocalExecutor(seed_parallel=seed_parallel), resume=True, progress=False)
        paths = write_report(out)
    except QcreepError as err:
        print(f"reproduce_paper: error: {err}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - start:.0f} s; report: {paths['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
