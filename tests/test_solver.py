"""Tests for the solver choice (qcreep.sim.solvers), the products-only solver, the spreading of
per-matrix work over CPU threads (qcreep.sim.parallel), and torch.func.vmap over stacked layers
and models (the seed-parallel trainer's use).

The eigh and expm solvers are also run through the same kernel, layer and PennyLane tests
(parametrised over ``solver`` in tests/test_sim.py, tests/test_layers.py, tests/test_pennylane.py).
"""

from __future__ import annotations

import copy
import math
import threading

import pytest
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from qcreep.errors import QcreepError
from qcreep.layers import DataReUploadingLinear, FlippedQuanv3x3
from qcreep.sim import (
    SOLVERS,
    expi_cos_sin,
    expi_hermitian,
    hamiltonian_embedding,
    parallel,
    plus_state,
    resolve_solver,
    reupload_circuit,
    reupload_features,
    special_unitary,
    symmetric_embedding_matrix,
    unitarity_error,
)
from qcreep.sim.solvers import _SERIES, _THETA, host_extrema, series_theta

F64 = torch.float64
F32 = torch.float32
C128 = torch.complex128


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(2409_17583)


@pytest.fixture
def two_threads():
    """Two torch threads, so that the CPU paths cut batches into chunks run by the worker threads."""
    torch.set_num_threads(2)
    yield 2


def random_symmetric(n: int, *batch, scale: float = 1.0, dtype=F64) -> torch.Tensor:
    a = scale * torch.randn(*batch, n, n, dtype=dtype)
    return 0.5 * (a + a.mT)


def exact_cos_sin(h: torch.Tensor, t: float):
    """cos(tH), sin(tH) in float64 from an eigendecomposition (the reference)."""
    lam, vecs = torch.linalg.eigh(h.double())
    return ((vecs * torch.cos(t * lam)[..., None, :]) @ vecs.mT,
            (vecs * torch.sin(t * lam)[..., None, :]) @ vecs.mT)


# ----------------------------------------------------------------------------- the choice


def test_resolve_solver_by_device():
    assert SOLVERS == ("auto", "eigh", "expm")
    assert resolve_solver("auto", "cpu") == "eigh"
    assert resolve_solver("auto", None) == "eigh"
    assert resolve_solver("auto", torch.device("cuda", 0)) == "expm"
    assert resolve_solver("auto", "meta") == "expm"
    for solver in ("eigh", "expm"):
        assert resolve_solver(solver, "cpu") == resolve_solver(solver, "cuda") == solver
    with pytest.raises(QcreepError, match=r"solver must be one of auto, eigh, expm, got 'svd'"):
        resolve_solver("svd", "cpu")


def test_auto_follows_the_device_of_the_input():
    h = random_symmetric(4, 2)
    assert torch.equal(expi_hermitian(h, 0.3, "auto"), expi_hermitian(h, 0.3, "eigh"))


# ----------------------------------------------------------------------------- the series


def test_series_parameters_meet_the_unit_roundoff():
    for dtype, (m, _) in _SERIES.items():
        u = {F32: 2.0**-24, F64: 2.0**-53}[dtype]
        theta = _THETA[dtype]
        k = 2 * m + 1
        bound = theta ** (k + 1) / math.factorial(k + 1) / (1 - theta / (k + 2))
        assert bound <= u * (1 + 1e-9)
        assert series_theta(m, u) == theta
    assert 3.5 < _THETA[F32] < 3.7 and 3.0 < _THETA[F64] < 3.1


