"""Finite shots and depolarising noise for the newer layer families (qcreep.hardware.families, .sampling).

The noisy outputs are checked against two independent mixed-state simulators built here from the
layers' own circuits (``circuits(x)``) with a channel on every qubit after every block: PennyLane's
``default.mixed`` with ``DepolarizingChannel(p)`` and Qiskit Aer's density-matrix method with
``depolarizing_error(4 p / 3, 1)``. The shot estimates are checked for their mean and their
(co)variance against the multinomial formulas evaluated on those references' probabilities, over
many seeded images. The samplers are checked against exact binomial and multinomial laws.
"""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest
import torch
from torch import nn

import qcreep
from qcreep.errors import QcreepError
from qcreep.hardware import families
from qcreep.hardware.execution import ExecutedLayer, Execution, evaluate_execution, evaluate_grid, executed
from qcreep.hardware.families import (
    amplitude_observables,
    angle_density_probabilities,
    dressed_observables,
    fold_symmetric,
    product_vector,
    quanvolution_observables,
)
from qcreep.hardware.sampling import (
    _uniform,
    binomial,
    chain_counts,
    log_pmf_ratio,
    stream_keys,
    tree_counts,
)
from qcreep.hardware.shots import stream_seed
from qcreep.layers import (
    AmplitudeCircuit,
    AngleReuploading,
    DressedCircuit,
    QuantumLayer,
    Quanvolution,
    TrainableQuanvolution,
)
from qcreep.layers.amplitude import cnot_ring
from qcreep.layers.angle import cz_pairs
from qcreep.models import build_model

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1912)


# ---------------------------------------------------------------- small instances of every family


def make(family: str):
    """A small float64 instance of each family and a batch of two inputs for it."""
    gen = torch.Generator().manual_seed(7)
    if family == "dressed":
        layer, x = DressedCircuit(5, 3, width=3, depth=2, dtype=F64), torch.randn(2, 5, generator=gen, dtype=F64)
    elif family == "angle":
        layer, x = AngleReuploading(7, 3, layers=2, width=3, dtype=F64), torch.randn(2, 7, generator=gen, dtype=F64)
        with torch.no_grad():
            layer.offsets.normal_(generator=gen)
            layer.log_scale.fill_(0.3)
            layer.bias.normal_(generator=gen)
    elif family == "angle1":  # one layer on two qubits: the first and last blocks only
        layer, x = AngleReuploading(4, 2, layers=1, width=2, dtype=F64), torch.randn(2, 4, generator=gen, dtype=F64)
    elif family == "amplitude":
        layer, x = AmplitudeCircuit(6, 3, layers=2, dtype=F64), torch.randn(2, 6, generator=gen, dtype=F64)
        with torch.no_grad():
            layer.bias.normal_(generator=gen)
    elif family == "quanvolution":
        layer = Quanvolution(1, 2, kernel_size=(1, 3), layers=2, circuit_seed=1, dtype=F64)
        x = torch.rand(2, 1, 3, 4, generator=gen, dtype=F64)
    elif family == "trainable_quanvolution":
        layer = TrainableQuanvolution(2, 2, kernel_size=(2, 1), depth=3, dtype=F64)
        x = torch.rand(2, 2, 3, 2, generator=gen, dtype=F64)
    else:
        raise AssertionError(family)
    return layer, x


FAMILIES = ["dressed", "angle", "angle1", "amplitude", "quanvolution", "trainable_quanvolution"]


def blocks(layer, circuit):
    """The gates of ``circuit`` split into the blocks after which every qubit is depolarised (as documented)."""
    n = layer.n_qubits
    if isinstance(layer, DressedCircuit):
        sizes = [n, n] + [n - 1, n] * layer.depth
    elif isinstance(layer, AngleReuploading):
        sizes = [layer.groups, len(cz_pairs(n)), n] * layer.layers
    elif isinstance(layer, AmplitudeCircuit):
        sizes = [0] + [k for index in range(layer.layers) for k in (n, len(cnot_ring(n, index)))]
    else:
        sizes = [n] + [k for pairs in layer.layer_pairs() for k in (n, len(pairs))]
    assert sum(sizes) == len(circuit.gates)
    out, start = [], 0
    for size in sizes:
        out.append(circuit.gates[start:start + size])
        start += size
    return out


