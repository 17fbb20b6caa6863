"""Whole circuits with hand-written adjoints, where the structure allows far less work than autograd.

:func:`reupload_circuit` runs the data re-uploading circuit

    |psi_R> = U_R E ... U_2 E U_1 E |psi_0>,    E = exp(i t H) = V diag(e^{i t lambda}) V^T,

for a batch of real symmetric data Hamiltonians ``H`` and shared gates ``U_r``. ``H`` is
decomposed once per sample. The data unitary is never formed: each re-upload rotates the state
into the eigenbasis of ``H``, multiplies by phases and rotates back (two real matrix-vector
products). The backward pass runs the circuit in reverse with the adjoint gates and collects the
gradient with respect to ``H`` in the eigenbasis, where it is an outer-product sum weighted by the
divided differences of ``exp(i t lambda)`` (finite at repeated eigenvalues; see
:mod:`qcreep.sim.unitary`). One ``V P V^T`` product per sample then returns it to the input basis.
"""

from __future__ import annotations

import torch

from qcreep.errors import QcreepError


def _planar(state: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` complex -> ``(B, 2, N)`` real rows (real part, imaginary part)."""
    return torch.stack((state.real, state.imag), dim=1)


def _rotate_in(vecs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """``V^T psi`` for real ``V`` ``(B, N, N)`` and complex ``psi`` ``(B, N)``.

    Computed as the row product ``psi^T V`` on stacked real and imaginary rows: a ``(2 x N)`` by
    ``(N x N)`` product per sample runs several times faster than ``(N x N)`` by ``(N x 2)``.
    """
    rows = _planar(state) @ vecs
    return torch.complex(rows[:, 0], rows[:, 1])


def _rotate_out(vecs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """``V psi``, as the row product ``psi^T V^T``."""
    rows = _planar(state) @ vecs.mT
    return torch.complex(rows[:, 0], rows[:, 1])


class _ReuploadCircuit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, gates, psi0, t):
        lam, vecs = torch.linalg.eigh(h)
        phases = torch.polar(torch.ones_like(lam), t * lam)
        psi = psi0
        betas, chis = [], []
        for gate in gates:
            beta = _rotate_in(vecs, psi)
            chi = _rotate_out(vecs, phases * beta)
            psi = chi @ gate.transpose(0, 1)
            betas.append(beta)
            chis.append(chi)
        ctx.save_for_backward(lam, vecs, phases, gates, torch.stack(betas, -1), torch.stack(chis, 0))
        ctx.t = t
        return psi

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        lam, vecs, phases, gates, betas, chis = ctx.saved_tensors
        need_h, need_gates, need_psi0 = ctx.needs_input_grad[:3]
        grad_gates = torch.zeros_like(gates) if need_gates else None
        gammas = []
        for r in range(gates.shape[0] - 1, -1, -1):
            if need_gates:
                # d/dU_r of the real loss: sum over the batch of g chi^H
                grad_gates[r] = grad.transpose(0, 1) @ chis[r].conj()
            grad_chi = grad @ gates[r].conj()  # U^H g, for row-vector states
            gamma = _rotate_in(vecs, grad_chi)
            gammas.append(gamma)
            grad = _rotate_out(vecs, phases.conj() * gamma)  # E^H g
        grad_h = None
        if need_h:
            # Re(sum_r gamma_r beta_r^H o conj(F)) with conj(F_ij) = -i t conj(q_i q_j) sinc(...),
            # q = exp(i t lambda / 2): the phases of F fold into the vectors before the outer product,
            # so only the real sinc factor is evaluated per matrix entry.
            half = torch.polar(torch.ones_like(lam), 0.5 * ctx.t * lam).conj()
            gammas = torch.stack(gammas[::-1], -1) * half[..., None]  # (B, N, R), circuit order
            betas = betas * half.conj()[..., None]
            outer = gammas @ betas.conj().transpose(-1, -2)
            gap = (0.5 * ctx.t / torch.pi) * (lam[..., :, None] - lam[..., None, :])
            # Re(-i t w) = t Im(w): the gradient with respect to a real H, taken explicitly
            weights = (ctx.t * outer.imag) * torch.sinc(gap)
            grad_h = vecs @ weights @ vecs.mT
            grad_h = 0.5 * (grad_h + grad_h.mT)
        return grad_h, grad_gates, (grad if need_psi0 else None), None


def reupload_circuit(h: torch.Tensor, gates: torch.Tensor, psi0: torch.Tensor, t: float) -> torch.Tensor:
    """Final states of ``prod_r [U_r exp(i t H)] |psi0>``.

    Args:
        h: ``(B, N, N)`` real symmetric data Hamiltonians.
        gates: ``(R, N, N)`` complex gates, shared by the batch, applied in order ``r = 0..R-1``.
            They need not be unitary (the published code's complex-angle mode).
        psi0: ``(B, N)`` complex initial states.
        t: time of each data unitary (``1 / R`` in the paper).

    Returns:
        ``(B, N)`` complex final states. Differentiable in ``h``, ``gates`` and ``psi0``.
    """
    if h.is_complex() or h.dim() != 3 or h.shape[-1] != h.shape[-2]:
        raise QcreepError(f"h must be real with shape (B, N, N), got {tuple(h.shape)} {h.dtype}")
    n = h.shape[-1]
    if gates.dim() != 3 or gates.shape[1:] != (n, n) or not gates.is_complex():
        raise QcreepError(f"gates must be complex with shape (R, {n}, {n}), got {tuple(gates.shape)} {gates.dtype}")
    if psi0.shape != h.shape[:2] or not psi0.is_complex():
        raise QcreepError(f"psi0 must be complex with shape {tuple(h.shape[:2])}, got {tuple(psi0.shape)} {psi0.dtype}")
    return _ReuploadCircuit.apply(h, gates, psi0, float(t))
