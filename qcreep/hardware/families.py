r"""Finite shots and local depolarising noise for the newer layer families, batched over images and patches.

The paper's two layers have their own shot and noise models (:mod:`qcreep.hardware.shots`,
:mod:`qcreep.hardware.noise`). This module gives the same treatment to
:class:`~qcreep.layers.DressedCircuit`, :class:`~qcreep.layers.AngleReuploading`,
:class:`~qcreep.layers.AmplitudeCircuit`, :class:`~qcreep.layers.Quanvolution` and
:class:`~qcreep.layers.TrainableQuanvolution`, with the same semantics: ``S`` shots per circuit of
the layer's :meth:`~qcreep.layers.QuantumLayer.circuits`, the single-qubit depolarising channel
``D_p`` (``lam = 4 p / 3``) on every qubit after every block, a per-(layer, image) random stream
(:mod:`qcreep.hardware.sampling`), inference only.

**Blocks** (where the channels sit; a block is one layer of gates of :meth:`circuits`):

* ``DressedCircuit`` (``n`` qubits, depth ``D``): the Hadamard layer, the ``RY(q_i)`` layer, then
  for each variational layer the CNOT entangler (its even and odd pairs together) and the
  ``RY(w_k)`` layer: ``2 + 2 D`` layers of ``n`` channels.
* ``AngleReuploading`` (``L`` layers): per layer the uploads ``U_l(x)`` (all ``G`` ``Rot`` gates of
  the layer, the data block, like the re-uploading head's ``exp(iH/R)``), the CZ ring and the
  trainable ``Rot`` layer: ``3 L`` layers of channels.
* ``AmplitudeCircuit`` (``L`` layers): the state preparation of ``|x>``, then per layer the ``Rot``
  layer and the CNOT ring: ``1 + 2 L``.
* ``Quanvolution`` / ``TrainableQuanvolution`` (``L`` layers or ``depth``): the encoding
  ``RY(pi x_p)`` layer, then per layer the ``RY`` layer and the CNOTs: ``1 + 2 L``.

``D_p`` is covariant (``U D_p(rho) U^dagger = D_p(U rho U^dagger)`` for a unitary ``U`` on the same
qubit), so channels on either side of a block of single-qubit gates merge into one channel of
``1 - lam_k = (1 - lam)^k`` after the composed gate. That is used throughout: each block of
single-qubit gates together with its neighbouring channels is one ``4 x 4`` superoperator per qubit.

**Exact noise.** Three of the families apply a data-independent circuit to a simple data state,
so they are simulated in the Heisenberg picture: the measured observables are pushed back through
the noisy circuit once per forward (``O = E^dagger(A)``, the adjoint of each block in reverse
order; ``D_p`` is self-adjoint) and each input only meets the result.

* ``DressedCircuit``: after the embedding every state is a product of real one-qubit states
  ``rho_j = D^2(RY(q_j) H |0><0| H RY(q_j)^T)``, so ``<Z_i> = Tr(O_i rho)`` needs only the real
  ``O_i = E^dagger(Z_i)`` folded onto the ``3^n`` products of ``rho_00, rho_11`` and
  ``rho_01 = rho_10`` of each qubit (:func:`fold_symmetric`): ``3^n`` numbers per input and output.
* ``Quanvolution``: the same, with ``rho_j = D^2(RY(pi x_j + a_1j)|0><0| ...)`` (the first rotation
  layer folded into the encoding, as the layer does); ``n`` observables ``Z_i`` without shots, and
  the ``2^n`` projectors ``|b><b|`` with shots (the joint law of the outcomes is needed then).
* ``AmplitudeCircuit``: ``p_j = <x| E^dagger(|j><j|) |x> = x^T Re(O_j) x`` for the real normalised
  input (``Im O_j`` is antisymmetric, so it does not contribute), ``j < out``.

``AngleReuploading`` has data-dependent gates in every layer, so its noisy states are batched
``2^n x 2^n`` density matrices (the first layer's product state built directly, then per layer
``n`` one-qubit superoperators and the CZ ring's sign mask), chunked over the inputs.

Limits: noise is simulated on at most :data:`MAX_NOISE_QUBITS` = 10 qubits, and the Heisenberg
observables hold at most :data:`MAX_HEISENBERG_ENTRIES` = ``2^27`` entries in all (observables
times ``4^n``): with shots the quanvolution needs ``2^n`` of them, so ``n <= 9`` (a 3x3 kernel);
``AmplitudeCircuit`` at 14 qubits (the 12,544-feature MNIST head) is refused with noise, and
runs with shots only. :func:`check_execution` says so, in one line, before anything runs.

**Shots** (``S`` per circuit, exact draws, :mod:`qcreep.hardware.sampling`):

* ``DressedCircuit``: its circuits are ``n`` separate circuits, circuit ``i`` measuring ``Z_i``, so
  ``<Z_i>`` is estimated from its own ``S`` shots: ``n`` independent
  ``Binomial(S, (1 + <Z_i>) / 2)``. Independent per-qubit binomials are the correct joint law here
  because the circuits are run separately (their marginals are all that each circuit measures).
  ``Var(z_i) = (1 - <Z_i>^2) / S``.
* ``AngleReuploading``: one circuit measured in the computational basis; the readout uses the
  first ``out`` qubits, so the counts of their ``2^out`` joint outcomes are drawn,
  ``Multinomial(S, marginal)`` (:func:`~qcreep.hardware.sampling.tree_counts`), and every ``<Z_j>``
  is read from the same shots (so the estimates are correlated as on a device).
* ``AmplitudeCircuit``: one circuit; the readout uses the first ``out`` probabilities, whose counts
  are the first ``out`` entries of a ``Multinomial(S, p)`` (:func:`~qcreep.hardware.sampling.chain_counts`).
* ``Quanvolution``: one circuit per output position and input channel (each patch is a separate
  circuit with its own ``S`` shots); for each, ``Multinomial(S, p)`` over its ``2^n`` outcomes,
  and all ``n`` ``<Z_i>`` of the patch from those shots.

Example:
    >>> import torch
    >>> from qcreep.layers import DressedCircuit
    >>> torch.manual_seed(0) and None
    >>> layer = DressedCircuit(6, 2, dtype=torch.float64)
    >>> x = torch.randn(3, 6, dtype=torch.float64)
    >>> z = dressed_expectations(layer, layer._flatten(x)[0], 0.0)
    >>> bool(torch.allclose(z, layer.expectations(x), atol=1e-12))
    True
"""

