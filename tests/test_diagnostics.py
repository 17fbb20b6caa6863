"""qcreep.diagnostics against independent references: qiskit-machine-learning, closed forms, published values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit_machine_learning.neural_networks import EffectiveDimension, SamplerQNN
from scipy import integrate
from scipy import stats as sp_stats
from torch import nn

from qcreep.diagnostics import (
    _effective_dimension_dense,
    effective_dimension,
    entangling_capability,
    expressibility,
    fit_decay,
    gradient_variance,
    haar_fidelity_distribution,
    meyer_wallach,
)
from qcreep.errors import ConfigError, QcreepError

F64 = torch.float64
C128 = torch.complex128
TWO_PI = 2 * math.pi


def mlp(n_in=3, hidden=5, classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, classes)).to(F64)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# effective dimension: Gram route against the d x d route


@pytest.mark.parametrize("n_inputs", [8, 30])       # N K = 24 < d = 38 (J J^T), then 90 > d (J^T J)
def test_effective_dimension_gram_equals_dense(n_inputs):
    net = mlp()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n_inputs, 3, generator=g, dtype=F64)
    w = 2 * torch.rand(4, n_params(net), generator=g, dtype=F64) - 1
    sizes = [20, 100, 1000, 10**5, 10**8]
    fast = effective_dimension(net, x, sizes, w)
    dense = _effective_dimension_dense(net, x, sizes, w)
    assert len(fast) == len(sizes)
    np.testing.assert_allclose(fast, dense, rtol=0, atol=1e-9)
    assert 0 < fast[-1] < n_params(net)     # well below d: the rank of F is at most N K
    assert effective_dimension(net, x, 1000, w) == pytest.approx(dense[2], abs=1e-9)


def test_effective_dimension_gram_equals_dense_for_d_in_the_thousands():
    # d = 2284 >> N K = 40: the regime where the Gram route wins (timing: benchmarks/bench_diagnostics.py).
    # The d x d slogdet loses ~1e-9 absolute here (d_eff ~ 60), hence a relative tolerance
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(20, 48), nn.Tanh(), nn.Linear(48, 24), nn.Tanh(), nn.Linear(24, 4)).to(F64)
    d = n_params(net)
    assert d > 2000
    g = torch.Generator().manual_seed(2)
    x = torch.randn(10, 20, generator=g, dtype=F64)
    w = torch.randn(2, d, generator=g, dtype=F64) * 0.5
    sizes = [1000, 10**6]
    np.testing.assert_allclose(effective_dimension(net, x, sizes, w),
                               _effective_dimension_dense(net, x, sizes, w), rtol=1e-10, atol=0)


class NoVmap(nn.Module):
    """A classifier with data-dependent Python control flow (``.item()``), which vmap cannot trace."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3, dtype=F64)

    def forward(self, x):
        out = self.lin(x)
        if out.abs().max().item() > 1e6:
            return out * 0
        return torch.tanh(out) * 2


def test_effective_dimension_loop_route_and_fallback():
    torch.manual_seed(0)
    model = NoVmap()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 3, generator=g, dtype=F64)
    w = torch.randn(3, n_params(model), generator=g, dtype=F64)
    with pytest.raises(RuntimeError):
        effective_dimension(model, x, 100, w, method="vmap")
    auto = effective_dimension(model, x, [100, 10**4], w)                   # falls back to the loop
    dense = _effective_dimension_dense(model, x, [100, 10**4], w, method="loop")
    np.testing.assert_allclose(auto, dense, rtol=0, atol=1e-9)
    net = mlp()
    w2 = torch.randn(2, n_params(net), generator=g, dtype=F64)
    np.testing.assert_allclose(effective_dimension(net, x, [50, 500], w2, method="loop", chunk=4),
                               effective_dimension(net, x, [50, 500], w2, method="vmap", chunk=5), rtol=0, atol=1e-10)