def pennylane_density(layer, circuit, p):
    qml = pytest.importorskip("pennylane")
    n = circuit.n_qubits
    dev = qml.device("default.mixed", wires=n)

    @qml.qnode(dev)
    def run():
        if circuit.initial is not None:
            qml.StatePrep(circuit.initial.numpy(), wires=range(n))
        for block in blocks(layer, circuit):
            for gate in block:
                qml.QubitUnitary(gate.matrix.numpy(), wires=list(gate.qubits))
            for w in range(n):
                qml.DepolarizingChannel(p, wires=w)
        return qml.density_matrix(wires=range(n))

    return torch.from_numpy(np.asarray(run()))


def aer_density(layer, circuit, p):
    pytest.importorskip("qiskit_aer")
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import DensityMatrix, Statevector
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import depolarizing_error

    n = circuit.n_qubits
    qc = QuantumCircuit(n)
    if circuit.initial is not None:
        # qcreep qubit k is Qiskit qubit n - 1 - k: the amplitude arrays are the same
        qc.set_density_matrix(DensityMatrix(Statevector(circuit.initial.numpy())))
    error = depolarizing_error(4 * p / 3, 1).to_instruction()
    for block in blocks(layer, circuit):
        for gate in block:
            # a gate's matrix lists its first qubit as the most significant bit; Qiskit's first is the least
            qc.unitary(gate.matrix.numpy(), [n - 1 - q for q in reversed(gate.qubits)])
        for q in range(n):
            qc.append(error, [q])
    qc.save_density_matrix()
    result = AerSimulator(method="density_matrix").run(qc).result()
    return torch.from_numpy(np.asarray(result.data(0)["density_matrix"]))


def measured(circuit, rho):
    """What ``circuit`` measures, from a density matrix: the probabilities (real diagonal) or ``Tr(O rho)``."""
    if circuit.observable is None:
        return torch.diagonal(rho).real.clone()
    value = torch.einsum("ij,ji->", circuit.observable, rho)
    assert abs(float(value.imag)) < 1e-12
    return value.real


def reference_output(layer, x, p, simulator=pennylane_density):
    """The layer's output for each input of ``x`` from the independently simulated noisy circuits."""
    rows = []
    for xi in x:
        circuits = layer.circuits(xi)
        rows.append(layer.from_measurements(xi, [measured(c, simulator(layer, c, p)) for c in circuits]))
    return torch.stack(rows)


# ---------------------------------------------------------------- streams and samplers