@pytest.mark.parametrize("scale", [1e-6, 1e-2, 1.0, 10.0, 1e3])
def test_cos_sin_match_the_eigendecomposition_at_every_scale(scale):
    """Entries from 1e-6 to 1e3: the scaling keeps the series exact (relative backward error ~ u)."""
    h = random_symmetric(16, 3, scale=scale)
    t = 0.1
    cos, sin = expi_cos_sin(h, t)
    ref_cos, ref_sin = exact_cos_sin(h, t)
    norm = float(torch.linalg.matrix_norm(t * h, ord=2).max())
    tol = 1e-13 * max(1.0, norm)  # the conditioning of exp(i t H): an error of u ||tH||
    assert (cos - ref_cos).abs().max() < tol and (sin - ref_sin).abs().max() < tol
    # cos^2 + sin^2 = I: the unitarity of cos + i sin
    eye = torch.eye(16, dtype=F64)
    assert (cos @ cos + sin @ sin - eye).abs().max() < tol
    assert float(unitarity_error(torch.complex(cos, sin)).max()) < tol


def test_a_series_without_scaling_fails_where_the_solver_does_not():
    h = random_symmetric(16, 2, scale=1e3)
    t = 0.1
    m, _ = _SERIES[F64]
    a = (t * h).to(C128) * 1j
    term, unscaled = torch.eye(16, dtype=C128).expand(2, 16, 16), torch.zeros(2, 16, 16, dtype=C128)
    for k in range(2 * m + 2):  # the same Taylor degree, no scaling
        unscaled = unscaled + term
        term = term @ a / (k + 1)
    ref_cos, ref_sin = exact_cos_sin(h, t)
    reference = torch.complex(ref_cos, ref_sin)
    assert (unscaled - reference).abs().max() > 1e3
    assert (expi_hermitian(h, t, "expm") - reference).abs().max() < 1e-9


def test_each_matrix_gets_its_own_number_of_squarings():
    """A batch of very different norms: every matrix as accurate as if it were alone."""
    h = torch.stack([random_symmetric(8, scale=s) for s in (1e-4, 1.0, 300.0)])
    cos, sin = expi_cos_sin(h, 0.5)
    for k in range(3):
        alone_cos, _ = expi_cos_sin(h[k:k + 1], 0.5)
        ref_cos, ref_sin = exact_cos_sin(h[k], 0.5)
        assert torch.allclose(cos[k], alone_cos[0], atol=1e-12, rtol=0)
        assert torch.allclose(sin[k], ref_sin, atol=1e-11 * max(1, float(h[k].abs().max())), rtol=0)
        assert torch.allclose(cos[k], ref_cos, atol=1e-11 * max(1, float(h[k].abs().max())), rtol=0)


@pytest.mark.parametrize("which", ["zero", "identity_multiple", "repeated", "rank_one"])
def test_cos_sin_and_gradcheck_at_degenerate_hamiltonians(which):
    n = 6
    if which == "zero":
        base = torch.zeros(n, n, dtype=F64)
    elif which == "identity_multiple":
        base = 3.7 * torch.eye(n, dtype=F64)
    elif which == "repeated":
        q, _ = torch.linalg.qr(torch.randn(n, n, dtype=F64))
        base = q @ torch.diag(torch.tensor([1.0, 1.0, 1.0, -2.0, -2.0, 0.5], dtype=F64)) @ q.mT
    else:
        v = torch.randn(n, 1, dtype=F64)
        base = 5.0 * v @ v.mT  # eigenvalue 0 repeated n - 1 times
    base = 0.5 * (base + base.mT)
    cos, sin = expi_cos_sin(base, 0.8)
    ref_cos, ref_sin = exact_cos_sin(base, 0.8)
    assert torch.allclose(cos, ref_cos, atol=1e-13) and torch.allclose(sin, ref_sin, atol=1e-13)
    a = base.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: expi_cos_sin(0.5 * (a + a.mT), 0.8), (a,), atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_expm_gradient_equals_eigh_gradient(scale):
    """The autograd gradient through the products equals the divided-difference gradient of eigh,
    also at entries of order 1e3 (many squarings)."""
    base = random_symmetric(8, 2, scale=scale)
    w = torch.randn(2, 8, 8, dtype=C128)
    grads = []
    for solver in ("eigh", "expm"):
        a = base.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((w * expi_hermitian(0.5 * (a + a.mT), 0.05, solver)).real.sum(), a)
        grads.append(g)
    assert torch.allclose(grads[0], grads[1], atol=1e-10 * scale, rtol=0)
    assert grads[0].abs().max() > 1e-3


