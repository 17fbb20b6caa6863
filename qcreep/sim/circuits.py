r"""Whole circuits with hand-written adjoints, where the structure allows far less work than autograd.

:func:`reupload_circuit` runs the data re-uploading circuit

    |psi_R> = U_R E ... U_2 E U_1 E |psi_0>,    E = exp(i t H),

for a batch of real symmetric data Hamiltonians ``H`` and gates ``U_r`` shared by the batch. The
data unitary is computed once per sample and reused for all ``R`` re-uploads, by one of two solvers
(:mod:`qcreep.sim.solvers`):

``"eigh"``
    ``H = V diag(lambda) V^T`` once per sample; ``E`` is never formed. Each re-upload rotates the
    state into the eigenbasis, multiplies by the phases ``exp(i t lambda)`` and rotates back (two
    real products of the stacked real and imaginary parts with ``V``). The backward pass runs the
    circuit in reverse with the adjoint gates and collects the gradient with respect to ``H`` in
    the eigenbasis: with ``beta_r = V^T psi_r`` (the state entering the ``r``-th ``E``) and
    ``gamma_r = V^T g_r`` (the gradient leaving it),

        dL/dH = V [ sum_r Re(conj(gamma_r) beta_r^T o F) ] V^T,
        F_ij = (e^{it lambda_i} - e^{it lambda_j}) / (lambda_i - lambda_j),

    with ``F_ij = i t q_i q_j sinc(t (lambda_i - lambda_j) / 2)``, ``q = exp(i t lambda / 2)``: the
    phases fold into the vectors, the sum over ``r`` is one real product of rank ``4R``
    (symmetrised), and only a real ``sin(x) / x`` is evaluated per matrix entry, finite at repeated
    eigenvalues. Two products with ``V`` return it to the input basis. On CPU the batch is cut
    into chunks that run on all cores (:mod:`qcreep.sim.parallel`), forward and backward; the
    backward runs every chunk's reverse pass first, then every chunk's ``dL/dH``. The large
    temporaries of ``dL/dH`` and of the embedding live in per-thread scratch buffers (fresh
    tensors of a few MiB cost page faults on every call).

    :func:`reupload_features_su` builds the gates ``U_r = exp(i G_r)`` from their Hermitian
    generators inside the same autograd function (``G_r = W diag(mu) W^dagger``): the calling thread
    decomposes them while the workers decompose the data, and takes ``dL/dG_r`` (Daleckii-Krein,
    :func:`qcreep.sim.unitary.expi_backward`) while the workers compute ``dL/dH``.

``"expm"``
    ``E = cos(tH) + i sin(tH)`` from real matrix products only
    (:func:`qcreep.sim.solvers.expi_cos_sin`, differentiated by autograd). Each re-upload is two
    real products of the state with ``cos(tH)`` and ``sin(tH)``. The backward pass of the
    re-uploads is written by hand; the gradients with respect to ``cos(tH)`` and ``sin(tH)``
    collect all ``R`` re-uploads in one product of rank ``2R`` each.

States are carried as real ``(B, 2, N)`` tensors (real part, imaginary part) inside; a gate acts
on the flattened ``[Re psi | Im psi]`` as the real ``2N x 2N`` matrix ``[[Re U^T, Im U^T],
[-Im U^T, Re U^T]]``. Both autograd functions support ``torch.func.vmap`` (their ``vmap`` rules
stack the vmapped dimension in front, and they take any leading dimensions).
"""

from __future__ import annotations

import math
import threading

import torch

from qcreep.errors import QcreepError
from qcreep.sim import parallel
from qcreep.sim.paulis import pauli_sum
from qcreep.sim.solvers import expi_cos_sin, resolve_solver
from qcreep.sim.states import symmetric_embedding_matrix
from qcreep.sim.unitary import expi_backward, expi_eigh


def _planar(state: torch.Tensor) -> torch.Tensor:
    """``(..., N)`` complex -> ``(..., 2, N)`` real rows (real part, imaginary part), taken explicitly."""
    return torch.stack((state.real, state.imag), dim=-2)


def _gate_matrices(gates: torch.Tensor) -> torch.Tensor:
    """``(..., R, N, N)`` complex gates -> ``(..., R, 2N, 2N)`` real matrices acting on rows ``[a | b]``.

    ``[a | b] @ M = [Re(U psi) | Im(U psi)]`` for ``psi = a + i b``.
    """
    ur, ui = gates.real.mT, gates.imag.mT
    return torch.cat((torch.cat((ur, ui), -1), torch.cat((-ui, ur), -1)), -2)