from __future__ import annotations

import math
from itertools import chain

import torch

from qcreep.errors import QcreepError
from qcreep.hardware.sampling import binomial, chain_counts, sign_estimates, tree_counts
from qcreep.layers import AmplitudeCircuit, AngleReuploading, DressedCircuit, Quanvolution, TrainableQuanvolution
from qcreep.layers.amplitude import rot_matrix
from qcreep.layers.quanvolution import _QuanvolutionBase, _ry, _source_index, z_signs

FAMILY_LAYERS = (DressedCircuit, AngleReuploading, AmplitudeCircuit, Quanvolution, TrainableQuanvolution)
#: The most qubits on which noise is simulated (density matrices or Heisenberg observables of 4^n entries).
MAX_NOISE_QUBITS = 10
#: The most entries (observables times 4^n) of the Heisenberg observables of one layer.
MAX_HEISENBERG_ENTRIES = 2**27
# entries per chunk of operators or density matrices held at once (about 32 MiB in float64)
CHUNK_ENTRIES = 2**22

F64, C128 = torch.float64, torch.complex128


# ---------------------------------------------------------------------------------------------
# what is supported
# ---------------------------------------------------------------------------------------------

def _noise_refusal(layer, n_obs: int, what: str) -> str | None:
    n = layer.n_qubits
    name = type(layer).__name__
    if n > MAX_NOISE_QUBITS:
        return (f"{name} on {n} qubits: noise is simulated exactly on at most {MAX_NOISE_QUBITS} qubits ({what}); "
                "evaluate it with shots only (noise=0) or use a register of at most "
                f"{MAX_NOISE_QUBITS} qubits")
    if n_obs * 4**n > MAX_HEISENBERG_ENTRIES:
        return (f"{name} on {n} qubits: exact noise needs {n_obs} noisy observables of 4^{n} entries "
                f"({n_obs * 4**n:,} in all), more than the limit of {MAX_HEISENBERG_ENTRIES:,} ({what}); "
                "evaluate it with noise and no shots, or with shots and no noise")
    return None