def test_expm_gates_are_unitary_in_float32_at_seven_qubits():
    theta = torch.randn(3, 4**7 - 1)
    for solver in ("eigh", "expm"):
        u = special_unitary(theta, solver)
        assert float(unitarity_error(u).max()) < 5e-6
    assert torch.allclose(special_unitary(theta, "expm").to(C128), special_unitary(theta.double()), atol=2e-5)


def test_expm_reupload_circuit_at_large_feature_scales():
    """The data re-uploading circuit with entries up to 1e3, against the dense loop."""
    h = symmetric_embedding_matrix(1e3 * (2 * torch.rand(3, 60, dtype=F64) - 1), 3)
    gates = special_unitary(torch.randn(4, 63, dtype=F64))
    psi0 = plus_state(3, (3,), dtype=C128)
    expected = psi0
    data = torch.linalg.matrix_exp(0.25j * h.to(C128))
    for r in range(4):
        expected = (gates[r] @ (data @ expected[..., None]))[..., 0]
    for solver in ("eigh", "expm"):
        got = reupload_circuit(h, gates, psi0, 0.25, solver)
        assert torch.allclose(got, expected, atol=1e-9, rtol=0)


def test_host_extrema_under_vmap_sees_every_slice():
    seen = []

    def f(x):
        seen.append(host_extrema(x))
        return x * 2

    vmap(f)(torch.tensor([[1.0, -3.0], [7.0, 2.0]]))
    assert seen == [(7.0, -3.0)]
    assert host_extrema(torch.zeros(0)) == (0.0, 0.0)


def test_expm_rejects_bad_input():
    with pytest.raises(QcreepError, match=r"real float32 or float64 matrices, got torch.complex128"):
        expi_cos_sin(torch.zeros(2, 2, dtype=C128))
    with pytest.raises(QcreepError, match=r"H must have shape \(\.\.\., N, N\), got \(2, 3\)"):
        expi_cos_sin(torch.zeros(2, 3))
    with pytest.raises(QcreepError, match=r"not finite or too large"):
        expi_cos_sin(torch.full((2, 2), float("inf")))


# ----------------------------------------------------------------------------- every core


def test_chunk_bounds_cover_the_batch():
    assert parallel.chunk_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert parallel.chunk_bounds(2, 1) == [(0, 2)]
    assert parallel.chunk_bounds(0, 1) == [(0, 0)]


def test_workers_follow_torch_threads(two_threads):
    x = torch.zeros(10)
    assert parallel.workers_for(x, 10) == min(2, torch.get_num_threads())
    assert parallel.workers_for(x, 3) == 1  # too few rows to be worth a hand-off
    torch.set_num_threads(1)
    assert parallel.workers_for(x, 10) == 1
    torch.set_num_threads(2)
    assert parallel.workers_for(torch.zeros(10, device="meta"), 10) == 1  # never on other devices
    assert vmap(lambda v: torch.tensor(parallel.workers_for(v, 10)))(torch.zeros(3, 2)).tolist() == [1, 1, 1]


# Results computed with other thread counts or other chunks of a batch agree to rounding, not
# bitwise: LAPACK and BLAS (MKL) may pick other kernels for another thread count or batch size,
# and do on some CPUs (on an AMD EPYC the head below differs by 2.2e-16 between one and two
# threads). Bitwise equality is asserted only for the same thread count and the same shapes.
# Each comparison gives its largest error as a multiple of its tolerance (<= 1 passes), so that
# test_an_off_by_one_chunk_fails_the_rounding_comparisons can show a planted bug far above it.
EIGH_TOL = {F64: (1e-12, 1e-10), F32: (1e-5, 1e-3)}  # (eigenvalues, relative to max |lambda|; eigenvectors)


