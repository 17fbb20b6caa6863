"""Tests for the simulation kernel ``qcreep.sim``: Pauli basis, SU(N), Hamiltonian embedding,
the re-uploading circuit with its hand-written adjoint, and measurement.

Every fast routine is checked against the slow, obvious construction (dense Kronecker Pauli
matrices, ``torch.linalg.matrix_exp`` and its autograd, explicit loops).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from qcreep.errors import QcreepError
from qcreep.sim import (
    apply_matrix,
    expi_hermitian,
    expval_pauli,
    expval_symmetric,
    hamiltonian_embedding,
    norm_squared,
    num_generators,
    pauli_masks,
    pauli_matrices,
    pauli_sum,
    pauli_words,
    plus_state,
    probabilities,
    reupload_circuit,
    reupload_features,
    special_unitary,
    symmetric_embedding_matrix,
    unitarity_error,
    zero_state,
)

C128 = torch.complex128
F64 = torch.float64
CDTYPE = {torch.float32: torch.complex64, torch.float64: torch.complex128}
# (atol for matrix comparisons) per real dtype
ATOL = {torch.float32: 2e-4, torch.float64: 1e-10}
# both solvers of the unitaries exp(i t H) (qcreep.sim.solvers) pass the same tests
SOLVERS = ["eigh", "expm"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(20240926)


# ----------------------------------------------------------------------------- helpers

def dense_sum(theta: torch.Tensor) -> torch.Tensor:
    """``sum_k theta_k P_k`` from the dense Kronecker matrices (real or complex theta)."""
    n = {3: 1, 15: 2, 63: 3, 255: 4, 1023: 5}[theta.shape[-1]]
    cdtype = CDTYPE.get(theta.dtype, theta.dtype)
    mats = pauli_matrices(n, dtype=cdtype)
    return torch.einsum("...k,kij->...ij", theta.to(cdtype), mats)


def random_hermitian(n: int, *batch, complex_: bool = False, dtype=F64) -> torch.Tensor:
    if complex_:
        a = torch.randn(*batch, n, n, dtype=CDTYPE[dtype])
        return 0.5 * (a + a.mH)
    a = torch.randn(*batch, n, n, dtype=dtype)
    return 0.5 * (a + a.mT)


def random_orthogonal(n: int, complex_: bool = False) -> torch.Tensor:
    a = torch.randn(n, n, dtype=C128 if complex_ else F64)
    q, _ = torch.linalg.qr(a)
    return q


def with_spectrum(eigs, complex_: bool = False) -> torch.Tensor:
    """``Q diag(eigs) Q^H`` for a random orthogonal / unitary ``Q``."""
    q = random_orthogonal(len(eigs), complex_)
    d = torch.diag(torch.tensor(eigs, dtype=F64)).to(q.dtype)
    h = q @ d @ q.mH
    return 0.5 * (h + h.mH)


def random_state(n_qubits: int, *batch, dtype=C128, normalize=True) -> torch.Tensor:
    psi = torch.randn(*batch, 2**n_qubits, dtype=dtype)
    if normalize:
        psi = psi / torch.linalg.vector_norm(psi, dim=-1, keepdim=True)
    return psi


def sym(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a + a.mH)


# Degenerate and nearly degenerate spectra for the gradient tests (4x4).
SPECTRA = {
    "random": None,
    "triple_degenerate": [1.0, 1.0, 1.0, -2.0],
    "two_pairs": [0.5, 0.5, -1.5, -1.5],
    "zero": [0.0, 0.0, 0.0, 0.0],
    "identity_multiple": [2.5, 2.5, 2.5, 2.5],
    "gap_1e-9": [1.0, 1.0 + 1e-9, 0.3, -2.0],
}


def spectrum_matrix(name: str, complex_: bool = False) -> torch.Tensor:
    eigs = SPECTRA[name]
    if eigs is None:
        return random_hermitian(4, complex_=complex_)
    if name == "zero":
        return torch.zeros(4, 4, dtype=C128 if complex_ else F64)
    if name == "identity_multiple":
        return 2.5 * torch.eye(4, dtype=C128 if complex_ else F64)
    return with_spectrum(eigs, complex_)


# ----------------------------------------------------------------------------- Pauli basis

def test_pauli_words_order_one_and_two_qubits():
    assert pauli_words(1) == ["X", "Y", "Z"]
    words2 = pauli_words(2)
    assert words2[:4] == ["IX", "IY", "IZ", "XI"]
    assert words2 == ["IX", "IY", "IZ", "XI", "XX", "XY", "XZ", "YI", "YX", "YY", "YZ",
                      "ZI", "ZX", "ZY", "ZZ"]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_pauli_word_count_and_lexicographic(n):
    words = pauli_words(n)
    assert len(words) == 4**n - 1 == num_generators(n)
    assert len(set(words)) == len(words)
    expected = ["".join(w) for w in itertools.product("IXYZ", repeat=n)][1:]
    assert words == expected
    assert "I" * n not in words


@pytest.mark.parametrize("n", [1, 2, 3])
def test_pauli_masks_match_words(n):
    xs, zs = pauli_masks(n)
    assert xs.shape == zs.shape == (4**n - 1,)
    for k, word in enumerate(pauli_words(n)):
        x = z = 0
        for q, letter in enumerate(word):
            bit = 1 << (n - 1 - q)  # qubit 0 is the most significant bit
            if letter in "XY":
                x |= bit
            if letter in "YZ":
                z |= bit
        assert (int(xs[k]), int(zs[k])) == (x, z), word


def test_pauli_matrices_single_qubit_and_msb_convention():
    x, y, z = pauli_matrices(1)
    assert torch.equal(x, torch.tensor([[0, 1], [1, 0]], dtype=C128))
    assert torch.equal(y, torch.tensor([[0, -1j], [1j, 0]], dtype=C128))
    assert torch.equal(z, torch.tensor([[1, 0], [0, -1]], dtype=C128))
    mats = pauli_matrices(2)
    xi = mats[pauli_words(2).index("XI")]
    ix = mats[pauli_words(2).index("IX")]
    # X on qubit 0 (most significant bit) maps |00> (index 0) to |10> (index 2)
    assert xi[2, 0] == 1 and xi[1, 0] == 0
    assert ix[1, 0] == 1 and ix[2, 0] == 0


@pytest.mark.parametrize("n", [1, 2, 3])
def test_pauli_matrices_are_orthogonal_hermitian_involutions(n):
    mats = pauli_matrices(n)
    dim = 2**n
    gram = torch.einsum("aij,bji->ab", mats, mats)  # tr(P_a P_b)
    assert torch.allclose(gram, dim * torch.eye(4**n - 1, dtype=C128))
    assert torch.allclose(mats, mats.mH)
    eye = torch.eye(dim, dtype=C128)
    assert torch.allclose(mats @ mats, eye.expand_as(mats))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_pauli_matrix_entries_match_mask_formula(n):
    """``P[j ^ x, j] = i**|x & z| (-1)**|j & z|`` and nothing else in column j."""
    xs, zs = pauli_masks(n)
    mats = pauli_matrices(n)
    dim = 2**n
    for k in range(4**n - 1):
        x, z = int(xs[k]), int(zs[k])
        expected = torch.zeros(dim, dim, dtype=C128)
        for j in range(dim):
            expected[j ^ x, j] = (1j) ** (x & z).bit_count() * (-1) ** (j & z).bit_count()
        assert torch.allclose(mats[k], expected), pauli_words(n)[k]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_pauli_sum_matches_dense(n, dtype):
    theta = torch.randn(4**n - 1, dtype=dtype)
    got = pauli_sum(theta)
    assert got.dtype == CDTYPE[dtype]
    assert got.shape == (2**n, 2**n)
    assert torch.allclose(got, dense_sum(theta), atol=ATOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 3])
def test_pauli_sum_batched_leading_dims(n, dtype):
    theta = torch.randn(2, 3, 4**n - 1, dtype=dtype)
    got = pauli_sum(theta)
    assert got.shape == (2, 3, 2**n, 2**n)
    assert torch.allclose(got, dense_sum(theta), atol=ATOL[dtype], rtol=0)
    # each batch entry is independent of the others
    assert torch.allclose(got[1, 2], pauli_sum(theta[1, 2]), atol=ATOL[dtype], rtol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_pauli_sum_hermitian_and_traceless_for_real_theta(n):
    theta = torch.randn(4, 4**n - 1, dtype=F64)
    g = pauli_sum(theta)
    assert torch.allclose(g, g.mH, atol=1e-12, rtol=0)
    trace = torch.diagonal(g, dim1=-2, dim2=-1).sum(-1)
    assert torch.allclose(trace, torch.zeros_like(trace), atol=1e-10)


def test_pauli_sum_single_word_is_that_word():
    for k, word in enumerate(pauli_words(2)):
        theta = torch.zeros(15, dtype=F64)
        theta[k] = 1.0
        assert torch.allclose(pauli_sum(theta), pauli_matrices(2)[k]), word


def test_pauli_sum_complex_theta_matches_dense_and_is_not_hermitian():
    theta = torch.complex(torch.randn(15, dtype=F64), torch.randn(15, dtype=F64))
    got = pauli_sum(theta)
    assert got.dtype == C128
    assert torch.allclose(got, dense_sum(theta), atol=1e-12)
    assert (got - got.mH).abs().max() > 0.1


def test_pauli_sum_rejects_bad_length():
    with pytest.raises(QcreepError, match=r"length 4\*\*n - 1 \(3, 15, 63, 255, \.\.\.\), got 14"):
        pauli_sum(torch.zeros(14))


@pytest.mark.parametrize("bad", [0, 11, -1, 2.0, True])
def test_pauli_words_rejects_bad_qubit_count(bad):
    # one limit for the kernel and the layers (qcreep.sim.paulis.MAX_QUBITS)
    with pytest.raises(QcreepError, match=r"n_qubits must be an integer from 1 to 10"):
        pauli_words(bad)


def test_pauli_matrices_refuses_large_registers():
    with pytest.raises(QcreepError, match=r"n_qubits <= 6, got 7"):
        pauli_matrices(7)


# ----------------------------------------------------------------------------- special_unitary

@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_special_unitary_matches_matrix_exp(n, dtype, solver):
    theta = 0.5 * torch.randn(2, 4**n - 1, dtype=dtype)
    got = special_unitary(theta, solver)
    expected = torch.linalg.matrix_exp(1j * dense_sum(theta.double())).to(CDTYPE[dtype])
    assert got.dtype == CDTYPE[dtype]
    assert got.shape == (2, 2**n, 2**n)
    assert torch.allclose(got, expected, atol=ATOL[dtype] * (10 if dtype == torch.float32 else 1), rtol=0)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_special_unitary_is_unitary_with_unit_determinant(n, dtype, solver):
    theta = torch.randn(4**n - 1, dtype=dtype)
    u = special_unitary(theta, solver)
    assert u.shape == (2**n, 2**n)
    tol = 1e-12 if dtype == F64 else 5e-5
    err = unitarity_error(u)
    assert err.dtype == dtype and err.shape == ()
    assert float(err) < tol
    det = torch.linalg.det(u.to(C128))
    assert abs(abs(complex(det)) - 1.0) < 100 * tol
    # traceless generator: det(exp(iG)) = exp(i tr G) = 1, so U is in SU(2**n)
    assert abs(complex(det) - 1.0) < 1e-3 if dtype == torch.float32 else abs(complex(det) - 1.0) < 1e-8


def test_special_unitary_of_zero_is_identity():
    u = special_unitary(torch.zeros(63, dtype=F64))
    assert torch.allclose(u, torch.eye(8, dtype=C128), atol=1e-14)


def test_special_unitary_single_qubit_closed_form():
    """exp(i a X) = cos(a) I + i sin(a) X."""
    a = 0.731
    u = special_unitary(torch.tensor([a, 0.0, 0.0], dtype=F64))
    x = torch.tensor([[0, 1], [1, 0]], dtype=C128)
    expected = torch.cos(torch.tensor(a)) * torch.eye(2, dtype=C128) + 1j * torch.sin(torch.tensor(a)) * x
    assert torch.allclose(u, expected.to(C128), atol=1e-14)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_special_unitary_complex_theta_is_compat_non_unitary(n):
    re = torch.randn(4**n - 1, dtype=F64)
    theta = torch.complex(re, 0.3 * torch.randn_like(re))
    u = special_unitary(theta)
    expected = torch.linalg.matrix_exp(1j * dense_sum(theta))
    assert torch.allclose(u, expected, atol=1e-10, rtol=1e-10)
    assert float(unitarity_error(u)) > 1e-2
    # and with a zero imaginary part it agrees with the physical path
    u_phys = special_unitary(re)
    u_zero_imag = special_unitary(torch.complex(re, torch.zeros_like(re)))
    assert torch.allclose(u_phys, u_zero_imag, atol=1e-10)


@pytest.mark.parametrize("solver", SOLVERS)
def test_special_unitary_gradcheck_and_matches_matrix_exp_gradient(solver):
    theta = torch.randn(15, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: special_unitary(t, solver), (theta,))
    w = torch.randn(4, 4, dtype=C128)
    (g_ours,) = torch.autograd.grad((w * special_unitary(theta, solver)).real.sum(), theta)
    (g_ref,) = torch.autograd.grad(
        (w * torch.linalg.matrix_exp(1j * dense_sum(theta))).real.sum(), theta)
    assert torch.allclose(g_ours, g_ref, atol=1e-10)


def test_unitarity_error_of_known_matrices():
    eye = torch.eye(3, dtype=C128)
    assert float(unitarity_error(eye)) == 0.0
    assert float(unitarity_error(2 * eye)) == pytest.approx(3.0)
    batch = torch.stack([eye, 0.5 * eye])
    assert torch.allclose(unitarity_error(batch), torch.tensor([0.0, 0.75], dtype=F64))
    with pytest.raises(QcreepError, match=r"U must have shape \(\.\.\., N, N\), got \(2, 3\)"):
        unitarity_error(torch.zeros(2, 3, dtype=C128))


# ----------------------------------------------------------------------------- expi_hermitian

@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_expi_hermitian_matches_matrix_exp(dtype, complex_, solver):
    h = random_hermitian(8, 3, complex_=complex_, dtype=dtype)
    t = 0.37
    got = expi_hermitian(h, t, solver)
    expected = torch.linalg.matrix_exp(1j * t * h.to(C128)).to(CDTYPE[dtype])
    assert got.dtype == CDTYPE[dtype]
    assert torch.allclose(got, expected, atol=ATOL[dtype], rtol=0)
    err = unitarity_error(got)
    assert float(err.max()) < (1e-12 if dtype == F64 else 1e-5)


def test_expi_hermitian_reads_lower_triangle_only():
    h = random_hermitian(4)
    corrupted = h + torch.triu(torch.randn(4, 4, dtype=F64), diagonal=1)
    assert torch.allclose(expi_hermitian(corrupted, 0.5), expi_hermitian(h, 0.5), atol=1e-12)


def test_hamiltonian_embedding_is_expi_hermitian():
    h = random_hermitian(4, 2)
    assert torch.allclose(hamiltonian_embedding(h), torch.linalg.matrix_exp(1j * h.to(C128)), atol=1e-10)
    assert torch.allclose(hamiltonian_embedding(h, 0.25), expi_hermitian(h, 0.25), atol=0)
    assert torch.allclose(hamiltonian_embedding(h, 0.25),
                          torch.linalg.matrix_exp(0.25j * h.to(C128)), atol=1e-10)


def test_expi_hermitian_rejects_non_square():
    with pytest.raises(QcreepError, match=r"H must have shape \(\.\.\., N, N\), got \(3, 4\)"):
        expi_hermitian(torch.zeros(3, 4))
    with pytest.raises(QcreepError, match=r"got \(4,\)"):
        expi_hermitian(torch.zeros(4))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("spectrum", list(SPECTRA))
def test_expi_hermitian_gradcheck(spectrum, complex_, solver):
    a = spectrum_matrix(spectrum, complex_).clone().requires_grad_(True)
    t = 0.7

    def fn(a):
        return expi_hermitian(sym(a), t, solver)

    assert torch.autograd.gradcheck(fn, (a,), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("spectrum", list(SPECTRA))
def test_expi_hermitian_gradient_matches_matrix_exp_autograd(spectrum, complex_, solver):
    """At (nearly) repeated eigenvalues the divided-difference backward must equal the gradient
    through ``torch.linalg.matrix_exp`` (which does not involve eigenvectors)."""
    base = spectrum_matrix(spectrum, complex_)
    w = torch.randn(4, 4, dtype=C128)
    t = 1.3

    a1 = base.clone().requires_grad_(True)
    (g_ours,) = torch.autograd.grad((w * expi_hermitian(sym(a1), t, solver)).real.sum(), a1)
    a2 = base.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad((w * torch.linalg.matrix_exp(1j * t * sym(a2).to(C128))).real.sum(), a2)
    assert torch.isfinite(torch.view_as_real(g_ours) if g_ours.is_complex() else g_ours).all()
    assert g_ours.dtype == base.dtype
    assert torch.allclose(g_ours, g_ref, atol=1e-10, rtol=1e-8)
    assert g_ref.abs().max() > 1e-3  # the comparison is not trivially between zeros


@pytest.mark.parametrize("solver", SOLVERS)
def test_expi_hermitian_batched_gradcheck(solver):
    a = torch.stack([spectrum_matrix("zero"), spectrum_matrix("triple_degenerate"),
                     spectrum_matrix("random")]).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: expi_hermitian(sym(a), -0.4, solver), (a,), atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------- reupload_circuit

def loop_circuit(h, gates, psi0, t):
    """The straightforward loop: ``psi <- U_r exp(i t H) psi``."""
    psi = psi0
    data = torch.linalg.matrix_exp(1j * t * h.to(gates.dtype))
    for r in range(gates.shape[0]):
        psi = apply_matrix(gates[r], apply_matrix(data, psi))
    return psi


def random_gates(r: int, n_qubits: int, dtype=F64, compat: bool = False) -> torch.Tensor:
    theta = torch.randn(r, 4**n_qubits - 1, dtype=dtype)
    if compat:
        theta = torch.complex(theta, 0.2 * torch.randn_like(theta))
    return special_unitary(theta)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("compat", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_qubits", [2, 3])
def test_reupload_circuit_matches_loop(n_qubits, dtype, compat, solver):
    batch, reps, t = 3, 3, 1 / 3
    h = random_hermitian(2**n_qubits, batch, dtype=dtype)
    gates = random_gates(reps, n_qubits, dtype, compat)
    psi0 = random_state(n_qubits, batch, dtype=CDTYPE[dtype], normalize=False)
    got = reupload_circuit(h, gates, psi0, t, solver)
    expected = loop_circuit(h.double(), gates.to(C128), psi0.to(C128), t).to(CDTYPE[dtype])
    assert got.dtype == CDTYPE[dtype] and got.shape == (batch, 2**n_qubits)
    tol = 1e-10 if dtype == F64 else 1e-4
    assert torch.allclose(got, expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("solver", SOLVERS)
def test_reupload_circuit_preserves_norm_with_unitary_gates(solver):
    h = random_hermitian(8, 4)
    psi0 = plus_state(3, (4,), dtype=C128)
    out = reupload_circuit(h, random_gates(5, 3), psi0, 0.2, solver)
    assert torch.allclose(norm_squared(out), torch.ones(4, dtype=F64), atol=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
def test_reupload_circuit_does_not_modify_inputs(solver):
    h = random_hermitian(4, 2)
    gates = random_gates(2, 2)
    psi0 = random_state(2, 2)
    copies = [h.clone(), gates.clone(), psi0.clone()]
    reupload_circuit(h, gates, psi0, 0.5, solver)
    for before, after in zip(copies, (h, gates, psi0)):
        assert torch.equal(before, after)


def _degenerate_batch() -> torch.Tensor:
    return torch.stack([spectrum_matrix("triple_degenerate"), spectrum_matrix("zero"),
                        spectrum_matrix("identity_multiple"), spectrum_matrix("gap_1e-9"),
                        spectrum_matrix("random")])


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("compat", [False, True])
def test_reupload_circuit_gradcheck(compat, solver):
    h = _degenerate_batch().requires_grad_(True)
    gates = random_gates(2, 2, compat=compat).detach().requires_grad_(True)
    psi0 = random_state(2, h.shape[0]).requires_grad_(True)

    def fn(h, gates, psi0):
        return reupload_circuit(sym(h), gates, psi0, 0.5, solver)

    assert torch.autograd.gradcheck(fn, (h, gates, psi0), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("need", [(True, False, False), (False, True, False), (False, False, True)])
def test_reupload_circuit_gradcheck_partial_inputs(need, solver):
    h = _degenerate_batch()[:3].requires_grad_(need[0])
    gates = random_gates(3, 2).detach().requires_grad_(need[1])
    psi0 = random_state(2, 3).requires_grad_(need[2])
    assert torch.autograd.gradcheck(lambda h, g, p: reupload_circuit(sym(h), g, p, 0.3, solver),
                                    (h, gates, psi0), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("compat", [False, True])
def test_reupload_circuit_gradient_matches_loop_autograd(compat, solver):
    base_h = _degenerate_batch()
    base_gates = random_gates(3, 2, compat=compat).detach()
    base_psi = random_state(2, base_h.shape[0])
    w = torch.randn(base_h.shape[0], 4, dtype=C128)

    def grads(fn):
        h = base_h.clone().requires_grad_(True)
        g = base_gates.clone().requires_grad_(True)
        p = base_psi.clone().requires_grad_(True)
        out = fn(sym(h), g, p, 0.4)
        loss = (w * out).real.sum() + probabilities(out).sum()
        return torch.autograd.grad(loss, (h, g, p))

    ours = grads(lambda h, g, p, t: reupload_circuit(h, g, p, t, solver))
    ref = grads(loop_circuit)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)
        assert b.abs().max() > 1e-3


def test_reupload_circuit_rejects_bad_arguments():
    h = random_hermitian(4, 2)
    gates = random_gates(2, 2)
    psi0 = random_state(2, 2)
    with pytest.raises(QcreepError, match=r"h must be real with shape \(B, N, N\), got \(2, 4, 4\) torch.complex128"):
        reupload_circuit(h.to(C128), gates, psi0, 0.5)
    with pytest.raises(QcreepError, match=r"h must be real with shape \(B, N, N\), got \(4, 4\)"):
        reupload_circuit(h[0], gates, psi0, 0.5)
    with pytest.raises(QcreepError, match=r"gates must be complex with shape \(R, 4, 4\), got \(2, 8, 8\)"):
        reupload_circuit(h, random_gates(2, 3), psi0, 0.5)
    with pytest.raises(QcreepError, match=r"gates must be complex .* torch.float64"):
        reupload_circuit(h, gates.real, psi0, 0.5)
    with pytest.raises(QcreepError, match=r"psi0 must be complex with shape \(2, 4\), got \(3, 4\)"):
        reupload_circuit(h, gates, random_state(2, 3), 0.5)
    with pytest.raises(QcreepError, match=r"psi0 must be complex with shape \(2, 4\), got \(2, 4\) torch.float64"):
        reupload_circuit(h, gates, psi0.real, 0.5)


@pytest.mark.parametrize("solver", SOLVERS)
def test_reupload_features_equals_circuit_of_the_embedding(solver):
    """The fused path (features embedded inside the circuit's chunks) gives the states and the
    gradients of ``reupload_circuit(symmetric_embedding_matrix(x))``, also at a zero input."""
    n, reps = 2, 3
    base_x = torch.cat([torch.zeros(1, 14, dtype=F64), torch.randn(3, 14, dtype=F64)])
    base_gates = random_gates(reps, n).detach()
    base_psi = random_state(n, 4)
    w = torch.randn(4, 4, dtype=C128)

    def grads(fused):
        x = base_x.clone().requires_grad_(True)
        g = base_gates.clone().requires_grad_(True)
        p = base_psi.clone().requires_grad_(True)
        if fused:
            out = reupload_features(x, n, g, p, 1 / reps, solver)
        else:
            out = reupload_circuit(symmetric_embedding_matrix(x, n), g, p, 1 / reps, solver)
        loss = (w * out).real.sum() + probabilities(out).sum()
        return (out, *torch.autograd.grad(loss, (x, g, p)))

    for a, b in zip(grads(True), grads(False)):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    assert grads(True)[1].abs().max() > 1e-3


@pytest.mark.parametrize("solver", SOLVERS)
def test_reupload_features_gradcheck(solver):
    x = torch.cat([torch.zeros(1, 10, dtype=F64), torch.randn(2, 10, dtype=F64)]).requires_grad_(True)
    gates = random_gates(2, 2).detach().requires_grad_(True)
    psi0 = random_state(2, 3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, g, p: reupload_features(x, 2, g, p, 0.5, solver),
                                    (x, gates, psi0), atol=1e-6, rtol=1e-4)


def test_reupload_features_rejects_bad_arguments():
    gates = random_gates(2, 2)
    psi0 = random_state(2, 2)
    with pytest.raises(QcreepError, match=r"x must be real with shape \(B, F\), F <= 16, got \(2, 17\)"):
        reupload_features(torch.zeros(2, 17, dtype=F64), 2, gates, psi0, 0.5)
    with pytest.raises(QcreepError, match=r"x must be real"):
        reupload_features(torch.zeros(2, 5, dtype=C128), 2, gates, psi0, 0.5)
    with pytest.raises(QcreepError, match=r"gates must be complex with shape \(R, 4, 4\)"):
        reupload_features(torch.zeros(2, 5, dtype=F64), 2, random_gates(2, 3), psi0, 0.5)
    with pytest.raises(QcreepError, match=r"psi0 must be complex with shape \(2, 4\), got \(3, 4\)"):
        reupload_features(torch.zeros(2, 5, dtype=F64), 2, gates, random_state(2, 3), 0.5)


def test_symmetric_embedding_gradient_is_the_symmetrised_adjoint():
    x = torch.randn(3, 13, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: symmetric_embedding_matrix(x, 2), (x,))
    g = torch.randn(3, 4, 4, dtype=F64)
    (ours,) = torch.autograd.grad((g * symmetric_embedding_matrix(x, 2)).sum(), x)
    expected = (0.5 * (g + g.mT)).reshape(3, 16)[:, :13]
    assert torch.allclose(ours, expected, atol=1e-15)


@pytest.mark.parametrize("solver", SOLVERS)
def test_hamiltonian_embedding_solvers_agree_and_are_unitary(solver):
    h = random_hermitian(8, 3)
    u = hamiltonian_embedding(h, 0.3, solver)
    assert torch.allclose(u, torch.linalg.matrix_exp(0.3j * h.to(C128)), atol=1e-12)
    assert float(unitarity_error(u).max()) < 1e-13


# ----------------------------------------------------------------------------- states and embedding

def test_zero_and_plus_states():
    z = zero_state(3, (2,), dtype=C128)
    assert z.shape == (2, 8) and z.dtype == C128
    assert torch.equal(probabilities(z), torch.eye(8, dtype=F64)[0].expand(2, 8))
    plus = plus_state(3, dtype=torch.complex64)
    assert plus.dtype == torch.complex64
    # |+>^n = H^{(x)n} |0>
    had = torch.tensor([[1, 1], [1, -1]], dtype=C128) / 2**0.5
    h3 = torch.kron(torch.kron(had, had), had)
    assert torch.allclose(plus.to(C128), h3 @ zero_state(3, dtype=C128), atol=1e-7)


def test_symmetric_embedding_matrix_pads_row_major_and_symmetrises():
    x = torch.arange(1.0, 14.0, dtype=F64)  # 13 features -> 2 qubits (16 slots)
    h = symmetric_embedding_matrix(x, 2)
    padded = torch.cat([x, torch.zeros(3, dtype=F64)]).reshape(4, 4)
    assert torch.equal(h, 0.5 * (padded + padded.T))
    assert h[0, 1] == 0.5 * (2 + 5)  # X[0,1] = x[1] = 2, X[1,0] = x[4] = 5
    assert h[3, 3] == 0.0
    batched = symmetric_embedding_matrix(torch.randn(2, 3, 16, dtype=F64), 2)
    assert batched.shape == (2, 3, 4, 4) and torch.equal(batched, batched.mT)


def test_symmetric_embedding_matrix_errors():
    with pytest.raises(QcreepError, match=r"17 features do not fit a 2-qubit Hamiltonian \(at most 4\*\*2 = 16\)"):
        symmetric_embedding_matrix(torch.zeros(17), 2)
    with pytest.raises(QcreepError, match=r"built from real features; got a complex tensor"):
        symmetric_embedding_matrix(torch.zeros(4, dtype=C128), 1)


# ----------------------------------------------------------------------------- measurement

@pytest.mark.parametrize("cdtype,rdtype", [(torch.complex64, torch.float32), (C128, F64)])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_probabilities_sum_to_one(n, cdtype, rdtype):
    psi = random_state(n, 3, dtype=cdtype)
    p = probabilities(psi)
    assert p.dtype == rdtype and p.shape == (3, 2**n)
    assert (p >= 0).all()
    tol = 1e-5 if rdtype == torch.float32 else 1e-12
    assert torch.allclose(p.sum(-1), torch.ones(3, dtype=rdtype), atol=tol)
    assert torch.allclose(p, psi.abs() ** 2, atol=tol)
    assert torch.allclose(norm_squared(psi), torch.ones(3, dtype=rdtype), atol=tol)


@pytest.mark.parametrize("cdtype", [torch.complex64, C128])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_expval_pauli_matches_dense(n, cdtype):
    psi = random_state(n, 2, 3, dtype=cdtype)
    got = expval_pauli(psi, n)
    rdtype = torch.float32 if cdtype == torch.complex64 else F64
    assert got.dtype == rdtype and got.shape == (2, 3, 4**n - 1)
    mats = pauli_matrices(n)
    p = psi.to(C128)
    dense = torch.einsum("...i,kij,...j->...k", p.conj(), mats, p)
    assert dense.imag.abs().max() < 1e-12
    tol = 1e-5 if cdtype == torch.complex64 else 1e-12
    assert torch.allclose(got.double(), dense.real, atol=tol)
    assert (got.abs() <= 1 + tol).all()


def test_expval_pauli_word_subset_and_known_values():
    n = 2
    psi = random_state(n, 4)
    words = torch.tensor([14, 0, 5])
    assert torch.allclose(expval_pauli(psi, n, words), expval_pauli(psi, n)[:, words], atol=1e-14)
    # |01>: <IZ> = -1, <ZI> = +1, <ZZ> = -1, <XI> = 0
    state = torch.zeros(4, dtype=C128)
    state[1] = 1
    vals = dict(zip(pauli_words(2), expval_pauli(state, 2).tolist()))
    assert vals["IZ"] == pytest.approx(-1) and vals["ZI"] == pytest.approx(1)
    assert vals["ZZ"] == pytest.approx(-1) and vals["XI"] == pytest.approx(0)
    # |+i> on one qubit: <Y> = 1
    plus_i = torch.tensor([1, 1j], dtype=C128) / 2**0.5
    assert torch.allclose(expval_pauli(plus_i, 1), torch.tensor([0.0, 1.0, 0.0], dtype=F64), atol=1e-14)


def test_expval_pauli_wrong_size():
    with pytest.raises(QcreepError, match=r"state has 8 amplitudes; 2 qubits need 4"):
        expval_pauli(torch.zeros(8, dtype=C128), 2)


@pytest.mark.parametrize("normalize", [True, False])
def test_expval_symmetric_matches_dense(normalize):
    psi = random_state(3, 2, 5, normalize=normalize)
    obs = random_hermitian(8, 5)  # broadcast over the leading batch dim
    got = expval_symmetric(psi, obs)
    assert got.dtype == F64 and got.shape == (2, 5)
    dense = torch.einsum("...i,...ij,...j->...", psi.conj(), obs.to(C128), psi)
    assert dense.imag.abs().max() < 1e-12
    assert torch.allclose(got, dense.real, atol=1e-12)


def test_expval_symmetric_rejects_complex_observable():
    with pytest.raises(QcreepError, match=r"takes a real symmetric observable; got a complex tensor"):
        expval_symmetric(random_state(2), random_hermitian(4, complex_=True))


def test_measurements_do_not_modify_state():
    psi = random_state(3, 4, normalize=False)
    obs = random_hermitian(8)
    keep = psi.clone()
    keep_obs = obs.clone()
    probabilities(psi)
    norm_squared(psi)
    expval_pauli(psi, 3)
    expval_pauli(psi, 3, torch.tensor([1, 2]))
    expval_symmetric(psi, obs)
    assert torch.equal(psi, keep)
    assert torch.equal(obs, keep_obs)
    # and the results are new tensors, not views sharing storage with the state
    p = probabilities(psi)
    p.zero_()
    assert torch.equal(psi, keep)
