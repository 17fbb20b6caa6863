"""Each quantum layer family against PennyLane's ``TorchLayer`` on the same circuit, side by side.

Issue target: forward + backward at batch 200 at least 100x faster than ``qml.qnn.TorchLayer``
(``default.qubit``, ``diff_method="backprop"``, PennyLane's parameter broadcasting over the batch)
on the same circuit. Both sides get the same angles in float64 and must give the same values to
1e-10 before anything is timed. Timings alternate (ours, theirs, ours, ...) in one process, and the
median of ``--rounds`` rounds is reported for each, with their ratio.

What is timed is the quantum part of each layer, forward and the backward of a random weighted sum
of its outputs, with respect to its inputs and its trainable circuit parameters:

- ``dressed_circuit``: the circuit between the two classical maps, on the embedding angles
  (4 and 6 qubits, depth 6);
- ``angle_reuploading``: ``<Z_j>`` before the learned scale and bias (``AngleReuploading.expectations``),
  12 features -> 4 outputs on 4 qubits, the default 2 layers; gradients for the features and
  ``weights``, ``offsets``, ``rotations``;
- ``amplitude_circuit``: the basis probabilities before the scale and bias
  (``AmplitudeCircuit.probabilities``), 64 -> 10 (6 qubits) and 1024 -> 10 (10 qubits), 2 layers;
  PennyLane: ``AmplitudeEmbedding(normalize=True, pad_with=0)``, ``StronglyEntanglingLayers``,
  ``probs``; gradients for the features and ``weights``;
- ``quanvolution`` and ``trainable_quanvolution``: the per-patch ``<Z_i>`` before the 1x1 mixing
  (``expectations``) on the 400 patches of 4 images of 1x12x12 with a 3x3 kernel (9 qubits); the
  fixed random circuit read from the layer's buffers ``circuit_angles`` and ``circuit_order``, the
  trainable one as ``BasicEntanglerLayers(rotation=qml.RY)``; gradients for the pixels (and the
  trainable ``weights``). The whole layer's output is also checked against the mixing of PennyLane's
  per-patch values (``layer_output_diff``).

Before timing, the gradients of both sides are compared as well (``max_abs_grad_diff``).

    python benchmarks/bench_families.py                 # every family
    python benchmarks/bench_families.py --rounds 3      # quicker
    python benchmarks/bench_families.py --families dressed_circuit amplitude_circuit
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import pennylane as qml
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qcreep.layers import (  # noqa: E402
    AmplitudeCircuit,
    AngleReuploading,
    DressedCircuit,
    Quanvolution,
    TrainableQuanvolution,
)
from qcreep.layers.angle import cz_pairs  # noqa: E402
from qcreep.layers.quanvolution import ladder_pairs  # noqa: E402

F64 = torch.float64
FAMILIES = ("dressed_circuit", "angle_reuploading", "amplitude_circuit", "quanvolution", "trainable_quanvolution")


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


def angle_torchlayer(layer: AngleReuploading) -> qml.qnn.TorchLayer:
    """``AngleReuploading``'s circuit in PennyLane: per layer the ``G`` uploads ``Rot(w_lg x_g + b_lg)`` (group
    ``g`` on wire ``g mod n``, in order), the CZ ring, ``Rot(theta_lq)`` on every wire; ``<Z_j>`` for ``j < out``."""
    n, depth, groups, features = layer.n_qubits, layer.layers, layer.groups, layer.in_features
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(inputs, weights, offsets, rotations):
        for k in range(depth):
            for g in range(groups):
                angles = [weights[k, f] * inputs[..., f] + offsets[k, g, c] if f < features else offsets[k, g, c]
                          for c, f in enumerate(range(3 * g, 3 * g + 3))]  # the last group zero-padded
                qml.Rot(*angles, wires=g % n)
            for a, b in cz_pairs(n):
                qml.CZ(wires=[a, b])
            for q in range(n):
                qml.Rot(rotations[k, q, 0], rotations[k, q, 1], rotations[k, q, 2], wires=q)
        return [qml.expval(qml.PauliZ(j)) for j in range(layer.out_features)]

    shapes = {"weights": (depth, features), "offsets": (depth, groups, 3), "rotations": (depth, n, 3)}
    return qml.qnn.TorchLayer(circuit, shapes)


def amplitude_torchlayer(layer: AmplitudeCircuit) -> qml.qnn.TorchLayer:
    """``AmplitudeCircuit``'s circuit in PennyLane: amplitude embedding of ``x / |x|`` (zero-padded),
    ``StronglyEntanglingLayers`` with its default ranges, all basis probabilities (the first ``out`` are compared)."""
    n = layer.n_qubits
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(inputs, weights):
        qml.AmplitudeEmbedding(inputs, wires=range(n), normalize=True, pad_with=0.0)
        qml.StronglyEntanglingLayers(weights, wires=range(n))
        return qml.probs(wires=range(n))

    return qml.qnn.TorchLayer(circuit, {"weights": (layer.layers, n, 3)})


def quanvolution_torchlayer(layer: Quanvolution) -> qml.qnn.TorchLayer:
    """``Quanvolution``'s fixed circuit in PennyLane: ``RY(pi x_i)`` on wire ``i``, then per layer ``RY(a_li)`` on
    every wire and the CNOT ladder along ``circuit_order[l]``, all read from the layer's buffers; ``<Z_i>``."""
    n = layer.n_qubits
    angles, orders = layer.circuit_angles.tolist(), layer.circuit_order.tolist()
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(inputs):
        for i in range(n):
            qml.RY(math.pi * inputs[..., i], wires=i)
        for a, order in zip(angles, orders):
            for i in range(n):
                qml.RY(a[i], wires=i)
            for control, target in ladder_pairs(order):
                qml.CNOT(wires=[control, target])
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return qml.qnn.TorchLayer(circuit, {})


