"""Angle re-uploading (Pérez-Salinas et al.) and its product-state twin: values and gradients against a
PennyLane QNode of the same circuit (qml.Rot, qml.CZ), the fast path against the gate-by-gate reference,
the quaternion algebra, the parameter counts, the contract, the register limits, the errors, training on
iris in a user's MLP, and the speed of the 12,544 -> 10 head."""

from __future__ import annotations

import time

import pennylane as qml
import pytest
import torch
from torch import nn

from qcreep.creep import creep
from qcreep.errors import QcreepError
from qcreep.layers import AngleReuploading, AngleReuploadingTwin, count_parameters, create_layer, twin_for
from qcreep.layers.amplitude import rot_matrix
from qcreep.layers.angle import (
    MAX_ANGLE_QUBITS,
    angle_parameter_count,
    compose,
    cz_pairs,
    quaternion_matrix,
    quaternion_rotation,
    rot_quaternion,
)
from qcreep.models import default_quantum
from qcreep.slots import ConvSlot, DenseSlot
from qcreep.testing import assert_valid_layer

F64 = torch.float64
# (in, out, layers, width, qubits): fewer groups than qubits, groups not a multiple of the width (uneven
# uploads per qubit), one CZ on two qubits, a single qubit, and many groups per qubit
CONFIGS = [(4, 3, 2, None, 4), (7, 2, 3, 5, 5), (14, 2, 2, 3, 3), (6, 2, 2, 2, 2), (5, 1, 2, 1, 1), (40, 4, 3, None, 4)]


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def _layer(in_features, out_features, layers, width, seed, cls=AngleReuploading):
    torch.manual_seed(seed)
    layer = cls(in_features, out_features, layers=layers, width=width, dtype=F64)
    with torch.no_grad():  # away from the zero offsets and biases of the start, so that every part shows
        layer.offsets.normal_()
        layer.bias.normal_()
        layer.log_scale.add_(0.3)
    return layer


