"""Local depolarising noise on the quantum layers, simulated exactly with density matrices.

Convention. ``noise = p`` is the probability of the single-qubit depolarising channel in
PennyLane's form (``qml.DepolarizingChannel(p)``):

    D_p(rho) = (1 - p) rho + (p / 3) (X rho X + Y rho Y + Z rho Z).

With ``X rho X + Y rho Y + Z rho Z = 2 Tr_q(rho) (x) I - rho`` on the qubit ``q`` it acts on, this is

    D_p(rho) = (1 - lam) rho + lam Tr_q(rho) (x) I / 2,      lam = 4 p / 3,

which is Qiskit Aer's ``depolarizing_error(lam, 1)``. ``p`` runs over ``[0, 3/4]``: ``p = 3/4``
(``lam = 1``) replaces the qubit by the maximally mixed state. On a Pauli expectation value the
channel on qubit ``q`` multiplies ``<P>`` by ``1 - lam`` when ``P`` acts on ``q`` and leaves it
alone otherwise.

Where the channels sit (the same places in the exported circuits):

* ``DataReUploadingLinear`` on ``n`` qubits with ``R`` re-uploads: ``D_p`` on every qubit after
  every block, i.e. after the Hadamard layer that makes ``|+>^n``, after each data unitary
  ``V = exp(i H / R)`` and after each trainable ``SU(theta_r)``: ``1 + 2 R`` layers of ``n``
  channels.
* ``FlippedQuanv3x3``: ``D_p`` on both qubits after the ``SU(4)(theta_oc)`` gate.

The newer layer families (dressed, angle, amplitude, quanvolution) place and simulate their
channels in :mod:`qcreep.hardware.families`.

Cost. A layer of channels (one on every qubit) is applied to a batch of ``2**n x 2**n`` density
matrices in the Pauli basis, where it is diagonal: two Walsh-Hadamard products of size ``2**n``
and two gathers per matrix (:func:`depolarize`), never a dense ``4**n x 4**n`` superoperator. A
unitary ``rho -> U rho U^dagger`` is two ``2**n``-sized matrix products. Per image the noisy
re-uploading head therefore costs ``4 R`` complex matrix products of size ``2**n`` for the gates
(two for each ``V`` and each ``SU``), ``2 (1 + 2 R)`` for the channel layers and one
eigendecomposition of ``H`` (as the exact layer), against ``2 R`` matrix-vector products for the
exact statevector: at ``n = 7``, ``R = 10``, 82 products of 128 x 128 complex matrices.
The noisy flipped quanvolution stays a convolution (its state does not depend on the data), so
its cost is that of the exact layer plus ``C_out C_in`` 4 x 4 channel applications.

Example:
    >>> import torch
    >>> from qcreep.sim import plus_state
    >>> psi = plus_state(1, dtype=torch.complex128)
    >>> rho = psi[:, None] * psi.conj()[None, :]
    >>> depolarize(rho, 1, 0.75)                          # fully depolarising: I / 2
    tensor([[0.5000+0.j, 0.0000+0.j],
            [0.0000+0.j, 0.5000+0.j]], dtype=torch.complex128)
    >>> aer_lambda(0.03)                                  # Qiskit Aer's parameter for the same channel
    0.04
"""

from __future__ import annotations

import functools

import torch

from qcreep.checks import check_int, check_number
from qcreep.errors import QcreepError
from qcreep.sim import complex_dtype, hamiltonian_embedding, plus_state
from qcreep.sim.paulis import _popcount

MAX_NOISE = 0.75


def check_noise(noise) -> float:
    """``noise`` as a float in ``[0, 3/4]`` (the depolarising probability ``p``)."""
    return check_number(noise, "noise (depolarising probability p per qubit and block)", low=0.0, low_open=False,
                        high=MAX_NOISE, high_open=False)


def aer_lambda(noise: float) -> float:
    """Qiskit Aer's ``depolarizing_error(lam, 1)`` parameter for probability ``p``: ``lam = 4 p / 3``."""
    return 4.0 * check_noise(noise) / 3.0


def pure_density_matrices(psi: torch.Tensor) -> torch.Tensor:
    """``|psi><psi|`` for states ``(..., N)``: complex ``(..., N, N)``."""
    return psi[..., :, None] * psi.conj()[..., None, :]


@functools.lru_cache(maxsize=16)
def _walsh_tables(n_qubits: int, lam: float, dtype: torch.dtype, device: torch.device):
    """Index and Walsh-Hadamard tables of the all-qubit channel (see :func:`depolarize`)."""
    dim = 2**n_qubits
    a = torch.arange(dim)
    # flat position of rho[x ^ j, j] at (x, j); the same table maps (x, j) back to (row, column)
    index = ((a[:, None] ^ a[None, :]) * dim + a[None, :]).reshape(-1)
    hadamard = 1 - 2 * (_popcount(a[:, None] & a[None, :]) % 2)
    weight = _popcount(a[:, None] | a[None, :])  # (x, z) -> weight of the Pauli word with masks x, z
    real = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
    scale = (1.0 - lam) ** weight.to(torch.float64) / dim
    return (index.to(device), hadamard.to(device=device, dtype=dtype),
            scale.to(device=device, dtype=real).to(dtype))


