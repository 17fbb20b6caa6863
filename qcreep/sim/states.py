"""Batched statevectors, Hamiltonian embedding of data, and measurement.

States are complex tensors of shape ``(..., 2**n)``; basis index ``j`` has qubit 0 as its most
significant bit. Measurements return real tensors, computed from real and imaginary parts
explicitly; no complex tensor is ever cast to real.
"""

from __future__ import annotations

import math

import torch

from qcreep.errors import QcreepError
from qcreep.sim import parallel
from qcreep.sim.paulis import _complex_of, _popcount, pauli_masks
from qcreep.sim.unitary import expi_hermitian


def zero_state(n_qubits: int, batch_shape=(), dtype=torch.complex64, device=None) -> torch.Tensor:
    """``|0...0>`` of shape ``(*batch_shape, 2**n)``."""
    state = torch.zeros(*batch_shape, 2**n_qubits, dtype=dtype, device=device)
    state[..., 0] = 1
    return state


def plus_state(n_qubits: int, batch_shape=(), dtype=torch.complex64, device=None) -> torch.Tensor:
    """``|+>^n``: every amplitude ``2**(-n/2)``."""
    dim = 2**n_qubits
    return torch.full((*batch_shape, dim), 1 / math.sqrt(dim), dtype=dtype, device=device)