def excess(a: torch.Tensor, b: torch.Tensor, atol: float) -> float:
    """``max |a - b| / atol``: at most 1 where ``a`` and ``b`` agree to the tolerance."""
    return float((a - b).abs().max()) / atol


def eigh_excess(lam, vecs, ref_lam, ref_vecs) -> float:
    """How far an eigendecomposition is from a reference, in multiples of the rounding tolerance.

    Each eigenvector is compared up to its sign (another kernel may return ``-v``); with the
    gaps of these random matrices (above 1e-3) an eigenvector's rounding error is about
    ``u ||H|| / gap``, 1e-5 in float32 and 2e-13 in float64, well inside the tolerance.
    """
    lam_tol, vec_tol = EIGH_TOL[ref_lam.dtype]
    signs = torch.where((vecs * ref_vecs).sum(-2, keepdim=True) < 0, -1.0, 1.0).to(vecs.dtype)
    return max(excess(lam, ref_lam, lam_tol * float(ref_lam.abs().max())), excess(vecs * signs, ref_vecs, vec_tol))


def test_threaded_eigh_equals_the_batched_eigh(two_threads):
    """The chunks (one thread each) against one batched call on two threads: equal to rounding."""
    for dtype in (F32, F64):
        h = random_symmetric(32, 50, dtype=dtype)
        lam, vecs = parallel.eigh(h)
        ref_lam, ref_vecs = torch.linalg.eigh(h)
        assert eigh_excess(lam, vecs, ref_lam, ref_vecs) <= 1
        lead_lam, lead_vecs = parallel.eigh(h.reshape(5, 10, 32, 32))  # leading dims
        assert eigh_excess(lead_lam.reshape(50, 32), lead_vecs.reshape(50, 32, 32), ref_lam, ref_vecs) <= 1
        # the same chunks on the same threads again: bitwise
        again_lam, again_vecs = parallel.eigh(h)
        assert torch.equal(again_lam, lam) and torch.equal(again_vecs, vecs)


def test_chunks_run_in_worker_threads_as_the_caller_would(two_threads):
    names, modes = set(), set()

    def fn(start, stop):
        names.add(threading.current_thread().name)
        modes.add((torch.is_grad_enabled(), torch.get_num_threads()))
        return start, stop

    with torch.no_grad():
        assert parallel.run_chunks(fn, 10, 2) == [(0, 5), (5, 10)]
    assert all(name.startswith("qcreep-sim") for name in names)
    assert modes == {(False, 1)}  # the caller's grad mode, one intra-op thread per worker
    assert torch.get_num_threads() == 2  # the caller's own setting is kept

    def boom(start, stop):
        raise ValueError(f"chunk {start}")

    with pytest.raises(ValueError, match="chunk"):
        parallel.run_chunks(boom, 10, 2)


def test_pool_is_made_again_after_a_fork(two_threads, monkeypatch):
    parallel.run_chunks(lambda a, b: a, 4, 2)
    old = parallel._POOL
    monkeypatch.setattr(parallel, "_POOL_PID", -1)  # as a forked child sees it
    assert parallel.run_chunks(lambda a, b: a, 4, 2) == [0, 2]
    assert parallel._POOL is not old


HEAD_TOL = {F64: 1e-13, F32: 1e-5}  # relative to the largest entry of each result


def head_results(head, x, threads: int) -> tuple[torch.Tensor, ...]:
    """The head's output and the gradients at ``x``, ``theta`` and the bias, on ``threads`` threads."""
    torch.set_num_threads(threads)
    xx = x.clone().requires_grad_(True)
    head.zero_grad()
    out = head(xx)
    out.square().sum().backward()
    return out.detach(), xx.grad, head.theta.grad.clone(), head.bias.grad.clone()


def head_excess(results, reference) -> float:
    """The largest error of the output and gradients, in multiples of the rounding tolerance."""
    tol = HEAD_TOL[reference[0].dtype]
    return max(excess(a, b, tol * float(b.abs().max())) for a, b in zip(results, reference))


