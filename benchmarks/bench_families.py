"""Each quantum layer family against PennyLane's ``TorchLayer`` on the same circuit, side by side.

Issue target: forward + backward at batch 200 at least 100x faster than ``qml.qnn.TorchLayer``
(``default.qubit``, ``diff_method="backprop"``, PennyLane's parameter broadcasting over the batch)
on the same circuit. Both sides get the same angles in float64 and must give the same values to
1e-10 before anything is timed. Timings alternate (ours, theirs, ours, ...) in one process, and the
median of ``--rounds`` rounds is reported for each, with their ratio.

    python benchmarks/bench_families.py                 # dressed_circuit at 4 and 6 qubits
    python benchmarks/bench_families.py --rounds 3      # quicker
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pennylane as qml
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qcreep.layers import DressedCircuit  # noqa: E402

F64 = torch.float64


def dressed_torchlayer(width: int, depth: int) -> qml.qnn.TorchLayer:
    """The circuit part of the dressed circuit (after the input map, before the output map) in PennyLane."""
    dev = qml.device("default.qubit", wires=width)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(inputs, weights):
        for i in range(width):
            qml.Hadamard(wires=i)
        for i in range(width):
            qml.RY(inputs[..., i], wires=i)
        for k in range(depth):
            for i in range(0, width - 1, 2):
                qml.CNOT(wires=[i, i + 1])
            for i in range(1, width - 1, 2):
                qml.CNOT(wires=[i, i + 1])
            for i in range(width):
                qml.RY(weights[k, i], wires=i)
        return [qml.expval(qml.PauliZ(i)) for i in range(width)]

    return qml.qnn.TorchLayer(circuit, {"weights": (depth, width)})


def _time(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def bench_dressed(width: int, depth: int, batch: int, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    ours = DressedCircuit(16, 10, width=width, depth=depth, dtype=F64)
    with torch.no_grad():
        ours.weights.normal_()
    theirs = dressed_torchlayer(width, depth).to(F64)
    with torch.no_grad():
        theirs.weights.copy_(ours.weights)
    q = torch.rand(batch, width, dtype=F64) * 3 - 1.5  # the angles after the input map

    def ours_expectations(angles):
        phi = ours.embedded(angles) @ ours.variational().T
        return (phi * phi) @ ours._signs

    with torch.no_grad():
        diff = float((ours_expectations(q) - theirs(q)).abs().max())
    if diff > 1e-10:
        raise SystemExit(f"the two circuits disagree by {diff:.3g}; nothing timed")
    g = torch.randn(batch, width, dtype=F64)

    def step_ours():
        ours.zero_grad(set_to_none=True)
        angles = q.clone().requires_grad_(True)
        (ours_expectations(angles) * g).sum().backward()

    def step_theirs():
        theirs.zero_grad(set_to_none=True)
        angles = q.clone().requires_grad_(True)
        (theirs(angles) * g).sum().backward()

    step_ours()
    step_theirs()  # warm-up
    ours_t, theirs_t = [], []
    for _ in range(rounds):
        ours_t.append(_time(step_ours, steps))
        theirs_t.append(_time(step_theirs, max(1, steps // 10)))
    o, t = statistics.median(ours_t), statistics.median(theirs_t)
    return {"family": "dressed_circuit", "width": width, "depth": depth, "batch": batch, "max_abs_diff": diff,
            "ours_ms": 1e3 * o, "pennylane_ms": 1e3 * t, "speedup": t / o, "rounds": rounds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="timed steps of ours per round (PennyLane: a tenth)")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_families.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [bench_dressed(w, d, args.batch, args.rounds, args.steps) for w, d in ((4, 6), (6, 6))]
    for r in results:
        print(f"{r['family']} {r['width']} qubits, depth {r['depth']}, batch {r['batch']}: ours {r['ours_ms']:.3f} ms, "
              f"PennyLane TorchLayer {r['pennylane_ms']:.1f} ms, {r['speedup']:.0f}x "
              f"(values agree to {r['max_abs_diff']:.1e})")
    meta = {"torch": torch.__version__, "pennylane": qml.__version__, "threads": args.threads}
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