def _python_splitmix_output(key: int, t: int) -> int:
    mask = (1 << 64) - 1
    z = (key + (t + 1) * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_stream_keys_and_uniforms_are_bit_exact_splitmix64():
    keys = stream_keys(2409, 3, 10**6, 300)
    assert keys.tolist() == [stream_seed(2409, 3, i) for i in range(10**6, 10**6 + 300)]
    assert int(keys.min()) >= 0
    # the uniforms: the top 53 bits of the SplitMix64 stream of each key, in the open interval (0, 1)
    key = torch.tensor([int(keys[0]), int(keys[1]), -5, 2**62 + 12345], dtype=torch.int64)
    counter = torch.tensor([0, 7, 123456789, 2**40], dtype=torch.int64)
    got = _uniform(key, counter)
    for k, t, u in zip(key.tolist(), counter.tolist(), got.tolist()):
        expected = ((_python_splitmix_output(k % (1 << 64), t) >> 11) + 0.5) * 2.0**-53
        assert u == expected
    assert 0.0 < float(got.min()) and float(got.max()) < 1.0


def _binomial_pmf(n: int, p: float) -> torch.Tensor:
    k = torch.arange(n + 1, dtype=F64)
    return torch.exp(math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
                     + k * math.log(p) + (n - k) * math.log1p(-p))


@pytest.mark.parametrize("n, p", [(7, 0.3), (2000, 0.002), (60, 0.35), (400, 0.8), (40, 0.97)])
def test_binomial_draws_follow_the_binomial_law(n, p):
    reps = 40_000
    keys = stream_keys(5, 0, 0, reps // 4)
    x = binomial(torch.full((reps // 4, 4), float(n), dtype=F64), torch.full((reps // 4, 4), p, dtype=F64), keys, 0)
    assert bool((x == x.round()).all()) and float(x.min()) >= 0 and float(x.max()) <= n
    hist = torch.bincount(x.long().flatten(), minlength=n + 1).double()
    pmf = _binomial_pmf(n, p)
    # chi-square over the cells with an expected count of at least 5 (the rest pooled)
    big = pmf * reps >= 5
    observed = torch.cat((hist[big], hist[~big].sum()[None]))
    expected = torch.cat((pmf[big], pmf[~big].sum()[None])) * reps
    keep = expected > 0
    chi2 = float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    dof = int(keep.sum()) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), (chi2, dof)  # about 4 standard deviations of chi2(dof)
    var = n * p * (1 - p)
    assert abs(float(x.mean()) - n * p) < 5 * math.sqrt(var / reps)
    assert abs(float(x.var()) - var) < 6 * var * math.sqrt(2 / reps)


def test_binomial_large_counts_edges_and_independence_from_other_rows():
    reps = 20_000
    keys = stream_keys(1, 2, 0, reps)
    n, p = 10**12, 0.3
    x = binomial(torch.full((reps, 1), float(n), dtype=F64), torch.full((reps, 1), p, dtype=F64), keys, 4)
    var = n * p * (1 - p)
    assert abs(float(x.mean()) - n * p) < 5 * math.sqrt(var / reps)
    assert abs(float(x.var()) / var - 1) < 6 * math.sqrt(2 / reps)
    counts = torch.tensor([[0.0, 5.0, 5.0, 9.0]] * 3, dtype=F64)
    probs = torch.tensor([[0.5, 0.0, 1.0, 0.5]] * 3, dtype=F64)
    edge = binomial(counts, probs, keys[:3], 0)
    assert edge[:, :3].tolist() == [[0.0, 0.0, 5.0]] * 3
    # a row's draws depend on its key, the call and its own column only: not on the other rows
    mixed = torch.tensor([[50.0, 3.0], [10**6, 8.0], [50.0, 3.0]], dtype=F64)
    prob = torch.tensor([[0.3, 0.5], [0.2, 0.9], [0.3, 0.5]], dtype=F64)
    both = binomial(mixed, prob, keys[:3], 1)
    alone = binomial(mixed[2:], prob[2:], keys[2:3], 1)
    assert torch.equal(both[2:], alone)
    assert not torch.equal(binomial(mixed, prob, keys[:3], 2), both)  # another call, other draws


def test_log_pmf_ratio_is_the_log_ratio_of_binomial_probabilities():
    n, q = 500.0, 0.2
    k = torch.arange(0, 501, dtype=F64)
    m = torch.full_like(k, math.floor((n + 1) * q))
    exact = (torch.lgamma(m + 1) - torch.lgamma(k + 1) + torch.lgamma(n - m + 1) - torch.lgamma(n - k + 1)
             + (k - m) * math.log(q / (1 - q)))
    got = log_pmf_ratio(k, m, torch.full_like(k, n), torch.full_like(k, q))
    assert float((got - exact).abs().max()) < 1e-9


def test_tree_counts_are_multinomial():
    p = torch.tensor([0.05, 0.25, 0.0, 0.1, 0.3, 0.05, 0.2, 0.05], dtype=F64)
    shots, reps = 30, 20_000
    counts = tree_counts(p.expand(reps, 1, 8).contiguous(), shots, stream_keys(3, 0, 0, reps))[:, 0]
    assert bool((counts.sum(-1) == shots).all()) and float(counts[:, 2].abs().max()) == 0.0
    mean = counts.mean(0)
    cov = torch.cov(counts.T)
    target = shots * (torch.diag(p) - p[:, None] * p[None, :])
    se = torch.sqrt((target.diagonal()[:, None] * target.diagonal()[None, :] + target**2) / reps)
    assert bool(((mean - shots * p).abs() <= 5 * (target.diagonal() / reps).sqrt() + 1e-12).all())
    assert bool(((cov - target).abs() <= 5 * se + 1e-12).all())


def test_chain_counts_are_the_first_entries_of_a_multinomial():
    p = torch.tensor([0.3, 0.1, 0.45], dtype=F64)  # the rest, 0.15, is in outcomes not read
    shots, reps = 25, 20_000
    counts = chain_counts(p.expand(reps, 1, 3).contiguous(), shots, stream_keys(4, 0, 0, reps))[:, 0]
    assert float(counts.sum(-1).max()) <= shots
    target = shots * (torch.diag(p) - p[:, None] * p[None, :])
    se = torch.sqrt((target.diagonal()[:, None] * target.diagonal()[None, :] + target**2) / reps)
    assert bool(((counts.mean(0) - shots * p).abs() <= 5 * (target.diagonal() / reps).sqrt()).all())
    assert bool(((torch.cov(counts.T) - target).abs() <= 5 * se).all())


# ---------------------------------------------------------------- exact noise


@pytest.mark.parametrize("family", FAMILIES)
def test_noise_matches_pennylane_default_mixed_and_aer(family):
    layer, x = make(family)
    p = 0.07
    with torch.no_grad():
        out = executed(layer, Execution(noise=p))(x)
        exact = layer(x)
    pl = reference_output(layer, x, p, pennylane_density)
    aer = reference_output(layer, x, p, aer_density)
    torch.testing.assert_close(out, pl.to(out.dtype), atol=1e-9, rtol=0)
    torch.testing.assert_close(out, aer.to(out.dtype), atol=1e-9, rtol=0)
    # the noise is visible, and p = 0 in the references is the layer itself
    assert float((out - exact).abs().max()) > 1e-3
    torch.testing.assert_close(reference_output(layer, x, 0.0), exact, atol=1e-10, rtol=0)


def test_noisy_paths_at_zero_noise_are_the_layers_and_at_full_noise_maximally_mixed():
    with torch.no_grad():
        dressed, x = make("dressed")
        q = dressed.angles_in(x)
        states = families._real_qubit_states(q + math.pi / 2, 0.0)
        z = product_vector(states) @ dressed_observables(dressed, 0.0).T
        torch.testing.assert_close(z, dressed.expectations(x), atol=1e-12, rtol=0)
        angle, x = make("angle")
        state = angle.states(x)
        torch.testing.assert_close(angle_density_probabilities(angle, x, 0.0), state.abs() ** 2, atol=1e-12, rtol=0)
        full = angle_density_probabilities(angle, x, 0.75)
        torch.testing.assert_close(full, torch.full_like(full, 1 / 8), atol=1e-12, rtol=0)
        amp, x = make("amplitude")
        ops = amplitude_observables(amp, 0.0)
        unit = x / x.norm(dim=-1, keepdim=True)
        unit = torch.nn.functional.pad(unit, (0, 2))
        torch.testing.assert_close(torch.einsum("bi,jik,bk->bj", unit, ops, unit), amp.probabilities(x),
                                   atol=1e-12, rtol=0)
        conv, x = make("quanvolution")
        patches = conv._patches(x)[0].reshape(-1, conv.n_qubits)
        states = families._real_qubit_states(math.pi * patches + conv.rotation_angles()[0], 0.0)
        folded_p = quanvolution_observables(conv, 0.0, projectors=True)
        torch.testing.assert_close(product_vector(states) @ folded_p.T, conv.states(patches) ** 2, atol=1e-12, rtol=0)
        folded_z = quanvolution_observables(conv, 0.75, projectors=False)
        assert float(folded_z.abs().max()) < 1e-15  # every <Z_i> of the maximally mixed state is 0


def test_fold_symmetric_pairs_an_operator_with_real_product_states():
    gen = torch.Generator().manual_seed(0)
    n = 3
    ops = torch.randn(2, 8, 8, generator=gen, dtype=F64)
    r = torch.rand(4, n, 2, generator=gen, dtype=F64)
    one = torch.stack((r[..., 0], r[..., 1], 0.3 * r[..., 0]), -1)  # (rho_00, rho_11, rho_01 = rho_10)
    mats = torch.stack((torch.stack((one[..., 0], one[..., 2]), -1), torch.stack((one[..., 2], one[..., 1]), -1)), -2)
    rho = mats[:, 0]
    for q in range(1, n):
        rho = torch.einsum("bij,bkl->bikjl", rho, mats[:, q]).reshape(4, 2 ** (q + 1), 2 ** (q + 1))
    direct = torch.einsum("kab,xba->xk", ops, rho)
    torch.testing.assert_close(product_vector(one) @ fold_symmetric(ops, n).T, direct, atol=1e-13, rtol=0)


# ---------------------------------------------------------------- shots: unbiased, with the multinomial (co)variance


def _sign_matrix(n):
    index = torch.arange(2**n)
    return torch.stack([1 - 2 * ((index >> (n - 1 - q)) & 1) for q in range(n)], -1).to(F64)


def expected_moments(layer, x1, p, shots):
    """Mean and covariance of the shot estimate of the flattened output for one input ``x1``, from the
    PennyLane reference's probabilities and the multinomial (or, for the dressed circuit's separate
    circuits, independent binomial) laws."""
    circuits = layer.circuits(x1)
    values = [measured(c, pennylane_density(layer, c, p)) for c in circuits]
    if isinstance(layer, DressedCircuit):
        z = torch.stack(values)
        w = layer.post.weight.detach()
        return layer.from_measurements(x1, values).flatten(), w @ torch.diag((1 - z**2) / shots) @ w.T
    if isinstance(layer, AmplitudeCircuit):
        pj = values[0][: layer.out_features]
        s = float(layer.log_scale.detach().exp())
        return layer.from_measurements(x1, values), s**2 * (torch.diag(pj) - pj[:, None] * pj[None, :]) / shots
    if isinstance(layer, AngleReuploading):
        signs = _sign_matrix(layer.n_qubits)[:, : layer.out_features]
        probs = values[0]
        second = signs.T @ torch.diag(probs) @ signs
        z = probs @ signs
        s = float(layer.log_scale.detach().exp())
        return layer.from_measurements(x1, values), s**2 * (second - z[:, None] * z[None, :]) / shots
    # quanvolution: circuit (position, channel); y_o(pos) = sum_c w_oc . z_c + b_o
    n, channels = layer.n_qubits, layer.in_channels
    signs = _sign_matrix(n)
    w = layer.mix_weight.detach().reshape(layer.out_channels, channels, n)
    positions = len(circuits) // channels
    cov = torch.zeros(layer.out_channels * positions, layer.out_channels * positions, dtype=F64)
    for index, probs in enumerate(values):
        pos, c = divmod(index, channels)
        z = probs @ signs
        sign_cov = signs.T @ torch.diag(probs) @ signs - z[:, None] * z[None, :]
        block = w[:, c] @ sign_cov @ w[:, c].T / shots  # (C_out, C_out) at this position
        idx = torch.arange(layer.out_channels) * positions + pos  # flattened (C_out, H', W') order
        cov[idx[:, None], idx[None, :]] += block
    return layer.from_measurements(x1, values).flatten(), cov


@pytest.mark.parametrize("family", ["dressed", "angle", "amplitude", "quanvolution", "trainable_quanvolution"])
@pytest.mark.parametrize("p", [0.0, 0.05])
def test_shot_estimates_are_unbiased_with_the_multinomial_covariance(family, p):
    layer, x = make(family)
    shots, reps = 40, 6000
    x1 = x[:1]
    with torch.no_grad():
        draws = executed(layer, Execution(shots=shots, noise=p, seed=11))(x1.expand(reps, *x1.shape[1:]))
    draws = draws.reshape(reps, -1)
    mean, cov = expected_moments(layer, x1[0], p, shots)
    var = cov.diagonal()
    assert float(var.min()) > 1e-6
    assert bool(((draws.mean(0) - mean).abs() <= 5 * (var / reps).sqrt()).all())
    emp = torch.cov(draws.T)
    se = torch.sqrt((var[:, None] * var[None, :] + cov**2) / reps)
    assert bool(((emp - cov).abs() <= 5 * se).all())
    # the estimates are counts / shots through the readout: far from exact at S = 40, exact at S -> inf
    with torch.no_grad():
        big = executed(layer, Execution(shots=10**10, noise=p, seed=11))(x)
        noisy = executed(layer, Execution(noise=p))(x)
    torch.testing.assert_close(big, noisy, atol=2e-4, rtol=0)


def test_angle_readout_estimates_share_their_shots():
    """The outputs of the angle head come from the same S shots: their covariance is not zero."""
    layer, x = make("angle")
    _, cov = expected_moments(layer, x[0], 0.05, 40)
    assert float((cov - torch.diag(cov.diagonal())).abs().max()) > 0.1 * float(cov.diagonal().max())


# ---------------------------------------------------------------- streams through executed layers


@pytest.mark.parametrize("family", ["dressed", "angle", "amplitude", "quanvolution", "trainable_quanvolution"])
def test_shots_are_seeded_and_independent_of_the_batch_size(family, monkeypatch):
    layer, x = make(family)
    x = torch.cat([x, x * 0.5, x.flip(0)])  # six inputs
    ex = Execution(shots=300, noise=0.02, seed=4)
    with torch.no_grad():
        whole = executed(layer, ex)(x)
        assert torch.equal(executed(layer, ex)(x), whole)
        split = executed(layer, ex)
        parts = torch.cat([split(x[:1]), split(x[1:4]), split(x[4:])])
        other = executed(layer, Execution(shots=300, noise=0.02, seed=5))(x)
    # to rounding (another batch size may round the probabilities differently; a count changes only if
    # a uniform falls within that rounding of a boundary): far below one count in 300
    assert float((parts - whole).abs().max()) < 1e-9
    assert not torch.equal(other, whole)
    # a planted bug: the second call starts its streams one image late; the comparison catches it
    honest = ExecutedLayer._stream_keys

    def one_late(self, count):
        if self.images_seen:
            self.images_seen += 1
        return honest(self, count)

    monkeypatch.setattr(ExecutedLayer, "_stream_keys", one_late)
    with torch.no_grad():
        late = executed(layer, ex)
        bad = torch.cat([late(x[:1]), late(x[1:])])
    assert float((bad - whole).abs().max()) > 1e-3


# ---------------------------------------------------------------- executed models


def creep_model():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 2)
            self.fc1 = nn.Linear(2 * 5 * 5, 6)
            self.fc2 = nn.Linear(6, 3)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(torch.relu(self.conv(x)).flatten(1))))

    found = qcreep.creep(Net(), torch.zeros(1, 1, 6, 6))
    return found.build({"conv": "trainable_quanvolution", "fc1": "angle_reuploading", "fc2": "amplitude_circuit"},
                       dtype=F64)


def test_executed_models_with_family_layers():
    model = creep_model()
    x = torch.rand(5, 1, 6, 6, dtype=F64)
    with torch.no_grad():
        assert torch.equal(executed(model, Execution())(x), model(x))
        net = executed(model, Execution(shots=200, noise=0.01, seed=2))
        out = net(x)
        # layer by layer: each layer under the same execution, its streams numbered in module order
        h = executed(model.conv, Execution(shots=200, noise=0.01, seed=2))(x)
        assert list(net.executed_layers) == ["conv", "fc1", "fc2"]
    assert out.shape == (5, 3) and not out.is_complex()
    assert h.shape == (5, 2, 5, 5)
    hybrid = build_model((1, 12, 12), assignment="conv1=trainable_quanvolution,conv2=conv2d,head=dressed_circuit",
                         n_reps=2)
    xs = torch.rand(12, 1, 12, 12)
    y = torch.randint(0, 10, (12,))
    rows = evaluate_grid(hybrid, xs, y, shots_list=(None, 100), noise_list=(0.01,), seed=1, batch_size=5)
    assert [(r["shots"], r["noise"], r["sweep"]) for r in rows] == [(None, 0.0, "exact"), (100, 0.0, "shots"),
                                                                      (None, 0.01, "noise")]
    again = evaluate_execution(hybrid, xs, y, Execution(shots=100, seed=1), batch_size=12)
    assert again["accuracy"] == rows[1]["accuracy"] and again["loss"] == pytest.approx(rows[1]["loss"], rel=1e-5)


def test_refusals_are_one_line_errors():
    big = AmplitudeCircuit(12544, 10)
    assert big.n_qubits == 14
    executed(big, Execution(shots=100))  # shots alone are fine
    with pytest.raises(QcreepError) as err:
        executed(big, Execution(noise=1e-3))
    message = str(err.value)
    assert "\n" not in message and "at most 10 qubits" in message and "noise=0" in message
    wide = Quanvolution(1, 1, kernel_size=(2, 5))
    executed(wide, Execution(noise=1e-3))  # 10 qubits, noise alone: n observables
    with pytest.raises(QcreepError, match="limit of") as err:
        executed(wide, Execution(noise=1e-3, shots=10))
    assert "\n" not in str(err.value)
    for layer in (AngleReuploading(4, 12), DressedCircuit(4, 2, width=11)):
        with pytest.raises(QcreepError, match="at most 10 qubits"):
            executed(layer, Execution(noise=0.01))
    layer, x = make("dressed")
    with pytest.raises(QcreepError, match="torch.no_grad"):
        executed(layer, Execution(shots=10))(x)

    class Custom(QuantumLayer):
        slot_kind = "dense"

        def forward(self, x):
            return x

    with pytest.raises(QcreepError, match="no shot or noise model"):
        ExecutedLayer(Custom(), Execution(shots=5), 0)
    from qcreep.hardware.resources import estimate_resources

    with pytest.raises(QcreepError, match="no resource model"):
        estimate_resources(nn.Sequential(Custom()), (3,), transpile=False)


# ---------------------------------------------------------------- the command line


def test_qcreep_evaluate_on_family_rungs(tmp_path, capsys, monkeypatch):
    from qcreep.cli import main

    out = tmp_path / "fam"
    tiny = ["--dataset", "digits", "--seeds", "1", "--epochs", "1", "--max-train", "60", "--max-test", "12",
            "--no-tune", "--lr", "0.01", "--no-twins", "--threads", "1", "--no-progress"]
    assert main(["run", *tiny, "--assign", "conv1=quanvolution,conv2=conv2d,head=dressed_circuit",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--shots", "100", "--noise", "0.01", "--no-transpile"]) == 0
    assert "S=100" in capsys.readouterr().out
    (result,) = [p for p in (out / "hardware").glob("*.json")]
    import json

    res = json.loads(result.read_text())
    assert [e["shots"] for e in res["shots"]] == [100] and [e["noise"] for e in res["noise"]] == [0.01]
    assert [(r["slot"], r["layer"]) for r in res["resources"]] == [("conv1", "quanvolution"),
                                                                   ("head", "dressed_circuit")]
    assert res["resources"][0]["executions_per_image"] == 100 and res["resources"][1]["executions_per_image"] == 4
    # a layer beyond the noise limit: one line, exit code 2, before anything is evaluated
    monkeypatch.setattr(families, "MAX_NOISE_QUBITS", 3)
    assert main(["evaluate", str(out), "--shots", "100", "--noise", "0.02", "--no-transpile"]) == 2
    err = capsys.readouterr().err
    assert "at most 3 qubits" in err and "run " in err and err.count("\n") == 1
    assert "test acc" not in err  # nothing was scored


@pytest.mark.parametrize("name", ["qcreep.hardware.families", "qcreep.hardware.sampling"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
