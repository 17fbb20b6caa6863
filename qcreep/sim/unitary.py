"""Unitaries: exponentials of Hermitian matrices and the SU(N) parametrisation.

``expi_hermitian(H, t) = exp(i t H)`` for a batch of Hermitian (or real symmetric) ``H``. It takes
one eigendecomposition ``H = V diag(lambda) V^dagger`` and returns ``V diag(exp(i t lambda)) V^dagger``.
The backward pass does not go through the eigenvector derivative (whose ``1 / (lambda_i -
lambda_j)`` factors blow up at repeated eigenvalues). It uses the Daleckii-Krein form of the
derivative of a matrix function,

    d exp(itH) = V [ (V^dagger dH V) o F ] V^dagger,
    F_ij = (e^{it lambda_i} - e^{it lambda_j}) / (lambda_i - lambda_j)
         = i t e^{it (lambda_i + lambda_j) / 2} sinc(t (lambda_i - lambda_j) / 2),

whose second form is finite and smooth for equal and nearly equal eigenvalues. The
eigendecompositions of a batch run on all CPU cores (:mod:`qcreep.sim.parallel`).

``solver="expm"`` computes the same unitaries from matrix products only (no eigendecomposition):
see :mod:`qcreep.sim.solvers` for the series, the scaling and the error bound, and
``solver="auto"`` for the choice by device.
"""

from __future__ import annotations

import contextlib

import torch

from qcreep.errors import QcreepError
from qcreep.sim import parallel
from qcreep.sim.paulis import pauli_sum
from qcreep.sim.solvers import expi_matrix_exp, resolve_solver


def _divided_differences(lam: torch.Tensor, t: float) -> torch.Tensor:
    """``F_ij`` above, for eigenvalues ``lam`` of shape ``(..., N)``."""
    mid = 0.5 * (lam[..., :, None] + lam[..., None, :])
    half_gap = 0.5 * t * (lam[..., :, None] - lam[..., None, :])
    sinc = torch.sin(half_gap).div_(half_gap).nan_to_num_(nan=1.0)  # sin(x) / x, 1 at x = 0
    phase = torch.polar(torch.ones_like(mid), t * mid)
    return (1j * t) * phase * sinc.to(phase.dtype)


def expi_backward(lam: torch.Tensor, vecs: torch.Tensor, grad_out: torch.Tensor, t: float,
                  real_input: bool) -> torch.Tensor:
    """``dL/dH`` from ``dL/dU`` for ``U = exp(i t H)``, ``H = V diag(lam) V^dagger`` (Daleckii-Krein).

    ``dL/dH = P(V [(V^dagger G V) o conj(F)] V^dagger)`` with ``G = dL/dU`` and ``F`` the divided
    differences above; ``P`` projects onto Hermitian matrices (``(A + A^dagger) / 2``), and onto real
    symmetric ones (the real part) for a real ``H``.
    """
    f = _divided_differences(lam, t)
    vecs_c = vecs.to(f.dtype)
    k = vecs_c.mH @ grad_out @ vecs_c
    grad = vecs_c @ (k * f.conj()) @ vecs_c.mH
    # Only Hermitian perturbations of H are meaningful: project onto them.
    grad = 0.5 * (grad + grad.mH)
    # The gradient with respect to a real input is the real part, taken explicitly.
    return grad.real if real_input else grad


def expi_eigh(h: torch.Tensor, t: float):
    """``(exp(i t H), lam, V)`` for Hermitian ``H = V diag(lam) V^dagger``, in the calling thread (no autograd)."""
    return _expi_chunk(h, t)


def _expi_chunk(h: torch.Tensor, t: float):
    lam, vecs = torch.linalg.eigh(h)
    phases = torch.polar(torch.ones_like(lam), t * lam)
    vecs_c = vecs.to(phases.dtype)
    return (vecs_c * phases[..., None, :]) @ vecs_c.mH, lam, vecs


