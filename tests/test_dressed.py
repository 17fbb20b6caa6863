"""The dressed quantum circuit (Mari et al.) and its twin: against PennyLane on the same circuit, the
parameter counts, the twin's match, and the family in a slot of HybridNet and of a user's model."""

from __future__ import annotations

import math

import numpy as np
import pennylane as qml
import pytest
import torch
from torch import nn

from qcreep.creep import creep
from qcreep.layers import DressedCircuit, DressedTwin, create_layer, twin_for
from qcreep.layers.dressed import cnot_pairs
from qcreep.models import build_model
from qcreep.slots import DenseSlot

F64 = torch.float64


def _pennylane_expectations(width: int, depth: int):
    """The demo's circuit in PennyLane, with the torch interface (backprop through default.qubit)."""
    dev = qml.device("default.qubit", wires=width)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(q, w):
        for i in range(width):
            qml.Hadamard(wires=i)
        for i in range(width):
            qml.RY(q[i], wires=i)
        for k in range(depth):
            for i in range(0, width - 1, 2):
                qml.CNOT(wires=[i, i + 1])
            for i in range(1, width - 1, 2):
                qml.CNOT(wires=[i, i + 1])
            for i in range(width):
                qml.RY(w[k, i], wires=i)
        return [qml.expval(qml.PauliZ(i)) for i in range(width)]

    return circuit


@pytest.mark.parametrize("width,depth", [(4, 6), (5, 3), (1, 2), (3, 1)])
def test_expectations_and_gradients_equal_pennylane(width, depth):
    torch.manual_seed(width * 10 + depth)
    layer = DressedCircuit(7, 3, width=width, depth=depth, dtype=F64)
    with torch.no_grad():
        layer.weights.normal_()  # away from the near-identity start, so the entanglers matter
    x = torch.randn(4, 7, dtype=F64)
    circuit = _pennylane_expectations(width, depth)
    q = layer.angles_in(x).detach()
    w = layer.weights.detach().clone().requires_grad_(True)
    theirs = torch.stack([torch.stack(list(circuit(q[b], w))) for b in range(4)])
    ours = layer.expectations(x)
    assert torch.allclose(ours, theirs, atol=1e-12, rtol=0)
    # gradient of the same scalar with respect to the circuit angles
    g = torch.randn(4, width, generator=torch.Generator().manual_seed(1), dtype=F64)
    (theirs * g).sum().backward()
    (ours * g).sum().backward()
    assert torch.allclose(layer.weights.grad, w.grad, atol=1e-11, rtol=0)


def test_cnot_ladder_is_the_demo_order():
    assert cnot_pairs(4) == [(0, 1), (2, 3), (1, 2)]
    assert cnot_pairs(5) == [(0, 1), (2, 3), (1, 2), (3, 4)]
    assert cnot_pairs(1) == []


@pytest.mark.parametrize("in_features,out_features,width,depth", [(512, 2, 4, 6), (30, 2, 4, 6), (12544, 10, 4, 6),
                                                                   (10, 4, 3, 2)])
def test_parameter_count_formula_and_twin_match(in_features, out_features, width, depth):
    layer = DressedCircuit(in_features, out_features, width=width, depth=depth)
    expected = width * in_features + width + depth * width + out_features * width + out_features
    assert layer.num_parameters == expected == sum(p.numel() for p in layer.parameters())
    twin = DressedTwin(in_features, out_features, width=width, depth=depth)
    assert twin.num_parameters == expected
    assert {n: p.shape for n, p in twin.named_parameters()} == {n: p.shape for n, p in layer.named_parameters()}


def test_the_paper_transfer_learning_head_has_the_demo_count():
    # ResNet18 features (512) -> 4 qubits, depth 6 -> 2 classes, as in the demo: 2052 + 24 + 10
    assert DressedCircuit(512, 2).num_parameters == 512 * 4 + 4 + 24 + 4 * 2 + 2 == 2086


def test_twin_is_registered_and_bounded_like_z_expectations():
    assert twin_for("dressed_circuit", "dense") == "dressed_twin"
    twin = create_layer("dressed_twin", DenseSlot(6, 3), width=5, depth=2)
    assert isinstance(twin, DressedTwin) and twin.width == 5
    # the middle map is an orthogonal mixing of sin(q): bounded by ||sin q|| <= sqrt(n), like <Z_i> in norm
    torch.manual_seed(0)
    with torch.no_grad():
        twin.weights.normal_()
    x = 100 * torch.randn(50, 6)
    with torch.no_grad():
        g = twin.mixing()
        assert torch.allclose(g @ g.T, torch.eye(5), atol=1e-6)
        q = (math.pi / 2) * torch.tanh(twin.pre(x))
        z = twin.middle(q)
        assert torch.allclose(z.norm(dim=-1), torch.sin(q).norm(dim=-1), atol=1e-5)
        assert torch.allclose(twin.post(z), twin(x))


