"""Circuit export (qcreep.hardware.export): Qiskit, PennyLane and OpenQASM 3 give qcreep's values.

Every check simulates the exported circuit with another package and compares with the layer's
own output (float64, within 1e-6): the re-uploading head's basis-state probabilities and outputs,
and the flipped quanvolution's output at several positions (two input channels, so the channel
average is exercised).
"""

from __future__ import annotations

import doctest
import sys

import numpy as np
import pytest
import torch

from qcreep.errors import QcreepError
from qcreep.hardware import export
from qcreep.hardware.export import (
    apply_readout,
    measurement_circuits,
    patch_hamiltonian,
    patch_observable,
    pauli_decomposition,
    qubitwise_settings,
    to_pennylane,
    to_qasm3,
    to_qiskit,
)
from qcreep.layers import DataReUploadingLinear, FlippedQuanv3x3
from qcreep.sim import pauli_words, probabilities

qiskit = pytest.importorskip("qiskit")
quantum_info = pytest.importorskip("qiskit.quantum_info")
openqasm3 = pytest.importorskip("openqasm3")
pytest.importorskip("qiskit_qasm3_import")
qml = pytest.importorskip("pennylane")

F64 = torch.float64
TOL = 1e-6
POSITIONS = [(0, 0), (1, 2), (3, 3), (2, 0)]


def trained_head(angles: str = "real", dtype=F64) -> DataReUploadingLinear:
    """3 qubits, 3 re-uploads, 48 -> 6, with parameters moved away from their initial values."""
    torch.manual_seed(13)
    head = DataReUploadingLinear(48, 6, n_qubits=3, n_reps=3, angles=angles, output_scale="learned", dtype=dtype)
    with torch.no_grad():
        head.theta.mul_(0.7).add_(0.2 * torch.randn_like(head.theta))
        head.bias.add_(0.3)
        head.log_scale.add_(0.4)
    return head


def head_input() -> torch.Tensor:
    torch.manual_seed(5)
    return 2 * torch.rand(48, dtype=F64) - 1


def trained_conv(stride: int = 1, padding: int = 0) -> FlippedQuanv3x3:
    torch.manual_seed(21)
    conv = FlippedQuanv3x3(2, 3, stride=stride, padding=padding, dtype=F64)
    with torch.no_grad():
        conv.theta.mul_(0.8).add_(0.1)
    return conv


def image() -> torch.Tensor:
    torch.manual_seed(8)
    return 2 * torch.rand(2, 6, 6, dtype=F64) - 1


def qcreep_probs(head, x) -> np.ndarray:
    with torch.no_grad():
        return probabilities(head.final_states(x[None].to(head.theta.dtype)))[0].double().numpy()


# ---------------------------------------------------------------------------------------------
# The re-uploading head (the done-when bar: 3 qubits, 3 re-uploads)
# ---------------------------------------------------------------------------------------------

def test_head_qiskit_statevector_matches_qcreep():
    head, x = trained_head(), head_input()
    circuit = to_qiskit(head, x)
    assert circuit.num_qubits == 3
    labels = [inst.operation.label for inst in circuit.data if inst.operation.name == "unitary"]
    assert labels == ["exp(iH/R)", "SU(2^n)[1]", "exp(iH/R)", "SU(2^n)[2]", "exp(iH/R)", "SU(2^n)[3]"]
    probs = quantum_info.Statevector(circuit).probabilities()
    np.testing.assert_allclose(probs, qcreep_probs(head, x), atol=TOL, rtol=0)
    # the classical readout in the metadata gives the layer's output
    with torch.no_grad():
        expected = head(x[None])[0].numpy()
    np.testing.assert_allclose(apply_readout(circuit.metadata["readout"], probs), expected, atol=TOL, rtol=0)
    # a non-trivial distribution
    assert probs.max() - probs.min() > 0.05


def test_head_pennylane_matches_qcreep():
    head, x = trained_head(), head_input()
    qnode = to_pennylane(head, x)
    probs = np.asarray(qnode())
    np.testing.assert_allclose(probs, qcreep_probs(head, x), atol=TOL, rtol=0)
    assert qnode.qcreep_metadata["readout"]["out_features"] == 6


def test_head_qasm3_parses_and_round_trips():
    head, x = trained_head(), head_input()
    text = to_qasm3(head, x)
    assert text.startswith("OPENQASM 3")
    openqasm3.parse(text)
    loaded = qiskit.qasm3.loads(text)
    assert set(loaded.count_ops()) <= {"cx", "rz", "sx", "x"}
    probs = quantum_info.Statevector(loaded).probabilities()
    np.testing.assert_allclose(probs, qcreep_probs(head, x), atol=TOL, rtol=0)