@pytest.mark.parametrize("dtype", [F64, F32])
def test_threaded_head_equals_the_single_thread_head(dtype, two_threads):
    """Forward and gradients to rounding (one thread is one batched call; two threads run chunks)."""
    head = DataReUploadingLinear(200, 10, n_qubits=4, n_reps=3, dtype=dtype)
    x = torch.randn(12, 200, dtype=dtype)
    one, two = head_results(head, x, 1), head_results(head, x, 2)
    assert head_excess(two, one) <= 1
    # the same thread count and batch again: bitwise
    assert all(torch.equal(a, b) for a, b in zip(head_results(head, x, 2), two))


@pytest.mark.parametrize("fault", ["shifted", "duplicated"])
def test_an_off_by_one_chunk_fails_the_rounding_comparisons(fault, two_threads, monkeypatch):
    """A planted off-by-one in the chunk bounds is caught by the tolerances above, by a wide margin.

    ``shifted``: the last chunk starts one row early and ends one row early (a row is computed
    twice, the last row never); ``duplicated``: the first chunk ends one row late, so a row
    lands twice in the output and the last row is dropped.
    """
    honest = parallel.chunk_bounds

    def planted(rows, chunks):
        bounds = honest(rows, chunks)
        if len(bounds) > 1:
            if fault == "shifted":
                start, stop = bounds[-1]
                bounds[-1] = (start - 1, stop - 1)
            else:
                (start, stop), (_, last) = bounds[0], bounds[-1]
                bounds[0] = (start, stop + 1)
                bounds[-1] = (bounds[-1][0], last - 1)
        return bounds

    h = random_symmetric(32, 50)
    ref_lam, ref_vecs = torch.linalg.eigh(h)
    head = DataReUploadingLinear(200, 10, n_qubits=4, n_reps=3, dtype=F64)
    x = torch.randn(12, 200, dtype=F64)
    one = head_results(head, x, 1)
    torch.set_num_threads(2)
    assert eigh_excess(*parallel.eigh(h), ref_lam, ref_vecs) <= 1  # the honest chunks pass
    monkeypatch.setattr(parallel, "chunk_bounds", planted)
    lam, vecs = parallel.eigh(h)
    assert lam.shape == ref_lam.shape  # the wrong rows, not a wrong shape
    assert eigh_excess(lam, vecs, ref_lam, ref_vecs) > 1e6
    assert head_excess(head_results(head, x, 2), one) > 1e6


def test_threaded_kernels_equal_single_thread(two_threads):
    x = torch.randn(10, 30, dtype=F64, requires_grad=True)
    gates = special_unitary(torch.randn(2, 15, dtype=F64)).requires_grad_(True)
    psi0 = plus_state(2, (10,), dtype=C128)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        h = symmetric_embedding_matrix(x[:, :16], 2)
        u = expi_hermitian(h, 0.3)
        states = reupload_circuit(h, gates, psi0, 0.3)
        loss = u.real.sum() + states.imag.sum()
        results.append((h, u, states, *torch.autograd.grad(loss, (x, gates))))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-13, rtol=0)


def test_prefetched_decompositions_give_the_same_states(two_threads):
    from qcreep.sim.circuits import Prefetch

    x = torch.randn(10, 14, dtype=F64)
    gates = special_unitary(torch.randn(2, 15, dtype=F64))
    psi0 = plus_state(2, (10,), dtype=C128)
    pre = Prefetch.start(x, 2)
    assert pre is not None
    with parallel.inline():
        assert parallel.workers_for(x, 10) == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    prefetched = reupload_features(x, 2, gates, psi0, 0.5, prefetch=pre)
    assert torch.equal(prefetched, reupload_features(x, 2, gates, psi0, 0.5))
    with pytest.raises(QcreepError, match="prefetch was started for other features"):
        reupload_features(x.clone(), 2, gates, psi0, 0.5, prefetch=Prefetch.start(x, 2))
    torch.set_num_threads(1)
    assert Prefetch.start(x, 2) is None  # nothing to overlap on one thread
    torch.set_num_threads(2)
    assert Prefetch.start(x, 2, "expm") is None