def trainable_quanvolution_torchlayer(layer: TrainableQuanvolution) -> qml.qnn.TorchLayer:
    """``TrainableQuanvolution``'s circuit in PennyLane: ``RY(pi x_i)``, ``BasicEntanglerLayers(w, rotation=RY)``."""
    n = layer.n_qubits
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(inputs, weights):
        for i in range(n):
            qml.RY(math.pi * inputs[..., i], wires=i)
        qml.BasicEntanglerLayers(weights, wires=range(n), rotation=qml.RY)
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return qml.qnn.TorchLayer(circuit, {"weights": (layer.depth, n)})


def _time(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def _copy_weights(ours: torch.nn.Module, theirs: qml.qnn.TorchLayer, names) -> None:
    with torch.no_grad():
        for name in names:
            getattr(theirs, name).copy_(getattr(ours, name))


def _grads(module: torch.nn.Module, names, fn, x: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    """The gradients of ``sum(g * fn(x))`` for ``x`` and the parameters ``names`` of ``module``."""
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    (fn(x) * g).sum().backward()
    return [x.grad] + [getattr(module, name).grad for name in names]


def race(family: str, ours: torch.nn.Module, ours_fn, theirs: qml.qnn.TorchLayer, theirs_fn, names, x: torch.Tensor,
         rounds: int, steps: int) -> dict:
    """Check that both sides agree (values to 1e-10, and their gradients), then time them in alternating rounds.

    ``ours_fn(x)`` and ``theirs_fn(x)`` give the compared outputs; ``names`` are the trainable circuit
    parameters (the same names on both sides), whose gradients are taken with those of ``x``.
    """
    with torch.no_grad():
        diff = float((ours_fn(x) - theirs_fn(x)).abs().max())
    if diff > 1e-10:
        raise SystemExit(f"{family}: the two circuits disagree by {diff:.3g}; nothing timed")
    g = torch.randn_like(ours_fn(x).detach())
    grad_diff = max(float((a - b).abs().max()) for a, b in zip(_grads(ours, names, ours_fn, x, g),
                                                                _grads(theirs, names, theirs_fn, x, g)))
    if grad_diff > 1e-8:
        raise SystemExit(f"{family}: the two circuits' gradients disagree by {grad_diff:.3g}; nothing timed")

    def step_ours():
        ours.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_(True)
        (ours_fn(inputs) * g).sum().backward()

    def step_theirs():
        theirs.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_(True)
        (theirs_fn(inputs) * g).sum().backward()

    step_ours()
    step_theirs()  # warm-up
    ours_t, theirs_t = [], []
    for _ in range(rounds):
        ours_t.append(_time(step_ours, steps))
        theirs_t.append(_time(step_theirs, max(1, steps // 10)))
    o, t = statistics.median(ours_t), statistics.median(theirs_t)
    return {"family": family, "batch": x.shape[0], "max_abs_diff": diff, "max_abs_grad_diff": grad_diff,
            "grad_wrt": ["inputs", *names], "ours_ms": 1e3 * o, "pennylane_ms": 1e3 * t, "speedup": t / o,
            "rounds": rounds, "ours_rounds_ms": [1e3 * v for v in ours_t],
            "pennylane_rounds_ms": [1e3 * v for v in theirs_t]}


def bench_dressed(width: int, depth: int, batch: int, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    ours = DressedCircuit(16, 10, width=width, depth=depth, dtype=F64)
    with torch.no_grad():
        ours.weights.normal_()
    theirs = dressed_torchlayer(width, depth).to(F64)
    _copy_weights(ours, theirs, ["weights"])
    q = torch.rand(batch, width, dtype=F64) * 3 - 1.5  # the angles after the input map

    def ours_expectations(angles):
        phi = ours.embedded(angles) @ ours.variational().T
        return (phi * phi) @ ours._signs

    result = race("dressed_circuit", ours, ours_expectations, theirs, theirs, ["weights"], q, rounds, steps)
    return {**result, "qubits": width, "width": width, "depth": depth}


def bench_angle(in_features: int, out_features: int, batch: int, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    ours = AngleReuploading(in_features, out_features, dtype=F64)
    with torch.no_grad():
        ours.offsets.normal_()  # offsets start at 0: make them count in the check
    theirs = angle_torchlayer(ours).to(F64)
    names = ["weights", "offsets", "rotations"]
    _copy_weights(ours, theirs, names)
    x = torch.randn(batch, in_features, dtype=F64)
    result = race("angle_reuploading", ours, ours.expectations, theirs, theirs, names, x, rounds, steps)
    return {**result, "qubits": ours.n_qubits, "in_features": in_features, "out_features": out_features,
            "layers": ours.layers}


def bench_amplitude(in_features: int, out_features: int, batch: int, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    ours = AmplitudeCircuit(in_features, out_features, dtype=F64)
    theirs = amplitude_torchlayer(ours).to(F64)
    _copy_weights(ours, theirs, ["weights"])
    x = torch.randn(batch, in_features, dtype=F64)

    def theirs_probabilities(inputs):
        return theirs(inputs)[:, :out_features]

    result = race("amplitude_circuit", ours, ours.probabilities, theirs, theirs_probabilities, ["weights"], x,
                  rounds, steps)
    return {**result, "qubits": ours.n_qubits, "in_features": in_features, "out_features": out_features,
            "layers": ours.layers}


def bench_quanvolution(trainable: bool, images: int, size: int, kernel: int, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    if trainable:
        ours = TrainableQuanvolution(1, 4, kernel_size=kernel, dtype=F64)
        theirs, names = trainable_quanvolution_torchlayer(ours).to(F64), ["weights"]
        _copy_weights(ours, theirs, names)
    else:
        ours = Quanvolution(1, 4, kernel_size=kernel, dtype=F64)
        theirs, names = quanvolution_torchlayer(ours).to(F64), []
    n = ours.n_qubits
    pictures = torch.rand(images, 1, size, size, dtype=F64)
    patches = F.unfold(pictures, kernel).transpose(1, 2).reshape(-1, n)  # (images * P, n), row-major in a patch
    family = "trainable_quanvolution" if trainable else "quanvolution"
    result = race(family, ours, ours.expectations, theirs, theirs, names, patches, rounds, steps)
    with torch.no_grad():  # the whole layer: its 1x1 mixing of PennyLane's per-patch values
        hw = size - kernel + 1
        mixed = theirs(patches).reshape(images, hw * hw, n) @ ours.mix_weight.T + ours.mix_bias
        mixed = mixed.transpose(1, 2).reshape(images, ours.out_channels, hw, hw)
        layer_diff = float((ours(pictures) - mixed).abs().max())
    if layer_diff > 1e-10:
        raise SystemExit(f"{family}: the layer's output and the mixing of PennyLane's disagree by {layer_diff:.3g}")
    return {**result, "qubits": n, "kernel": kernel, "images": [images, 1, size, size], "patches": patches.shape[0],
            "layer_output_diff": layer_diff}


def _size(r: dict) -> str:
    if r["family"] == "dressed_circuit":
        return f"depth {r['depth']}, batch {r['batch']}"
    if "kernel" in r:
        return f"{r['kernel']}x{r['kernel']} kernel, {r['patches']} patches of {'x'.join(map(str, r['images']))}"
    return f"{r['in_features']} -> {r['out_features']}, {r['layers']} layers, batch {r['batch']}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="timed steps of ours per round (PennyLane: a tenth)")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--images", type=int, default=4, help="images of 1 x size x size for the quanvolutions")
    parser.add_argument("--image-size", type=int, default=12)
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_families.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    b, r, s = args.batch, args.rounds, args.steps
    runs = {
        "dressed_circuit": lambda: [bench_dressed(w, d, b, r, s) for w, d in ((4, 6), (6, 6))],
        "angle_reuploading": lambda: [bench_angle(12, 4, b, r, s)],
        "amplitude_circuit": lambda: [bench_amplitude(i, 10, b, r, s) for i in (64, 1024)],
        "quanvolution": lambda: [bench_quanvolution(False, args.images, args.image_size, 3, r, s)],
        "trainable_quanvolution": lambda: [bench_quanvolution(True, args.images, args.image_size, 3, r, s)],
    }
    results = []
    for family in args.families:
        for res in runs[family]():
            results.append(res)
            print(f"{res['family']} {res['qubits']} qubits, {_size(res)}: ours {res['ours_ms']:.3f} ms, "
                  f"PennyLane TorchLayer {res['pennylane_ms']:.1f} ms, {res['speedup']:.1f}x "
                  f"(values agree to {res['max_abs_diff']:.1e}, gradients to {res['max_abs_grad_diff']:.1e})",
                  flush=True)
    meta = {"torch": torch.__version__, "pennylane": qml.__version__, "threads": args.threads,
            "steps": args.steps, "pennylane_steps": max(1, args.steps // 10)}
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