def _pennylane_expectations(in_features: int, out_features: int, layers: int, n: int):
    """The circuit written out gate by gate in PennyLane (torch interface, backprop through default.qubit)."""
    groups = -(-in_features // 3)
    ring = [] if n == 1 else [(0, 1)] if n == 2 else [(q, (q + 1) % n) for q in range(n)]
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(x, weights, offsets, rotations):
        padded = torch.cat([x, x.new_zeros(3 * groups - in_features)])
        scales = torch.cat([weights, weights.new_zeros(layers, 3 * groups - in_features)], 1)
        for layer in range(layers):
            for g in range(groups):
                a = scales[layer, 3 * g:3 * g + 3] * padded[3 * g:3 * g + 3] + offsets[layer, g]
                qml.Rot(a[0], a[1], a[2], wires=g % n)
            for i, j in ring:
                qml.CZ(wires=[i, j])
            for q in range(n):
                qml.Rot(rotations[layer, q, 0], rotations[layer, q, 1], rotations[layer, q, 2], wires=q)
        return [qml.expval(qml.PauliZ(j)) for j in range(out_features)]

    return circuit


@pytest.mark.parametrize("in_features,out_features,layers,width,n", CONFIGS[:5])
def test_values_and_gradients_equal_pennylane(in_features, out_features, layers, width, n):
    layer = _layer(in_features, out_features, layers, width, in_features * 10 + layers)
    assert layer.n_qubits == n
    x = torch.randn(3, in_features, dtype=F64, generator=torch.Generator().manual_seed(layers))
    circuit = _pennylane_expectations(in_features, out_features, layers, n)
    theirs_x = x.clone().requires_grad_(True)
    params = [p.detach().clone().requires_grad_(True) for p in (layer.weights, layer.offsets, layer.rotations)]
    theirs = torch.stack([torch.stack(list(circuit(theirs_x[b], *params))).reshape(out_features) for b in range(3)])
    ours_x = x.clone().requires_grad_(True)
    ours = layer.expectations(ours_x)
    assert _diff(ours, theirs) < 1e-12
    # the output is the readout of those expectations
    assert _diff(layer(x), layer.log_scale.exp() * theirs + layer.bias) < 1e-12
    g = torch.randn(3, out_features, dtype=F64, generator=torch.Generator().manual_seed(7))
    (theirs * g).sum().backward()
    (ours * g).sum().backward()
    assert _diff(ours_x.grad, theirs_x.grad) < 1e-10
    for mine, other in zip((layer.weights, layer.offsets, layer.rotations), params):
        assert _diff(mine.grad, other.grad) < 1e-10


@pytest.mark.parametrize("in_features,out_features,layers,width,n", CONFIGS + [(12544, 10, 2, None, 10)])
def test_fast_path_equals_reference_and_is_unitary(in_features, out_features, layers, width, n):
    layer = _layer(in_features, out_features, layers, width, 3)
    assert layer.n_qubits == n
    x = torch.randn(1 if in_features > 1000 else 5, in_features, dtype=F64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert _diff(layer(x), layer.forward_reference(x)) < 1e-9
        report = layer.physicality(x)
    assert report["max_unitarity_error"] < 1e-13
    assert abs(report["min_state_norm"] - 1) < 1e-13 and abs(report["max_state_norm"] - 1) < 1e-13
    # the circuit lists every upload: L G of them, and per layer n rotations and the CZ ring
    (program,) = layer.circuits(x[0])
    labels = [gate.label for gate in program.gates]
    groups = -(-in_features // 3)
    assert sum(label.startswith("U") for label in labels) == layers * groups
    assert sum(label.startswith("Rot") for label in labels) == layers * n
    assert labels.count("CZ") == layers * len(cz_pairs(n))


def test_quaternions_are_the_rot_gates_and_their_products():
    gen = torch.Generator().manual_seed(0)
    w = 4 * torch.randn(6, 5, 3, dtype=F64, generator=gen)
    assert _diff(quaternion_matrix(rot_quaternion(w)), rot_matrix(w)) < 1e-14
    for k in (1, 2, 5, 6):
        mats = rot_matrix(w[:k])  # (k, 5, 2, 2): gate 0 first
        product = mats[0]
        for m in mats[1:]:
            product = m @ product
        assert _diff(quaternion_matrix(compose(rot_quaternion(w[:k]))), product) < 1e-13
    # the Bloch rotation of U: R_ij = tr(sigma_i U sigma_j U^H) / 2
    paulis = torch.tensor([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=torch.complex128)
    u = rot_matrix(w[0])  # (5, 2, 2)
    expected = torch.einsum("iab,zbc,jcd,zed->zij", paulis, u, paulis, u.conj()).real / 2
    assert _diff(quaternion_rotation(rot_quaternion(w[0])), expected) < 1e-13
    assert cz_pairs(1) == [] and cz_pairs(2) == [(0, 1)] and cz_pairs(4) == [(0, 1), (1, 2), (2, 3), (3, 0)]


@pytest.mark.parametrize("in_features,out_features,layers,width,n", [(12544, 10, 2, None, 10), (4, 3, 2, None, 4),
                                                                     (30, 2, 1, None, 4), (7, 5, 3, 6, 6),
                                                                     (3, 12, 2, None, 12)])
def test_parameter_counts_and_twin_match(in_features, out_features, layers, width, n):
    groups = -(-in_features // 3)
    expected = layers * in_features + 3 * layers * groups + 3 * layers * n + out_features + 1
    assert angle_parameter_count(in_features, out_features, layers=layers, width=width) == expected
    circuit = AngleReuploading(in_features, out_features, layers=layers, width=width)
    twin = AngleReuploadingTwin(in_features, out_features, layers=layers, width=width)
    assert circuit.n_qubits == twin.width == n and circuit.groups == groups
    assert circuit.num_parameters == count_parameters(circuit) == expected == twin.num_parameters
    shapes = {"weights": (layers, in_features), "offsets": (layers, groups, 3), "rotations": (layers, n, 3),
              "bias": (out_features,), "log_scale": ()}
    assert circuit.parameter_shapes() == shapes
    assert {name: tuple(p.shape) for name, p in twin.named_parameters()} == shapes
    assert AngleReuploading(12544, 10).num_parameters == 50251 < 12544 * 10 + 10


def test_twin_is_the_product_state_simulation():
    assert twin_for("angle_reuploading", "dense") == "angle_reuploading_twin"
    x = torch.randn(6, 10, dtype=F64, generator=torch.Generator().manual_seed(4))
    for layers, width, same in ((1, None, True), (1, 5, True), (3, 1, True), (2, None, False), (2, 2, False)):
        circuit = _layer(10, 1, layers, width, 5)
        twin = _layer(10, 1, layers, width, 5, cls=AngleReuploadingTwin)
        # the same seed gives the same parameters
        assert all(torch.equal(a, b) for a, b in zip(circuit.state_dict().values(), twin.state_dict().values()))
        with torch.no_grad():
            gap = _diff(circuit(x), twin(x))
            norms = twin.bloch_vectors(x).norm(dim=-1)
        assert (gap < 1e-12) == same, (layers, width, gap)
        assert float(norms.max()) <= 1 + 1e-12
    twin = create_layer("angle_reuploading_twin", DenseSlot(9, 4), layers=3, dtype=F64)
    assert isinstance(twin, AngleReuploadingTwin) and twin.layers == 3
    with torch.no_grad():
        z = twin.expectations(50 * torch.randn(20, 9, dtype=F64))
    assert float(z.abs().max()) <= 1 + 1e-12  # bounded like <Z>


@pytest.mark.parametrize("name", ["angle_reuploading", "angle_reuploading_twin"])
@pytest.mark.parametrize("slot,options", [(DenseSlot(6, 5), {}), (DenseSlot(14, 2), {"layers": 3})],
                         ids=["6-5", "14-2-layers3"])
def test_contract(name, slot, options):
    report = assert_valid_layer(name, slot, options=options)
    if name == "angle_reuploading":
        assert {"reference", "physicality", "circuits", "export:qiskit", "export:pennylane", "declared"} <= set(
            report["checks"])
        assert report["skipped"] == {}
    else:
        assert {"gradcheck", "seed", "state_dict", "pickle"} <= set(report["checks"])


def test_qubits_limits_and_errors_are_one_line():
    def one_line(excinfo):
        assert "\n" not in str(excinfo.value)

    assert AngleReuploading.qubits_for(DenseSlot(12544, 10)) == 10
    assert AngleReuploading.qubits_for(DenseSlot(4, 3)) == 4
    assert AngleReuploading.fits(DenseSlot(12544, 10)) is None
    assert AngleReuploading.fits(DenseSlot(12544, 10), 6) == "needs 10 qubits, more than the limit of 6"
    assert AngleReuploading.fits(DenseSlot(16, 13)) == f"needs 13 qubits, more than the limit of {MAX_ANGLE_QUBITS}"
    assert AngleReuploading.fits(DenseSlot(16, 12)) is None
    assert AngleReuploading.fits(ConvSlot(1, 2, 3)) == "fills dense slots, not conv slots"
    with pytest.raises(QcreepError, match=r"^AngleReuploading\(16 -> 13\) needs 13 qubits \(one per output, at least "
                                          r"4\); it simulates at most 12$") as info:
        AngleReuploading(16, 13)
    one_line(info)
    with pytest.raises(QcreepError, match=r"^AngleReuploading width=2 is less than out_features=3: each output is "
                                          r"<Z> of its own qubit$"):
        AngleReuploading(5, 3, width=2)
    with pytest.raises(QcreepError, match=r"AngleReuploadingTwin layers must be an integer >= 1, got 0"):
        AngleReuploadingTwin(5, 3, layers=0)
    assert AngleReuploadingTwin(16, 13).width == 13  # the classical twin has no register limit
    for module, name in ((AngleReuploading(3, 2), "AngleReuploading"),
                         (AngleReuploadingTwin(3, 2), "AngleReuploadingTwin")):
        with pytest.raises(QcreepError, match=rf"^{name} expects input \(\*, 3\), got \(2, 4\)$") as info:
            module(torch.zeros(2, 4))
        one_line(info)
        with pytest.raises(QcreepError, match=rf"^{name} takes real input; got a complex tensor$") as info:
            module(torch.zeros(2, 3, dtype=torch.complex64))
        one_line(info)
    with pytest.raises(QcreepError, match=r"^AngleReuploading\.circuits takes one real input of 3 features, got "
                                          r"\(2, 3\) torch\.float32$"):
        AngleReuploading(3, 2).circuits(torch.ones(2, 3))


def test_scan_slots_and_leading_axes():
    for n in (1, 2, 3, 5):
        slot, options = AngleReuploading.scan_slot(n)
        assert create_layer("angle_reuploading", slot, **options).n_qubits == n
    layer = AngleReuploading(5, 3, dtype=F64)
    x = torch.randn(2, 4, 5, dtype=F64)
    with torch.no_grad():
        assert layer(x).shape == (2, 4, 3)
        assert _diff(layer(x).reshape(8, 3), layer(x.reshape(8, 5))) == 0


def test_not_the_default_and_trains_on_iris_in_a_users_mlp():
    from sklearn.datasets import load_iris

    assert default_quantum("dense") == "data_reuploading"
    data = load_iris()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    found = creep(mlp, torch.zeros(1, 4))
    assert found.slot("2").qubits["angle_reuploading"] == 4
    for name, cls in (("angle_reuploading", AngleReuploading), ("angle_reuploading_twin", AngleReuploadingTwin)):
        torch.manual_seed(1)
        built = found.build({"2": name})
        assert isinstance(built.get_submodule("2"), cls)
        optimiser = torch.optim.Adam(built.parameters(), lr=0.05)
        losses = []
        for _ in range(30):
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(built(x), y)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        assert all(torch.isfinite(p.grad).all() for p in built.parameters())
        assert losses[-1] < 0.6 * losses[0], (name, losses[::5])


def test_the_12544_head_is_fast_at_batch_200():
    torch.manual_seed(0)
    layer = AngleReuploading(12544, 10)
    x = torch.randn(200, 12544)
    layer(x[:8]).sum().backward()  # warm up
    start = time.perf_counter()
    layer(x).sum().backward()
    seconds = time.perf_counter() - start
    # about 0.4 s on one loaded core; a gate-by-gate simulation of its 8364 uploads per example would take minutes
    assert seconds < 10, seconds
