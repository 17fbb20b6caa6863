r"""How the unitaries ``exp(i t H)`` are computed: the solver choice, and the products-only solver.

Two solvers compute the same unitaries:

``"eigh"``
    One eigendecomposition ``H = V diag(lambda) V^T`` per matrix; ``exp(i t H)`` is
    ``V diag(exp(i t lambda)) V^T``, unitary to rounding for any ``t`` and any norm of ``H``. The
    backward pass uses the divided differences of ``exp(i t lambda)`` (Daleckii-Krein), see
    :mod:`qcreep.sim.unitary`. On CPU the decompositions of a batch run on all cores
    (:mod:`qcreep.sim.parallel`). GPUs run a batch of small eigendecompositions one after another,
    so this solver is slow there.

``"expm"``
    Matrix products only (:func:`expi_cos_sin`): scaling and squaring of a truncated Taylor
    series. For a real symmetric ``H`` the unitary is built as ``cos(tH) + i sin(tH)`` from real
    products only (half the work of complex products, and the kind of product that GPU tensor
    cores run). Gradients flow through the products by autograd. The trainable gates, which are
    complex Hermitian, use ``torch.linalg.matrix_exp`` (also products only) followed by one
    Newton-Schulz step ``U (3I - U^H U) / 2`` towards the nearest unitary, which squares the
    deviation from unitarity that the squarings leave (about 5e-5 in float32 for SU(128) gates with
    standard-normal angles, 5e-7 after the step).

``"auto"``
    ``"eigh"`` on CPU and ``"expm"`` on any other device. On a 2-core CPU at the paper's sizes (200
    data Hamiltonians of 128 x 128, 10 re-uploads, 10 gates of SU(128)), the re-uploading head's
    forward and backward pass took about 2.5 times as long with ``"expm"`` as with ``"eigh"`` on one
    thread (640 ms against 250 ms), and 4.9 and 7.5 times as long in two runs of
    ``benchmarks/bench_layers.py --quick`` (item 3) on two threads with other jobs beside them:
    there, the products cost more than the eigendecompositions, and the backward pass of
    ``matrix_exp`` for the gates alone took about 150 ms.

The series (``"expm"``). With ``A = t H`` scaled to ``A_s = A / 2**s`` and ``B = A_s^2``,

    cos(A_s) ~ sum_{k=0..m} (-1)^k B^k / (2k)!,      sin(A_s) ~ A_s sum_{k=0..m} (-1)^k B^k / (2k+1)!,

which is the Taylor polynomial of ``exp(i A_s)`` of degree ``K = 2m + 1``. For a symmetric ``A_s``
with spectral norm ``||A_s|| <= theta`` the truncation error of ``exp(i A_s)`` is at most

    theta^(K+1) / (K+1)! / (1 - theta / (K+2)),

and ``theta_m`` is the largest ``theta`` for which this is at most the unit roundoff ``u`` of the
dtype (``m = 9``, ``theta = 3.58`` for float32; ``m = 13``, ``theta = 3.03`` for float64). Both
polynomials in ``B`` are evaluated by Paterson-Stockmeyer: their blocks are combinations of the
shared powers ``I, B, .., B^4`` (one contraction for all blocks), joined by Horner steps in
``B^5`` (8 real products in all for float32, 10 for float64). The squarings use the double-angle
formulas

    cos(2X) = (cos X - sin X)(cos X + sin X),      sin(2X) = 2 sin X cos X,

two real products each (``cos X`` and ``sin X`` commute). The number of squarings ``s`` is
``ceil(log2(n / theta_m))`` with ``n = min(||A||_1, ||A||_F) >= ||A||_2``, per matrix: a matrix
that needs fewer squarings than others in its batch keeps its value through the extra steps. The
truncation error at the scaled level is a backward error of at most ``u ||A_s||``, which the
squarings carry to a relative backward error of ``u`` in ``A``: the same order as the rounding of
``A`` itself, and of the eigenvalues in ``"eigh"``. The deviation from unitarity,
``cos^2 + sin^2 - I``, doubles with each squaring; it stays below about ``1e-5`` in float32 at the
paper's sizes (the tests check states normalised to ``1e-4`` at 7 qubits).

The number of squarings is a Python integer, so it is read from the device (one synchronisation
per call on a GPU). Under ``torch.func.vmap`` it is read from the whole stacked batch.

Example:
    >>> import torch
    >>> from qcreep.sim.solvers import expi_cos_sin, resolve_solver
    >>> resolve_solver("auto", "cpu"), resolve_solver("auto", "cuda"), resolve_solver("expm", "cpu")
    ('eigh', 'expm', 'expm')
    >>> h = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)   # Pauli X
    >>> c, s = expi_cos_sin(h, 0.5)          # exp(0.5 i X) = cos(0.5) I + i sin(0.5) X
    >>> round(float(c[0, 0]), 12), round(float(s[0, 1]), 12)
    (0.87758256189, 0.479425538604)
"""