def test_gates_built_inside_the_circuit_equal_special_unitary_gates():
    """reupload_features_su (the head's path with eigh) against reupload_features with special_unitary:
    the same states, and the same gradients for the features, the angles and psi_0, on one and
    two threads, with and without a prefetch, at a feature count that fills (16) and does not
    fill (14) the matrix, in float64 and float32."""
    from qcreep.sim.circuits import Prefetch, reupload_features_su

    threads_before = torch.get_num_threads()
    for dtype, tol in ((F64, 1e-12), (F32, 2e-5)):
        cdtype = torch.complex128 if dtype == F64 else torch.complex64
        for features in (14, 16):
            x = torch.randn(9, features, dtype=dtype)
            theta = torch.randn(3, 15, dtype=dtype)
            psi0 = torch.randn(9, 4, dtype=cdtype)
            psi0 = psi0 / psi0.abs().square().sum(-1, keepdim=True).sqrt()
            weights = torch.randn(9, 4, dtype=dtype)

            def run(fn, x=x, theta=theta, psi0=psi0, weights=weights):
                xx, th, p0 = (x.clone().requires_grad_(True), theta.clone().requires_grad_(True),
                              psi0.clone().requires_grad_(True))
                out = fn(xx, th, p0)
                loss = (weights * out.real).sum() + (weights.flip(0) * out.imag).sum()
                return (out.detach(), *torch.autograd.grad(loss, (xx, th, p0)))

            reference = run(lambda xx, th, p0: reupload_features(xx, 2, special_unitary(th), p0, 0.4))
            for threads in (1, 2):
                torch.set_num_threads(threads)
                got = run(lambda xx, th, p0: reupload_features_su(xx, 2, th, p0, 0.4))
                pre = run(lambda xx, th, p0: reupload_features_su(xx, 2, th, p0, 0.4, Prefetch.start(xx, 2)))
                for a, b, c in zip(got, pre, reference):
                    assert torch.allclose(a, c, atol=tol * max(1.0, float(c.abs().max())), rtol=0)
                    assert torch.allclose(b, c, atol=tol * max(1.0, float(c.abs().max())), rtol=0)
    torch.set_num_threads(threads_before)


def test_several_chunks_per_worker_equal_one_thread(two_threads):
    """A batch cut into more chunks than workers (the reverse passes, then the chunks of dL/dx, with
    the gates' gradient taken in between): the same values as one thread, for every subset of
    inputs that need a gradient."""
    from qcreep.sim.circuits import _circuit_chunks, reupload_features_su

    x = torch.randn(70, 16, dtype=F64)
    assert _circuit_chunks(x, 70) == 4
    theta = torch.randn(2, 15, dtype=F64)
    psi0 = plus_state(2, (70,), dtype=C128)
    for need in ((True, True, True), (False, True, False), (True, False, False), (False, False, True)):
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            inputs = [v.clone().requires_grad_(r) for v, r in zip((x, theta, psi0), need)]
            fresh = reupload_features_su(inputs[0], 2, inputs[1], inputs[2], 0.3)
            old = reupload_features(inputs[0], 2, special_unitary(inputs[1]), inputs[2], 0.3)
            wanted = [v for v in inputs if v.requires_grad]
            results.append((fresh.detach(), *torch.autograd.grad(fresh.real.square().sum(), wanted),
                            *torch.autograd.grad(old.real.square().sum(), wanted)))
        for a, b in zip(*results):
            assert torch.allclose(a, b, atol=1e-12, rtol=0)
        half = (len(results[0]) - 1) // 2
        for a, b in zip(results[1][1:1 + half], results[1][1 + half:]):
            assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_gates_built_inside_the_circuit_gradcheck():
    from qcreep.sim.circuits import reupload_features_su

    x = torch.randn(4, 16, dtype=F64, requires_grad=True)
    theta = torch.randn(2, 15, dtype=F64, requires_grad=True)
    psi0 = plus_state(2, (4,), dtype=C128).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: reupload_features_su(a, 2, b, c, 0.3), (x, theta, psi0))
    # degenerate data Hamiltonians and a zero generator (repeated eigenvalues on both sides)
    zeros = torch.zeros(3, 16, dtype=F64, requires_grad=True)
    still = torch.zeros(2, 15, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: reupload_features_su(a, 2, b, plus_state(2, (3,), dtype=C128), 0.3),
                                    (zeros, still))


