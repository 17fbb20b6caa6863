"""Independent cross-check of the simulator and the quantum layers against PennyLane.

PennyLane's ``qml.SpecialUnitary(theta, wires)`` is ``exp(i sum_k theta_k P_k)`` over the same
lexicographic Pauli basis, and wire 0 is the most significant bit of a basis index, the same
convention as ``qcreep``. Circuits run on ``default.qubit`` with the numpy interface in float64.
The number of circuits is kept small (PennyLane is slow to import and to build circuits).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qcreep.layers import DataReUploadingLinear, FlippedQuanv3x3
from qcreep.sim import pauli_words, special_unitary

qml = pytest.importorskip("pennylane")
scipy_linalg = pytest.importorskip("scipy.linalg")

F64 = torch.float64
# both solvers of the unitaries (qcreep.sim.solvers) are checked against PennyLane
SOLVERS = ["eigh", "expm"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(17583)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_special_unitary_state_and_matrix_match_pennylane(n, solver):
    theta = 0.4 * rng(n).standard_normal(4**n - 1)
    wires = list(range(n))
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="numpy")
    def circuit(theta):
        qml.SpecialUnitary(theta, wires=wires)
        return qml.state()

    pl_state = np.asarray(circuit(theta))
    pl_matrix = np.asarray(qml.matrix(qml.SpecialUnitary(theta, wires=wires)))
    ours = special_unitary(torch.from_numpy(theta), solver).numpy()
    assert ours.dtype == np.complex128
    np.testing.assert_allclose(ours[:, 0], pl_state, atol=1e-10, rtol=0)
    np.testing.assert_allclose(ours, pl_matrix, atol=1e-10, rtol=0)
    # a non-trivial comparison: the state is not |0...0>
    assert abs(pl_state[0]) < 1 - 1e-3


def test_pauli_word_order_matches_pennylane():
    """A single angle on word k gives exp(i a P_k), with P_k PennyLane's k-th basis word."""
    words = pauli_words(2)
    a = 0.3
    for k in (0, 3, 6, 14):  # IX, XI, XZ, ZZ
        theta = np.zeros(15)
        theta[k] = a
        pl = np.asarray(qml.matrix(qml.SpecialUnitary(theta, wires=[0, 1])))
        word = qml.pauli.string_to_pauli_word(words[k], wire_map={0: 0, 1: 1})
        p = np.asarray(qml.matrix(word, wire_order=[0, 1]))
        np.testing.assert_allclose(pl, np.cos(a) * np.eye(4) + 1j * np.sin(a) * p, atol=1e-12)
        ours = special_unitary(torch.from_numpy(theta)).numpy()
        np.testing.assert_allclose(ours, pl, atol=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_data_reuploading_matches_pennylane(n, solver):
    reps = 2
    in_features = 4**n - 3  # exercises the zero padding
    out_features = 3
    layer = DataReUploadingLinear(in_features, out_features, n_reps=reps, output_scale="none", solver=solver, dtype=F64)
    g = rng(100 + n)
    theta = 0.3 * g.standard_normal((reps, 4**n - 1))
    with torch.no_grad():
        layer.theta.copy_(torch.from_numpy(theta))
    x = g.standard_normal(in_features)

    padded = np.concatenate([x, np.zeros(4**n - in_features)]).reshape(2**n, 2**n)
    h = 0.5 * (padded + padded.T)
    data_unitary = scipy_linalg.expm(1j * h / reps)
    wires = list(range(n))
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="numpy")
    def circuit():
        for w in wires:
            qml.Hadamard(wires=w)
        for r in range(reps):
            qml.QubitUnitary(data_unitary, wires=wires)
            qml.SpecialUnitary(theta[r], wires=wires)
        return qml.probs(wires=wires)

    pl_probs = np.asarray(circuit())
    assert pl_probs.shape == (2**n,)
    with torch.no_grad():
        ours = (layer(torch.from_numpy(x)) - layer.bias).numpy()
        ours_ref = (layer.forward_reference(torch.from_numpy(x)) - layer.bias).numpy()
    np.testing.assert_allclose(ours, pl_probs[:out_features], atol=1e-10, rtol=0)
    np.testing.assert_allclose(ours_ref, pl_probs[:out_features], atol=1e-10, rtol=0)
    assert np.ptp(pl_probs[:out_features]) > 1e-6  # not a flat distribution


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flipped_quanv_pixel_matches_pennylane(seed, solver):
    layer = FlippedQuanv3x3(1, 1, solver=solver, dtype=F64)
    g = rng(200 + seed)
    theta = g.standard_normal(15)
    with torch.no_grad():
        layer.theta.copy_(torch.from_numpy(theta).reshape(1, 1, 15))
    patch = g.uniform(-1, 1, size=(3, 3))
    a = np.zeros((4, 4))
    a[:3, :3] = patch
    h = 0.5 * (a + a.T)
    dev = qml.device("default.qubit", wires=2)

    @qml.qnode(dev, interface="numpy")
    def circuit():
        qml.SpecialUnitary(theta, wires=[0, 1])
        return qml.expval(qml.Hermitian(h, wires=[0, 1]))

    expected = float(circuit())
    with torch.no_grad():
        image = torch.from_numpy(patch).reshape(1, 1, 3, 3)
        out = layer(image) - layer.bias.reshape(1, 1, 1, 1)
        out_ref = layer.forward_reference(image) - layer.bias.reshape(1, 1, 1, 1)
    assert out.shape == (1, 1, 1, 1)
    assert float(out) == pytest.approx(expected, abs=1e-12)
    assert float(out_ref) == pytest.approx(expected, abs=1e-12)
