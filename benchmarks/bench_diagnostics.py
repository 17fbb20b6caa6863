"""Effective dimension by the Gram route against the d x d route, side by side, at HybridNet-like sizes.

    python benchmarks/bench_diagnostics.py                  # MLP, HybridNet 6x6 and 8x8 (dense too), 12x12
    python benchmarks/bench_diagnostics.py --quick          # MLP and HybridNet 6x6 only
    python benchmarks/bench_diagnostics.py --max-dense-d 16000   # also run the dense route on 12x12

Both routes share the per-sample Jacobians (``torch.func`` vmap over jacrev, float64), timed on their
own as ``jacobian s``. The Gram route (:func:`qcreep.diagnostics.effective_dimension`) then takes
the eigenvalues of one ``(N K) x (N K)`` Gram matrix per weight sample and reuses them for every
dataset size; the dense route (``_effective_dimension_dense``, qiskit-machine-learning's algorithm)
forms the ``d x d`` Fisher matrices and one ``slogdet`` per weight sample and dataset size:
``O(d^3)`` time and ``M d^2`` float64 memory, so it is skipped above ``--max-dense-d``. Everything is
measured in one process, the routes one after the other on the same inputs and weights, each the
median of ``--repeats`` runs; ``|diff|`` is the largest difference of their results.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qcreep.diagnostics import _effective_dimension_dense, _fisher_rows, effective_dimension
from qcreep.models import HybridNet

SIZES = [1000, 100_000, 10_000_000]


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def case(name, model, x, weights, repeats, max_dense_d):
    d = weights.shape[1]
    t_jac, _ = timed(lambda: list(_fisher_rows(model, x, weights, 32, "vmap")), repeats)
    t_gram, gram = timed(lambda: effective_dimension(model, x, SIZES, weights, method="vmap"), repeats)
    row = {"model": name, "d": d, "NK": x.shape[0] * 10, "M": weights.shape[0], "jacobian": t_jac, "gram": t_gram,
           "dense": None, "diff": None}
    if d <= max_dense_d:
        t_dense, dense = timed(lambda: _effective_dimension_dense(model, x, SIZES, weights, method="vmap"), repeats)
        row["dense"] = t_dense
        row["diff"] = max(abs(a - b) for a, b in zip(gram, dense))
    row["d_eff"] = gram
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the MLP and HybridNet on 6x6 images")
    parser.add_argument("--inputs", type=int, default=10, help="N, the number of input samples (default 10)")
    parser.add_argument("--weights", type=int, default=2, help="M, the number of weight samples (default 2)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-dense-d", type=int, default=8000, help="skip the dense route above this d")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cases = [("MLP 20-64-32-10", nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 32), nn.Tanh(),
                                               nn.Linear(32, 10)), (20,)),
             ("HybridNet 1x6x6", HybridNet((1, 6, 6)), (1, 6, 6))]
    if not args.quick:
        cases += [("HybridNet 1x8x8", HybridNet((1, 8, 8)), (1, 8, 8)),
                  ("HybridNet 1x12x12", HybridNet((1, 12, 12)), (1, 12, 12))]
    print(f"effective dimension, N = {args.inputs} inputs, K = 10 classes, M = {args.weights} weight samples, "
          f"{len(SIZES)} dataset sizes, float64, {torch.get_num_threads()} thread(s); seconds per call")
    print(f"{'model':<20} {'d':>6} {'NK':>5} {'jacobian s':>11} {'gram s':>8} {'dense s':>9} {'dense/gram':>11} "
          f"{'|diff|':>9}  d_eff(n = {', '.join(f'{n:.0e}' for n in SIZES)})")
    warm = nn.Linear(2, 3).to(torch.float64)  # the first torch.func call pays a one-off setup cost
    effective_dimension(warm, torch.zeros(2, 2, dtype=torch.float64), 100, torch.ones(1, 9, dtype=torch.float64))
    for name, model, shape in cases:
        model = model.to(torch.float64).eval()
        d = sum(p.numel() for p in model.parameters())
        x = torch.randn(args.inputs, *shape, generator=gen, dtype=torch.float64)
        weights = 0.1 * torch.randn(args.weights, d, generator=gen, dtype=torch.float64)
        r = case(name, model, x, weights, args.repeats, args.max_dense_d)
        dense = "skipped" if r["dense"] is None else f"{r['dense']:.2f}"
        ratio = "-" if r["dense"] is None else f"{r['dense'] / r['gram']:.1f}x"
        diff = "-" if r["diff"] is None else f"{r['diff']:.1e}"
        print(f"{r['model']:<20} {r['d']:>6} {r['NK']:>5} {r['jacobian']:>11.2f} {r['gram']:>8.2f} {dense:>9} "
              f"{ratio:>11} {diff:>9}  {', '.join(f'{v:.2f}' for v in r['d_eff'])}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