def check_execution(layer, execution) -> None:
    """Raise a one-line :class:`QcreepError` if ``execution`` cannot be simulated for ``layer`` (a family layer)."""
    if execution.noise == 0.0:
        return
    if isinstance(layer, DressedCircuit):
        reason = _noise_refusal(layer, layer.n_qubits, "n observables E^dagger(Z_i)")
    elif isinstance(layer, AngleReuploading):
        reason = _noise_refusal(layer, 0, "batched 2^n x 2^n density matrices")
    elif isinstance(layer, AmplitudeCircuit):
        reason = _noise_refusal(layer, layer.out_features, "out observables E^dagger(|j><j|)")
    elif isinstance(layer, _QuanvolutionBase):
        n = layer.n_qubits
        if execution.shots is None:
            reason = _noise_refusal(layer, n, "n observables E^dagger(Z_i)")
        else:
            reason = _noise_refusal(layer, 2**n, "with shots: the 2^n projectors E^dagger(|b><b|), for the joint "
                                                 "law of a patch's outcomes")
    else:
        raise QcreepError(f"no shot or noise model for layer {type(layer).__name__}")
    if reason:
        raise QcreepError(reason)


# ---------------------------------------------------------------------------------------------
# superoperators, folding, product states
# ---------------------------------------------------------------------------------------------

def _merged_lambda(noise: float, k: int) -> float:
    """``lam_k = 1 - (1 - lam)^k``: ``k`` channels ``D_p`` in a row on one qubit (between single-qubit gates)."""
    return 1.0 - (1.0 - 4.0 * noise / 3.0) ** k


def depolarizing_superoperator(lam: float, dtype=F64, device=None) -> torch.Tensor:
    """``(4, 4)``: ``D`` on one qubit acting on ``(rho_00, rho_01, rho_10, rho_11)`` (index ``2 r + c``).

    ``rho_00 -> (1 - lam/2) rho_00 + (lam/2) rho_11`` (and symmetrically), ``rho_01 -> (1 - lam) rho_01``.
    Real and symmetric, so it is its own adjoint.
    """
    s = torch.zeros(4, 4, dtype=dtype, device=device)
    s[0, 0] = s[3, 3] = 1.0 - lam / 2
    s[0, 3] = s[3, 0] = lam / 2
    s[1, 1] = s[2, 2] = 1.0 - lam
    return s


def gate_superoperator(u: torch.Tensor, lam: float, *, adjoint: bool = False) -> torch.Tensor:
    """``(..., 4, 4)``: ``D o Ad(U)`` (``rho -> D(U rho U^dagger)``), or with ``adjoint`` its adjoint
    ``O -> U^dagger D(O) U``.

    ``Ad(U)`` is ``kron(U, conj U)`` on index ``2 r + c``; its adjoint ``kron(U^dagger, U^T)``. ``D``
    commutes with both (covariance), so the order does not matter.
    """
    left, right = (u.mH, u.mT) if adjoint else (u, u.conj())
    kron = torch.einsum("...ra,...cb->...rcab", left, right).reshape(*u.shape[:-2], 4, 4)
    return depolarizing_superoperator(lam, kron.dtype, kron.device) @ kron


def apply_local(ops: torch.Tensor, qubit: int, n: int, sup: torch.Tensor) -> torch.Tensor:
    """A one-qubit superoperator ``sup`` ``(..., 4, 4)`` on qubit ``qubit`` of operators ``(..., 2^n, 2^n)``.

    ``out[.. r .., .. c ..] = sum_ab sup[2 r + c, 2 a + b] ops[.. a .., .. b ..]`` on the qubit's row and
    column bits (qubit 0 the most significant); ``sup`` broadcasts against the leading dimensions.
    """
    left, right = 2**qubit, 2 ** (n - 1 - qubit)
    view = ops.reshape(*ops.shape[:-2], left, 2, right, left, 2, right)
    s = sup.reshape(*sup.shape[:-2], 2, 2, 2, 2)
    out = torch.einsum("...rcab,...lamkbj->...lrmkcj", s, view)
    return out.reshape(ops.shape)