def test_head_qasm3_with_measurements_parses():
    head, x = trained_head(), head_input()
    text = to_qasm3(head, x, measure=True, optimization_level=2, seed_transpiler=3)
    openqasm3.parse(text)
    loaded = qiskit.qasm3.loads(text)
    assert loaded.count_ops().get("measure") == 3
    loaded.remove_final_measurements()
    np.testing.assert_allclose(quantum_info.Statevector(loaded).probabilities(), qcreep_probs(head, x),
                               atol=TOL, rtol=0)


def test_float32_head_is_exported_in_double_precision():
    head, x = trained_head(dtype=torch.float32), head_input()
    probs = quantum_info.Statevector(to_qiskit(head, x)).probabilities()
    np.testing.assert_allclose(probs, qcreep_probs(head, x), atol=1e-5, rtol=0)


def test_exported_gates_are_unitary():
    head, x = trained_head(), head_input()
    circuits = [to_qiskit(head, x), to_qiskit(trained_conv(), image(), out_channel=2, in_channel=1)]
    for circuit in circuits:
        gates = [inst.operation for inst in circuit.data if inst.operation.name == "unitary"]
        assert gates
        for gate in gates:
            assert quantum_info.Operator(gate).is_unitary(atol=1e-10)
        assert quantum_info.Operator(circuit).is_unitary(atol=1e-10)