def test_effective_dimension_leaves_the_model_alone_and_is_reproducible():
    net = mlp()
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(5, 3, dtype=F64)
    a = effective_dimension(net, x, [100, 1000], 3, generator=7)      # 3 weight vectors uniform in [0, 1)
    b = effective_dimension(net, x, [100, 1000], 3, generator=torch.Generator().manual_seed(7))
    assert a == b
    assert a != effective_dimension(net, x, [100, 1000], 3, generator=8)
    for p, q in zip(before, net.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kwargs, match", [
    ({"dataset_size": 10}, "n / \\(2 pi log n\\) must exceed 1"),
    ({"dataset_size": True}, "dataset_size must be a number"),
    ({"dataset_size": []}, "dataset_size must be a number"),
    ({"weights": torch.zeros(2, 5, dtype=F64)}, "weights must be a tensor \\(M, 38\\)"),
    ({"weights": torch.full((1, 38), float("nan"), dtype=F64)}, "finite"),
    ({"method": "jvp"}, "method must be one of"),
    ({"chunk": 0}, "chunk must be an integer >= 1"),
])
def test_effective_dimension_rejects_bad_input(kwargs, match):
    args = {"dataset_size": 100, "weights": torch.zeros(2, 38, dtype=F64)} | kwargs
    with pytest.raises(ConfigError, match=match):
        effective_dimension(mlp(), torch.zeros(4, 3, dtype=F64), **args)


def test_effective_dimension_of_a_constant_model_is_an_error():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(2, dtype=F64))

        def forward(self, x):
            return x[:, :2] + 0 * self.w.sum()

    with pytest.raises(QcreepError, match="Fisher information is zero"):
        effective_dimension(Constant(), torch.zeros(3, 2, dtype=F64), 100, torch.zeros(2, 2, dtype=F64))


# --------------------------------------------------------------------------------------------------
# effective dimension: against qiskit-machine-learning's EffectiveDimension on the same circuit
#
# Circuit on n qubits: RY(x_q) on every qubit, then `layers` times (RY(w) on every qubit, CNOT chain
# q -> q+1), then RY(w) on every qubit; measured in the computational basis.


def qiskit_circuit(n, layers):
    x = ParameterVector("x", n)
    w = ParameterVector("w", n * (layers + 1))
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.ry(x[q], q)
    k = 0
    for layer in range(layers + 1):
        for q in range(n):
            qc.ry(w[k], q)
            k += 1
        if layer < layers:
            for q in range(n - 1):
                qc.cx(q, q + 1)
    return qc, list(x), list(w)


class TorchCircuit(nn.Module):
    """The same circuit as a hand-written real statevector; returns log class probabilities.

    Basis index as in qiskit: qubit q is bit q (little-endian). ``classes`` maps each basis index to a
    class (the qiskit ``interpret`` function), so ``softmax(output) = p``.
    """

    def __init__(self, n, layers, classes):
        super().__init__()
        self.n, self.layers = n, layers
        self.weight = nn.Parameter(torch.zeros(n * (layers + 1), dtype=F64))
        dim = 2**n
        idx = torch.arange(dim)
        self.perms = [torch.where((idx >> c) & 1 == 1, idx ^ (1 << (c + 1)), idx) for c in range(n - 1)]
        self.register_buffer("fold", torch.zeros(dim, max(classes) + 1, dtype=F64))
        self.fold[idx, torch.tensor(classes)] = 1.0

    def ry(self, state, theta, q):
        # qubit q is axis (n - 1 - q) of the C-order reshape (bit n-1 is the most significant)
        b = state.shape[0]
        s = state.reshape(b, 2 ** (self.n - 1 - q), 2, 2**q)
        c, si = torch.cos(theta / 2), torch.sin(theta / 2)
        if c.ndim == 0:
            c, si = c.expand(b), si.expand(b)
        c, si = c[:, None, None], si[:, None, None]
        s0, s1 = s[:, :, 0], s[:, :, 1]
        return torch.stack([c * s0 - si * s1, si * s0 + c * s1], 2).reshape(b, -1)

    def forward(self, x):
        b = x.shape[0]
        state = torch.zeros(b, 2**self.n, dtype=F64)
        state[:, 0] = 1
        for q in range(self.n):
            state = self.ry(state, x[:, q], q)
        k = 0
        for layer in range(self.layers + 1):
            for q in range(self.n):
                state = self.ry(state, self.weight[k], q)
                k += 1
            if layer < self.layers:
                for perm in self.perms:
                    state = state[:, perm]
        return torch.log(state.square() @ self.fold)