class _ExpIHermitian(torch.autograd.Function):
    @staticmethod
    def forward(h: torch.Tensor, t: float):
        if h.dim() < 3:
            return _expi_chunk(h, t)
        lead = h.shape[:-2]
        flat = h.reshape(-1, *h.shape[-2:])
        with parallel.one_thread() if parallel.workers_for(flat, flat.shape[0]) > 1 else contextlib.nullcontext():
            out, lam, vecs = parallel.map_rows(lambda a: _expi_chunk(a, t), (flat,))
        return out.reshape(h.shape), lam.reshape(*lead, -1), vecs.reshape(h.shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        h, t = inputs
        _, lam, vecs = output
        ctx.mark_non_differentiable(lam, vecs)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(lam, vecs)
        ctx.t = t
        ctx.real_input = not h.is_complex()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor, _grad_lam, _grad_vecs):
        if grad_out is None:
            return None, None
        lam, vecs = ctx.saved_tensors
        t, real_input = ctx.t, ctx.real_input

        def chunk(lam, vecs, grad_out):
            return (expi_backward(lam, vecs, grad_out, t, real_input),)

        if lam.dim() >= 2:
            lead = lam.shape[:-1]
            flat = (lam.reshape(-1, lam.shape[-1]), vecs.reshape(-1, *vecs.shape[-2:]),
                    grad_out.reshape(-1, *grad_out.shape[-2:]))
            threaded = parallel.workers_for(flat[0], flat[0].shape[0]) > 1
            with parallel.one_thread() if threaded else contextlib.nullcontext():
                (grad,) = parallel.map_rows(chunk, flat)
            grad = grad.reshape(*lead, *grad.shape[-2:])
        else:
            (grad,) = chunk(lam, vecs, grad_out)
        return grad, None

    @staticmethod
    def vmap(info, in_dims, h, t):
        h = h.movedim(in_dims[0], 0)
        return _ExpIHermitian.apply(h, t), (0, 0, 0)


def _check_square(h: torch.Tensor, name: str) -> None:
    if h.dim() < 2 or h.shape[-1] != h.shape[-2]:
        raise QcreepError(f"{name} must have shape (..., N, N), got {tuple(h.shape)}")


def expi_hermitian(h: torch.Tensor, t: float = 1.0, solver: str = "eigh") -> torch.Tensor:
    """``exp(i t H)`` for a batch of Hermitian matrices.

    Args:
        h: ``(..., N, N)`` real symmetric or complex Hermitian matrices. The ``"eigh"`` solver reads
            only the lower triangle (as ``torch.linalg.eigh`` does); ``"expm"`` reads the whole matrix.
        t: real time (scale of the exponent).
        solver: ``"eigh"`` (one eigendecomposition per matrix, spread over the CPU cores), ``"expm"``
            (matrix products only; see :mod:`qcreep.sim.solvers`) or ``"auto"`` (chosen for the
            device of ``h`` by :func:`qcreep.sim.solvers.resolve_solver`).

    Returns:
        ``(..., N, N)`` complex unitary matrices. With ``"eigh"`` gradients flow to ``h`` through a
        divided-difference formula that stays finite at repeated eigenvalues; with ``"expm"``
        through the products.

    Example:
        >>> h = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
        >>> u = expi_hermitian(h, torch.pi / 2)                  # exp(i pi/2 Z) = diag(i, -i)
        >>> bool(torch.allclose(u, torch.diag(torch.tensor([1j, -1j], dtype=torch.complex128))))
        True
        >>> bool(torch.allclose(expi_hermitian(h, torch.pi / 2, solver="expm"), u))
        True
    """
    _check_square(h, "H")
    if resolve_solver(solver, h.device) == "expm":
        return expi_matrix_exp(h, float(t))
    return _ExpIHermitian.apply(h, float(t))[0]


def special_unitary(theta: torch.Tensor, solver: str = "eigh") -> torch.Tensor:
    """``U(theta) = exp(i sum_k theta_k P_k)`` over the Pauli word basis (PennyLane's convention).

    Args:
        theta: ``(..., 4**n - 1)`` angles. Real angles (the physical default) give a Hermitian
            generator and a unitary ``U``. Complex angles reproduce the published PyTorch code:
            the generator is not Hermitian, the exponential is taken with
            ``torch.linalg.matrix_exp`` whatever the solver, and ``U`` is in general **not unitary**.
        solver: how ``exp(iG)`` of a real-angle generator is computed: ``"eigh"`` (an
            eigendecomposition, unitary to rounding), ``"expm"`` (``torch.linalg.matrix_exp``,
            products only) or ``"auto"`` (by the device of ``theta``; see :mod:`qcreep.sim.solvers`).

    Returns:
        ``(..., 2**n, 2**n)`` complex tensor.

    Example:
        >>> u = special_unitary(torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64))   # exp(0.3 i X)
        >>> round(float(u[0, 1].imag), 12)                      # i sin(0.3) off the diagonal
        0.295520206661
    """
    generator = pauli_sum(theta)
    if theta.is_complex():
        return torch.linalg.matrix_exp(1j * generator)
    return expi_hermitian(generator, 1.0, solver)


def unitarity_error(u: torch.Tensor) -> torch.Tensor:
    """``max |U^dagger U - I|`` over the trailing matrix dims (a real tensor of the batch shape)."""
    _check_square(u, "U")
    eye = torch.eye(u.shape[-1], dtype=u.dtype, device=u.device)
    return (u.mH @ u - eye).abs().amax(dim=(-2, -1))