def apply_matrix(matrix: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """``M |psi>`` for batched matrices ``(..., N, N)`` and states ``(..., N)`` (broadcasting)."""
    return (matrix @ state.unsqueeze(-1)).squeeze(-1)


class _SymmetricEmbedding(torch.autograd.Function):
    """``x (..., F) -> (X + X^T) / 2`` with ``X`` the zero-padded, row-major ``2**n x 2**n`` matrix.

    Forward and backward are one pass each over the matrices, cut into chunks over the CPU cores
    (:mod:`qcreep.sim.parallel`). The backward pass is ``(G + G^T) / 2``, read at the first ``F``
    entries.
    """

    @staticmethod
    def forward(x, n_qubits):
        dim = 2**n_qubits
        features = x.shape[-1]
        flat = x.reshape(-1, features)
        rows = flat.shape[0]
        out = flat.new_empty(rows, dim, dim)

        def run(start, stop):
            padded = flat.new_empty(stop - start, dim * dim)
            padded[:, :features] = flat[start:stop]
            padded[:, features:] = 0
            padded = padded.view(-1, dim, dim)
            torch.add(padded, padded.mT, out=out[start:stop]).mul_(0.5)

        parallel.run_chunks(run, rows, parallel.workers_for(flat, rows))
        return out.view(*x.shape[:-1], dim, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, _ = inputs
        ctx.x_shape = x.shape

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        features = ctx.x_shape[-1]
        flat = grad.reshape(-1, *grad.shape[-2:])
        rows = flat.shape[0]
        out = grad.new_empty(rows, features)

        def run(start, stop):
            g = flat[start:stop]
            both = torch.add(g, g.mT)
            torch.mul(both.view(stop - start, -1)[:, :features], 0.5, out=out[start:stop])

        parallel.run_chunks(run, rows, parallel.workers_for(flat, rows))
        return out.view(ctx.x_shape), None

    @staticmethod
    def vmap(info, in_dims, x, n_qubits):
        return _SymmetricEmbedding.apply(x.movedim(in_dims[0], 0), n_qubits), 0


def symmetric_embedding_matrix(x: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """The paper's data Hamiltonian ``H = (X + X^T) / 2``.

    ``x`` of shape ``(..., F)`` with ``F <= 4**n`` is zero-padded to ``4**n`` and reshaped
    row-major to ``2**n x 2**n`` matrices ``X``. Returns a real symmetric ``(..., 2**n, 2**n)`` tensor.

    Example:
        >>> symmetric_embedding_matrix(torch.tensor([1.0, 2.0, 4.0]), 1)
        tensor([[1., 3.],
                [3., 0.]])
    """
    if x.is_complex():
        raise QcreepError("the data Hamiltonian is built from real features; got a complex tensor")
    dim = 2**n_qubits
    if x.shape[-1] > dim * dim:
        raise QcreepError(f"{x.shape[-1]} features do not fit a {n_qubits}-qubit Hamiltonian "
                          f"(at most 4**{n_qubits} = {dim * dim})")
    return _SymmetricEmbedding.apply(x, n_qubits)


def hamiltonian_embedding(h: torch.Tensor, t: float = 1.0, solver: str = "eigh") -> torch.Tensor:
    """The data unitary ``exp(i t H)`` of a batch of real symmetric Hamiltonians.

    Computed once; the returned unitary can be applied as many times as the circuit re-uploads the
    data. ``solver`` is ``"eigh"``, ``"expm"`` or ``"auto"``; see
    :func:`qcreep.sim.unitary.expi_hermitian` and :mod:`qcreep.sim.solvers`.

    Example:
        >>> u = hamiltonian_embedding(torch.zeros(2, 4, 4), 0.1, solver="expm")
        >>> u.shape, u.dtype
        (torch.Size([2, 4, 4]), torch.complex64)
    """
    return expi_hermitian(h, t, solver)


def probabilities(state: torch.Tensor) -> torch.Tensor:
    """``|<j|psi>|^2`` for every basis state ``j``: a real ``(..., 2**n)`` tensor."""
    return state.real.square() + state.imag.square()


def norm_squared(state: torch.Tensor) -> torch.Tensor:
    """``<psi|psi>`` as a real tensor of the batch shape."""
    return probabilities(state).sum(-1)


def expval_symmetric(state: torch.Tensor, observable: torch.Tensor) -> torch.Tensor:
    """``<psi|H|psi>`` for a real symmetric observable ``H``.

    With ``psi = a + i b`` and ``H = H^T`` real, ``<psi|H|psi> = a^T H a + b^T H b`` exactly (the
    cross terms cancel), so the real value is computed without any complex-to-real step.
    ``state`` is ``(..., N)`` and ``observable`` ``(..., N, N)``, broadcasting over the batch dims.
    """
    if observable.is_complex():
        raise QcreepError("expval_symmetric takes a real symmetric observable; got a complex tensor")
    a, b = state.real, state.imag
    ha = (observable @ a.unsqueeze(-1)).squeeze(-1)
    hb = (observable @ b.unsqueeze(-1)).squeeze(-1)
    return (a * ha).sum(-1) + (b * hb).sum(-1)


def expval_pauli(state: torch.Tensor, n_qubits: int, words: torch.Tensor | None = None) -> torch.Tensor:
    """Expectation values ``<psi|P_k|psi>`` of Pauli words.

    Args:
        state: ``(..., 2**n)`` complex states.
        words: indices into the ``4**n - 1`` word basis; all words when ``None``.

    Returns:
        Real tensor ``(..., n_words)``. Since ``P[j ^ x, j] = i**|x&z| (-1)**|j&z|``, the value is
        ``sum_j Re(i**|x&z| conj(psi[j ^ x]) psi[j]) (-1)**|j&z|``: the real part of each term is
        written out from real and imaginary parts, which is exact because the sum is real for a
        Hermitian ``P``.
    """
    dim = 2**n_qubits
    if state.shape[-1] != dim:
        raise QcreepError(f"state has {state.shape[-1]} amplitudes; {n_qubits} qubits need {dim}")
    xs, zs = pauli_masks(n_qubits, device=state.device)
    if words is not None:
        xs, zs = xs[words], zs[words]
    j = torch.arange(dim, device=state.device)
    partner = j[None, :] ^ xs[:, None]  # (words, dim)
    sign = 1 - 2 * (_popcount(j[None, :] & zs[:, None]) % 2)
    ny = _popcount(xs & zs) % 4
    a, b = state.real, state.imag
    pa, pb = a[..., partner], b[..., partner]  # (..., words, dim)
    a, b = a[..., None, :], b[..., None, :]
    # conj(psi[j^x]) psi[j] = (pa - i pb)(a + i b) = (pa a + pb b) + i (pa b - pb a)
    re = pa * a + pb * b
    im = pa * b - pb * a
    # multiply by i**ny and keep the real part: ny=0 -> re, 1 -> -im, 2 -> -re, 3 -> im
    ny = ny[:, None].to(state.device)
    real_term = torch.where(ny == 0, re, torch.where(ny == 1, -im, torch.where(ny == 2, -re, im)))
    return (real_term * sign.to(real_term.dtype)).sum(-1)


def complex_dtype(real_dtype: torch.dtype) -> torch.dtype:
    """complex64 for float32, complex128 for float64."""
    return _complex_of(real_dtype)