def test_qubit_order_distinguishes_qcreep_qubit_zero():
    """qcreep's qubit 0 (the most significant bit) is Qiskit's qubit n - 1.

    One gate ``exp(-i pi/4 Y)`` on qcreep's qubit 0 (word ``YII``) turns ``|+>`` into ``|1>`` there
    and leaves the other qubits in ``|+>``: only the indices j >= 4 have probability. The reversed
    order would put it on the least significant bit (the odd indices).
    """
    head = DataReUploadingLinear(4, 2, n_qubits=3, n_reps=1, dtype=F64)
    words = pauli_words(3)
    with torch.no_grad():
        head.theta.zero_()
        head.theta[0, words.index("YII")] = -torch.pi / 4
    x = torch.zeros(4, dtype=F64)
    ours = qcreep_probs(head, x)
    np.testing.assert_allclose(ours, [0, 0, 0, 0, 0.25, 0.25, 0.25, 0.25], atol=1e-12)
    circuit = to_qiskit(head, x)
    np.testing.assert_allclose(quantum_info.Statevector(circuit).probabilities(), ours, atol=1e-12)
    # the counts keys read as binary numbers are qcreep's indices: qcreep qubit 0 is the leftmost bit
    keys = quantum_info.Statevector(circuit).probabilities_dict()
    assert all(key[0] == "1" for key, p in keys.items() if p > 1e-12)
    measured = to_qiskit(head, x, measure=True)
    assert measured.count_ops().get("measure") == 3
    np.testing.assert_allclose(np.asarray(to_pennylane(head, x)()), ours, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The flipped quanvolution (two input channels)
# ---------------------------------------------------------------------------------------------

def _conv_output(conv, img, o, position):
    with torch.no_grad():
        return float(conv(img[None])[0, o, position[0], position[1]])


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_quanv_qiskit_and_pennylane_reproduce_the_output(stride, padding):
    conv, img = trained_conv(stride, padding), image()
    for o in (0, 2):
        for position in POSITIONS[:3] if stride == 1 else [(0, 0), (1, 2), (2, 2)]:
            qiskit_values, pennylane_values = [], []
            for c in range(conv.in_channels):
                circuit = to_qiskit(conv, img, out_channel=o, in_channel=c, position=position)
                observable = patch_observable(conv, img, in_channel=c, position=position)
                assert [label for label, _ in circuit.metadata["observable"]] == list(observable.paulis.to_labels())
                qiskit_values.append(quantum_info.Statevector(circuit).expectation_value(observable).real)
                pennylane_values.append(float(to_pennylane(conv, img, out_channel=o, in_channel=c,
                                                           position=position)()))
            expected = _conv_output(conv, img, o, position)
            readout = circuit.metadata["readout"]
            assert readout["weight"] == 0.5
            assert apply_readout(readout, qiskit_values) == pytest.approx(expected, abs=TOL)
            assert apply_readout(readout, pennylane_values) == pytest.approx(expected, abs=TOL)


def test_quanv_qasm3_round_trip():
    conv, img = trained_conv(), image()
    position = (1, 2)
    values = []
    for c in range(2):
        text = to_qasm3(conv, img, out_channel=1, in_channel=c, position=position)
        openqasm3.parse(text)
        loaded = qiskit.qasm3.loads(text)
        observable = patch_observable(conv, img, in_channel=c, position=position)
        values.append(quantum_info.Statevector(loaded).expectation_value(observable).real)
    readout = to_qiskit(conv, img, out_channel=1).metadata["readout"]
    assert apply_readout(readout, values) == pytest.approx(_conv_output(conv, img, 1, position), abs=TOL)


def test_quanv_measurement_settings_give_the_expectation():
    conv, img = trained_conv(), image()
    circuits = measurement_circuits(conv, img, out_channel=0, in_channel=1, position=(2, 1))
    assert [s for s, _ in circuits] == ["XX", "XZ", "YY", "ZX", "ZZ"]
    terms = to_qiskit(conv, img, out_channel=0, in_channel=1, position=(2, 1)).metadata["observable"]
    total = sum(c for label, c in terms if set(label) == {"I"})
    assigned = set()
    for setting, circuit in circuits:
        unmeasured = circuit.remove_final_measurements(inplace=False)
        probs = quantum_info.Statevector(unmeasured).probabilities()  # index j: qcreep's basis index
        for label, coeff in terms:
            if label in assigned or set(label) == {"I"}:
                continue
            if all(a == "I" or a == b for a, b in zip(label, setting)):
                assigned.add(label)
                mask = sum(1 << (1 - k) for k, a in enumerate(label) if a != "I")
                parity = np.array([(-1) ** bin(j & mask).count("1") for j in range(4)])
                total += coeff * float(parity @ probs)
    assert assigned == {label for label, _ in terms if set(label) != {"I"}}
    state = to_qiskit(conv, img, out_channel=0, in_channel=1, position=(2, 1))
    observable = patch_observable(conv, img, in_channel=1, position=(2, 1))
    assert total == pytest.approx(quantum_info.Statevector(state).expectation_value(observable).real, abs=1e-10)


def test_patch_hamiltonian_decomposition_and_settings():
    conv, img = trained_conv(), image()
    h = patch_hamiltonian(conv, img, in_channel=1, position=(3, 3))
    torch.testing.assert_close(h, h.T)
    np.testing.assert_allclose(h[:3, :3], 0.5 * (img[1, 3:6, 3:6] + img[1, 3:6, 3:6].T))
    assert float(h[3].abs().sum()) == 0
    terms = pauli_decomposition(h)
    assert all(label.count("Y") % 2 == 0 for label, _ in terms)  # a real symmetric observable
    observable = patch_observable(conv, img, in_channel=1, position=(3, 3))
    np.testing.assert_allclose(observable.to_matrix(), h.numpy(), atol=1e-12)
    groups = observable.group_commuting(qubit_wise=True)
    assert len(qubitwise_settings(terms)) == len(groups) == 5


# ---------------------------------------------------------------------------------------------
# Errors and docs
# ---------------------------------------------------------------------------------------------

def test_complex_angles_cannot_be_exported():
    head = trained_head(angles="complex")
    for fn in (to_qiskit, to_pennylane, to_qasm3):
        with pytest.raises(QcreepError, match="complex angles.*angles='real'"):
            fn(head, head_input())


def test_bad_arguments_are_one_line_errors():
    conv, img = trained_conv(), image()
    with pytest.raises(QcreepError, match="only quantum layers"):
        to_qiskit(torch.nn.Linear(3, 2), torch.zeros(3))
    with pytest.raises(QcreepError, match="position row must be an integer from 0 to 3"):
        to_qiskit(conv, img, position=(4, 0))
    with pytest.raises(QcreepError, match="out_channel must be an integer from 0 to 2"):
        to_qiskit(conv, img, out_channel=3)
    with pytest.raises(QcreepError, match="one real image"):
        to_qiskit(conv, img[0])
    with pytest.raises(QcreepError, match="measurement_circuits"):
        to_qiskit(conv, img, measure=True)
    with pytest.raises(QcreepError, match="48 features"):
        to_qiskit(trained_head(), torch.zeros(47))


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "qiskit", None)
    with pytest.raises(QcreepError, match=r'pip install "qcreep\[hardware\]"') as err:
        to_qiskit(trained_head(), head_input())
    assert "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "pennylane", None)
    with pytest.raises(QcreepError, match="pennylane"):
        to_pennylane(trained_head(), head_input())


def test_docstring_examples():
    result = doctest.testmod(export, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