def test_gates_built_inside_the_circuit_under_vmap_and_bad_input(two_threads):
    from qcreep.sim.circuits import reupload_features_su

    x = torch.randn(3, 5, 14, dtype=F64)
    theta = torch.randn(3, 2, 15, dtype=F64, requires_grad=True)
    psi0 = plus_state(2, (5,), dtype=C128)
    states = vmap(lambda v, th: reupload_features_su(v, 2, th, psi0, 0.5))(x, theta)
    for k in range(3):
        assert torch.allclose(states[k], reupload_features(x[k], 2, special_unitary(theta[k]), psi0, 0.5), atol=1e-12)
    (g,) = torch.autograd.grad(states.real.sum(), theta)
    for k in range(3):
        (ref,) = torch.autograd.grad(reupload_features(x[k], 2, special_unitary(theta[k]), psi0, 0.5).real.sum(),
                                     theta)
        assert torch.allclose(g[k], ref[k], atol=1e-10)
    with pytest.raises(QcreepError, match="theta must be real"):
        reupload_features_su(x[0], 2, theta[0].to(C128), psi0, 0.5)
    with pytest.raises(QcreepError, match="theta must be real"):
        reupload_features_su(x[0], 2, torch.randn(2, 14, dtype=F64), psi0, 0.5)


def test_scratch_buffers_are_per_thread_and_never_returned(two_threads):
    from qcreep.sim.circuits import _scratch

    like = torch.zeros(1)
    a = _scratch("t", (4, 4), like)
    assert _scratch("t", (2, 3), like).data_ptr() == a.data_ptr()  # reused
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_scratch("t", (4, 4), like).data_ptr()))
    thread.start()
    thread.join()
    assert seen[0] != a.data_ptr()
    # the gradients returned own their memory: a second backward does not change the first
    x = torch.randn(6, 16, dtype=F64, requires_grad=True)
    gates = special_unitary(torch.randn(2, 15, dtype=F64))
    psi0 = plus_state(2, (6,), dtype=C128)
    (g1,) = torch.autograd.grad(reupload_features(x, 2, gates, psi0, 0.5).real.sum(), x)
    kept = g1.clone()
    torch.autograd.grad(reupload_features(2 * x, 2, gates, psi0, 0.5).imag.sum(), x)
    assert torch.equal(g1, kept)


# ----------------------------------------------------------------------------- vmap over stacked models


def _stacked(models):
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def call(p, b, x):
        return functional_call(base, (p, b), (x,))

    return params, buffers, call


def _per_model_grads(models, x, loss_fn):
    grads = {}
    for m in models:
        m.zero_grad()
        loss_fn(m(x)).backward()
        for name, p in m.named_parameters():
            grads.setdefault(name, []).append(p.grad.clone())
    return {name: torch.stack(g) for name, g in grads.items()}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("solver", ["eigh", "expm"])
