"""The amplitude-embedded circuit (circuit-centric classifier) and its twin: against PennyLane's
AmplitudeEmbedding + StronglyEntanglingLayers on the same weights, the fast path against the gate-by-gate
reference, the parameter counts, the contract, the exports, the errors, the all-zero input, and training
in a user's MLP."""

from __future__ import annotations

import time

import pennylane as qml
import pytest
import torch
from torch import nn

from qcreep.creep import creep
from qcreep.errors import QcreepError
from qcreep.layers import AmplitudeCircuit, AmplitudeTwin, count_parameters, create_layer, twin_for
from qcreep.layers.amplitude import MAX_AMPLITUDE_QUBITS, amplitude_qubits, cnot_ring
from qcreep.models import default_quantum, hybridnet
from qcreep.sim.program import Circuit
from qcreep.slots import ConvSlot, DenseSlot
from qcreep.testing import assert_valid_layer

F64 = torch.float64
# (in, out, qubits): padding, an exact power of two, the 30 -> 2 head, and out forcing extra qubits
SIZES = [(5, 3, 3), (16, 4, 4), (30, 2, 5), (3, 8, 3), (2, 2, 1)]


def _pennylane_probabilities(n: int):
    """AmplitudeEmbedding (normalised, zero-padded), StronglyEntanglingLayers (default ranges, CNOT), probs."""
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(x, w):
        qml.AmplitudeEmbedding(x, wires=range(n), normalize=True, pad_with=0.0)
        qml.StronglyEntanglingLayers(w, wires=range(n))
        return qml.probs(wires=range(n))

    return circuit


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def _layer(in_features, out_features, seed, **options) -> AmplitudeCircuit:
    torch.manual_seed(seed)
    layer = AmplitudeCircuit(in_features, out_features, dtype=F64, **options)
    with torch.no_grad():
        layer.bias.normal_()
        layer.log_scale.add_(0.3)
    return layer


@pytest.mark.parametrize("in_features,out_features,n", SIZES)
@pytest.mark.parametrize("layers", [1, 3])
def test_probabilities_and_gradients_equal_pennylane(in_features, out_features, n, layers):
    layer = _layer(in_features, out_features, in_features * 10 + layers, layers=layers)
    assert layer.n_qubits == n
    x = torch.randn(3, in_features, dtype=F64, generator=torch.Generator().manual_seed(layers))
    circuit = _pennylane_probabilities(n)
    w = layer.weights.detach().clone().requires_grad_(True)
    theirs = torch.stack([circuit(row, w) for row in x])  # (B, 2^n)
    ours = layer.probabilities(x)
    assert _diff(ours, theirs[:, :out_features]) < 1e-12
    # the layer's output is the readout of those probabilities
    expected = layer.log_scale.exp() * theirs[:, :out_features] + layer.bias
    assert _diff(layer(x), expected) < 1e-12
    g = torch.randn(3, out_features, dtype=F64, generator=torch.Generator().manual_seed(7))
    (theirs[:, :out_features] * g).sum().backward()
    (ours * g).sum().backward()
    assert _diff(layer.weights.grad, w.grad) < 1e-10


@pytest.mark.parametrize("n,layers", [(2, 3), (3, 4), (4, 5), (5, 2)])
def test_cnot_rings_are_pennylanes_default_ranges(n, layers):
    w = torch.zeros(layers, n, 3, dtype=F64)
    ops = qml.StronglyEntanglingLayers(w, wires=range(n)).decomposition()
    theirs = [tuple(op.wires.tolist()) for op in ops if op.name == "CNOT"]
    assert theirs == [pair for layer in range(layers) for pair in cnot_ring(n, layer)]
    assert cnot_ring(1, 0) == []


@pytest.mark.parametrize("in_features,out_features,layers", [(5, 3, 2), (16, 4, 3), (30, 2, 2), (3, 8, 1),
                                                             (12544, 10, 2)])
