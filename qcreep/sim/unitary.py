"""Unitaries: exponentials of Hermitian matrices and the SU(N) parametrisation.

``expi_hermitian(H, t) = exp(i t H)`` for a batch of Hermitian (or real symmetric) ``H``. It takes
one eigendecomposition ``H = V diag(lambda) V^dagger`` and returns ``V diag(exp(i t lambda)) V^dagger``.
The backward pass does not go through the eigenvector derivative (whose ``1 / (lambda_i -
lambda_j)`` factors blow up at repeated eigenvalues). It uses the Daleckii-Krein form of the
derivative of a matrix function,

    d exp(itH) = V [ (V^dagger dH V) o F ] V^dagger,
    F_ij = (e^{it lambda_i} - e^{it lambda_j}) / (lambda_i - lambda_j)
         = i t e^{it (lambda_i + lambda_j) / 2} sinc(t (lambda_i - lambda_j) / 2),

whose second form is finite and smooth for equal and nearly equal eigenvalues.
"""

from __future__ import annotations

import torch

from qcreep.errors import QcreepError
from qcreep.sim.paulis import pauli_sum


def _divided_differences(lam: torch.Tensor, t: float) -> torch.Tensor:
    """``F_ij`` above, for eigenvalues ``lam`` of shape ``(..., N)``."""
    mid = 0.5 * (lam[..., :, None] + lam[..., None, :])
    half_gap = 0.5 * t * (lam[..., :, None] - lam[..., None, :])
    sinc = torch.sinc(half_gap / torch.pi)  # torch.sinc(u) = sin(pi u) / (pi u)
    phase = torch.polar(torch.ones_like(mid), t * mid)
    return (1j * t) * phase * sinc.to(phase.dtype)


class _ExpIHermitian(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, t: float):
        lam, vecs = torch.linalg.eigh(h)
        phases = torch.polar(torch.ones_like(lam), t * lam)
        vecs_c = vecs.to(phases.dtype)
        out = (vecs_c * phases[..., None, :]) @ vecs_c.mH
        ctx.save_for_backward(lam, vecs)
        ctx.t = t
        ctx.real_input = not h.is_complex()
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        lam, vecs = ctx.saved_tensors
        f = _divided_differences(lam, ctx.t)
        vecs_c = vecs.to(f.dtype)
        k = vecs_c.mH @ grad_out @ vecs_c
        grad = vecs_c @ (k * f.conj()) @ vecs_c.mH
        # Only Hermitian perturbations of H are meaningful: project onto them.
        grad = 0.5 * (grad + grad.mH)
        if ctx.real_input:
            # Gradient with respect to a real input is the real part, taken explicitly.
            grad = grad.real
        return grad, None


def _check_square(h: torch.Tensor, name: str) -> None:
    if h.dim() < 2 or h.shape[-1] != h.shape[-2]:
        raise QcreepError(f"{name} must have shape (..., N, N), got {tuple(h.shape)}")


def expi_hermitian(h: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    """``exp(i t H)`` for a batch of Hermitian matrices.

    Args:
        h: ``(..., N, N)`` real symmetric or complex Hermitian matrices. Only the lower triangle is
            read (as by ``torch.linalg.eigh``).
        t: real time (scale of the exponent).

    Returns:
        ``(..., N, N)`` complex unitary matrices. Gradients flow to ``h`` through a
        divided-difference formula that stays finite at repeated eigenvalues.
    """
    _check_square(h, "H")
    return _ExpIHermitian.apply(h, float(t))


def special_unitary(theta: torch.Tensor) -> torch.Tensor:
    """``U(theta) = exp(i sum_k theta_k P_k)`` over the Pauli word basis (PennyLane's convention).

    Args:
        theta: ``(..., 4**n - 1)`` angles. Real angles (the physical default) give a unitary
            computed from an eigendecomposition of the Hermitian generator, so ``U`` is unitary to
            rounding. Complex angles reproduce the published PyTorch code: the generator is not
            Hermitian, the exponential is taken with ``torch.linalg.matrix_exp`` and ``U`` is in
            general **not unitary**.

    Returns:
        ``(..., 2**n, 2**n)`` complex tensor.
    """
    generator = pauli_sum(theta)
    if theta.is_complex():
        return torch.linalg.matrix_exp(1j * generator)
    return expi_hermitian(generator, 1.0)


def unitarity_error(u: torch.Tensor) -> torch.Tensor:
    """``max |U^dagger U - I|`` over the trailing matrix dims (a real tensor of the batch shape)."""
    _check_square(u, "U")
    eye = torch.eye(u.shape[-1], dtype=u.dtype, device=u.device)
    return (u.mH @ u - eye).abs().amax(dim=(-2, -1))