def _permute_both(ops: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``P^T O P`` for the basis permutation ``P |j> = |image[j]>``: ``O[image[a], image[b]]``."""
    return ops[..., image, :][..., :, image]


def fold_symmetric(ops: torch.Tensor, n: int) -> torch.Tensor:
    """``(..., 2^n, 2^n) -> (..., 3^n)``: an operator's pairing with real symmetric product states.

    For ``rho = rho_0 (x) ... (x) rho_{n-1}`` with every ``rho_j`` real symmetric,
    ``Tr(O rho) = sum_s O~[s] prod_j r_j[s_j]`` with ``r_j = (rho_00, rho_11, rho_01)`` and
    ``O~`` the sum of ``O[a, b]`` over the row and column bits ``(a_j, b_j)`` of each qubit in
    ``(0, 0)``, ``(1, 1)``, ``{(0, 1), (1, 0)}`` respectively (qubit 0 the most significant digit).
    """
    lead = ops.shape[:-2]
    k = len(lead)
    t = ops.reshape(*lead, *([2] * (2 * n)))
    perm = list(range(k)) + [k + i + off for i in range(n) for off in (0, n)]
    t = t.permute(perm).reshape(*lead, *([4] * n))
    for j in range(n):
        d = k + j
        t = torch.stack((t.select(d, 0), t.select(d, 3), t.select(d, 1) + t.select(d, 2)), d)
    return t.reshape(*lead, 3**n)


def product_vector(r: torch.Tensor) -> torch.Tensor:
    """``(..., n, k) -> (..., k^n)``: the Kronecker product of the rows ``r[..., 0, :], ..., r[..., n-1, :]``."""
    out = r[..., 0, :]
    for q in range(1, r.shape[-2]):
        out = (out[..., :, None] * r[..., q, None, :]).flatten(-2)
    return out


def _real_qubit_states(theta: torch.Tensor, lam: float) -> torch.Tensor:
    """``(..., n, 3)``: ``(rho_00, rho_11, rho_01)`` of ``D(RY(theta)|0><0|RY(theta)^T)`` on each qubit."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    keep = 1.0 - lam
    return torch.stack((0.5 + keep * (c * c - 0.5), 0.5 + keep * (s * s - 0.5), keep * c * s), -1)


def _pair_with(rows: torch.Tensor, folded: torch.Tensor) -> torch.Tensor:
    """``(R, n, 3)`` one-qubit states against ``(K, 3^n)`` folded observables: ``(R, K)``, chunked over ``R``."""
    n = rows.shape[-2]
    step = max(1, CHUNK_ENTRIES // 3**n)
    parts = [product_vector(rows[i:i + step]) @ folded.T for i in range(0, rows.shape[0], step)]
    return torch.cat(parts) if parts else rows.new_zeros(0, folded.shape[0])


def _diagonal_start(n: int, lam: float, which, device) -> torch.Tensor:
    """``(K, 2^n, 2^n)`` real: ``D(Pi_b)`` on every qubit for the basis projectors ``b in which``.

    ``D(|b_j><b_j|) = (1 - lam/2) |b_j><b_j| + (lam/2) |1-b_j><1-b_j|``, so the diagonal of
    ``D(Pi_b)`` is row ``b`` of the ``n``-fold Kronecker power of ``[[1 - lam/2, lam/2], [lam/2, 1 - lam/2]]``.
    """
    one = torch.tensor([[1.0 - lam / 2, lam / 2], [lam / 2, 1.0 - lam / 2]], dtype=F64, device=device)
    rows = one[which >> (n - 1), :] if n else None
    for q in range(1, n):
        bit = (which >> (n - 1 - q)) & 1
        rows = (rows[:, :, None] * one[bit][:, None, :]).flatten(1)
    return torch.diag_embed(rows)


def _chunked(count: int, n: int, run) -> torch.Tensor:
    """``run(start, stop)`` over chunks of ``count`` operators of ``4^n`` entries, concatenated."""
    step = max(1, CHUNK_ENTRIES // 4**n)
    return torch.cat([run(i, min(count, i + step)) for i in range(0, count, step)])


def _versions(layer) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in chain(layer.parameters(), layer.buffers()))


def cached(cache: dict | None, layer, name: str, noise: float, build):
    """``build()``, kept in ``cache`` until the layer's parameters or buffers change (in place or replaced)."""
    if cache is None:
        return build()
    key = (name, noise)
    versions = _versions(layer)
    hit = cache.get(key)
    if hit is not None and hit[0] == versions:
        return hit[1]
    value = build()
    cache[key] = (versions, value)
    return value


# ---------------------------------------------------------------------------------------------
# DressedCircuit
# ---------------------------------------------------------------------------------------------

def dressed_observables(layer: DressedCircuit, noise: float) -> torch.Tensor:
    """``(n, 3^n)`` float64: ``E^dagger(Z_i)`` folded (:func:`fold_symmetric`), ``E`` the noisy variational part.

    Schrödinger order after the embedding: for ``k = 1..D``: the entangler ``E_c``, ``D``,
    ``RY(w_k)``, ``D``. In reverse, each ``D RY(w_k)^T . RY(w_k) D`` is one superoperator per qubit
    with ``lam_2`` and each entangler a basis permutation.
    """
    n = layer.n_qubits
    lam2 = _merged_lambda(noise, 2)
    device = layer.weights.device
    signs = z_signs(n, F64, device)  # (2^n, n)
    image = layer._image.to(device)
    rot = _ry(layer.weights.detach().to(F64))  # (D, n, 2, 2)

    def run(start, stop):
        ops = torch.diag_embed(signs.T[start:stop])  # Z_i
        for k in reversed(range(layer.depth)):
            for q in range(n):
                ops = apply_local(ops, q, n, gate_superoperator(rot[k, q], lam2, adjoint=True))
            ops = _permute_both(ops, image)
        return fold_symmetric(ops, n)

    return _chunked(n, n, run)


def dressed_expectations(layer: DressedCircuit, x: torch.Tensor, noise: float, cache=None) -> torch.Tensor:
    """``(B, n)`` float64 ``<Z_i>`` of the noisy circuit for a flat batch ``(B, in)`` (``noise=0``: the layer's own)."""
    with torch.no_grad():
        if noise == 0.0:
            return layer.expectations(x).to(F64)
        q = layer.angles_in(x).to(F64)
        # H then RY(q): RY(q) H |0> = RY(q + pi/2) |0>, with D after each of the two blocks (lam_2)
        states = _real_qubit_states(q + math.pi / 2, _merged_lambda(noise, 2))
        folded = cached(cache, layer, "dressed", noise, lambda: dressed_observables(layer, noise))
        return _pair_with(states, folded)


def dressed_forward(layer: DressedCircuit, x: torch.Tensor, execution, keys_for, cache=None) -> torch.Tensor:
    flat, lead = layer._flatten(x)
    z = dressed_expectations(layer, flat, execution.noise, cache)
    if execution.shots is not None:
        shots = execution.shots
        keys = keys_for(flat.shape[0])
        plus = binomial(torch.full_like(z, float(shots)), (1.0 + z) / 2, keys.to(z.device), 0)
        z = 2.0 * plus / shots - 1.0
    with torch.no_grad():
        out = layer.post(z.to(layer.weights.dtype))
    return out.reshape(*lead, layer.out_features)


# ---------------------------------------------------------------------------------------------
# AngleReuploading
# ---------------------------------------------------------------------------------------------

def angle_density_probabilities(layer: AngleReuploading, x: torch.Tensor, noise: float) -> torch.Tensor:
    """``(B, 2^n)`` float64 basis probabilities of the noisy angle re-uploading circuit for ``(B, in)``.

    Between two CZ rings every gate is on one qubit, so each qubit's gates there (the layer's
    composed ``local`` gate: the uploads of layer ``l`` after the trainable ``Rot`` of layer
    ``l - 1``) and the channels around them are one superoperator ``D^k o Ad(W)``: ``k = 1`` for the
    first layer (its uploads, then ``D``), ``k = 3`` after a CZ ring (``D`` after the ring, after
    the ``Rot`` and after the uploads), ``k = 2`` for the last ``Rot`` (after the last ring and after
    it). The first layer acts on ``|0...0>``, so its state is a product built directly. The CZ ring
    multiplies ``rho[a, b]`` by ``s_a s_b``. Chunked over the inputs (at most ``2^22`` entries).
    """
    n = layer.n_qubits
    dim = 2**n
    with torch.no_grad():
        local, last = layer.gates(x)  # (B, L, n, 2, 2), (n, 2, 2) complex
    cz = layer._cz_signs.to(local.real.dtype)
    mask = (cz[:, None] * cz[None, :]).to(local.dtype)
    keep1 = 1.0 - _merged_lambda(noise, 1)
    sup3 = gate_superoperator(local[:, 1:], _merged_lambda(noise, 3))  # (B, L-1, n, 4, 4)
    sup_last = gate_superoperator(last, _merged_lambda(noise, 2))  # (n, 4, 4)
    step = max(1, CHUNK_ENTRIES // dim**2)
    out = []
    for i in range(0, x.shape[0], step):
        u0 = local[i:i + step, 0, :, :, 0]  # (b, n, 2): U_q |0>
        one = keep1 * (u0[..., :, None] * u0.conj()[..., None, :])
        one = one + (1.0 - keep1) * torch.eye(2, dtype=one.dtype, device=one.device) / 2
        rho = one[:, 0]
        for q in range(1, n):
            rho = torch.einsum("bij,bkl->bikjl", rho, one[:, q]).reshape(rho.shape[0], 2 ** (q + 1), 2 ** (q + 1))
        rho = rho * mask
        for layer_index in range(layer.layers - 1):
            for q in range(n):
                rho = apply_local(rho, q, n, sup3[i:i + step, layer_index, q])
            rho = rho * mask
        out.append(measured_probabilities(rho, n, sup_last))
    return torch.cat(out) if out else x.new_zeros(0, dim, dtype=F64)


def measured_probabilities(rho: torch.Tensor, n: int, sups: torch.Tensor) -> torch.Tensor:
    """``(B, 2^n)`` float64: the basis probabilities after a last one-qubit superoperator ``sups[q]`` on every qubit.

    Only the diagonal is needed, ``p(o) = sum_ab prod_q S_q[2 o_q + o_q, 2 a_q + b_q] rho[a, b]``: the
    density matrices ``(B, 2^n, 2^n)`` are reordered once into one axis of four ``(a_q, b_q)`` per
    qubit, and each axis is contracted with the two rows ``S_q[0]``, ``S_q[3]``, from the last qubit
    to the first, so each step halves what is left (about three passes over ``rho`` in all instead
    of ``n``). The diagonal of a density matrix is real: its real part is taken explicitly.
    """
    batch = rho.shape[0]
    t = rho.reshape(batch, *([2] * (2 * n)))
    t = t.permute(0, *[1 + i + off for i in range(n) for off in (0, n)]).reshape(batch, 4**n)
    rows = sups[:, [0, 3], :].to(rho.dtype)  # (n, 2, 4)
    for q in reversed(range(n)):
        t = torch.einsum("bpas,oa->bpos", t.reshape(batch, 4**q, 4, 2 ** (n - 1 - q)), rows[q]).reshape(batch, -1)
    return t.real.to(F64)


def angle_probabilities(layer: AngleReuploading, x: torch.Tensor, noise: float) -> torch.Tensor:
    """``(B, 2^n)`` float64 basis probabilities, exact (the layer's states) or noisy."""
    if noise == 0.0:
        with torch.no_grad():
            state = layer.states(x)
        return (state.real * state.real + state.imag * state.imag).to(F64)
    return angle_density_probabilities(layer, x, noise)


def angle_forward(layer: AngleReuploading, x: torch.Tensor, execution, keys_for, cache=None) -> torch.Tensor:
    flat, lead = layer._flatten(x)
    n, out_features = layer.n_qubits, layer.out_features
    probs = angle_probabilities(layer, flat, execution.noise)
    if execution.shots is None:
        z = probs @ layer._z_signs.to(device=probs.device, dtype=F64)
    else:
        # the readout's qubits are 0 .. out-1, the most significant bits: their joint outcomes
        marginal = probs.reshape(-1, 2**out_features, 2 ** (n - out_features)).sum(-1)
        keys = keys_for(flat.shape[0]).to(marginal.device)
        counts = tree_counts(marginal[:, None], execution.shots, keys)[:, 0]
        z = sign_estimates(counts, out_features, execution.shots)
    with torch.no_grad():
        y = layer.readout(z.to(layer.weights.dtype))
    return y.reshape(*lead, out_features)


# ---------------------------------------------------------------------------------------------
# AmplitudeCircuit
# ---------------------------------------------------------------------------------------------

def amplitude_observables(layer: AmplitudeCircuit, noise: float) -> torch.Tensor:
    """``(out, 2^n, 2^n)`` float64: ``Re E^dagger(|j><j|)`` for ``j < out``, ``E`` the noisy circuit after the
    preparation.

    Schrödinger order: preparation, ``D``, then per layer ``Rot``, ``D``, CNOT ring, ``D``. In
    reverse: ``D(|j><j|)`` (diagonal), then for ``l = L..1`` the ring's basis permutation and one
    superoperator per qubit ``Ad(Rot)^dagger o D^2`` (the channels on both sides of the ``Rot`` layer).
    ``E^dagger(|j><j|)`` is Hermitian; its real part is returned, which is all a real state sees.
    """
    n, out = layer.n_qubits, layer.out_features
    lam, lam2 = _merged_lambda(noise, 1), _merged_lambda(noise, 2)
    device = layer.weights.device
    rots = rot_matrix(layer.weights.detach().to(F64))  # (L, n, 2, 2) complex128
    images = layer._images.to(device)

    def run(start, stop):
        ops = _diagonal_start(n, lam, torch.arange(start, stop, device=device), device).to(C128)
        for index in reversed(range(layer.layers)):
            ops = _permute_both(ops, images[index])
            for q in range(n):
                ops = apply_local(ops, q, n, gate_superoperator(rots[index, q], lam2, adjoint=True))
        return ops.real.contiguous()

    return _chunked(out, n, run)


def amplitude_probabilities(layer: AmplitudeCircuit, x: torch.Tensor, noise: float, cache=None) -> torch.Tensor:
    """``(B, out)`` float64: ``p_j`` of the first ``out`` basis states, exact (the layer's) or noisy."""
    from qcreep.layers.amplitude import _normalised

    with torch.no_grad():
        if noise == 0.0:
            return layer.probabilities(x).to(F64)
        state = _normalised(x.to(F64), 2**layer.n_qubits)
    ops = cached(cache, layer, "amplitude", noise, lambda: amplitude_observables(layer, noise))
    return torch.einsum("bi,jik,bk->bj", state, ops, state)


def amplitude_forward(layer: AmplitudeCircuit, x: torch.Tensor, execution, keys_for, cache=None) -> torch.Tensor:
    flat, lead = layer._flatten(x)
    probs = amplitude_probabilities(layer, flat, execution.noise, cache)
    if execution.shots is not None:
        keys = keys_for(flat.shape[0]).to(probs.device)
        probs = chain_counts(probs[:, None], execution.shots, keys)[:, 0] / execution.shots
    with torch.no_grad():
        y = layer.readout(probs.to(layer.weights.dtype))
    return y.reshape(*lead, layer.out_features)


# ---------------------------------------------------------------------------------------------
# Quanvolution and TrainableQuanvolution
# ---------------------------------------------------------------------------------------------

def quanvolution_observables(layer: _QuanvolutionBase, noise: float, *, projectors: bool) -> torch.Tensor:
    """Folded noisy observables of a quanvolution circuit after its encoding: ``(n, 3^n)`` or ``(2^n, 3^n)`` float64.

    ``E^dagger(Z_i)`` (``projectors=False``) or ``E^dagger(|b><b|)`` for every basis state ``b``
    (``projectors=True``, the diagonal of the noisy final state), folded (:func:`fold_symmetric`).
    Schrödinger order after the encoding (which, with its channel, ``R_1`` and its channel, is the
    product state of :func:`_real_qubit_states` with ``lam_2``): ``C_1, D, R_2, D, C_2, D, ...,
    R_L, D, C_L, D``. In reverse: the last ``D`` (``D(Z_i) = (1 - lam) Z_i``; ``D(|b><b|)`` stays
    diagonal), then for ``l = L..2`` the CNOTs' basis permutation and ``Ad(R_l)^T o D^2`` per qubit,
    then the permutation of ``C_1``.
    """
    n = layer.n_qubits
    lam, lam2 = _merged_lambda(noise, 1), _merged_lambda(noise, 2)
    angles = layer.rotation_angles().detach().to(F64)
    device = angles.device
    rot = _ry(angles)  # (L, n, 2, 2)
    images = [torch.argsort(_source_index(n, pairs, device)) for pairs in layer.layer_pairs()]
    signs = z_signs(n, F64, device)
    count = 2**n if projectors else n

    def run(start, stop):
        if projectors:
            ops = _diagonal_start(n, lam, torch.arange(start, stop, device=device), device)
        else:
            ops = torch.diag_embed((1.0 - lam) * signs.T[start:stop])
        for index in reversed(range(1, len(images))):
            ops = _permute_both(ops, images[index])
            for q in range(n):
                ops = apply_local(ops, q, n, gate_superoperator(rot[index, q], lam2, adjoint=True))
        return fold_symmetric(_permute_both(ops, images[0]), n)

    return _chunked(count, n, run)


def quanvolution_forward(layer: _QuanvolutionBase, x: torch.Tensor, execution, keys_for, cache=None) -> torch.Tensor:
    x = layer._check_input(x)
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    n, noise, shots = layer.n_qubits, execution.noise, execution.shots
    with torch.no_grad():
        patches, hw = layer._patches(x)  # (B, P, C, n): every patch of every channel is its own circuit
    batch, positions, channels = patches.shape[:3]
    if noise != 0.0:
        angles = layer.rotation_angles().detach().to(F64)
        states = _real_qubit_states(math.pi * patches.to(F64) + angles[0], _merged_lambda(noise, 2))
        states = states.reshape(-1, n, 3)
    if shots is None:
        if noise == 0.0:
            with torch.no_grad():
                out = layer(x)
            return out[0] if unbatched else out
        folded = cached(cache, layer, "quanvolution_z", noise,
                        lambda: quanvolution_observables(layer, noise, projectors=False))
        z = _pair_with(states, folded)
    else:
        keys = keys_for(batch)
        if noise == 0.0:
            with torch.no_grad():
                amplitudes = layer.states(patches).to(F64)  # real amplitudes (RY and CNOT are real)
            probs = (amplitudes * amplitudes).reshape(-1, 2**n)
        else:
            folded = cached(cache, layer, "quanvolution_p", noise,
                            lambda: quanvolution_observables(layer, noise, projectors=True))
            probs = _pair_with(states, folded)
        probs = probs.reshape(batch, positions * channels, 2**n)
        keys = keys.to(probs.device)
        # images in chunks of at most 2^22 outcome probabilities (each image keeps its own stream)
        step = max(1, CHUNK_ENTRIES // (positions * channels * 2**n))
        z = torch.cat([sign_estimates(tree_counts(probs[i:i + step], shots, keys[i:i + step]), n, shots)
                       for i in range(0, batch, step)])
    features = z.reshape(batch, positions, channels, n).to(device=x.device, dtype=layer.mix_weight.dtype)
    with torch.no_grad():
        out = layer._mix(features, batch, hw)
    return out[0] if unbatched else out


def family_forward(layer, x: torch.Tensor, execution, keys_for, cache=None) -> torch.Tensor:
    """The output of a family layer under ``execution``; ``keys_for(count)`` gives the next images' stream keys."""
    if isinstance(layer, DressedCircuit):
        return dressed_forward(layer, x, execution, keys_for, cache)
    if isinstance(layer, AngleReuploading):
        return angle_forward(layer, x, execution, keys_for, cache)
    if isinstance(layer, AmplitudeCircuit):
        return amplitude_forward(layer, x, execution, keys_for, cache)
    if isinstance(layer, _QuanvolutionBase):
        return quanvolution_forward(layer, x, execution, keys_for, cache)
    raise QcreepError(f"no shot or noise model for layer {type(layer).__name__}")