def test_fast_path_equals_reference_and_is_unitary(in_features, out_features, layers):
    layer = _layer(in_features, out_features, 11, layers=layers)
    x = torch.randn(2 if in_features > 1000 else 6, in_features, dtype=F64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert float((layer(x) - layer.forward_reference(x)).abs().max()) < 1e-12
        report = layer.physicality(x)
    assert report["max_unitarity_error"] < 1e-13
    assert abs(report["min_state_norm"] - 1) < 1e-13 and abs(report["max_state_norm"] - 1) < 1e-13
    # the probabilities of one circuit's outcomes sum to at most 1
    assert float(layer.probabilities(x).detach().sum(-1).max()) <= 1 + 1e-12


@pytest.mark.parametrize("in_features,out_features,n", [(12544, 10, 14), (30, 2, 5), (16, 4, 4), (3, 8, 3),
                                                        (1024, 10, 10), (7, 5, 3), (20, 32, 5)])
def test_parameter_counts_and_twin_match(in_features, out_features, n):
    assert amplitude_qubits(in_features, out_features) == n
    for layers in (1, 2, 3):
        circuit = AmplitudeCircuit(in_features, out_features, layers=layers)
        gate_params = 3 * layers * n
        assert circuit.num_parameters == gate_params + out_features + 1 == count_parameters(circuit)
        assert circuit.parameter_shapes() == {"weights": (layers, n, 3), "bias": (out_features,), "log_scale": ()}
        twin = AmplitudeTwin(in_features, out_features, layers=layers)
        if gate_params >= out_features:
            assert twin.num_parameters == circuit.num_parameters
        else:  # one free entry per direction at least: 2 out + 1
            assert twin.num_parameters == 2 * out_features + 1 > circuit.num_parameters
        # every direction keeps at least one free entry, and at most one entry of a row is fixed at 0
        free = (twin.direction_matrix() != 0).sum(-1)
        assert int(free.min()) >= max(1, twin.k - 1) and int(free.max()) == twin.k
    assert AmplitudeCircuit(12544, 10).num_parameters == AmplitudeTwin(12544, 10).num_parameters == 95


def test_twin_is_registered_and_reads_out_squared_cosines():
    assert twin_for("amplitude_circuit", "dense") == "amplitude_twin"
    twin = create_layer("amplitude_twin", DenseSlot(9, 4), layers=3, dtype=F64)
    assert isinstance(twin, AmplitudeTwin) and twin.k == 9  # 3 * 3 * 4 angles over 4 directions
    x = 50 * torch.randn(20, 9, dtype=F64)
    with torch.no_grad():
        y = twin(x)
        scale = twin.log_scale.exp()
        # bounded like scale * p_j + b_j, and blind to the input's norm (it embeds x / |x|)
        assert float((y - twin.bias).min()) >= 0 and float((y - twin.bias).max()) <= float(scale) * (1 + 1e-12)
        assert float((twin(3.7 * x) - y).abs().max()) < 1e-12
    circuit = create_layer("amplitude_circuit", DenseSlot(9, 4), layers=3, dtype=F64)
    assert isinstance(circuit, AmplitudeCircuit) and circuit.layers == 3
    with torch.no_grad():
        assert float((circuit(3.7 * x) - circuit(x)).abs().max()) < 1e-12


@pytest.mark.parametrize("name", ["amplitude_circuit", "amplitude_twin"])
@pytest.mark.parametrize("slot", [DenseSlot(6, 5), DenseSlot(3, 8)], ids=["6-5", "3-8"])
def test_contract(name, slot):
    report = assert_valid_layer(name, slot)
    if name == "amplitude_circuit":
        assert {"reference", "physicality", "circuits", "export:qiskit", "export:pennylane", "declared"} <= set(
            report["checks"])
        assert report["skipped"] == {}
    else:
        assert {"gradcheck", "seed", "state_dict", "pickle"} <= set(report["checks"])


def test_export_to_qiskit_pennylane_and_qasm3():
    from qiskit import qasm3, transpile
    from qiskit.quantum_info import Statevector
    from qiskit_aer import AerSimulator

    from qcreep.hardware.export import to_pennylane, to_qasm3, to_qiskit

    layer = _layer(6, 5, 4, layers=2)
    x = torch.randn(6, dtype=F64, generator=torch.Generator().manual_seed(5))
    n = layer.n_qubits
    ours = layer.circuits(x)[0]
    p = ours.probabilities()
    assert _diff(p[:5], layer.probabilities(x[None])[0]) < 1e-12
    circuit = to_qiskit(layer, x)
    assert circuit.data[0].operation.name == "state_preparation"
    state = Statevector(circuit)
    # qcreep qubit k is Qiskit qubit n-1-k: the amplitude arrays are then the same, entry by entry
    assert float((torch.as_tensor(state.data) - ours.statevector()).abs().max()) < 1e-10
    assert float((torch.as_tensor(state.probabilities()) - p).abs().max()) < 1e-10
    # the marginal of qcreep's qubit 0 (the most significant bit) is that of Qiskit's qubit n-1
    top = float(p.reshape(2, -1)[1].sum())
    assert abs(float(state.probabilities([n - 1])[1]) - top) < 1e-10
    assert float((torch.as_tensor(to_pennylane(layer, x)()) - p).abs().max()) < 1e-10
    text = to_qasm3(layer, x)
    assert text.startswith("OPENQASM 3") and "cx" in text
    loaded = torch.as_tensor(Statevector(qasm3.loads(text)).probabilities())
    assert float((loaded - p).abs().max()) < 1e-10
    # shots: a counts key read as a binary number is qcreep's basis index
    measured = to_qiskit(layer, x, measure=True)
    shots = 20000
    counts = AerSimulator(seed_simulator=3).run(transpile(measured, AerSimulator()), shots=shots).result().get_counts()
    estimate = torch.zeros(2**n, dtype=F64)
    for key, c in counts.items():
        estimate[int(key.replace(" ", ""), 2)] += c / shots
    assert float((estimate - p).abs().max()) < 4 * 0.5 / shots**0.5


def test_initial_state_of_a_circuit():
    plus = torch.full((4,), 0.5, dtype=torch.complex128)
    assert torch.allclose(Circuit(2, [], initial=plus).probabilities(), torch.full((4,), 0.25, dtype=F64))
    assert Circuit(2, []).probabilities().tolist() == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(QcreepError, match=r"^the initial state of a 2-qubit circuit is a vector of 4 amplitudes, "
                                          r"got shape \(8,\)$"):
        Circuit(2, [], initial=torch.full((8,), 8**-0.5))
    with pytest.raises(QcreepError, match=r"^the initial state of circuit 'c' has norm 2\.0; it must be 1 within "
                                          r"1e-9"):
        Circuit(2, [], initial=2 * plus, label="c")


def test_errors_are_one_line():
    def one_line(excinfo):
        assert "\n" not in str(excinfo.value)

    with pytest.raises(QcreepError, match=rf"AmplitudeCircuit\({2**20 + 1} -> 2\) needs 21 qubits; it simulates at "
                                          rf"most {MAX_AMPLITUDE_QUBITS}") as info:
        AmplitudeCircuit(2**20 + 1, 2)
    one_line(info)
    assert AmplitudeCircuit.fits(DenseSlot(2**20 + 1, 2)) == "needs 21 qubits, more than the limit of 20"
    assert AmplitudeCircuit.fits(DenseSlot(12544, 10), 10) == "needs 14 qubits, more than the limit of 10"
    assert AmplitudeCircuit.fits(DenseSlot(12544, 10)) is None
    assert AmplitudeCircuit.fits(ConvSlot(1, 2, 3)) == "fills dense slots, not conv slots"
    layer = AmplitudeCircuit(3, 2)
    twin = AmplitudeTwin(3, 2)
    for module, name in ((layer, "AmplitudeCircuit"), (twin, "AmplitudeTwin")):
        with pytest.raises(QcreepError, match=rf"^{name} expects input \(\*, 3\), got \(2, 4\)$") as info:
            module(torch.zeros(2, 4))
        one_line(info)
        with pytest.raises(QcreepError, match=rf"^{name} takes real input; got a complex tensor$"):
            module(torch.zeros(2, 3, dtype=torch.complex64))
    with pytest.raises(QcreepError, match=r"AmplitudeCircuit\.circuits takes one real input of 3 features, got "
                                          r"\(2, 3\)"):
        layer.circuits(torch.ones(2, 3))
    with pytest.raises(QcreepError, match=r"AmplitudeCircuit layers must be"):
        AmplitudeCircuit(3, 2, layers=0)


def test_an_all_zero_input_gives_the_bias():
    layer = _layer(5, 3, 8)
    twin = AmplitudeTwin(5, 3, dtype=F64)
    with torch.no_grad():
        twin.bias.normal_()
    x = torch.randn(3, 5, dtype=F64)
    x[1] = 0
    for module in (layer, twin):
        xg = x.clone().requires_grad_(True)
        y = module(xg)
        assert torch.isfinite(y).all()
        assert torch.equal(y[1].detach(), module.bias.detach())
        y.sum().backward()
        assert torch.isfinite(xg.grad).all() and all(torch.isfinite(p.grad).all() for p in module.parameters())
    with torch.no_grad():
        assert torch.equal(layer.forward_reference(x)[1], layer.bias)
    with pytest.raises(QcreepError, match=r"an all-zero input has no amplitude embedding"):
        layer.circuits(torch.zeros(5))


def test_not_the_default_and_trains_in_a_users_mlp():
    # the paper's layers stay the default quantum candidates: HybridNet's ladder is unchanged
    assert default_quantum("dense") == "data_reuploading"
    assert [s.quantum for s in hybridnet((1, 12, 12)).slots] == ["flipped_quanv3x3", "flipped_quanv3x3",
                                                                  "data_reuploading"]

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    found = creep(mlp, torch.zeros(1, 6))
    assert found.slot("0").qubits["amplitude_circuit"] == 4 and found.slot("2").qubits["amplitude_circuit"] == 4
    built = found.build({"2": "amplitude_circuit"})
    head = built.get_submodule("2")
    assert isinstance(head, AmplitudeCircuit) and (head.in_features, head.out_features) == (16, 3)
    # three Gaussian blobs in 6 dimensions
    gen = torch.Generator().manual_seed(1)
    centres = 2 * torch.randn(3, 6, generator=gen)
    y = torch.arange(60) % 3
    x = centres[y] + 0.5 * torch.randn(60, 6, generator=gen)
    optimiser = torch.optim.Adam(built.parameters(), lr=0.03)
    losses = []
    for _ in range(40):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(built(x), y)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(p.grad).all() for p in built.parameters())
    assert losses[-1] < 0.7 * losses[0], losses[::10]
    twin = found.build({"2": "amplitude_twin"})
    assert isinstance(twin.get_submodule("2"), AmplitudeTwin)
    assert count_parameters(twin.get_submodule("2")) == count_parameters(head)


def test_the_fast_path_is_fast_at_14_qubits():
    layer = AmplitudeCircuit(12544, 10)
    x = torch.randn(256, 12544)
    layer(x[:8]).sum().backward()  # warm up
    start = time.perf_counter()
    layer(x).sum().backward()
    seconds = time.perf_counter() - start
    # about 0.3 s on two cores; a simulation per example would take minutes. A generous bound, for loaded machines
    assert seconds < 10, seconds