from __future__ import annotations

import math

import torch

from qcreep.errors import QcreepError

SOLVERS = ("auto", "eigh", "expm")

# Taylor degree parameter m (polynomials of degree m in B = A^2) and Paterson-Stockmeyer block size.
_SERIES = {torch.float32: (9, 5), torch.float64: (13, 5)}
_UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}


def check_solver(solver: str) -> str:
    """Validate a solver name (``"auto"``, ``"eigh"`` or ``"expm"``)."""
    if solver not in SOLVERS:
        raise QcreepError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    return solver


def resolve_solver(solver: str, device=None) -> str:
    """The solver that runs on ``device``: ``"eigh"`` or ``"expm"``.

    ``"auto"`` is ``"eigh"`` on CPU (the eigendecompositions are cheaper than the products there,
    and spread over the cores) and ``"expm"`` elsewhere (GPUs run batched eigh serially).
    ``device`` is a ``torch.device``, a string, or ``None`` (CPU).

    Example:
        >>> resolve_solver("auto", torch.device("cpu"))
        'eigh'
    """
    check_solver(solver)
    if solver != "auto":
        return solver
    kind = torch.device(device).type if device is not None else "cpu"
    return "eigh" if kind == "cpu" else "expm"


def _truncation_bound(theta: float, m: int) -> float:
    k = 2 * m + 1
    return theta ** (k + 1) / math.factorial(k + 1) / (1.0 - theta / (k + 2))


def series_theta(m: int, unit_roundoff: float) -> float:
    """Largest spectral norm ``theta`` at which the degree ``2m + 1`` series error is ``<= unit_roundoff``."""
    low, high = 0.0, 2.0 * m + 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if _truncation_bound(mid, m) <= unit_roundoff:
            low = mid
        else:
            high = mid
    return low


_THETA = {dtype: series_theta(m, _UNIT_ROUNDOFF[dtype]) for dtype, (m, _) in _SERIES.items()}


class _HostExtrema(torch.autograd.Function):
    """``(max, min)`` of a tensor as Python floats, also under ``torch.func.vmap``.

    Under vmap the ``vmap`` rule receives the stacked tensor, so the extrema are taken over every
    vmapped slice together (one number of squarings for the whole stacked batch). The values are
    written into ``box``; the tensor returned is a placeholder.
    """

    @staticmethod
    def forward(x, box):
        x = x.detach()
        box.extrema = (float(x.max()), float(x.min())) if x.numel() else (0.0, 0.0)
        return x.new_zeros(())

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output)

    @staticmethod
    def backward(ctx, grad):
        return None, None

    @staticmethod
    def vmap(info, in_dims, x, box):
        return _HostExtrema.apply(x, box), None


class _Box:
    extrema = (0.0, 0.0)


def host_extrema(x: torch.Tensor) -> tuple[float, float]:
    """``(max, min)`` of ``x`` as Python floats; under vmap, over all the vmapped slices."""
    box = _Box()
    _HostExtrema.apply(x, box)
    return box.extrema


def _norm_bound(a: torch.Tensor) -> torch.Tensor:
    """``min(||A||_1, ||A||_F)``, an upper bound of the spectral norm, per matrix (no gradient)."""
    a = a.detach()
    one = a.abs().sum(-2).amax(-1)
    fro = torch.linalg.matrix_norm(a)
    return torch.minimum(one, fro)



