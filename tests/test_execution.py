"""Finite shots and depolarising noise (qcreep.hardware.execution, .noise, .shots).

The noise is checked against two independent simulators of mixed states, PennyLane's
``default.mixed`` (``DepolarizingChannel(p)``) and Qiskit Aer's density-matrix method
(``depolarizing_error(4 p / 3, 1)``); the shot estimators against their exact means and variances
over many seeded repetitions. All in float64.
"""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest
import torch

from qcreep.data import get_spec
from qcreep.errors import QcreepError
from qcreep.hardware.execution import (
    DEFAULT_NOISE,
    DEFAULT_SHOTS,
    ExecutedLayer,
    Execution,
    evaluate_execution,
    evaluate_grid,
    executed,
)
from qcreep.hardware.noise import (
    aer_lambda,
    depolarize,
    diagonal_probabilities,
    pure_density_matrices,
    quanv_density_matrices,
    quanv_kernel,
    reupload_density_matrices,
)
from qcreep.hardware.shots import (
    AUTO_EXACT_MAX_DRAWS,
    REAL_WORDS,
    SETTINGS,
    image_generators,
    patch_coefficients,
    pauli_expectations,
    quanv_shot_variance,
    quanv_shots_exact,
    quanv_shots_gaussian,
    resolve_shots_mode,
    sample_counts,
)
from qcreep.layers import DataReUploadingLinear, FlippedQuanv3x3
from qcreep.models import build_model
from qcreep.sim import hamiltonian_embedding, pauli_matrices, pauli_words