def depolarize(rho: torch.Tensor, n_qubits: int, noise: float, qubits=None) -> torch.Tensor:
    """``D_p`` on each of ``qubits`` (default all) of density matrices ``(..., 2**n, 2**n)``.

    Qubit 0 is the most significant bit of a basis index. Returns a new tensor.

    All qubits (the default): ``D_p`` on every qubit multiplies the component of each Pauli word
    ``P`` (masks ``x``, ``z``, as in :mod:`qcreep.sim.paulis`) by ``(1 - lam)**weight(P)``,
    ``weight = |x OR z|``. The components with a given ``x`` are a Walsh-Hadamard transform over ``j``
    of the ``x``-diagonal ``rho[j ^ x, j]``. So: gather the ``2**n`` ``x``-diagonals, transform (a
    product with the ``2**n x 2**n`` Hadamard matrix), scale by ``(1 - lam)**|x OR z| / 2**n``,
    transform back and scatter: two gathers and two matrix products, ``O(8**n)`` flops per matrix
    but dense ones (at ``n = 7`` about 5 times faster on a CPU than the ``O(n 4**n)`` strided
    per-qubit passes below).

    Chosen qubits: for qubit ``q`` the matrix is viewed as ``(L, 2, M, L, 2, M)`` with ``L = 2**q``
    and ``M = 2**(n - 1 - q)``: the blocks off the qubit's diagonal are scaled by ``1 - lam`` and the
    two diagonal blocks ``rho_00``, ``rho_11`` move to ``(1 - lam / 2) rho_aa + (lam / 2) rho_bb``,
    ``O(4**n)`` per qubit.
    """
    check_int(n_qubits, "n_qubits", 1)
    lam = 4.0 * check_noise(noise) / 3.0
    dim = 2**n_qubits
    if rho.shape[-2:] != (dim, dim) or not rho.is_complex():
        raise QcreepError(f"density matrices for {n_qubits} qubits are complex ({dim}, {dim}), "
                          f"got {tuple(rho.shape)} {rho.dtype}")
    lead = rho.shape[:-2]
    flat = rho.reshape(-1, dim * dim)
    if lam == 0.0:
        return flat.clone().reshape(rho.shape)
    if qubits is None:
        index, hadamard, scale = _walsh_tables(n_qubits, lam, rho.dtype, rho.device)
        diagonals = flat[:, index].reshape(-1, dim)  # rows (b, x), columns j
        coefficients = (diagonals @ hadamard).reshape(-1, dim, dim) * scale
        out = (coefficients.reshape(-1, dim) @ hadamard).reshape(-1, dim * dim)[:, index]
        return out.reshape(*lead, dim, dim)
    out = flat.clone().reshape(-1, dim, dim)
    for q in list(qubits):
        check_int(q, "qubit", 0, n_qubits - 1)
        left, right = 2**q, 2 ** (n_qubits - 1 - q)
        view = out.view(-1, left, 2, right, left, 2, right)
        block0 = view[:, :, 0, :, :, 0, :]
        block1 = view[:, :, 1, :, :, 1, :]
        half = (0.5 * lam) * (block0 + block1)
        view.mul_(1.0 - lam)
        block0.add_(half)
        block1.add_(half)
    return out.reshape(*lead, dim, dim)


def _conjugate(unitary: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """``U rho U^dagger`` (batched, broadcasting)."""
    return unitary @ rho @ unitary.mH


def reupload_density_matrices(layer, x: torch.Tensor, noise: float) -> torch.Tensor:
    """Final density matrices ``(B, 2**n, 2**n)`` of a ``DataReUploadingLinear`` with noise ``p``.

    ``x`` is ``(B, in_features)``. The circuit is ``|+>^n`` (Hadamard layer), then for ``r = 1..R``
    the data unitary ``V = exp(i H / R)`` (computed once per image with the layer's solver and
    reused) and the trainable ``SU(theta_r)``, with ``D_p`` on every qubit after each block. The
    readout probabilities are the real diagonal. With ``p = 0`` this is ``|psi><psi|`` of the exact
    layer.
    """
    noise = check_noise(noise)
    n = layer.n_qubits
    if x.dim() != 2 or x.shape[-1] != layer.in_features:
        raise QcreepError(f"the re-uploading circuit takes input (B, {layer.in_features}), got {tuple(x.shape)}")
    real = layer.theta.real.dtype if layer.theta.is_complex() else layer.theta.dtype
    x = x.to(dtype=real, device=layer.theta.device)
    data_unitary = hamiltonian_embedding(layer.data_hamiltonians(x), 1.0 / layer.n_reps, layer.resolved_solver())
    gates = layer.trainable_unitaries()
    rho = pure_density_matrices(plus_state(n, (x.shape[0],), dtype=complex_dtype(real), device=x.device))
    rho = depolarize(rho, n, noise)
    for r in range(layer.n_reps):
        rho = depolarize(_conjugate(data_unitary, rho), n, noise)
        rho = depolarize(_conjugate(gates[r], rho), n, noise)
    return rho


def diagonal_probabilities(rho: torch.Tensor) -> torch.Tensor:
    """The measurement probabilities ``Re(rho_jj)``: a real ``(..., 2**n)`` tensor.

    The diagonal of a Hermitian matrix is real; its real part is taken explicitly.
    """
    return torch.diagonal(rho, dim1=-2, dim2=-1).real


def quanv_density_matrices(layer, noise: float) -> torch.Tensor:
    """``(C_out, C_in, 4, 4)`` states ``D_p (x) D_p [SU(4)(theta_oc) |00><00| SU(4)^dagger]``."""
    rho = pure_density_matrices(layer.states())
    return depolarize(rho, 2, noise)


def quanv_kernel(rho: torch.Tensor, in_channels: int) -> torch.Tensor:
    """The convolution kernel ``Re(rho)[:3, :3] / C_in`` of (noisy) flipped-quanvolution states.

    ``<H> = Tr(rho H) = sum_ij H_ij Re(rho)_ij`` for a real symmetric ``H``, so a noisy layer is
    still exactly a convolution, with this kernel (the layer's :meth:`kernel` when ``p = 0``).
    """
    return rho.real[..., :3, :3] / in_channels
