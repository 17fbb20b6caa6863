"""The quanvolution layers (Henderson et al.'s fixed random circuit and the trainable variant) and their twins:
shapes as nn.Conv2d, the fast path against the gate-by-gate reference, values and gradients against PennyLane
on the same circuits, the contract, the parameter counts, the fixed circuit from its seed and from a
state_dict, the qubit limit, the errors, the class of map, and a speed sanity check."""

from __future__ import annotations

import math
import time

import pennylane as qml
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qcreep.creep import creep
from qcreep.errors import QcreepError
from qcreep.layers import (
    Quanvolution,
    QuanvolutionTwin,
    TrainableQuanvolution,
    TrainableQuanvolutionTwin,
    count_parameters,
    create_layer,
    get_layer_entry,
    twin_for,
)
from qcreep.layers.quanvolution import MAX_QUANVOLUTION_QUBITS, ladder_pairs, quanvolution_qubits, ring_pairs
from qcreep.models import default_quantum
from qcreep.slots import ConvSlot, DenseSlot
from qcreep.testing import assert_valid_layer

F64 = torch.float64
CLASSES = [Quanvolution, TrainableQuanvolution, QuanvolutionTwin, TrainableQuanvolutionTwin]
# (kernel, stride, padding, dilation, C_in, C_out)
GEOMETRIES = [(3, 1, 0, 1, 1, 4), (2, 2, 1, 1, 3, 2), ((2, 3), 1, (1, 0), 1, 2, 3), (3, 2, 2, 2, 1, 5),
              (1, 1, 0, 1, 2, 2), ((2, 5), (2, 1), 1, 1, 1, 2)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


def _one_line(excinfo) -> None:
    assert "\n" not in str(excinfo.value)


def _patch(image: torch.Tensor, c: int, row: int, col: int, layer) -> torch.Tensor:
    """The patch at output position (row, col) of channel c, by slicing the zero-padded image (no unfold)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_hw, layer._stride, layer._padding, layer._dilation
    padded = F.pad(image, (pw, pw, ph, ph))
    top, left = row * sh, col * sw
    return padded[c, top:top + dh * (kh - 1) + 1:dh, left:left + dw * (kw - 1) + 1:dw].reshape(-1)


# ============================================================================ shapes and the reference


@pytest.mark.parametrize("kernel,stride,padding,dilation,c_in,c_out", GEOMETRIES)
def test_output_shape_is_conv2ds(kernel, stride, padding, dilation, c_in, c_out):
    x = torch.randn(2, c_in, 9, 8, generator=_gen(0))
    expected = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation)(x).shape
    for cls in CLASSES:
        layer = cls(c_in, c_out, kernel, stride, padding, dilation)
        y = layer(x)
        assert y.shape == expected and y.dtype == torch.float32 and torch.isfinite(y).all(), cls.__name__
        assert layer(x[0]).shape == expected[1:]  # an unbatched image
        slot = ConvSlot(c_in, c_out, kernel, stride, padding, dilation)
        assert tuple(y.shape[1:]) == slot.output_shape((c_in, 9, 8))


@pytest.mark.parametrize("cls", [Quanvolution, TrainableQuanvolution])
@pytest.mark.parametrize("kernel,stride,padding,dilation,c_in,c_out", GEOMETRIES[:5])
def test_fast_path_equals_the_reference(cls, kernel, stride, padding, dilation, c_in, c_out):
    torch.manual_seed(3)
    layer = cls(c_in, c_out, kernel, stride, padding, dilation, dtype=F64)
    x = torch.randn(2, c_in, 6, 7, generator=_gen(1), dtype=F64)
    with torch.no_grad():
        assert _diff(layer(x), layer.forward_reference(x)) < 1e-9
        report = layer.physicality(x)
    assert report["max_unitarity_error"] < 1e-12
    assert abs(report["min_state_norm"] - 1) < 1e-12 and abs(report["max_state_norm"] - 1) < 1e-12
    # the fast path's folded circuit is the whole circuit: U = M R_1, orthogonal
    u = layer.unitary()
    assert _diff(u.T @ u, torch.eye(u.shape[0], dtype=F64)) < 1e-12


@pytest.mark.parametrize("cls", [Quanvolution, TrainableQuanvolution])
@pytest.mark.parametrize("kernel", [1, 2, (1, 3), 3])
def test_layer_by_layer_states_equal_the_dense_matrix_route(cls, kernel):
    """The fast path (gathers and A x B products on the states) against the product state times ``M^T``,
    in values, in gradients for the pixels and the circuit, and under ``vmap`` of ``jacrev``."""
    from torch.func import jacrev, vmap

    from qcreep.layers.quanvolution import product_state

    torch.manual_seed(5)
    layer = cls(1, 2, kernel, dtype=F64)
    n = layer.n_qubits
    pixels = torch.rand(3, 4, n, generator=_gen(2), dtype=F64, requires_grad=True)
    weights = torch.randn(3, 4, n, generator=_gen(3), dtype=F64)

    def dense(x):
        angles = layer.rotation_angles()
        phi = product_state(math.pi * x + angles[0]) @ layer.unitary_rest().T
        return (phi * phi) @ layer._signs

    fast, slow = layer.expectations(pixels), dense(pixels)
    assert _diff(fast, slow) < 1e-13
    assert _diff(layer.states(pixels).norm(dim=-1), torch.ones(3, 4, dtype=F64)) < 1e-13
    params = [pixels] + ([layer.weights] if cls is TrainableQuanvolution else [])
    g_fast = torch.autograd.grad((fast * weights).sum(), params)
    g_slow = torch.autograd.grad((slow * weights).sum(), params)
    for a, b in zip(g_fast, g_slow):
        assert _diff(a, b) < 1e-12
    flat = pixels.detach().reshape(-1, n)[:5]
    jac = vmap(jacrev(layer.expectations))(flat)
    loop = torch.stack([torch.autograd.functional.jacobian(dense, row) for row in flat])
    assert jac.shape == (5, n, n) and _diff(jac, loop) < 1e-12


# ============================================================================ against PennyLane


def _pennylane_expectations(layer):
    """The same circuit, written with PennyLane's own gates: qml.RY embedding, then the layer's circuit."""
    n = layer.n_qubits
    dev = qml.device("default.qubit", wires=n)
    fixed = isinstance(layer, Quanvolution)
    if fixed:
        angles = layer.circuit_angles.detach()
        ladders = [ladder_pairs(order) for order in layer.circuit_order.tolist()]

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(x, w=None):
        for p in range(n):
            qml.RY(math.pi * x[p], wires=p)
        if fixed:
            for layer_angles, pairs in zip(angles, ladders):
                for i in range(n):
                    qml.RY(layer_angles[i], wires=i)
                for control, target in pairs:
                    qml.CNOT(wires=[control, target])
        else:
            qml.BasicEntanglerLayers(w, wires=range(n), rotation=qml.RY)
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return circuit


@pytest.mark.parametrize("kernel,padding,c_in", [(3, 1, 2), (2, 0, 1), ((1, 3), 0, 1)])
def test_fixed_circuit_equals_pennylane(kernel, padding, c_in):
    torch.manual_seed(5)
    layer = Quanvolution(c_in, 3, kernel, padding=padding, dtype=F64)
    image = torch.randn(c_in, 5, 5, generator=_gen(2), dtype=F64)
    circuit = _pennylane_expectations(layer)
    h_out, w_out = layer.output_hw(5, 5)
    positions = [(0, 0), (h_out - 1, w_out - 1), (h_out // 2, 1 % w_out)]
    y = layer(image[None])[0]
    for row, col in positions:
        patches = torch.stack([_patch(image, c, row, col, layer) for c in range(c_in)])  # (C, n)
        theirs = torch.stack([torch.stack(list(circuit(p))) for p in patches])
        assert _diff(layer.expectations(patches), theirs) < 1e-12
        # the output at that position is the 1x1 mixing of those expectations
        assert _diff(y[:, row, col], layer.mix_weight @ theirs.reshape(-1) + layer.mix_bias) < 1e-12


@pytest.mark.parametrize("kernel,depth", [(3, 2), (2, 3), ((1, 2), 1), (1, 2)])
def test_trainable_circuit_values_and_gradients_equal_pennylane(kernel, depth):
    torch.manual_seed(6)
    layer = TrainableQuanvolution(1, 2, kernel, depth=depth, dtype=F64)
    image = torch.randn(1, 4, 4, generator=_gen(3), dtype=F64)
    patches = torch.stack([_patch(image, 0, r, c, layer) for r, c in ((0, 0), (1, 1), (0, 1))])  # (3, n)
    circuit = _pennylane_expectations(layer)
    w = layer.weights.detach().clone().requires_grad_(True)
    x_theirs = patches.clone().requires_grad_(True)
    theirs = torch.stack([torch.stack(list(circuit(x_theirs[i], w))) for i in range(3)])
    x_ours = patches.clone().requires_grad_(True)
    ours = layer.expectations(x_ours)
    assert _diff(ours, theirs) < 1e-12
    g = torch.randn(ours.shape, generator=_gen(4), dtype=F64)
    (theirs * g).sum().backward()
    (ours * g).sum().backward()
    assert _diff(layer.weights.grad, w.grad) < 1e-10
    assert _diff(x_ours.grad, x_theirs.grad) < 1e-10  # and with respect to the pixels


def test_circuit_structure():
    assert ring_pairs(4) == [(0, 1), (1, 2), (2, 3), (3, 0)] and ring_pairs(2) == [(0, 1)] and ring_pairs(1) == []
    assert ladder_pairs([2, 0, 1]) == [(2, 0), (0, 1)]
    layer = Quanvolution(1, 2, 3, layers=3, circuit_seed=1)
    # every random layer's order is a permutation of the 9 qubits: its ladder entangles all of them
    assert all(sorted(order) == list(range(9)) for order in layer.circuit_order.tolist())
    circuits = layer.circuits(torch.randn(1, 4, 4))
    assert len(circuits) == 4 and circuits[0].metadata["position"] == (0, 0)
    labels = [g.label for g in circuits[0].gates]
    assert labels[:9] == [f"RY(pi x{p})" for p in range(9)]
    assert labels.count("CNOT") == 3 * 8 and len(labels) == 9 + 3 * (9 + 8)
    assert [g.qubits for g in circuits[0].gates if g.label == "CNOT"][:8] == ladder_pairs(layer.circuit_order[0])


# ============================================================================ contract, twins, counts


@pytest.mark.parametrize("name", ["quanvolution", "trainable_quanvolution", "quanvolution_twin",
                                  "trainable_quanvolution_twin"])
@pytest.mark.parametrize("slot", [ConvSlot(2, 3, 2, padding=1), ConvSlot(1, 2, 3, stride=2)], ids=["2x2", "3x3"])
def test_contract(name, slot):
    report = assert_valid_layer(name, slot)
    if name.endswith("_twin"):
        assert {"gradcheck", "seed", "state_dict", "pickle"} <= set(report["checks"])
    else:
        assert {"reference", "physicality", "circuits", "export:qiskit", "export:pennylane", "declared"} <= set(
            report["checks"])
        assert report["skipped"] == {}


@pytest.mark.parametrize("kernel,c_in,c_out", [(3, 1, 32), (3, 32, 64), (2, 3, 8), ((2, 5), 2, 5), (1, 4, 4)])
@pytest.mark.parametrize("layers", [1, 2, 4])
def test_parameter_counts_and_twins_match(kernel, c_in, c_out, layers):
    n = quanvolution_qubits(kernel)
    fixed, trainable = Quanvolution(c_in, c_out, kernel, layers=layers), TrainableQuanvolution(c_in, c_out, kernel,
                                                                                              depth=layers)
    conv = nn.Conv2d(c_in, c_out, kernel)
    assert fixed.num_parameters == n * c_in * c_out + c_out == count_parameters(conv) == count_parameters(fixed)
    assert fixed.parameter_shapes() == {"mix_weight": (c_out, n * c_in), "mix_bias": (c_out,)}
    assert trainable.num_parameters == layers * n + n * c_in * c_out + c_out == count_parameters(trainable)
    assert trainable.parameter_shapes() == {"mix_weight": (c_out, n * c_in), "mix_bias": (c_out,),
                                            "weights": (layers, n)}
    twin = QuanvolutionTwin(c_in, c_out, kernel, layers=layers)
    trainable_twin = TrainableQuanvolutionTwin(c_in, c_out, kernel, depth=layers)
    assert count_parameters(twin) == twin.num_parameters == fixed.num_parameters
    assert count_parameters(trainable_twin) == trainable_twin.num_parameters == trainable.num_parameters
    assert {k: tuple(p.shape) for k, p in trainable_twin.named_parameters()} == {
        "mix_weight": (c_out, n * c_in), "mix_bias": (c_out,), "phases": (layers, n)}


def test_registry_twins_and_the_default_is_unchanged():
    assert twin_for("quanvolution", "conv") == "quanvolution_twin"
    assert twin_for("trainable_quanvolution", "conv") == "trainable_quanvolution_twin"
    for name in ("quanvolution", "trainable_quanvolution"):
        assert get_layer_entry(name, "conv").quantum
        assert get_layer_entry(name, "conv").qubits_for(ConvSlot(1, 2, 3)) == 9
    assert default_quantum("conv") == "flipped_quanv3x3"
    slot = ConvSlot(2, 4, 3, padding=1)
    assert isinstance(create_layer("quanvolution", slot, layers=3, circuit_seed=4, n_reps=2), Quanvolution)
    assert create_layer("trainable_quanvolution", slot, depth=5).depth == 5
    assert create_layer("quanvolution_twin", slot, layers=3).modes == 3
    assert create_layer("trainable_quanvolution_twin", slot, depth=5).phases.shape == (5, 9)


# ============================================================================ the fixed circuit: seed, state_dict


def test_fixed_circuit_from_its_seed_and_from_a_state_dict():
    torch.manual_seed(0)
    a = Quanvolution(2, 3, 3, circuit_seed=11)
    torch.manual_seed(1)
    b = Quanvolution(2, 3, 3, circuit_seed=11)
    c = Quanvolution(2, 3, 3, circuit_seed=12)
    # the circuit follows circuit_seed, whatever the global state; the mixing follows the global state
    assert torch.equal(a.circuit_angles, b.circuit_angles) and torch.equal(a.circuit_order, b.circuit_order)
    assert not torch.equal(a.circuit_angles, c.circuit_angles)
    assert not torch.equal(a.mix_weight, b.mix_weight)
    # without circuit_seed the circuit comes from torch's global generator
    torch.manual_seed(7)
    d = Quanvolution(2, 3, 3)
    torch.manual_seed(7)
    e = Quanvolution(2, 3, 3)
    assert torch.equal(d.circuit_angles, e.circuit_angles) and torch.equal(d.unitary(), e.unitary())
    assert {"circuit_angles", "circuit_order", "mix_weight", "mix_bias"} == set(a.state_dict())
    # a checkpoint carries the circuit: loading it reproduces outputs and the circuits
    x = torch.randn(2, 2, 6, 6, generator=_gen(8))
    c.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert torch.equal(c(x), a(x))
    ga, gc = a.circuits(x[0])[0].gates, c.circuits(x[0])[0].gates
    assert all(p.qubits == q.qubits and torch.equal(p.matrix, q.matrix) for p, q in zip(ga, gc))
    # the twin's fixed random features are buffers too, reproduced the same ways
    t1, t2 = QuanvolutionTwin(2, 3, circuit_seed=3), QuanvolutionTwin(2, 3, circuit_seed=3)
    assert torch.equal(t1.frequencies, t2.frequencies) and torch.equal(t1.phases, t2.phases)
    assert set(t1.frequencies.unique().tolist()) <= {-1.0, 0.0, 1.0} and bool(t1.frequencies.abs().sum(-1).min() > 0)
    t3 = QuanvolutionTwin(2, 3, circuit_seed=4)
    t3.load_state_dict(t1.state_dict())
    with torch.no_grad():
        assert torch.equal(t3(x), t1(x))


# ============================================================================ limits and errors


def test_too_large_kernels_are_refused_with_the_reason():
    big = ConvSlot(1, 4, 5, padding=2)
    for cls in (Quanvolution, TrainableQuanvolution):
        assert cls.qubits_for(big) == 25
        assert cls.fits(big) == "needs 25 qubits (one per pixel of the 5x5 kernel), more than the limit of 10"
        assert cls.fits(ConvSlot(1, 4, 3)) is None and cls.fits(ConvSlot(1, 4, (2, 5))) is None
        assert cls.fits(ConvSlot(1, 4, (3, 4))) == ("needs 12 qubits (one per pixel of the 3x4 kernel), more than "
                                                    "the limit of 10")
        assert cls.fits(ConvSlot(1, 4, 3), 8) == "needs 9 qubits (one per pixel of the 3x3 kernel), more than the " \
                                                 "limit of 8"
        assert cls.fits(ConvSlot(1, 4, 3), 40) is None
        assert cls.fits(ConvSlot(1, 4, (3, 4)), 40) == ("needs 12 qubits (one per pixel of the 3x4 kernel), more "
                                                        "than the limit of 10")
        assert cls.fits(DenseSlot(4, 2)) == "fills conv slots, not dense slots"
        with pytest.raises(QcreepError, match=rf"^{cls.__name__} with a 5x5 kernel needs 25 qubits \(one per pixel\); "
                                              rf"it simulates at most {MAX_QUANVOLUTION_QUBITS}$") as info:
            cls(1, 4, 5)
        _one_line(info)
    with pytest.raises(QcreepError, match=r"with a 4x4 kernel needs 16 qubits"):
        create_layer("quanvolution", ConvSlot(1, 2, 4))
    # the twins are classical: they fill any kernel
    assert QuanvolutionTwin(1, 4, 5, padding=2)(torch.randn(1, 1, 6, 6)).shape == (1, 4, 6, 6)


def test_creep_still_fills_a_slot_that_only_another_quantum_layer_fits():
    model = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.Conv2d(2, 3, 3), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 2))
    found = creep(model, torch.zeros(1, 1, 8, 8))
    assert found.slot("0").qubits == {"flipped_quanv3x3": 3, "quanvolution": 25, "trainable_quanvolution": 25}
    assert found.slot("2").qubits == {"flipped_quanv3x3": 2, "quanvolution": 9, "trainable_quanvolution": 9}
    assert found.unfillable == []
    built = found.build({"2": "trainable_quanvolution"})
    assert isinstance(built.get_submodule("2"), TrainableQuanvolution)
    assert built(torch.randn(2, 1, 8, 8)).shape == (2, 2)
    # a slot is unfillable only when every quantum layer of its kind exceeds the limit
    unfillable = [u.name for u in creep(model, torch.zeros(1, 1, 8, 8), max_qubits=2).unfillable]
    assert "0" in unfillable and "2" not in unfillable


def test_errors_are_one_line_qcreep_errors():
    for cls in CLASSES:
        layer, name = cls(2, 3, 3), cls.__name__
        with pytest.raises(QcreepError, match=rf"^{name} expects input \(B, 2, H, W\) or \(2, H, W\), got "
                                              rf"\(4, 1, 6, 6\)$") as info:
            layer(torch.zeros(4, 1, 6, 6))
        _one_line(info)
        with pytest.raises(QcreepError, match=rf"^{name} expects input .* got \(2, 6\)$"):
            layer(torch.zeros(2, 6))
        with pytest.raises(QcreepError, match=rf"^{name} takes real input; got a complex tensor$") as info:
            layer(torch.zeros(1, 2, 6, 6, dtype=torch.complex64))
        _one_line(info)
        with pytest.raises(QcreepError, match=rf"^{name} needs images of at least 3x3 after padding, got "
                                              rf"\(1, 2, 2, 6\)$"):
            layer(torch.zeros(1, 2, 2, 6))
        with pytest.raises(QcreepError, match=rf"^{name} in_channels must be an integer >= 1, got 0$"):
            cls(0, 3)
    with pytest.raises(QcreepError, match=r"^Quanvolution\.circuits takes one image \(2, H, W\), got \(2, 2, 5, 5\)$"):
        Quanvolution(2, 3).circuits(torch.zeros(2, 2, 5, 5))
    with pytest.raises(QcreepError, match=r"^Quanvolution layers must be an integer >= 1, got 0$"):
        Quanvolution(1, 2, layers=0)
    with pytest.raises(QcreepError, match=r"^TrainableQuanvolution depth must be an integer >= 1, got 0$"):
        TrainableQuanvolution(1, 2, depth=0)


# ============================================================================ the class of map


@pytest.mark.parametrize("cls", CLASSES)
def test_features_are_bounded_periodic_and_multilinear_in_cos_sin_of_each_pixel(cls):
    """Quantum and twin features are the same kind of function: in [-1, 1], of period 2 in each pixel, and
    ``A + B cos(pi x_p) + C sin(pi x_p)`` in any one pixel ``x_p`` (the others fixed)."""
    torch.manual_seed(9)
    layer = cls(1, 2, 2, dtype=F64)
    features = layer.expectations if hasattr(layer, "expectations") else layer.features
    x = torch.randn(50, 1, 4, generator=_gen(10), dtype=F64)  # pixel values (..., C, n)
    z = features(x).detach()
    assert float(z.abs().max()) <= 1 + 1e-12
    shifted = x.clone()
    shifted[..., 2] += 2.0
    assert _diff(features(shifted), z) < 1e-12
    # fit A, B, C from three values of pixel 1, predict a fourth
    base = x[:1].clone()
    ts = torch.tensor([0.1, 0.6, 1.3, -0.7], dtype=F64)
    values = []
    for t in ts:
        point = base.clone()
        point[..., 1] = t
        values.append(features(point)[0, 0])
    design = torch.stack([torch.ones_like(ts), torch.cos(math.pi * ts), torch.sin(math.pi * ts)], -1)
    coeffs = torch.linalg.solve(design[:3], torch.stack(values[:3]))
    assert _diff(design[3] @ coeffs, values[3]) < 1e-10


# ============================================================================ speed and training


def test_speed_sanity_and_a_training_step():
    x = torch.randn(16, 1, 8, 8, generator=_gen(11))
    for cls in (Quanvolution, TrainableQuanvolution):
        torch.manual_seed(12)
        layer = cls(1, 4, 3)  # 9 qubits, 36 positions, 576 patches
        layer(x[:2]).sum().backward()  # warm up
        start = time.perf_counter()
        y = layer(x)
        (y * y).mean().backward()
        seconds = time.perf_counter() - start
        # tens of milliseconds on two cores; a generous bound for a loaded machine
        assert seconds < 5, (cls.__name__, seconds)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    model = nn.Sequential(TrainableQuanvolution(1, 4, 2, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    y = torch.arange(16) % 2
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = F.cross_entropy(model(x + y[:, None, None, None].float()), y)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