@pytest.mark.parametrize("n, layers, interpret, classes", [
    (2, 1, None, 4),                                   # all four outcomes
    (3, 2, lambda b: bin(b).count("1") % 2, 2),        # parity: two classes
])
def test_effective_dimension_matches_qiskit_machine_learning(n, layers, interpret, classes):
    qc, xs, ws = qiskit_circuit(n, layers)
    kwargs = {} if interpret is None else {"interpret": interpret, "output_shape": classes}
    qnn = SamplerQNN(circuit=qc, input_params=xs, weight_params=ws, **kwargs)
    rng = np.random.default_rng(n)
    inputs = rng.normal(size=(6, n))
    weights = rng.uniform(0, TWO_PI, size=(3, len(ws)))

    fold = [b if interpret is None else interpret(b) for b in range(2**n)]
    model = TorchCircuit(n, layers, fold)
    x, w = torch.from_numpy(inputs), torch.from_numpy(weights)
    with torch.no_grad():  # the hand-written circuit gives qiskit's probabilities
        model.weight.copy_(w[0])
        np.testing.assert_allclose(torch.softmax(model(x), -1).numpy(), qnn.forward(inputs, weights[0]), atol=1e-12)

    reference = EffectiveDimension(qnn, weight_samples=weights, input_samples=inputs)
    sizes = [20, 100, 5000, 10**6]
    expected = reference.get_effective_dimension(sizes)
    ours = effective_dimension(model, x, sizes, w)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    assert effective_dimension(model, x, 5000, w) == pytest.approx(float(expected[2]), abs=1e-6)


# --------------------------------------------------------------------------------------------------
# gradient variance: Cerezo et al. (2021), product of RX rotations on |0...0>


class RXProduct(nn.Module):
    """``prod_j RX(theta_j) |0...0>`` as a complex statevector (qubit 0 most significant)."""

    def __init__(self, n, theta):
        super().__init__()
        self.n = n
        self.theta = nn.Parameter(theta)

    def state(self):
        state = torch.ones(1, dtype=C128)
        for t in self.theta:
            qubit = torch.stack([torch.cos(t / 2).to(C128), -1j * torch.sin(t / 2).to(C128)])
            state = torch.kron(state, qubit)
        return state

    def global_cost(self):
        return 1 - self.state()[0].abs().square()

    def local_cost(self):
        probs = self.state().abs().square().reshape([2] * self.n)
        zero = [probs.movedim(j, 0)[0].sum() for j in range(self.n)]   # P(qubit j = 0)
        return 1 - sum(zero) / self.n


def rx_factory(n):
    return lambda g: RXProduct(n, TWO_PI * torch.rand(n, generator=g, dtype=F64))


def uniform_mean(f):
    return integrate.quad(f, 0, TWO_PI)[0] / TWO_PI