def test_twin_mixing_is_the_ordered_product_of_givens_rotations():
    twin = DressedTwin(3, 2, width=3, depth=2, dtype=F64)
    torch.manual_seed(1)
    with torch.no_grad():
        twin.weights.normal_()
    expected = torch.eye(3, dtype=F64)
    for k in range(2):
        for i in range(3):
            j = (i + 1) % 3
            rotation = torch.eye(3, dtype=F64)
            angle = float(twin.weights.detach()[k, i])
            c, s = math.cos(angle), math.sin(angle)
            rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
            expected = rotation @ expected
    assert torch.allclose(twin.mixing(), expected, atol=1e-14, rtol=0)
    # at zero angles the twin is the circuit without entanglers: z = sin(q), and <Z_i> = -sin(q_i)
    circuit = DressedCircuit(3, 2, width=3, depth=1, dtype=F64)
    zero = DressedTwin(3, 2, width=3, depth=1, dtype=F64)
    with torch.no_grad():
        zero.weights.zero_()
        circuit.weights.zero_()
        q = torch.randn(4, 3, dtype=F64)
        assert torch.allclose(zero.middle(q), torch.sin(q), atol=1e-15, rtol=0)
        circuit.pre.weight.copy_(torch.eye(3, dtype=F64))
        circuit.pre.bias.zero_()
        x = torch.randn(4, 3, dtype=F64)
        z = circuit.expectations(x)
        q = (math.pi / 2) * torch.tanh(x)
        # with RY(0) layers only the CNOT ladder acts: <Z_0> is untouched by it
        assert torch.allclose(z[:, 0], -torch.sin(q[:, 0]), atol=1e-12, rtol=0)


def test_one_qubit_twin_shifts_the_angle_as_the_one_qubit_circuit_does():
    torch.manual_seed(2)
    twin = DressedTwin(4, 2, width=1, depth=3, dtype=F64)
    circuit = DressedCircuit(4, 2, width=1, depth=3, dtype=F64)
    with torch.no_grad():
        circuit.load_state_dict(twin.state_dict())
        x = torch.randn(6, 4, dtype=F64)
        q = (math.pi / 2) * torch.tanh(twin.pre(x))
        assert torch.allclose(circuit.expectations(x)[:, 0], -twin.middle(q)[:, 0], atol=1e-12, rtol=0)


def test_physical_and_normalised():
    torch.manual_seed(3)
    layer = DressedCircuit(9, 2, width=6, depth=4, dtype=F64)
    with torch.no_grad():
        layer.weights.normal_()
    report = layer.physicality(torch.randn(8, 9, dtype=F64))
    assert report["max_unitarity_error"] < 1e-13
    assert abs(report["min_state_norm"] - 1) < 1e-13 and abs(report["max_state_norm"] - 1) < 1e-13
    z = layer.expectations(torch.randn(8, 9, dtype=F64)).detach()
    assert float(z.abs().max()) <= 1 + 1e-12


def test_in_hybridnets_head_and_in_a_users_mlp():
    torch.manual_seed(0)
    model = build_model((1, 8, 8), num_classes=10, assignment="conv1=conv2d,conv2=conv2d,head=dressed_circuit")
    head = model.get_submodule("head")
    assert isinstance(head, DressedCircuit) and head.in_features == 4 * 4 * 4 * 4
    out = model(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 10) and torch.isfinite(out).all()

    mlp = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    found = creep(mlp, torch.zeros(1, 6))
    assert found.slot("0").qubits["dressed_circuit"] == 4
    built = found.build({"0": "dressed_circuit", "2": "dressed_twin"})
    assert isinstance(built.get_submodule("0"), DressedCircuit) and isinstance(built.get_submodule("2"), DressedTwin)
    loss = nn.functional.cross_entropy(built(torch.randn(5, 6)), torch.tensor([0, 1, 2, 0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in built.parameters())


def test_bad_sizes_are_one_line_errors():
    from qcreep.errors import QcreepError

    with pytest.raises(QcreepError, match=r"DressedCircuit width \(qubits\) must be"):
        DressedCircuit(3, 2, width=0)
    with pytest.raises(QcreepError, match=r"simulates at most 12 qubits; width=13"):
        DressedCircuit(3, 2, width=13)
    with pytest.raises(QcreepError, match=r"DressedCircuit expects input \(\*, 3\), got \(2, 4\)"):
        DressedCircuit(3, 2)(torch.zeros(2, 4))
    assert np.isfinite(DressedCircuit(3, 2)(torch.zeros(1, 3)).detach().numpy()).all()


def test_export_to_qiskit_pennylane_and_qasm3():
    from qiskit import transpile
    from qiskit.quantum_info import Statevector
    from qiskit_aer import AerSimulator

    from qcreep.hardware.export import to_pennylane, to_qasm3, to_qiskit

    torch.manual_seed(2)
    layer = DressedCircuit(5, 2, width=3, depth=2, dtype=F64)
    with torch.no_grad():
        layer.weights.normal_()
    x = torch.randn(5, dtype=F64)
    z = layer.expectations(x[None])[0].detach()
    circuit = to_qiskit(layer, x)
    assert circuit.metadata["circuits_for_this_input"] == 3
    probs = torch.as_tensor(Statevector(circuit).probabilities())  # qcreep's basis order (see program_to_qiskit)
    signs = torch.tensor([[1 - 2 * ((j >> (2 - q)) & 1) for q in range(3)] for j in range(8)], dtype=F64)
    assert torch.allclose(probs @ signs, z, atol=1e-12)
    assert abs(float(to_pennylane(layer, x)()) - float(z[0])) < 1e-12
    text = to_qasm3(layer, x)
    assert text.startswith("OPENQASM 3") and "cx" in text
    # shots on the measured circuit estimate <Z_i> within sampling error
    measured = to_qiskit(layer, x, measure=True)
    counts = AerSimulator(seed_simulator=3).run(transpile(measured, AerSimulator()), shots=20000).result().get_counts()
    estimate = torch.zeros(3, dtype=F64)
    for key, c in counts.items():
        j = int(key.replace(" ", ""), 2)
        estimate += c * signs[j]
    assert torch.allclose(estimate / 20000, z, atol=4 / 20000**0.5)  # 4 standard errors of a mean of +-1