@pytest.mark.parametrize("kind", ["head", "quanv"])
def test_vmap_over_stacked_layers_equals_the_loop(kind, solver, threads):
    torch.set_num_threads(threads)
    if kind == "head":
        models = [DataReUploadingLinear(16, 4, n_qubits=2, n_reps=3, solver=solver, dtype=F64) for _ in range(3)]
        x = torch.randn(5, 16, dtype=F64)
    else:
        models = [FlippedQuanv3x3(2, 3, solver=solver, dtype=F64) for _ in range(3)]
        x = torch.randn(5, 2, 6, 6, dtype=F64)
    params, buffers, call = _stacked(models)

    def loss_fn(out):
        return out.square().sum()

    out = vmap(call, in_dims=(0, 0, None))(params, buffers, x)
    expected = torch.stack([m(x) for m in models])
    assert torch.allclose(out, expected, atol=1e-12, rtol=0)
    reference = _per_model_grads(models, x, loss_fn)
    # autograd on the vmapped loss
    autograd_grads = torch.autograd.grad(loss_fn(out), list(params.values()))
    # torch.func.grad inside vmap, and outside it
    inner = vmap(grad(lambda p, b, x: loss_fn(call(p, b, x))), in_dims=(0, 0, None))(params, buffers, x)
    outer = grad(lambda p: loss_fn(vmap(call, in_dims=(0, 0, None))(p, buffers, x)))(params)
    for name, g in zip(params, autograd_grads):
        for candidate in (g, inner[name], outer[name]):
            assert torch.allclose(candidate, reference[name], atol=1e-10, rtol=0), name
        assert reference[name].abs().max() > 1e-6


def test_vmap_with_a_batched_input_and_the_input_gradient():
    """Features that differ per model (as in a stacked network), and the gradient reaching them."""
    models = [DataReUploadingLinear(16, 4, n_qubits=2, n_reps=3, dtype=F64) for _ in range(3)]
    params, buffers, call = _stacked(models)
    x = torch.randn(3, 5, 16, dtype=F64, requires_grad=True)
    out = vmap(call)(params, buffers, x)
    (gx,) = torch.autograd.grad(out.sum(), x)
    for k, m in enumerate(models):
        xk = x[k].detach().clone().requires_grad_(True)
        yk = m(xk)
        assert torch.allclose(out[k], yk, atol=1e-12)
        (gk,) = torch.autograd.grad(yk.sum(), xk)
        assert torch.allclose(gx[k], gk, atol=1e-12)


@pytest.mark.parametrize("solver", ["eigh", "expm"])
def test_vmap_over_the_stacked_level_two_model(solver):
    from qcreep.models import build_model

    models = [build_model((1, 12, 12), level=2, solver=solver, dtype=F64) for _ in range(3)]
    params, buffers, call = _stacked(models)
    x = torch.randn(4, 1, 12, 12, dtype=F64)
    out = vmap(call, in_dims=(0, 0, None))(params, buffers, x)
    expected = torch.stack([m(x) for m in models])
    assert out.shape == (3, 4, 10)
    assert torch.allclose(out, expected, atol=1e-12, rtol=0)
    grads = torch.autograd.grad(out.square().sum(), list(params.values()))
    reference = _per_model_grads(models, x, lambda o: o.square().sum())
    for name, g in zip(params, grads):
        assert torch.allclose(g, reference[name], atol=1e-9 * max(1.0, float(reference[name].abs().max()))), name


def test_functions_reach_the_hamiltonian_embedding_under_vmap():
    x = torch.randn(3, 2, 14, dtype=F64)
    h = vmap(lambda v: symmetric_embedding_matrix(v, 2))(x)
    assert torch.equal(h, symmetric_embedding_matrix(x, 2))
    u = vmap(lambda v: hamiltonian_embedding(v, 0.2, "expm"))(h)
    assert torch.allclose(u, hamiltonian_embedding(h, 0.2), atol=1e-12)
    gates = special_unitary(torch.randn(2, 15, dtype=F64))
    psi0 = plus_state(2, (2,), dtype=C128)
    for solver in ("eigh", "expm"):
        states = vmap(lambda v, solver=solver: reupload_features(v, 2, gates, psi0, 0.5, solver))(x)
        for k in range(3):
            assert torch.allclose(states[k], reupload_features(x[k], 2, gates, psi0, 0.5, solver), atol=1e-12)
