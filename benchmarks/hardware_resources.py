"""What the paper's HybridNet would take on a device: resources of its quantum layers on MNIST.

Builds HybridNet for MNIST (1 x 32 x 32 after padding, 10 classes; no data files needed) at
replacement levels 1 and 2 with the published settings (10 re-uploads in the 7-qubit head, the
published readout), and prints per quantum layer: qubits, circuit executions and shots per image
for a standard error of ``--precision`` on every layer output, the data-independent alternative for
the quanvolutions, and two-qubit gates and depth after transpiling to ``cx, rz, sx, x`` at each
optimisation level of ``--optimization-levels`` (fixed seed, all-to-all connectivity). It also
times Qiskit's decomposition of one generic 7-qubit unitary (one trained ``SU(128)`` gate).

    python benchmarks/hardware_resources.py
    python benchmarks/hardware_resources.py --precision 0.001 --optimization-levels 1

Writes ``resources.md`` and ``resources.json`` to ``--out`` (default
``benchmarks/results/hardware-resources``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from qcreep.creep import quantum_layers
from qcreep.data import get_spec
from qcreep.errors import QcreepError
from qcreep.files import atomic_write_json, atomic_write_text
from qcreep.hardware import export
from qcreep.hardware.resources import estimate_resources, format_resources
from qcreep.models import build_model

HERE = Path(__file__).resolve().parent


def time_one_unitary(head, optimization_level: int, seed: int = 0) -> dict:
    """Transpile one trained SU(2**n) gate of the head alone; its time and counts."""
    qiskit = export.require("qiskit", "the unitary timing")
    circuit = export.to_qiskit(head, torch.zeros(head.in_features))
    gate = next(inst for inst in circuit.data if inst.operation.label == "SU(2^n)[1]")
    single = qiskit.QuantumCircuit(head.n_qubits)
    single.append(gate.operation, gate.qubits)
    start = time.perf_counter()
    compiled = export.transpile_circuit(single, optimization_level=optimization_level, seed_transpiler=seed)
    seconds = time.perf_counter() - start
    return {"n_qubits": head.n_qubits, "optimization_level": optimization_level, "seconds": round(seconds, 3),
            "two_qubit_gates": compiled.count_ops().get("cx", 0), "depth": compiled.depth()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", type=float, default=0.01)
    parser.add_argument("--optimization-levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0, help="model initialisation and seed_transpiler")
    parser.add_argument("--out", default=str(HERE / "results" / "hardware-resources"))
    args = parser.parse_args(argv)
    spec = get_spec("mnist")
    out = Path(args.out)
    results = {"dataset": spec.name, "input_shape": list(spec.input_shape), "classes": spec.num_classes,
               "precision": args.precision, "torch": torch.__version__, "python": platform.python_version(),
               "runs": [], "unitary_timing": []}
    try:
        qiskit = export.require("qiskit", "this benchmark")
        results["qiskit"] = qiskit.__version__
        sections = [f"# HybridNet on {spec.name}: resources of the quantum layers", "",
                    f"Input {'x'.join(map(str, spec.input_shape))}, {spec.num_classes} classes, 10 re-uploads, "
                    f"published readout, real angles; Qiskit {qiskit.__version__}, torch {torch.__version__}, "
                    f"{platform.machine()}. Standard error {args.precision:g} on every layer output. "
                    "Gate counts are for generic parameters (cached per layer kind and size).", ""]
        counts = ["### Gate counts and timings by optimisation level", "",
                  "| level | optimisation level | slot | 2q gates / circuit | depth | transpile s | estimate s |",
                  "|---|---|---|---|---|---|---|"]
        for level in (1, 2):
            torch.manual_seed(args.seed)
            model = build_model(spec.input_shape, level=level, num_classes=spec.num_classes)
            for opt in args.optimization_levels:
                start = time.perf_counter()
                rows = estimate_resources(model, spec.input_shape, precision=args.precision,
                                          optimization_level=opt, seed_transpiler=args.seed)
                seconds = time.perf_counter() - start
                results["runs"].append({"level": level, "optimization_level": opt, "seconds": round(seconds, 3),
                                        "rows": rows})
                if opt == args.optimization_levels[0]:
                    title = f"Level {level}, optimisation level {opt}"
                    sections += [format_resources(rows, title=title), ""]
                for r in rows:
                    cached = " (cached)" if r["cached"] else ""
                    counts.append(f"| {level} | {opt} | {r['slot']} | {r['two_qubit_gates']:,} | {r['depth']:,} | "
                                  f"{r['transpile_seconds']:.2f}{cached} | {seconds:.1f} |")
                print(f"level {level}, optimisation level {opt}: {seconds:.1f} s", flush=True)
            if level == 2:
                head = quantum_layers(model)["head"]
                for opt in args.optimization_levels:
                    results["unitary_timing"].append(time_one_unitary(head, opt, args.seed))
        rows2 = next(r["rows"] for r in results["runs"] if r["level"] == 2)
        convs = [r for r in rows2 if r["layer"] == "flipped_quanv3x3"]
        head_row = next(r for r in rows2 if r["layer"] == "data_reuploading")
        sections += ["### Reading", "",
                     f"At level 2 the paper's protocol runs {sum(r['executions_per_image'] for r in rows2):,} circuits "
                     f"and {sum(r['shots_per_image'] for r in rows2):,} shots per image, almost all of them for the "
                     f"two quanvolutions. Estimating the quanvolution states once instead takes "
                     f"{sum(r['executions_per_model'] for r in convs):,} circuits and "
                     f"{sum(r['shots_per_model'] for r in convs):,} shots per model; an image then needs only the "
                     f"head's single circuit ({head_row['shots_per_execution']:,} shots), but that circuit has "
                     f"{head_row['two_qubit_gates']:,} CNOTs at depth {head_row['depth']:,} (20 generic 7-qubit "
                     "unitaries), far beyond what current devices run with useful fidelity.", ""]
        sections += counts + ["", "Transpile times marked cached were measured on the first layer of that kind and "
                              "size; estimate s is the wall time of one estimate_resources call (model forward "
                              "for the shapes, circuit construction in float64, transpiling).", ""]
        sections += ["### One generic 7-qubit unitary (one trained SU(128) gate of the head, alone)", "",
                     "| optimisation level | transpile s | CNOTs | depth |", "|---|---|---|---|"]
        sections += [f"| {t['optimization_level']} | {t['seconds']:.2f} | {t['two_qubit_gates']:,} | "
                     f"{t['depth']:,} |" for t in results["unitary_timing"]]
        sections.append("")
    except QcreepError as err:
        print(f"hardware_resources: error: {err}", file=sys.stderr)
        return 2
    text = "\n".join(sections)
    atomic_write_text(out / "resources.md", text)
    atomic_write_json(out / "resources.json", results)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