def expi_cos_sin(h: torch.Tensor, t: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos(t H)`` and ``sin(t H)`` of real symmetric ``H`` from real matrix products only.

    ``exp(i t H) = cos(t H) + i sin(t H)``. See the module docstring for the series, the scaling and
    the error bound. Gradients flow to ``h`` by autograd through the products.

    Args:
        h: ``(..., N, N)`` real symmetric matrices, float32 or float64 (the whole matrix is read).
        t: real time.

    Returns:
        ``(cos(tH), sin(tH))``, real ``(..., N, N)`` tensors.

    Example:
        >>> h = torch.diag(torch.tensor([0.0, torch.pi / 2], dtype=torch.float64))
        >>> c, s = expi_cos_sin(h)
        >>> [round(float(v), 12) for v in (c[0, 0], c[1, 1], s[1, 1])]
        [1.0, 0.0, 1.0]
    """
    if h.is_complex() or h.dtype not in _SERIES:
        raise QcreepError(f"expi_cos_sin takes real float32 or float64 matrices, got {h.dtype}")
    if h.dim() < 2 or h.shape[-1] != h.shape[-2]:
        raise QcreepError(f"H must have shape (..., N, N), got {tuple(h.shape)}")
    m, p = _SERIES[h.dtype]
    theta = _THETA[h.dtype]
    n = h.shape[-1]
    # squarings per matrix: s = ceil(log2(norm / theta)), norm >= ||tH||_2
    bound = abs(t) * _norm_bound(h)
    needed = torch.clamp(torch.ceil(torch.log2(bound / theta)), min=0.0)  # log2(0) = -inf -> 0
    most, fewest = host_extrema(needed)
    if not math.isfinite(most) or most > 1000:
        raise QcreepError("expi_cos_sin: the matrices are not finite or too large to exponentiate")
    steps, fewest = int(most), int(fewest)
    lead = h.shape[:-2]
    flat = h.reshape(-1, n, n)
    if steps:
        a = flat * (t * torch.exp2(-needed)).reshape(-1, 1, 1).to(h.dtype)
    else:
        a = flat * t
    # powers I, B, ..., B^p of B = A^2, and the blocks of both polynomials in one contraction
    b = a @ a
    powers = [torch.eye(n, dtype=h.dtype, device=h.device).expand_as(b), b]
    for _ in range(p - 1):
        powers.append(powers[-1] @ b)
    top = powers.pop()  # B^p
    cos_coeffs = [(-1) ** k / math.factorial(2 * k) for k in range(m + 1)]
    sin_coeffs = [(-1) ** k / math.factorial(2 * k + 1) for k in range(m + 1)]
    blocks_per_poly = -(-(m + 1) // p)
    rows = []
    for coeffs in (cos_coeffs, sin_coeffs):
        padded = coeffs + [0.0] * (blocks_per_poly * p - len(coeffs))
        rows += [padded[i * p:(i + 1) * p] for i in range(blocks_per_poly)]
    weights = torch.tensor(rows, dtype=h.dtype, device=h.device)
    blocks = torch.tensordot(weights, torch.stack(powers), dims=1).unbind(0)  # 2 * blocks_per_poly of (B, N, N)
    polys = []
    for first in (0, blocks_per_poly):
        poly = blocks[first + blocks_per_poly - 1]
        for j in range(first + blocks_per_poly - 2, first - 1, -1):
            poly = torch.baddbmm(blocks[j], top, poly)  # Horner in B^p
        polys.append(poly)
    cos, sin = polys[0], a @ polys[1]
    for step in range(steps):
        new_cos = (cos - sin) @ (cos + sin)  # cos(2X) = cos^2 - sin^2, the two commute
        new_sin = torch.baddbmm(sin, sin, cos, beta=0.0, alpha=2.0)  # sin(2X) = 2 sin cos
        if step >= steps - fewest:
            cos, sin = new_cos, new_sin  # every matrix squares at this step
        else:
            active = (needed.reshape(-1) >= steps - step)[:, None, None]
            cos = torch.where(active, new_cos, cos)
            sin = torch.where(active, new_sin, sin)
    return cos.reshape(*lead, n, n), sin.reshape(*lead, n, n)


def expi_matrix_exp(h: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    """``exp(i t H)`` by products only: ``cos + i sin`` for real ``H``, ``torch.linalg.matrix_exp`` for complex ``H``.

    Example:
        >>> u = expi_matrix_exp(torch.zeros(2, 3, 3, dtype=torch.float64))
        >>> bool(torch.equal(u, torch.eye(3, dtype=torch.complex128).expand(2, 3, 3)))
        True
    """
    if h.is_complex():
        u = torch.linalg.matrix_exp((1j * t) * h)
        # one Newton-Schulz step towards the unitary polar factor, U (3I - U^H U) / 2: it squares the
        # deviation from unitarity left by the squarings (about 5e-5 for SU(128) gates in float32)
        eye = torch.eye(u.shape[-1], dtype=u.dtype, device=u.device)
        return u @ (1.5 * eye - 0.5 * (u.mH @ u))
    cos, sin = expi_cos_sin(h, t)
    return torch.complex(cos, sin)