def test_the_cerezo_integrals():
    # dC_G/dtheta_1 = (sin(theta_1) / 2) prod_{j>1} cos^2(theta_j / 2), mean 0:
    # Var = E[sin^2 / 4] E[cos^4(theta/2)]^(n-1) = (1/8) (3/8)^(n-1); local: Var = E[sin^2] / (4 n^2) = 1 / (8 n^2)
    assert uniform_mean(lambda t: math.sin(t) ** 2 / 4) == pytest.approx(1 / 8, abs=1e-12)
    assert uniform_mean(lambda t: math.cos(t / 2) ** 4) == pytest.approx(3 / 8, abs=1e-12)
    assert uniform_mean(lambda t: math.sin(t) ** 4) == pytest.approx(3 / 8, abs=1e-12)          # for the errors
    assert uniform_mean(lambda t: math.cos(t / 2) ** 8) == pytest.approx(35 / 128, abs=1e-12)
    model = RXProduct(3, torch.tensor([0.3, 1.1, 2.0], dtype=F64))   # the module's gradient is that formula
    (grad,) = torch.autograd.grad(model.global_cost(), model.theta)
    assert float(grad[0]) == pytest.approx(math.sin(0.3) / 2 * math.cos(0.55) ** 2 * math.cos(1.0) ** 2, abs=1e-14)


def sample_variance_se(var, fourth, k):
    """Standard error of the sample variance of k draws from a mean-zero law with E g^2 = var, E g^4 = fourth."""
    return math.sqrt((fourth - var**2 * (k - 3) / (k - 1)) / k)