def _gate_matrices_no_grad(gates: torch.Tensor) -> torch.Tensor:
    """:func:`_gate_matrices` written block by block into one tensor (no autograd, no concatenations)."""
    if parallel.transforms_active():
        return _gate_matrices(gates)
    n = gates.shape[-1]
    out = gates.real.new_empty(*gates.shape[:-2], 2 * n, 2 * n)
    ur, ui = gates.real.mT, gates.imag.mT
    out[..., :n, :n] = ur
    out[..., n:, n:] = ur
    out[..., :n, n:] = ui
    torch.neg(ui, out=out[..., n:, :n])
    return out


def _apply_gate(rows: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Rows ``(..., B, 2, N)`` times a real gate matrix ``(..., 2N, 2N)``."""
    return (rows.flatten(-2) @ gate).view(rows.shape)


def _expand_front(args, in_dims, size):
    """vmap rules: move each vmapped dim to the front, expand the others to ``size``."""
    out = []
    for a, d in zip(args, in_dims):
        if isinstance(a, torch.Tensor):
            a = a.movedim(d, 0) if d is not None else a.expand(size, *a.shape)
        out.append(a)
    return out


# ----------------------------------------------------------------------------------------------
# "eigh": one eigendecomposition per sample


# Per-thread scratch buffers for the large temporaries of one chunk. A fresh tensor of a few MiB
# costs page faults on every call on CPU (its pages are returned to the system when it is freed),
# which here cost as much as the arithmetic written into it; buffers reused across calls do not.
# Only temporaries live here: nothing returned to a caller or saved for the backward pass. Five
# names are used (three of (N, N) matrices per sample, shared by the embedding in the forward pass
# and dL/dH in the backward pass, which a thread never runs at once), so a thread keeps at most
# 3 x 16 MiB of them in float32 (32 MiB each in float64).
_SCRATCH = threading.local()
_SCRATCH_MAX_ELEMENTS = 1 << 22  # larger temporaries are allocated fresh (16 MiB in float32)


def _scratch(name: str, shape, like: torch.Tensor) -> torch.Tensor:
    """A ``shape`` tensor of ``like``'s dtype and device, reused by this thread for ``name``.

    Its contents are undefined. Not used under torch.func transforms or on devices other than
    the CPU, where a fresh tensor is returned.
    """
    numel = math.prod(shape)
    if like.device.type != "cpu" or numel > _SCRATCH_MAX_ELEMENTS or parallel.transforms_active():
        return like.new_empty(shape)
    pool = getattr(_SCRATCH, "pool", None)
    if pool is None:
        pool = _SCRATCH.pool = {}
    buf = pool.get(name)
    if buf is None or buf.dtype != like.dtype or buf.numel() < numel:
        buf = pool[name] = torch.empty(numel, dtype=like.dtype)
    return buf[:numel].view(shape)


def _doubled_embedding(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``X + X^T`` (twice the data Hamiltonian) from features ``(..., F)``, zero-padded row-major.

    The result is a scratch buffer of this thread (:func:`_scratch`): it is only read by ``eigh``,
    which copies its input.
    """
    features = x.shape[-1]
    lead = tuple(x.shape[:-1])
    if parallel.transforms_active() or x.device.type != "cpu":
        padded = x.new_zeros(*lead, dim * dim)
        padded[..., :features] = x
        padded = padded.view(*lead, dim, dim)
        return padded + padded.mT
    padded = _scratch("gaps", (*lead, dim * dim), x)
    padded[..., :features] = x
    padded[..., features:] = 0
    padded = padded.view(*lead, dim, dim)
    return torch.add(padded, padded.mT, out=_scratch("weights", (*lead, dim, dim), x))


# The circuit's batch is cut into up to this many chunks per worker thread, of at least
# _MIN_ROWS_PER_TASK rows: the workers take the chunks one after another, so that they finish
# together although the calling thread takes a core from them at times (building the gates,
# and their backward pass).
_TASKS_PER_WORKER = 2
_MIN_ROWS_PER_TASK = 16


def _circuit_chunks(tensor: torch.Tensor, rows: int) -> int:
    """How many chunks the eigh circuit cuts ``rows`` samples into (1: run in the calling thread)."""
    workers = parallel.workers_for(tensor, rows)
    if workers <= 1:
        return workers
    return max(workers, min(workers * _TASKS_PER_WORKER, rows // _MIN_ROWS_PER_TASK))


def _decompose(data, n_qubits):
    """``eigh`` of ``H``, or of the embedding of features (``n_qubits`` given)."""
    if n_qubits is None:
        return torch.linalg.eigh(data)
    doubled = _doubled_embedding(data, 2**n_qubits)
    # X + X^T is exactly symmetric, so its transpose is the same matrix, laid out as LAPACK reads it
    lam, vecs = torch.linalg.eigh(doubled.mT)
    return lam * 0.5, vecs  # eigenvalues of (X + X^T) / 2, exactly


class Prefetch:
    """The eigendecompositions of a batch of features, started in the CPU workers ahead of the
    circuit, so that the calling thread can build the gates meanwhile.

    Example:
        >>> import torch
        >>> from qcreep.sim import plus_state, special_unitary
        >>> x = torch.randn(8, 14, dtype=torch.float64)
        >>> pre = Prefetch.start(x, 2)          # None where it would not help (one thread, GPU, vmap)
        >>> gates = special_unitary(torch.randn(2, 15, dtype=torch.float64))
        >>> psi = reupload_features(x, 2, gates, plus_state(2, (8,), dtype=torch.complex128), 0.5, prefetch=pre)
    """

    def __init__(self, x, n_qubits, chunks):
        self.x, self.n_qubits = x, n_qubits
        self.handle = parallel.submit_chunks(lambda a, b: _decompose(x[a:b], n_qubits),
                                             parallel.chunk_bounds(x.shape[0], chunks))

    @classmethod
    def start(cls, x: torch.Tensor, n_qubits: int, solver: str = "eigh"):
        """Start the decompositions of ``x`` ``(B, F)``, or return ``None`` where they would run inline."""
        if x.dim() != 2 or resolve_solver(solver, x.device) != "eigh":
            return None
        chunks = _circuit_chunks(x, x.shape[0])
        return cls(x.detach(), n_qubits, chunks) if chunks > 1 else None

    def matches(self, x: torch.Tensor, n_qubits: int) -> bool:
        return (n_qubits == self.n_qubits and x.shape == self.x.shape and x.device == self.x.device
                and x.detach().data_ptr() == self.x.data_ptr())


def _eigh_forward(data, gm, rows, t, n_qubits, decomposition=None):
    """One chunk of the batch: eigendecompose, run the circuit, keep what the backward needs.

    ``data`` is ``H`` (``n_qubits`` None) or the features whose embedding is ``H``;
    ``decomposition`` an eigendecomposition computed ahead.
    """
    lam, vecs = decomposition if decomposition is not None else _decompose(data, n_qubits)
    angle = t * lam
    cos, sin = torch.cos(angle)[..., None, :], torch.sin(angle)[..., None, :]
    sign_sin = torch.cat((-sin, sin), -2)
    betas, chis = [], []
    for r in range(gm.shape[-3]):
        beta = rows @ vecs  # V^T psi, as rows
        rotated = torch.addcmul(beta * cos, beta.flip(-2), sign_sin)  # phases exp(i t lambda)
        chi = rotated @ vecs.mT  # back to the input basis: E psi
        rows = _apply_gate(chi, gm[..., r, :, :])
        betas.append(beta)
        chis.append(chi.flatten(-2))
    return rows, lam, vecs, torch.stack(betas, -3), torch.stack(chis, -2)


def _eigh_backward(grad, lam, vecs, betas, gm, t, need_data, out_data, need_rows0=True):
    """One chunk: reverse pass; gradients at ``H`` or the features, at ``psi_0``, and at the gate outputs.

    ``out_data`` is ``None`` (a fresh ``dL/dH`` is returned) or the tensor to write into: ``dL/dH``
    of shape ``(..., B, N, N)``, or ``dL/dx`` of shape ``(..., B, F)`` for features ``x``, which is
    ``dL/dH`` read at the first ``F`` entries (``dL/dH`` is symmetric by construction, so its
    symmetric part, which the embedding ``(X + X^T) / 2`` takes, is itself). Without
    ``need_rows0`` the gradient at ``psi_0`` returned is ``None``.
    """
    gouts, gammas, grad_rows0 = _eigh_reverse(grad, lam, vecs, gm, t, need_rows0)
    grad_h = _data_gradient(lam, vecs, betas, gammas, t, out_data) if need_data else out_data
    return grad_h, grad_rows0, gouts


def _eigh_reverse(grad, lam, vecs, gm, t, need_rows0=True):
    """The circuit run backwards with the adjoint gates: ``(gouts, gammas, dL/dpsi_0)``.

    ``gouts``: ``(..., B, R, 2N)`` gradients at the gate outputs; ``gammas``: ``(..., B, R, 2, N)``
    the gradients leaving each data unitary, in its eigenbasis (``V^T g_r``), in circuit order.
    Without ``need_rows0`` the last rotation back to the input basis, which only ``dL/dpsi_0``
    needs, is skipped and ``None`` returned for it.
    """
    angle = t * lam
    cos, sin = torch.cos(angle)[..., None, :], torch.sin(angle)[..., None, :]
    sign_sin = torch.cat((sin, -sin), -2)  # adjoint phases exp(-i t lambda)
    gouts, gammas = [], []
    for r in range(gm.shape[-3] - 1, -1, -1):
        gouts.append(grad.flatten(-2))
        gchi = (grad.flatten(-2) @ gm[..., r, :, :].mT).view(grad.shape)  # U^dagger g
        gamma = gchi @ vecs  # V^T g
        gammas.append(gamma)
        if r or need_rows0:
            grad = torch.addcmul(gamma * cos, gamma.flip(-2), sign_sin) @ vecs.mT  # E^dagger g
        else:
            grad = None
    return torch.stack(gouts[::-1], -2), torch.stack(gammas[::-1], -3), grad


def _data_gradient(lam, vecs, betas, gammas, t, out_data):
    r"""``dL/dH = V W V^T`` (or ``dL/dx``, its first ``F`` entries) from the states in the eigenbasis.

    With ``beta_r = V^T psi_r`` (entering the ``r``-th data unitary), ``gamma_r = V^T g_r`` (the
    gradient leaving it), ``q = exp(i t lambda / 2)``, ``bp_r = beta_r q`` and ``gp_r = gamma_r conj(q)``:

        M = t sum_r (Im gp_r (Re bp_r)^T - Re gp_r (Im bp_r)^T),
        W = sym(M) o S,    S_ij = sin(t (lambda_i - lambda_j) / 2) / (t (lambda_i - lambda_j) / 2)

    (``S_ii = 1``): the Daleckii-Krein form ``Re(sum_r conj(gamma_r) beta_r^T o F)`` with
    ``F_ij = i t q_i q_j S_ij``, the phases folded into the vectors. ``sym(M)`` is one real product
    of rank ``4R`` pairing the rows ``(gp_im, bp_re), (-gp_re, bp_im), (bp_re, gp_im), (-bp_im,
    gp_re)``, each scaled by ``t / 2``. The ``(N, N)`` temporaries are this thread's scratch buffers.
    """
    reps, n = betas.shape[-3], betas.shape[-1]
    lead = tuple(betas.shape[:-3])
    half = 0.5 * t * lam
    hc, hs = torch.cos(half)[..., None, :], torch.sin(half)[..., None, :]
    b_re, b_im = betas[..., 0, :], betas[..., 1, :]
    g_re, g_im = gammas[..., 0, :], gammas[..., 1, :]
    # right = [bp_re; bp_im; gp_im; gp_re], left = (t / 2) [gp_im; -gp_re; bp_re; -bp_im]
    right = _scratch("right", (*lead, 4, reps, n), lam)
    torch.mul(b_re, hc, out=right[..., 0, :, :]).sub_(b_im * hs)
    torch.mul(b_re, hs, out=right[..., 1, :, :]).add_(b_im * hc)
    torch.mul(g_im, hc, out=right[..., 2, :, :]).sub_(g_re * hs)
    torch.mul(g_re, hc, out=right[..., 3, :, :]).add_(g_im * hs)
    scale = torch.tensor([0.5 * t, -0.5 * t, 0.5 * t, -0.5 * t], dtype=lam.dtype, device=lam.device)
    left = torch.mul(right.roll(2, -3), scale[:, None, None], out=_scratch("left", right.shape, lam))
    weights = torch.matmul(left.flatten(-3, -2).mT, right.flatten(-3, -2), out=_scratch("weights", (*lead, n, n), lam))
    x = torch.sub(half[..., :, None], half[..., None, :], out=_scratch("gaps", (*lead, n, n), lam))
    sinc = torch.sin(x, out=_scratch("sinc", (*lead, n, n), lam))
    weights.mul_(sinc.div_(x).nan_to_num_(nan=1.0))  # sin(x)/x, 1 at x = 0
    if parallel.transforms_active():  # no out= on the tensors of a torch.func transform
        grad_h = vecs @ weights @ vecs.mT
        if out_data is not None:
            raise QcreepError("internal: out_data is not used under torch.func transforms")
        return grad_h
    if out_data is not None and out_data.dim() != lam.dim() + 1:
        # dL/dx: the first F entries of dL/dH, i.e. its first ceil(F / N) rows, V[:rows] W V^T
        features = out_data.shape[-1]
        rows = -(-features // n)
        partial = torch.matmul(vecs[..., :rows, :], weights, out=_scratch("gaps", (*lead, rows, n), lam))
        if features == rows * n and out_data.is_contiguous():
            torch.matmul(partial, vecs.mT, out=out_data.view(*lead, rows, n))
        else:
            full = torch.matmul(partial, vecs.mT, out=_scratch("sinc", (*lead, rows, n), lam))
            out_data.copy_(full.flatten(-2)[..., :features])
        return out_data
    rotated = torch.matmul(vecs, weights, out=x)
    if out_data is None:
        return rotated @ vecs.mT
    torch.matmul(rotated, vecs.mT, out=out_data)  # dL/dH
    return out_data


def _gate_matrix_gradient(grad_gm: torch.Tensor) -> torch.Tensor:
    """``dL/dU`` (complex, ``dL/dRe U + i dL/dIm U``) from the gradient of :func:`_gate_matrices`."""
    n = grad_gm.shape[-1] // 2
    g11, g12 = grad_gm[..., :n, :n], grad_gm[..., :n, n:]
    g21, g22 = grad_gm[..., n:, :n], grad_gm[..., n:, n:]
    return torch.complex((g11 + g22).mT, (g12 - g21).mT)


class _EighCircuit(torch.autograd.Function):
    """``(data, gates, rows0, t, n_qubits, prefetch, generators) -> (rows, *saved)``.

    ``saved`` per chunk: ``lam, vecs, betas, chis``; then, with ``generators``, the gate matrices
    and the gates' eigendecompositions.

    ``data`` is ``H`` (``n_qubits`` None) or features ``(..., B, F)`` embedded as ``(X + X^T) / 2``
    inside each chunk, so that the embedding and its adjoint run on all cores with the rest.

    ``gates`` is ``gm``, the real gate matrices of :func:`_gate_matrices` (``generators`` false),
    or (``generators`` true) the Hermitian generators ``G_r`` of the gates ``U_r = exp(i G_r)``,
    ``(..., R, N, N)`` complex. Then the gates are built here, ``G_r = W diag(mu) W^dagger``,
    ``U_r = W diag(exp(i mu)) W^dagger``, and the backward pass takes ``dL/dG_r`` through the
    Daleckii-Krein form (:func:`qcreep.sim.unitary.expi_backward`) in the calling thread while
    the workers compute ``dL/dH``: the gates' gradient is ready as soon as the reverse pass of
    every chunk is done, before the gradient of the data, which costs most.
    """

    @staticmethod
    def forward(data, gates, rows0, t, n_qubits, prefetch=None, generators=False):
        bdim = rows0.dim() - 3
        rows = rows0.shape[bdim]
        if prefetch is not None:
            chunks = len(prefetch.handle.bounds)
            index = {start: k for k, (start, _) in enumerate(prefetch.handle.bounds)}
        else:
            chunks = _circuit_chunks(rows0, rows)
        try:
            extra = ()
            if generators:
                # in this thread, while the workers decompose the data (with a prefetch)
                unitaries, glam, gvecs = expi_eigh(gates, 1.0)
                gm = _gate_matrices_no_grad(unitaries)
                extra = (gm, glam, gvecs)
            else:
                gm = gates

            def run(start, stop):
                decomposition = prefetch.handle.result(index[start]) if prefetch is not None else None
                return _eigh_forward(data.narrow(bdim, start, stop - start), gm,
                                     rows0.narrow(bdim, start, stop - start), t, n_qubits, decomposition)

            parts = parallel.run_chunks(run, rows, chunks)
        finally:
            if prefetch is not None:
                prefetch.handle.finish()
        out = parts[0][0] if len(parts) == 1 else torch.cat([p[0] for p in parts], bdim)
        return (out, *(x for p in parts for x in p[1:]), *extra)

    @staticmethod
    def setup_context(ctx, inputs, output):
        data, gates, rows0, t, n_qubits, _, generators = inputs
        saved = output[1:]
        ctx.mark_non_differentiable(*saved)
        ctx.set_materialize_grads(False)
        if generators:
            gm, glam, gvecs = saved[-3:]
            ctx.save_for_backward(gm, glam, gvecs, *saved[:-3])
        else:
            ctx.save_for_backward(gates, gates, gates, *saved)  # placeholders for the gates' eigh
        ctx.generators = generators
        ctx.t = t
        ctx.bdim = rows0.dim() - 3
        ctx.data_shape = data.shape
        ctx.features = n_qubits is not None

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, *_):
        if grad is None:
            return None, None, None, None, None, None, None
        if len(ctx.saved_tensors) > 7:  # several chunks: the workers run them
            with parallel.one_thread():
                return _EighCircuit._backward(ctx, grad)
        return _EighCircuit._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad):
        gm, glam, gvecs, *saved = ctx.saved_tensors
        need_data, need_gates, need_rows0 = ctx.needs_input_grad[:3]
        t, bdim = ctx.t, ctx.bdim
        chunks = [saved[i:i + 4] for i in range(0, len(saved), 4)]
        sizes = [c[0].shape[bdim] for c in chunks]
        starts = [sum(sizes[:k]) for k in range(len(sizes))]
        # each chunk writes its gradient into its slice of one tensor (no concatenation), except
        # under torch.func transforms, where the gradients are returned and concatenated
        direct = need_data and not parallel.transforms_active()
        grad_data = grad.new_empty(ctx.data_shape) if direct else None

        def reverse(k):
            """Chunk ``k``'s reverse pass: its part of dL/dgm, its gammas, its dL/dpsi_0."""
            lam, vecs, _, chis = chunks[k]
            gouts, gammas, rows0 = _eigh_reverse(grad.narrow(bdim, starts[k], sizes[k]), lam, vecs, gm, t, need_rows0)
            # sum over the chunk's batch of chi_r^T g_r, for every r at once
            part = chis.movedim(-2, -3).mT @ gouts.movedim(-2, -3) if need_gates else None
            return part, gammas, rows0

        def data(k, gammas):
            lam, vecs, betas, _ = chunks[k]
            out = grad_data.narrow(bdim, starts[k], sizes[k]) if direct else None
            return _data_gradient(lam, vecs, betas, gammas, t, out)

        def gates(parts):
            if not need_gates:
                return None
            total = parts[0]
            for part in parts[1:]:
                total = total.add_(part) if not parallel.transforms_active() else total + part
            if ctx.generators:  # dL/dG through the gates' eigendecompositions
                return expi_backward(glam, gvecs, _gate_matrix_gradient(total), 1.0, False)
            return total

        bounds = [(k, k + 1) for k in range(len(chunks))]
        if len(chunks) > 1 and parallel.threads_allowed():
            # the workers run every reverse pass, then every chunk of dL/dH; this thread takes the
            # gates' gradient through their eigendecompositions as soon as the reverse passes are done
            reversed_ = parallel.submit_chunks(lambda a, b: reverse(a), bounds)
            datas = parallel.submit_chunks(lambda a, b: data(a, reversed_.result(a)[1]), bounds) \
                if need_data else None
            try:
                rev = [reversed_.result(k) for k in range(len(chunks))]
                grad_gates = gates([r[0] for r in rev])
                grad_datas = [datas.result(k) for k in range(len(chunks))] if need_data else None
            finally:
                for handle in (reversed_, datas):
                    if handle is not None:
                        for future in handle.futures:  # let every chunk finish before leaving
                            future.exception()
                        handle.finish()
        else:
            rev = [reverse(k) for k in range(len(chunks))]
            grad_datas = [data(k, rev[k][1]) for k in range(len(chunks))] if need_data else None
            grad_gates = gates([r[0] for r in rev])
        parts = [(grad_datas[k] if need_data else None, rev[k][2]) for k in range(len(chunks))]
        if need_data and not direct:
            grad_data = parts[0][0] if len(parts) == 1 else torch.cat([p[0] for p in parts], bdim)
            if ctx.features:  # dL/dx: the first F entries of the symmetric dL/dH
                grad_data = grad_data.flatten(-2)[..., : ctx.data_shape[-1]]
        grad_rows0 = None
        if need_rows0:
            grad_rows0 = parts[0][1] if len(parts) == 1 else torch.cat([p[1] for p in parts], bdim)
        return (grad_data if need_data else None), grad_gates, grad_rows0, None, None, None, None

    @staticmethod
    def vmap(info, in_dims, data, gates, rows0, t, n_qubits, prefetch=None, generators=False):
        data, gates, rows0 = _expand_front((data, gates, rows0), in_dims[:3], info.batch_size)
        out = _EighCircuit.apply(data, gates, rows0, t, n_qubits, None, generators)
        return out, (0,) * len(out)


# ----------------------------------------------------------------------------------------------
# "expm": the data unitary from products


class _ProductCircuit(torch.autograd.Function):
    """``(cos, sin, gm, rows0) -> (rows, ins, chis)`` with ``E = cos + i sin`` formed per sample."""

    @staticmethod
    def forward(cos, sin, gm, rows):
        ins, chis = [], []
        for r in range(gm.shape[-3]):
            pc, ps = rows @ cos.mT, rows @ sin.mT  # (C psi)^T, (S psi)^T for real and imaginary rows
            chi = torch.stack((pc[..., 0, :] - ps[..., 1, :], ps[..., 0, :] + pc[..., 1, :]), -2)
            ins.append(rows)
            chis.append(chi.flatten(-2))
            rows = _apply_gate(chi, gm[..., r, :, :])
        return rows, torch.cat(ins, -2), torch.stack(chis, -2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        cos, sin, gm, _ = inputs
        _, ins, chis = output
        ctx.mark_non_differentiable(ins, chis)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(cos, sin, gm, ins, chis)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, *_):
        if grad is None:
            return None, None, None, None
        cos, sin, gm, ins, chis = ctx.saved_tensors
        need_cos, need_sin, need_gm, need_rows0 = ctx.needs_input_grad
        gouts, gcs, gss = [], [], []
        for r in range(gm.shape[-3] - 1, -1, -1):
            gouts.append(grad.flatten(-2))
            gchi = (grad.flatten(-2) @ gm[..., r, :, :].mT).view(grad.shape)
            g_re, g_im = gchi[..., 0, :], gchi[..., 1, :]
            g_ps = torch.stack((g_im, -g_re), -2)  # adjoint of the real/imaginary combination
            gcs.append(gchi)
            gss.append(g_ps)
            grad = gchi @ cos + g_ps @ sin
        # dL/dC = sum_r g_pc,r^T rows_r, all r in one product (rows in circuit order)
        grad_cos = torch.cat(gcs[::-1], -2).mT @ ins if need_cos else None
        grad_sin = torch.cat(gss[::-1], -2).mT @ ins if need_sin else None
        grad_gm = None
        if need_gm:
            gouts = torch.stack(gouts[::-1], -2)
            grad_gm = chis.movedim(-2, -3).mT @ gouts.movedim(-2, -3)
        return grad_cos, grad_sin, grad_gm, (grad if need_rows0 else None)

    @staticmethod
    def vmap(info, in_dims, cos, sin, gm, rows0):
        args = _expand_front((cos, sin, gm, rows0), in_dims, info.batch_size)
        out = _ProductCircuit.apply(*args)
        return out, (0,) * len(out)


def reupload_circuit(h: torch.Tensor, gates: torch.Tensor, psi0: torch.Tensor, t: float,
                     solver: str = "eigh") -> torch.Tensor:
    """Final states of ``prod_r [U_r exp(i t H)] |psi0>``.

    Args:
        h: ``(B, N, N)`` real symmetric data Hamiltonians (``"eigh"`` reads the lower triangle,
            ``"expm"`` the whole matrix).
        gates: ``(R, N, N)`` complex gates, shared by the batch, applied in order ``r = 0..R-1``.
            They need not be unitary (the published code's complex-angle mode).
        psi0: ``(B, N)`` complex initial states.
        t: time of each data unitary (``1 / R`` in the paper).
        solver: ``"eigh"``, ``"expm"`` or ``"auto"`` (by the device of ``h``); see
            :mod:`qcreep.sim.solvers`.

    Returns:
        ``(B, N)`` complex final states. Differentiable in ``h``, ``gates`` and ``psi0``.

    Example:
        >>> import torch
        >>> from qcreep.sim import plus_state, special_unitary
        >>> h = torch.randn(3, 4, 4, dtype=torch.float64)
        >>> h = h + h.mT
        >>> gates = special_unitary(torch.randn(2, 15, dtype=torch.float64))
        >>> psi = reupload_circuit(h, gates, plus_state(2, (3,), dtype=torch.complex128), 0.5)
        >>> psi.shape
        torch.Size([3, 4])
        >>> other = reupload_circuit(h, gates, plus_state(2, (3,), dtype=torch.complex128), 0.5, solver="expm")
        >>> bool(torch.allclose(psi, other, atol=1e-12))
        True
    """
    if h.is_complex() or h.dim() != 3 or h.shape[-1] != h.shape[-2]:
        raise QcreepError(f"h must be real with shape (B, N, N), got {tuple(h.shape)} {h.dtype}")
    n = h.shape[-1]
    if gates.dim() != 3 or gates.shape[1:] != (n, n) or not gates.is_complex():
        raise QcreepError(f"gates must be complex with shape (R, {n}, {n}), got {tuple(gates.shape)} {gates.dtype}")
    if psi0.shape != h.shape[:2] or not psi0.is_complex():
        raise QcreepError(f"psi0 must be complex with shape {tuple(h.shape[:2])}, got {tuple(psi0.shape)} {psi0.dtype}")
    gm = _gate_matrices(gates)
    rows0 = _planar(psi0)
    if resolve_solver(solver, h.device) == "expm":
        cos, sin = expi_cos_sin(h, float(t))
        rows = _ProductCircuit.apply(cos, sin, gm, rows0)[0]
    else:
        rows = _EighCircuit.apply(h, gm, rows0, float(t), None, None, False)[0]
    return torch.complex(rows[..., 0, :], rows[..., 1, :])


def _check_features(x: torch.Tensor, n_qubits: int) -> int:
    """``2**n_qubits`` after checking that ``x`` is a real ``(B, F)`` batch with ``F <= 4**n_qubits``."""
    dim = 2**n_qubits
    if x.is_complex() or x.dim() != 2 or x.shape[-1] > dim * dim:
        raise QcreepError(f"x must be real with shape (B, F), F <= {dim * dim}, got {tuple(x.shape)} {x.dtype}")
    return dim


def _check_state(x: torch.Tensor, psi0: torch.Tensor, n_qubits: int, prefetch) -> None:
    """``psi0`` is one complex state per row of ``x``; ``prefetch`` (if any) was started for ``x``."""
    dim = 2**n_qubits
    if psi0.shape != (x.shape[0], dim) or not psi0.is_complex():
        raise QcreepError(f"psi0 must be complex with shape {(x.shape[0], dim)}, got {tuple(psi0.shape)} {psi0.dtype}")
    if prefetch is not None and not prefetch.matches(x, n_qubits):
        raise QcreepError("prefetch was started for other features")


def reupload_features(x: torch.Tensor, n_qubits: int, gates: torch.Tensor, psi0: torch.Tensor, t: float,
                      solver: str = "eigh", prefetch: Prefetch | None = None) -> torch.Tensor:
    """:func:`reupload_circuit` of the data Hamiltonians ``H = (X + X^T) / 2`` of features ``x``.

    The same states as ``reupload_circuit(symmetric_embedding_matrix(x, n_qubits), ...)``. With
    ``"eigh"`` the embedding and its adjoint run inside the chunks of the circuit (on all CPU
    cores, with no ``(B, N, N)`` tensor of ``H`` or of its gradient kept for the whole batch).

    Args:
        x: ``(B, F)`` real features, ``F <= 4**n_qubits``.
        n_qubits: register size; ``N = 2**n_qubits``.
        gates, psi0, t, solver: as in :func:`reupload_circuit`.
        prefetch: the eigendecompositions of ``x`` started ahead by :meth:`Prefetch.start` (used with
            ``"eigh"`` when it was started for this very ``x``).

    Example:
        >>> import torch
        >>> from qcreep.sim import plus_state, special_unitary, symmetric_embedding_matrix
        >>> x = torch.randn(3, 14, dtype=torch.float64)
        >>> gates = special_unitary(torch.randn(2, 15, dtype=torch.float64))
        >>> psi0 = plus_state(2, (3,), dtype=torch.complex128)
        >>> a = reupload_features(x, 2, gates, psi0, 0.5)
        >>> b = reupload_circuit(symmetric_embedding_matrix(x, 2), gates, psi0, 0.5)
        >>> bool(torch.allclose(a, b, atol=1e-12))
        True
    """
    dim = _check_features(x, n_qubits)
    if resolve_solver(solver, x.device) == "expm":
        return reupload_circuit(symmetric_embedding_matrix(x, n_qubits), gates, psi0, t, "expm")
    if gates.dim() != 3 or gates.shape[1:] != (dim, dim) or not gates.is_complex():
        raise QcreepError(f"gates must be complex with shape (R, {dim}, {dim}), got {tuple(gates.shape)} {gates.dtype}")
    _check_state(x, psi0, n_qubits, prefetch)
    rows = _EighCircuit.apply(x, _gate_matrices(gates), _planar(psi0), float(t), n_qubits, prefetch, False)[0]
    return torch.complex(rows[..., 0, :], rows[..., 1, :])


def reupload_features_su(x: torch.Tensor, n_qubits: int, theta: torch.Tensor, psi0: torch.Tensor, t: float,
                         prefetch: Prefetch | None = None) -> torch.Tensor:
    r""":func:`reupload_features` with ``"eigh"`` and the gates ``U_r = SU(theta_r) = exp(i G_r)``,
    ``G_r = sum_k theta_rk P_k``, built inside the circuit.

    The same states as ``reupload_features(x, n_qubits, special_unitary(theta), psi0, t)``. The
    gates are decomposed once, ``G_r = W_r diag(mu_r) W_r^dagger``, in the calling thread (while the
    workers decompose the data, with a prefetch), and their backward pass,

        dL/dG_r = P(W_r [(W_r^dagger (dL/dU_r) W_r) o conj(F_r)] W_r^dagger),
        (F_r)_ij = (e^{i mu_i} - e^{i mu_j}) / (mu_i - mu_j),

    (``P`` the projection onto Hermitian matrices) runs in the calling thread while the workers
    compute the gradient of the data, instead of after it.

    Args:
        x: ``(B, F)`` real features, ``F <= 4**n_qubits``.
        n_qubits: register size; ``N = 2**n_qubits``.
        theta: ``(R, 4**n_qubits - 1)`` real angles of the gates.
        psi0: ``(B, N)`` complex initial states.
        t: time of each data unitary.
        prefetch: as in :func:`reupload_features`.

    Example:
        >>> import torch
        >>> from qcreep.sim import plus_state, special_unitary
        >>> x = torch.randn(3, 14, dtype=torch.float64)
        >>> theta = torch.randn(2, 15, dtype=torch.float64)
        >>> psi0 = plus_state(2, (3,), dtype=torch.complex128)
        >>> a = reupload_features_su(x, 2, theta, psi0, 0.5)
        >>> b = reupload_features(x, 2, special_unitary(theta), psi0, 0.5)
        >>> bool(torch.allclose(a, b, atol=1e-12))
        True
    """
    dim = _check_features(x, n_qubits)
    if theta.is_complex() or theta.dim() != 2 or theta.shape[-1] != dim * dim - 1:
        raise QcreepError(f"theta must be real with shape (R, {dim * dim - 1}), got {tuple(theta.shape)} {theta.dtype}")
    _check_state(x, psi0, n_qubits, prefetch)
    rows = _EighCircuit.apply(x, pauli_sum(theta), _planar(psi0), float(t), n_qubits, prefetch, True)[0]
    return torch.complex(rows[..., 0, :], rows[..., 1, :])