F64 = torch.float64
PAULI = {
    "I": np.eye(2, dtype=complex),
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "Z": np.array([[1, 0], [0, -1]], dtype=complex),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(2409)


def split_excess(got: torch.Tensor, expected: torch.Tensor, tol: float = 1e-12) -> float:
    """``max |got - expected|`` in multiples of a float64 rounding tolerance relative to the output's
    scale (at most 1 where a batch split agrees with the whole batch)."""
    return float((got - expected).abs().max()) / (tol * max(1.0, float(expected.abs().max())))


def head(n=3, reps=2, in_features=40, out_features=5, **kw):
    kw.setdefault("output_scale", "none")  # the estimates below are read as probabilities plus the biases
    kw.setdefault("bias_init", "normal")
    return DataReUploadingLinear(in_features, out_features, n_qubits=n, n_reps=reps, dtype=F64, **kw)


def random_density(n, seed=0):
    g = np.random.default_rng(seed)
    a = g.standard_normal((2**n, 2**n)) + 1j * g.standard_normal((2**n, 2**n))
    rho = a @ a.conj().T
    return torch.from_numpy(rho / np.trace(rho).real)


def on_qubit(letter, q, n):
    m = np.eye(1, dtype=complex)
    for k in range(n):
        m = np.kron(m, PAULI[letter] if k == q else PAULI["I"])
    return m


# ---------------------------------------------------------------- Execution


def test_execution_validates_and_labels():
    assert Execution().exact and Execution().label == "exact"
    assert Execution(shots=100, noise=1e-3).label == "shots=100, noise=0.001"
    assert Execution(noise=0).noise == 0.0 and isinstance(Execution(noise=0).noise, float)
    for bad in (dict(shots=0), dict(shots=-5), dict(shots=1.5), dict(shots=True), dict(noise=-0.1),
                dict(noise=0.8), dict(noise=float("nan")), dict(seed=-1), dict(shots_mode="fast")):
        with pytest.raises(QcreepError) as err:
            Execution(**bad)
        assert "\n" not in str(err.value)
    assert Execution(noise=0.75).noise == 0.75
    assert aer_lambda(0.75) == 1.0


# ---------------------------------------------------------------- the depolarising channel


@pytest.mark.parametrize("p", [0.0, 0.05, 0.4, 0.75])
def test_depolarize_matches_the_kraus_form_on_each_qubit(p):
    n = 3
    rho = random_density(n, 1)
    for q in range(n):
        r = rho.numpy()
        kraus = (1 - p) * r + (p / 3) * sum(on_qubit(s, q, n) @ r @ on_qubit(s, q, n) for s in "XYZ")
        np.testing.assert_allclose(depolarize(rho, n, p, qubits=[q]).numpy(), kraus, atol=1e-13, rtol=0)
    # all qubits: the channels commute, so the order does not matter
    both = depolarize(depolarize(rho, n, p, qubits=[2]), n, p, qubits=[0, 1])
    torch.testing.assert_close(depolarize(rho, n, p), both, atol=1e-14, rtol=0)


def test_depolarize_scales_pauli_expectations_by_weight():
    rho = random_density(2, 2)
    p = 0.1
    lam = 4 * p / 3
    noisy = depolarize(rho, 2, p)
    words = pauli_words(2)
    mats = pauli_matrices(2, dtype=torch.complex128)
    for word, m in zip(words, mats):
        weight = sum(ch != "I" for ch in word)
        before = torch.einsum("ij,ji->", m, rho)
        after = torch.einsum("ij,ji->", m, noisy)
        assert abs(after - (1 - lam) ** weight * before) < 1e-14


# ---------------------------------------------------------------- the re-uploading head under noise


def _pennylane_head(layer, x, p):
    qml = pytest.importorskip("pennylane")
    n, reps = layer.n_qubits, layer.n_reps
    v = hamiltonian_embedding(layer.data_hamiltonians(x), 1 / reps, "eigh")[0].detach().numpy()
    gates = layer.trainable_unitaries().detach().numpy()
    dev = qml.device("default.mixed", wires=n)

    def noise():
        for w in range(n):
            qml.DepolarizingChannel(p, wires=w)

    @qml.qnode(dev)
    def circuit():
        for w in range(n):
            qml.Hadamard(w)
        noise()
        for r in range(reps):
            qml.QubitUnitary(v, wires=range(n))
            noise()
            qml.QubitUnitary(gates[r], wires=range(n))
            noise()
        return qml.density_matrix(wires=range(n))

    return np.asarray(circuit())


def _aer_head(layer, x, p):
    pytest.importorskip("qiskit_aer")
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, depolarizing_error

    n, reps = layer.n_qubits, layer.n_reps
    v = hamiltonian_embedding(layer.data_hamiltonians(x), 1 / reps, "eigh")[0].detach().numpy()
    gates = layer.trainable_unitaries().detach().numpy()
    circuit = QuantumCircuit(n)
    # qcreep qubit k is Qiskit qubit n - 1 - k: a full-register matrix in qcreep's order acts on
    # Qiskit qubits [0, ..., n - 1] (the first of which is the least significant bit)
    for q in range(n):
        circuit.h(q)
    for r in range(reps):
        circuit.unitary(v, list(range(n)))
        circuit.unitary(gates[r], list(range(n)))
    circuit.save_density_matrix()
    one = depolarizing_error(aer_lambda(p), 1)
    every_qubit = one
    for _ in range(n - 1):
        every_qubit = every_qubit.tensor(one)
    model = NoiseModel()
    model.add_all_qubit_quantum_error(one, ["h"])
    model.add_all_qubit_quantum_error(every_qubit, ["unitary"])
    result = AerSimulator(method="density_matrix", noise_model=model).run(circuit).result()
    return np.asarray(result.data(0)["density_matrix"])


@pytest.mark.parametrize("reps", [2, 3])
def test_noisy_head_matches_pennylane_default_mixed_and_aer(reps):
    layer = head(3, reps)
    x = torch.randn(2, 40, dtype=F64)
    p = 0.06
    with torch.no_grad():
        rho = reupload_density_matrices(layer, x, p)
        out = executed(layer, Execution(noise=p))(x)
    for b in range(2):
        ref_pl = _pennylane_head(layer, x[b:b + 1], p)
        ref_aer = _aer_head(layer, x[b:b + 1], p)
        np.testing.assert_allclose(rho[b].numpy(), ref_pl, atol=1e-10, rtol=0)
        np.testing.assert_allclose(rho[b].numpy(), ref_aer, atol=1e-10, rtol=0)
        probs = torch.from_numpy(np.diagonal(ref_pl).real.copy())
        torch.testing.assert_close(out[b], layer.readout(probs).detach(), atol=1e-10, rtol=0)
    # the noise is visible: the noisy output is not the exact one
    assert float((out - layer(x).detach()).abs().max()) > 1e-4


@pytest.mark.parametrize("p", [0.0, 1e-3, 0.2, 0.75])
def test_head_density_matrices_are_states(p):
    layer = head(3, 3)
    x = torch.randn(4, 40, dtype=F64)
    with torch.no_grad():
        rho = reupload_density_matrices(layer, x, p)
    trace = torch.diagonal(rho, dim1=-2, dim2=-1).sum(-1)
    assert float((trace - 1).abs().max()) < 1e-12
    assert float((rho - rho.mH).abs().max()) < 1e-12
    assert float(torch.linalg.eigvalsh(rho).min()) >= -1e-10
    if p == 0.0:
        with torch.no_grad():
            exact = layer(x)
            out = layer.readout(diagonal_probabilities(rho))
        assert float((out - exact).abs().max()) < 1e-10
        assert float(torch.diagonal(rho @ rho, dim1=-2, dim2=-1).sum(-1).real.min()) > 1 - 1e-10  # pure
    if p == 0.75:
        torch.testing.assert_close(rho, torch.eye(8, dtype=rho.dtype).expand_as(rho) / 8, atol=1e-12, rtol=0)


def test_noise_free_density_path_matches_the_layer_with_output_scale():
    layer = head(2, 4, in_features=16, out_features=4, output_scale="learned", bias_init="zero")
    x = torch.randn(3, 16, dtype=F64)
    with torch.no_grad():
        out = layer.readout(diagonal_probabilities(reupload_density_matrices(layer, x, 0.0)))
        torch.testing.assert_close(out, layer(x), atol=1e-10, rtol=0)


# ---------------------------------------------------------------- the flipped quanvolution under noise


def test_noisy_quanv_states_match_pennylane_and_aer():
    qml = pytest.importorskip("pennylane")
    pytest.importorskip("qiskit_aer")
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, depolarizing_error

    conv = FlippedQuanv3x3(2, 2, dtype=F64)
    p = 0.09
    with torch.no_grad():
        rho = quanv_density_matrices(conv, p)
        gates = conv.gates().numpy()
    dev = qml.device("default.mixed", wires=2)
    model = NoiseModel()
    model.add_all_qubit_quantum_error(depolarizing_error(aer_lambda(p), 1).tensor(
        depolarizing_error(aer_lambda(p), 1)), ["unitary"])
    sim = AerSimulator(method="density_matrix", noise_model=model)
    for o in range(2):
        for c in range(2):
            @qml.qnode(dev)
            def circuit(u=gates[o, c]):
                qml.QubitUnitary(u, wires=[0, 1])
                qml.DepolarizingChannel(p, wires=0)
                qml.DepolarizingChannel(p, wires=1)
                return qml.density_matrix(wires=[0, 1])

            np.testing.assert_allclose(rho[o, c].numpy(), np.asarray(circuit()), atol=1e-12, rtol=0)
            qc = QuantumCircuit(2)
            qc.unitary(gates[o, c], [0, 1])
            qc.save_density_matrix()
            aer = np.asarray(sim.run(qc).result().data(0)["density_matrix"])
            np.testing.assert_allclose(rho[o, c].numpy(), aer, atol=1e-12, rtol=0)


def test_noisy_quanv_output_is_the_measured_patch_hamiltonian():
    conv = FlippedQuanv3x3(2, 3, dtype=F64)
    x = torch.randn(2, 2, 5, 5, dtype=F64)
    p = 0.05
    with torch.no_grad():
        out = executed(conv, Execution(noise=p))(x)
        rho = quanv_density_matrices(conv, p)
    # measure every patch: <H> = Tr(rho H), H = (A + A^T) / 2 of the zero-padded patch
    patches = x.unfold(2, 3, 1).unfold(3, 3, 1)  # (B, C, 3, 3, 3, 3)
    padded = torch.nn.functional.pad(patches, (0, 1, 0, 1))
    h = 0.5 * (padded + padded.transpose(-1, -2))
    values = torch.einsum("bcijkl,oclk->bocij", h.to(rho.dtype), rho)
    assert float(values.imag.abs().max()) < 1e-12
    expected = values.real.mean(2) + conv.bias.detach()[None, :, None, None]
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    # p = 0 gives the layer's own kernel, p = 3/4 the maximally mixed kernel I/4 (top-left 3x3) / C_in
    with torch.no_grad():
        torch.testing.assert_close(quanv_kernel(quanv_density_matrices(conv, 0.0), 2), conv.kernel(),
                                   atol=1e-14, rtol=0)
        mixed = quanv_density_matrices(conv, 0.75)
    torch.testing.assert_close(mixed, torch.eye(4, dtype=mixed.dtype).expand_as(mixed) / 4, atol=1e-14, rtol=0)


# ---------------------------------------------------------------- shots: the head


def test_head_counts_have_multinomial_mean_and_variance():
    p = torch.tensor([0.05, 0.3, 0.0, 0.15, 0.5], dtype=F64)
    shots, reps = 40, 4000
    gens = image_generators(11, 0, 0, reps)
    counts = sample_counts(p.expand(reps, -1), shots, 4, gens)
    est = counts / shots
    mean, var = est.mean(0), est.var(0)
    target_var = p[:4] * (1 - p[:4]) / shots
    # standard error of the mean: sqrt(var / reps); of the variance: about var * sqrt(2 / reps)
    assert bool(((mean - p[:4]).abs() <= 5 * (target_var / reps).sqrt() + 1e-12).all())
    assert bool(((var - target_var).abs() <= 5 * target_var * math.sqrt(2 / reps) + 1e-12).all())
    assert float(counts[:, 2].abs().max()) == 0.0  # a zero-probability outcome never occurs
    # a joint constraint of the multinomial: the counts never exceed the shots in total
    assert float(counts.sum(1).max()) <= shots
    cov01 = float(((est[:, 0] - mean[0]) * (est[:, 1] - mean[1])).mean())
    assert abs(cov01 - (-p[0] * p[1] / shots)) < 5 * float(p[0] * p[1] / shots) * math.sqrt(2 / reps) + 2e-5


def test_head_shots_are_seeded_and_independent_of_batch_size():
    layer = head(3, 2)
    x = torch.randn(6, 40, dtype=F64)
    ex = Execution(shots=500, noise=0.01, seed=4)
    with torch.no_grad():
        a = executed(layer, ex)(x)
        b = executed(layer, ex)(x)
        split = executed(layer, ex)
        c = torch.cat([split(x[:2]), split(x[2:])])
        other = executed(layer, Execution(shots=500, noise=0.01, seed=5))(x)
        split.reset()
        d = torch.cat([split(x[:5]), split(x[5:])])
    # the same shapes again: bitwise; other batch splits: to rounding (the probabilities of another
    # batch size may round differently, and a count changes only if a draw falls within that
    # rounding of its binomial's boundary), far below one count (1 / 500)
    assert torch.equal(a, b)
    assert split_excess(c, a) <= 1 and split_excess(d, a) <= 1
    assert not torch.equal(a, other)
    # the estimates are counts / shots on top of the biases
    frac = (a - layer.bias.detach()) * 500
    assert float((frac - frac.round()).abs().max()) < 1e-8


def test_head_shots_approach_the_exact_output():
    layer = head(3, 2)
    x = torch.randn(5, 40, dtype=F64)
    with torch.no_grad():
        exact = layer(x)
        errors = [float((executed(layer, Execution(shots=s, seed=1))(x) - exact).abs().max())
                  for s in (100, 10**4, 10**8)]
    # about 1 / (2 sqrt(S)) at most for a probability
    assert errors[0] < 0.2 and errors[1] < 0.02 and errors[2] < 1e-3
    assert errors[2] < errors[0]


# ---------------------------------------------------------------- shots: the flipped quanvolution


def test_patch_coefficients_reconstruct_the_patch_hamiltonian():
    conv = FlippedQuanv3x3(2, 1, dtype=F64)
    x = torch.randn(1, 2, 3, 3, dtype=F64)
    h = patch_coefficients(conv, x)[0, :, :, 0, 0]  # (C, 10)
    mats = pauli_matrices(2, dtype=torch.complex128)
    words = [mats[pauli_words(2).index(w)].real for w in REAL_WORDS]
    for c in range(2):
        a = torch.nn.functional.pad(x[0, c], (0, 1, 0, 1))
        ham = 0.5 * (a + a.T)
        rebuilt = h[c, 0] * torch.eye(4, dtype=F64) + sum(h[c, 1 + k] * words[k] for k in range(9))
        torch.testing.assert_close(rebuilt, ham, atol=1e-14, rtol=0)
    # the imaginary-antisymmetric words (odd number of Y) have no coefficient in a real symmetric H
    assert len(REAL_WORDS) == 9 and all(w.count("Y") % 2 == 0 for w in REAL_WORDS)


def test_settings_are_those_of_the_export():
    export = pytest.importorskip("qcreep.hardware.export")
    settings = export.qubitwise_settings(list(REAL_WORDS))
    assert export.assign_terms(list(REAL_WORDS), settings) == {k: list(v) for k, v in SETTINGS.items()}
    assert sorted(w for words in SETTINGS.values() for w in words) == sorted(REAL_WORDS)


def test_pauli_expectations_of_noisy_states():
    conv = FlippedQuanv3x3(1, 2, dtype=F64)
    with torch.no_grad():
        pure = pauli_expectations(pure_density_matrices(conv.states()))
        noisy = pauli_expectations(quanv_density_matrices(conv, 0.3))
    lam = 0.4
    weights = torch.tensor([sum(ch != "I" for ch in w) for w in REAL_WORDS], dtype=F64)
    torch.testing.assert_close(noisy, pure * (1 - lam) ** weights, atol=1e-14, rtol=0)


def _repeats(image, reps):
    return image.expand(reps, *image.shape[1:]).contiguous()


@pytest.mark.parametrize("p, angle_scale", [(0.0, 1.0), (0.1, 1.0), (0.0, 0.15)])
def test_quanv_exact_and_gaussian_shots_match_the_exact_mean_and_variance(p, angle_scale):
    conv = FlippedQuanv3x3(2, 2, dtype=F64)
    with torch.no_grad():
        conv.theta.mul_(angle_scale)  # small angles: near |00>, some <P> near 1 and their shot noise near 0
    image = torch.randn(1, 2, 4, 4, dtype=F64)
    shots, reps = 30, 3000
    xs = _repeats(image, reps)
    with torch.no_grad():
        rho = quanv_density_matrices(conv, p)
        expectations = pauli_expectations(rho)
        mean = executed(conv, Execution(noise=p))(image)[0]
        var = quanv_shot_variance(conv, image, expectations, shots)[0]
        exact = quanv_shots_exact(conv, xs, expectations, shots, image_generators(0, 0, 0, reps))
        full_mean = torch.nn.functional.conv2d(xs, quanv_kernel(rho, 2), conv.bias, stride=1)
        gauss = quanv_shots_gaussian(conv, xs, full_mean, expectations, shots, image_generators(1, 0, 0, reps))
    assert float(var.min()) > 0
    for sample in (exact, gauss):
        emp_mean, emp_var = sample.mean(0), sample.var(0)
        assert bool(((emp_mean - mean).abs() <= 5 * (var / reps).sqrt()).all())
        assert bool(((emp_var - var).abs() <= 6 * var * math.sqrt(2 / reps)).all())
    # the two modes agree with each other in distribution: their quantiles at the 10/50/90% levels
    q = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    qe, qg = exact.flatten(1).quantile(q, dim=0), gauss.flatten(1).quantile(q, dim=0)
    assert bool(((qe - qg).abs() <= 0.3 * var.sqrt().flatten()).all())


def test_quanv_shots_through_executed_are_seeded_and_batch_independent():
    conv = FlippedQuanv3x3(2, 3, dtype=F64)
    x = torch.randn(4, 2, 6, 6, dtype=F64)
    with torch.no_grad():
        for mode in ("exact", "gaussian"):
            ex = Execution(shots=200, noise=0.02, seed=9, shots_mode=mode)
            a = executed(conv, ex)(x)
            assert torch.equal(executed(conv, ex)(x), a)  # the same shapes again: bitwise
            split = executed(conv, ex)
            b = torch.cat([split(x[:1]), split(x[1:])])
            # a batch split: the patch convolutions of other batch sizes may round differently
            assert split_excess(b, a) <= 1, mode
            c = executed(conv, Execution(shots=200, noise=0.02, seed=10, shots_mode=mode))(x)
            assert not torch.equal(a, c)
            assert float((a - executed(conv, Execution(noise=0.02))(x)).abs().max()) > 1e-3
        big = executed(conv, Execution(shots=10**9, seed=0, shots_mode="exact"))(x)
        torch.testing.assert_close(big, conv(x), atol=2e-3, rtol=0)


def test_a_shot_stream_off_by_one_fails_the_split_comparison(monkeypatch):
    """A planted bug: the second part of a batch split starts its shot streams one image late.

    The comparison above catches it by a wide margin (shot noise against a rounding tolerance),
    for the quanvolution in both modes and for the head.
    """
    honest = ExecutedLayer._generators

    def one_late(self, count):
        if self.images_seen:
            self.images_seen += 1
        return honest(self, count)

    conv, layer = FlippedQuanv3x3(2, 3, dtype=F64), head(3, 2)
    images, features = torch.randn(4, 2, 6, 6, dtype=F64), torch.randn(6, 40, dtype=F64)
    executions = [Execution(shots=200, noise=0.02, seed=9, shots_mode=mode) for mode in ("exact", "gaussian")]
    with torch.no_grad():
        whole = [executed(conv, ex)(images) for ex in executions] + \
            [executed(layer, Execution(shots=500, noise=0.01, seed=4))(features)]
        monkeypatch.setattr(ExecutedLayer, "_generators", one_late)
        parts = []
        for ex in executions:
            split = executed(conv, ex)
            parts.append(torch.cat([split(images[:1]), split(images[1:])]))
        split = executed(layer, Execution(shots=500, noise=0.01, seed=4))
        parts.append(torch.cat([split(features[:2]), split(features[2:])]))
    for got, expected in zip(parts, whole):
        assert split_excess(got, expected) > 1e6


def test_auto_shots_mode_threshold():
    spec = get_spec("digits")
    model = build_model(spec.input_shape, level=1)
    conv1, conv2 = model.conv1, model.conv2
    assert resolve_shots_mode("auto", conv1, torch.zeros(1, 1, 12, 12)) == "exact"
    # digits conv2 costs 15 to 30 ms per image exactly (11 binomials per position and channel pair)
    assert resolve_shots_mode("auto", conv2, torch.zeros(1, 32, 10, 10)) == "gaussian"
    assert resolve_shots_mode("auto", conv2, torch.zeros(1, 32, 30, 30)) == "gaussian"
    assert 32 * 1 * 11 * 100 <= AUTO_EXACT_MAX_DRAWS < 16 * 32 * 11 * 64
    assert resolve_shots_mode("exact", conv2, torch.zeros(1, 32, 30, 30)) == "exact"
    assert resolve_shots_mode("gaussian", conv1, torch.zeros(1, 1, 12, 12)) == "gaussian"


# ---------------------------------------------------------------- executed models


def digits_model(level, **kw):
    return build_model(get_spec("digits").input_shape, level=level, n_reps=2, **kw)


def test_executed_exact_equals_the_model_and_shares_parameters():
    model = digits_model(2)
    x = torch.randn(5, 1, 12, 12)
    net = executed(model, Execution())
    with torch.no_grad():
        assert torch.equal(net(x), model(x))
    assert all(a is b for a, b in zip(net.parameters(), model.parameters()))
    assert len(list(net.parameters())) == len(list(model.parameters()))
    # the model itself is untouched; its layers are wrapped only in the executed copy
    assert not isinstance(model.head, ExecutedLayer)
    assert isinstance(net.network.head, ExecutedLayer)
    assert list(net.executed_layers) == ["conv1", "conv2", "head"]
    with torch.no_grad():
        model.head.bias.add_(1.0)
        assert torch.equal(net(x), model(x))
        noisy = executed(model, Execution(noise=1e-3))(x)
    assert noisy.shape == (5, 10) and not noisy.is_complex()


def test_executed_refuses_gradients_complex_angles_and_unknown_quantum_layers():
    model = digits_model(1)
    net = executed(model, Execution(shots=100))
    with pytest.raises(QcreepError, match="torch.no_grad"):
        net(torch.randn(1, 1, 12, 12))
    with pytest.raises(QcreepError, match="complex angles"):
        executed(digits_model(1, angles="complex"), Execution(noise=0.01))
    # exact execution of a complex-angle model is the model itself
    cmodel = digits_model(1, angles="complex")
    with torch.no_grad():
        x = torch.randn(2, 1, 12, 12)
        assert torch.equal(executed(cmodel, Execution())(x), cmodel(x))
    with pytest.raises(QcreepError, match="Execution"):
        executed(model, {"shots": 100})


def test_executed_model_with_noise_matches_a_layer_by_layer_computation():
    model = digits_model(2, dtype=F64)
    x = torch.randn(3, 1, 12, 12, dtype=F64)
    p = 0.02
    with torch.no_grad():
        out = executed(model, Execution(noise=p))(x)
        h = x
        for name in ("conv1", "conv2"):
            h = executed(model.get_submodule(name), Execution(noise=p))(h)
        h = h.flatten(1)
        layer = model.head
        ref = layer.readout(diagonal_probabilities(reupload_density_matrices(layer, h, p)))
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- evaluation


def test_evaluate_grid_on_a_small_digits_model():
    from qcreep.train import evaluate

    model = digits_model(2)
    x = torch.randn(24, 1, 12, 12)
    y = torch.randint(0, 10, (24,))
    model.train()
    rows = evaluate_grid(model, x, y, shots_list=(None, 100), noise_list=(0.0, 0.05), seed=3, batch_size=10)
    assert [(r["shots"], r["noise"], r["sweep"]) for r in rows] == [
        (None, 0.0, "exact"), (100, 0.0, "shots"), (None, 0.05, "noise")]
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and math.isfinite(row["loss"]) and row["seconds"] >= 0
        assert row["seed"] == 3 and row["n"] == 24
    loss, accuracy = evaluate(model, x, y, 10, torch.device("cpu"), torch.float32)
    assert rows[0]["accuracy"] == accuracy and abs(rows[0]["loss"] - loss) < 1e-6
    assert model.training  # the model's mode is restored
    # the same execution gives the same row, whatever the batch size: the loss to rounding, and
    # (in float64) the accuracy exactly. The logits are the head's counts / shots through its
    # readout, so they agree bitwise unless a binomial draw falls within rounding of its boundary.
    model64 = digits_model(2, dtype=F64)
    whole, again = (evaluate_execution(model64, x.double(), y, Execution(shots=100, seed=3), batch_size=size)
                    for size in (24, 7))
    assert again["loss"] == pytest.approx(whole["loss"], rel=1e-12) and again["accuracy"] == whole["accuracy"]
    assert DEFAULT_SHOTS[0] is None and DEFAULT_NOISE[0] == 0.0
    with pytest.raises(QcreepError):
        evaluate_execution(model, x, y[:3], Execution())


@pytest.mark.parametrize("name", ["qcreep.hardware.noise", "qcreep.hardware.shots", "qcreep.hardware.execution"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