INITS = 3000
QUBITS = [1, 2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def global_scan():
    out = {}
    for n in QUBITS:
        res = gradient_variance(rx_factory(n), None, INITS, loss=lambda m, _: m.global_cost(), generator=100 + n)
        out[n] = res
    return out


@pytest.mark.parametrize("n", QUBITS)
def test_global_cost_variance_matches_cerezo(global_scan, n):
    exact = (1 / 8) * (3 / 8) ** (n - 1)
    se = sample_variance_se(exact, (3 / 8) / 16 * (35 / 128) ** (n - 1), INITS)
    res = global_scan[n]
    assert res.n_inits == INITS
    assert abs(float(res.elementwise["theta"][0]) - exact) < 4 * se
    assert abs(res.mean - exact) < 4 * se          # every theta_j has the same law
    assert res.per_parameter == {"theta": res.mean} and res.per_layer == {"theta": res.mean}


@pytest.mark.parametrize("n", [2, 4, 6])
def test_local_cost_variance_matches_cerezo(n):
    res = gradient_variance(rx_factory(n), None, INITS, loss=lambda m, _: m.local_cost(), generator=n)
    exact = 1 / (8 * n**2)
    se = sample_variance_se(exact, (3 / 8) / (16 * n**4), INITS)
    assert abs(float(res.elementwise["theta"][0]) - exact) < 4 * se
    assert abs(res.mean - exact) < 4 * se


def test_fit_decay_on_the_global_scan(global_scan):
    fit = fit_decay(QUBITS, [global_scan[n].mean for n in QUBITS])
    assert fit.low < math.log(8 / 3) < fit.high
    assert abs(fit.rate - math.log(8 / 3)) < 0.1 and fit.high - fit.low < 0.2
    exact = fit_decay(QUBITS, [(1 / 8) * (3 / 8) ** (n - 1) for n in QUBITS])
    assert exact.rate == pytest.approx(math.log(8 / 3), abs=1e-12)
    assert exact.intercept == pytest.approx(math.log(1 / 8) + math.log(8 / 3), abs=1e-12)
    assert exact.high - exact.low == pytest.approx(0, abs=1e-9)


def test_fit_decay_interval_matches_scipy():
    n = [2, 3, 4, 5, 7]
    v = [0.2, 0.09, 0.05, 0.012, 0.003]
    fit = fit_decay(n, v, confidence=0.9)
    ref = sp_stats.linregress(n, np.log(v))
    half = sp_stats.t.ppf(0.95, len(n) - 2) * ref.stderr
    assert (fit.rate, fit.low, fit.high) == pytest.approx((-ref.slope, -ref.slope - half, -ref.slope + half), abs=1e-12)
    assert fit.n_points == 5 and fit.confidence == 0.9
    with pytest.raises(ConfigError, match="length >= 3"):
        fit_decay([1, 2], [0.1, 0.01])
    with pytest.raises(ConfigError, match="positive"):
        fit_decay([1, 2, 3], [0.1, 0.0, 0.01])
    with pytest.raises(ConfigError, match="two different values"):
        fit_decay([2, 2, 2], [0.1, 0.2, 0.3])


def test_gradient_variance_per_parameter_and_layer_against_a_direct_loop():
    def factory(g):
        net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(F64)
        for p in net.parameters():
            nn.init.normal_(p, 0.0, 1.0, generator=g)
        return net

    x = torch.randn(5, 3, dtype=F64)
    y = torch.tensor([0, 1, 1, 0, 1])
    res = gradient_variance(factory, x, 40, targets=y, generator=9)
    g = torch.Generator().manual_seed(9)
    grads = {}
    for _ in range(40):
        net = factory(g)
        loss = nn.functional.cross_entropy(net(x), y)
        for (name, _), gr in zip(net.named_parameters(), torch.autograd.grad(loss, list(net.parameters()))):
            grads.setdefault(name, []).append(gr)
    var = {k: torch.stack(v).var(0) for k, v in grads.items()}
    assert list(res.per_parameter) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for k in var:
        torch.testing.assert_close(res.elementwise[k], var[k], rtol=1e-10, atol=1e-14)
        assert res.per_parameter[k] == pytest.approx(float(var[k].mean()), rel=1e-10)
    for layer in ("0", "2"):
        parts = torch.cat([var[f"{layer}.weight"].flatten(), var[f"{layer}.bias"]])
        assert res.per_layer[layer] == pytest.approx(float(parts.mean()), rel=1e-10)
    assert res.mean == pytest.approx(float(torch.cat([v.flatten() for v in var.values()]).mean()), rel=1e-10)


def test_gradient_variance_zero_argument_factory_is_seeded_and_leaves_global_rng_alone():
    def factory():
        return nn.Linear(3, 2).to(F64)              # torch's own init, from the global generator

    x = torch.randn(4, 3, dtype=F64)
    y = torch.tensor([0, 1, 1, 0])
    state = torch.get_rng_state()
    a = gradient_variance(factory, x, 6, targets=y, generator=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = gradient_variance(factory, x, 6, targets=y, generator=3)
    c = gradient_variance(factory, x, 6, targets=y, generator=4)
    assert all(torch.equal(a.elementwise[k], b.elementwise[k]) for k in a.elementwise)
    assert a.mean == b.mean != c.mean


def test_gradient_variance_rejects_bad_input():
    x = torch.zeros(2, 3)
    f = rx_factory(2)
    with pytest.raises(ConfigError, match="n_inits must be an integer >= 2"):
        gradient_variance(f, x, 1, loss=lambda m, _: m.global_cost())
    with pytest.raises(ConfigError, match="exactly one of targets"):
        gradient_variance(f, x, 5)
    with pytest.raises(ConfigError, match="exactly one of targets"):
        gradient_variance(f, x, 5, targets=torch.zeros(2), loss=lambda m, _: m.global_cost())
    with pytest.raises(ConfigError, match="scalar tensor"):
        gradient_variance(f, x, 5, loss=lambda m, _: m.state().abs())
    with pytest.raises(ConfigError, match="generator must be"):
        gradient_variance(f, x, 5, loss=lambda m, _: m.global_cost(), generator="seed")


# --------------------------------------------------------------------------------------------------
# expressibility: Sim, Johnson, Aspuru-Guzik (2019), Fig. 1 (5000 samples, 75 bins)


def rx(t):
    c, s = torch.cos(t / 2).to(C128), torch.sin(t / 2).to(C128)
    return torch.stack([torch.stack([c, -1j * s], -1), torch.stack([-1j * s, c], -1)], -2)


def rz(t):
    z = torch.zeros_like(t).to(C128)
    return torch.stack([torch.stack([torch.exp(-0.5j * t), z], -1), torch.stack([z, torch.exp(0.5j * t)], -1)], -2)


def u3(theta, phi, lam):
    c, s = torch.cos(theta / 2).to(C128), torch.sin(theta / 2).to(C128)
    return torch.stack([torch.stack([c, -torch.exp(1j * lam) * s], -1),
                        torch.stack([torch.exp(1j * phi) * s, torch.exp(1j * (phi + lam)) * c], -1)], -2)


def h_zero(b):  # H |0>, as a column per sample
    return torch.full((b, 2, 1), 2**-0.5, dtype=C128)


def idle(p):
    return torch.tensor([1, 0], dtype=C128).expand(p.shape[0], 2)


def h_rz(p):
    return (rz(p[:, 0]) @ h_zero(p.shape[0])).squeeze(-1)


def h_rz_rx(p):
    return (rx(p[:, 1]) @ rz(p[:, 0]) @ h_zero(p.shape[0])).squeeze(-1)


def h_u3(p):
    return (u3(p[:, 0], p[:, 1], p[:, 2]) @ h_zero(p.shape[0])).squeeze(-1)


def test_haar_fidelity_distribution_integrates_the_density():
    for dim in (2, 4, 8, 16):
        q = haar_fidelity_distribution(dim, 75)
        edges = np.linspace(0, 1, 76)
        density = lambda f, dim=dim: (dim - 1) * (1 - f) ** (dim - 2)  # noqa: E731
        ref = [integrate.quad(density, a, b)[0] for a, b in zip(edges, edges[1:])]
        np.testing.assert_allclose(q.numpy(), ref, rtol=1e-10, atol=1e-15)
        assert float(q.sum()) == pytest.approx(1, abs=1e-12)


def test_expressibility_idle_circuit():
    # every F = 1, all in the last bin; one qubit: P_Haar uniform, KL = log 75 = 4.317 (Sim et al. print
    # 4.30, which is log 74: 74 bins)
    assert expressibility(idle, 0) == pytest.approx(math.log(75), abs=1e-12)


def test_expressibility_h_rz():
    # F = cos^2(delta / 2), delta uniform: the arcsine law, CDF (2/pi) arcsin(sqrt F). Binned KL against
    # uniform, plus the finite-sample bias (bins - 1) / (2 samples); the spread over seeds is 0.006
    edges = np.linspace(0, 1, 76)
    p = np.diff(2 / math.pi * np.arcsin(np.sqrt(edges)))
    expected = float(np.sum(p * np.log(p * 75))) + 74 / 10000
    value = expressibility(h_rz, 1, generator=11)
    assert abs(value - expected) < 0.025
    assert abs(value - 0.22) < 0.035                  # Sim et al. Fig. 1 (circuit A)


def test_expressibility_h_rz_rx_and_h_u3():
    b = expressibility(h_rz_rx, 2, generator=12)      # published 0.02; over seeds 0.018 +- 0.0012
    assert abs(b - 0.02) < 0.006
    c = expressibility(h_u3, 3, generator=13)         # published 0.007; over seeds 0.0085 +- 0.0007
    assert 0 < c and abs(c - 0.007) < 0.005


def haar_from_params(dim):
    """Box-Muller of the uniform parameters into complex Gaussians, normalised: Haar-random states."""
    def state_fn(p):
        u = p / TWO_PI
        r = torch.sqrt(-2 * torch.log(1 - u[:, :2 * dim]))
        gauss = r * torch.cos(TWO_PI * u[:, 2 * dim:])
        z = torch.complex(gauss[:, :dim], gauss[:, dim:])
        return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    return state_fn


@pytest.mark.parametrize("n_qubits", [2, 3])
def test_expressibility_of_haar_states_is_only_the_sampling_bias(n_qubits):
    dim = 2**n_qubits
    value = expressibility(haar_from_params(dim), 4 * dim, generator=n_qubits)
    assert 0 < value < 0.02                           # bias alone is 74 / 10000
    wrong = haar_fidelity_distribution(dim // 2, 75)  # what a density with the wrong dimension would give
    right = haar_fidelity_distribution(dim, 75)
    assert float((right * torch.log(right / wrong)).sum()) > 0.05


def test_expressibility_is_reproducible_and_checks_states():
    assert expressibility(h_u3, 3, generator=5) == expressibility(h_u3, 3, generator=torch.Generator().manual_seed(5))
    assert expressibility(h_u3, 3, generator=5) != expressibility(h_u3, 3, generator=6)
    with pytest.raises(QcreepError, match="normalised"):
        expressibility(lambda p: 2 * h_u3(p), 3, samples=10)
    with pytest.raises(QcreepError, match="statevectors \\(B, 2\\*\\*n\\)"):
        expressibility(lambda p: h_u3(p)[:1], 3, samples=10)
    with pytest.raises(ConfigError, match="bins"):
        expressibility(h_u3, 3, bins=0)


# --------------------------------------------------------------------------------------------------
# Meyer-Wallach and entangling capability


def ket(*amps):
    v = torch.tensor(amps, dtype=C128)
    return v / torch.linalg.vector_norm(v)


def test_meyer_wallach_of_known_states():
    plus = ket(1, 1)
    product = torch.kron(torch.kron(plus, ket(1, 0)), ket(0.6, 0.8j))
    bell = ket(1, 0, 0, 1)
    ghz3 = ket(1, 0, 0, 0, 0, 0, 0, 1)
    ghz4 = torch.zeros(16, dtype=C128)
    ghz4[0] = ghz4[15] = 2**-0.5
    w3 = ket(0, 1, 1, 0, 1, 0, 0, 0)                  # rho_k = diag(2/3, 1/3): Q = 2 (1 - 5/9) = 8/9
    bell_then_zero = torch.kron(bell, ket(1, 0))      # Q = 2 (1 - (1/2 + 1/2 + 1) / 3) = 2/3
    zero_then_bell = torch.kron(ket(1, 0), bell)
    expected = [0, 1, 1, 1, 8 / 9, 2 / 3, 2 / 3]
    for state, q in zip([product, bell, ghz3, ghz4, w3, bell_then_zero, zero_then_bell], expected):
        assert float(meyer_wallach(state)) == pytest.approx(q, abs=1e-12)
    batch = meyer_wallach(torch.stack([ghz3, w3, product]))
    np.testing.assert_allclose(batch.numpy(), [1, 8 / 9, 0], atol=1e-12)
    with pytest.raises(QcreepError, match="2\\*\\*n entries"):
        meyer_wallach(torch.ones(1, 3, dtype=C128))


def ry_cnot(p):
    c, s, z = torch.cos(p[:, 0] / 2), torch.sin(p[:, 0] / 2), torch.zeros_like(p[:, 0])
    return torch.stack([c, z, z, s], -1).to(C128)


def test_entangling_capability_of_ry_cnot_is_one_half():
    # Q = sin^2(theta): mean 1/2, variance 3/8 - 1/4 = 1/8
    samples = 4000
    value = entangling_capability(ry_cnot, 1, samples=samples, generator=21)
    assert abs(value - 0.5) < 4 * math.sqrt(1 / 8 / samples)
    assert value == entangling_capability(ry_cnot, 1, samples=samples, generator=21)
    assert value != entangling_capability(ry_cnot, 1, samples=samples, generator=22)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_meyer_wallach_of_haar_states(n):
    dim = 2**n
    g = torch.Generator().manual_seed(30 + n)
    z = torch.complex(torch.randn(4000, dim, generator=g, dtype=F64), torch.randn(4000, dim, generator=g, dtype=F64))
    q = meyer_wallach(z / torch.linalg.vector_norm(z, dim=-1, keepdim=True))
    se = float(q.std()) / math.sqrt(q.numel())
    assert abs(float(q.mean()) - (dim - 2) / (dim + 1)) < 4 * se
