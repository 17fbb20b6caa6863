r"""Quanvolution (Henderson et al.) for conv slots, a trainable variant, and their classical twins.

:class:`Quanvolution` is the quanvolutional layer of Henderson, Shakya, Pradhan and Cook,
"Quanvolutional neural networks" (arXiv:1904.04767), in the form of PennyLane's quanvolution demo,
made a drop-in for ``nn.Conv2d(C_in, C_out, (k_h, k_w), stride, padding, dilation)``. For every
output position and every input channel ``c`` the ``k_h x k_w`` patch ``x`` of channel ``c`` (as
``nn.Conv2d`` sees it: zero padding, stride, dilation) is encoded on ``n = k_h k_w`` qubits, one
pixel per qubit in row-major order (qubit 0 is the top-left pixel and the most significant bit):

    |psi(x)> = RY(pi x_0) |0>  x  RY(pi x_1) |0>  x ... x  RY(pi x_{n-1}) |0>     (a product state)
    |phi(x)> = U |psi(x)>,    U = prod_{l=L..1} C_l R_l                           (a FIXED random circuit)
    z_i(x) = <phi(x)| Z_i |phi(x)>,   i = 0 .. n-1

``R_l = RY(a_l0) x ... x RY(a_l,n-1)`` with angles ``a_li`` drawn uniformly in ``[0, 2 pi)``, and
``C_l`` a CNOT ladder along a random order ``pi_l`` of the qubits: ``CNOT(pi_l(0) -> pi_l(1))``,
``CNOT(pi_l(1) -> pi_l(2))``, ... (``n - 1`` CNOTs, so every layer entangles all the qubits).
``L`` is ``layers`` (default 2). The angles and orders are drawn once, from ``circuit_seed`` or
(by default) from torch's global generator, so ``torch.manual_seed`` fixes them; they are buffers
(``circuit_angles``, ``circuit_order``) in the ``state_dict``, so a checkpoint reproduces the
circuit. RY and CNOT are real, so every amplitude is real (and RY with CNOT are universal for
real, orthogonal circuits). The same circuit ``U`` is used for every channel and every position:
it is a bank of ``n`` fixed quantum filters, as in the paper.

The ``n C_in`` expectations of a position, channel-major (feature ``c n + i`` is ``z_i`` of
channel ``c``), are mapped to the ``C_out`` output channels by a trainable classical ``1 x 1``
mixing, ``y_o = sum_f W_of z_f + b_o``. **Nothing quantum is trained**: the trainable parameters
are ``W`` (``C_out x n C_in``) and ``b`` (``C_out``), ``n C_in C_out + C_out`` numbers, exactly
the count of the ``nn.Conv2d`` it replaces (and its initialisation: uniform in ``+-1/sqrt(n C_in)``).

:class:`TrainableQuanvolution` has the same encoding and readout, with a trainable circuit:
``depth`` layers (default 2) of trainable ``RY(w_li)`` on every qubit, each followed by the CNOT
ring ``(0, 1), (1, 2), ..., (n - 1, 0)`` (one CNOT for two qubits, none for one): PennyLane's
``BasicEntanglerLayers(w, rotation=qml.RY)``. Angles start uniform in ``[0, 2 pi)``. Parameters:
``depth n`` (quantum, trained) ``+ n C_in C_out + C_out`` (the classical mixing).

Qubits: ``n = k_h k_w``, one per pixel of the kernel (9 for 3x3, 4 for 2x2, 25 for 5x5). The
layers simulate at most :data:`MAX_QUANVOLUTION_QUBITS` = 10, qcreep's simulator limit
(:data:`qcreep.sim.paulis.MAX_QUBITS`): kernels up to 3x3, 2x4, 2x5 and 1x10 fit. Past it the
costs grow too fast: each patch's state has ``2^n`` amplitudes and costs
``O(2^n 2^(n/2))`` operations per layer, and the dense matrix ``M`` below, which the unitarity
check, the export and the hardware models use, has ``4^n`` entries (1M at 10 qubits, 16M at
12). :meth:`qubits_for` and :meth:`fits` say so before anything is built, and a larger kernel
(3x4: 12 qubits, 5x5: 25) is refused with that reason.
``qcreep.creep`` still fills such a slot with another quantum layer of its kind (the flipped
quanvolution needs 3 qubits for 5x5).

The fast path uses the structure, and runs the circuit on the states of all patches of all images
at once (``F.unfold`` gives the patches), with no Python loop over samples or patches. The encoded
state is a product, built as a balanced tree of batched outer products of the one-qubit states
``(cos(theta/2), sin(theta/2))``. The first rotation layer ``R_1`` acts on that product state
qubit by qubit, and ``RY(a) RY(pi x) = RY(pi x + a)``, so it is folded into the encoding angles.
Each CNOT block is a permutation of the basis states, applied as a gather (its backward the inverse
gather). Each later rotation layer is a Kronecker product ``A x B`` of the RYs on the first
``n // 2`` qubits and on the rest, so with the state as a ``2^(n//2) x 2^(n - n//2)`` matrix ``S``
it is ``A S B^T``: ``O(2^n (2^(n//2) + 2^(n - n//2)))`` per patch and layer (24,576 multiply-adds
for 9 qubits) instead of the ``4^n`` (262,144) of a dense ``2^n x 2^n`` matrix. The last CNOT block
is moved onto the readout: ``z = |phi|^2 S`` with the rows of ``S`` permuted, ``S_ji = 1 - 2
bit_i(j)`` the sign of ``Z_i`` on basis state ``j``. The same circuit as one real orthogonal
matrix, ``M = C_L R_L ... C_2 R_2 C_1`` (:meth:`unitary_rest`, built gate by gate from the
identity), serves the unitarity check, the export and the hardware models. :meth:`forward_reference`
simulates each patch's circuit gate by gate (:mod:`qcreep.sim.program`), the first layer unfolded.

What the features are: the encoded density matrix is ``prod_p (I + cos(pi x_p) Z + sin(pi x_p) X) / 2``
and ``z_i = tr(Z_i U rho U^T)`` is linear in each factor, so each ``z_i`` is a fixed, bounded
(``[-1, 1]``), multilinear trigonometric polynomial

    z_i(x) = sum_{alpha in {0,1,2}^n} c_{i,alpha} prod_p g_{alpha_p}(x_p),   g_0 = 1, g_1 = cos(pi .), g_2 = sin(pi .)

with coefficients fixed by the circuit (trained, for the trainable circuit; its first layer
shifts the pixels' phases). The twins live in that same function space.

:class:`QuanvolutionTwin` replaces the circuit by fixed random Fourier features of the patch,

    u_i(x) = (1 / L) sum_{r=1..L} cos(pi s_ri . x + phi_ri),   s_ri in {-1, 0, 1}^n,  phi_ri in [0, 2 pi)

(``s`` and ``phi`` drawn once from the seed, buffers, not trained; a zero ``s_ri`` gets a 1 at
pixel ``i``). ``cos(pi s . x + phi)`` with integer frequencies in ``{-1, 0, 1}`` expands, by the
angle-addition formulas, into exactly the monomials ``prod_p g_{alpha_p}(x_p)`` above, and is
bounded in ``[-1, 1]``: the same class of map as ``z_i``, with ``L`` modes per feature where the
circuit combines up to ``3^n``. The same mixing follows: parameter count ``n C_in C_out + C_out``,
equal to :class:`Quanvolution`'s.

:class:`TrainableQuanvolutionTwin` is the same map with the phases ``phi`` (``depth x n``)
trainable, ``depth`` modes per feature: ``depth n + n C_in C_out + C_out`` parameters, equal to
:class:`TrainableQuanvolution`'s. The twins take any kernel size (they are classical and cost
``O(L n^2)`` per patch).

Registered names (conv slots): ``quanvolution``, ``trainable_quanvolution`` (quantum), and their
twins ``quanvolution_twin``, ``trainable_quanvolution_twin``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from qcreep.checks import check_int
from qcreep.errors import QcreepError
from qcreep.layers.base import QuantumLayer
from qcreep.layers.registry import register_layer
from qcreep.sim.program import Circuit, Gate
from qcreep.slots import as_pair

#: The most qubits (pixels per patch) the quanvolution layers simulate (a 2x5 kernel; 3x3 takes 9).
MAX_QUANVOLUTION_QUBITS = 10
#: Default layers of the fixed random circuit (:class:`Quanvolution`).
DEFAULT_LAYERS = 2
#: Default trainable entangling layers (:class:`TrainableQuanvolution`).
DEFAULT_DEPTH = 2


def quanvolution_qubits(kernel_size) -> int:
    """``n = k_h k_w``: one qubit per pixel of the kernel.

    Example:
        >>> [quanvolution_qubits(k) for k in (1, 2, 3, (3, 4), 5)]
        [1, 4, 9, 12, 25]
    """
    kh, kw = as_pair(kernel_size)
    return kh * kw


def ring_pairs(width: int) -> list[tuple[int, int]]:
    """The CNOT ring of ``BasicEntanglerLayers``: ``(i, i + 1 mod n)``; one CNOT for two qubits, none for one.

    Example:
        >>> ring_pairs(1), ring_pairs(2), ring_pairs(3)
        ([], [(0, 1)], [(0, 1), (1, 2), (2, 0)])
    """
    if width < 2:
        return []
    if width == 2:
        return [(0, 1)]
    return [(i, (i + 1) % width) for i in range(width)]


def ladder_pairs(order) -> list[tuple[int, int]]:
    """The CNOT ladder along an order of the qubits: ``(order[0], order[1]), (order[1], order[2]), ...``."""
    order = [int(q) for q in order]
    return list(zip(order[:-1], order[1:]))


def _source_index(width: int, pairs, device=None) -> torch.Tensor:
    """``source`` with ``(C v)[k] = v[source[k]]`` for the CNOTs ``pairs`` applied in order (``C`` a permutation).

    ``C^{-1} |k> = |source[k]>``: the CNOTs (each its own inverse) applied to the bits of ``k`` in
    reverse order. Qubit 0 is the most significant bit.
    """
    index = torch.arange(2**width, device=device)
    bits = [(index >> (width - 1 - q)) & 1 for q in range(width)]
    for control, target in reversed(list(pairs)):
        bits[target] = bits[target] ^ bits[control]
    return sum(b << (width - 1 - q) for q, b in enumerate(bits)) if width else index


def _ry(angle: torch.Tensor) -> torch.Tensor:
    """``(..., 2, 2)`` real ``RY(angle) = [[cos a/2, -sin a/2], [sin a/2, cos a/2]]``."""
    c, s = torch.cos(angle / 2), torch.sin(angle / 2)
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


def _cnot() -> torch.Tensor:
    return torch.eye(4, dtype=torch.complex128)[[0, 1, 3, 2]]


def product_state(theta: torch.Tensor) -> torch.Tensor:
    """``(..., 2^n)`` real states ``RY(theta_0)|0> x ... x RY(theta_{n-1})|0>`` for angles ``(..., n)``.

    Qubit 0 is the most significant bit. The one-qubit states ``(cos(theta/2), sin(theta/2))`` are
    joined pairwise, as a balanced tree of batched outer products (``ceil(log2 n)`` rounds, each a
    batched matrix product of a column by a row), so the backward pass is matrix products too
    rather than strided reductions over broadcast axes.
    """
    half = theta / 2
    parts = list(torch.stack((torch.cos(half), torch.sin(half)), -1).unbind(-2))
    while len(parts) > 1:
        joined = [torch.matmul(a.unsqueeze(-1), b.unsqueeze(-2)).flatten(-2) for a, b in zip(parts[::2], parts[1::2])]
        parts = joined + parts[len(joined) * 2:]
    return parts[0]


class _Permute(torch.autograd.Function):
    """``v[..., source]`` for a permutation ``source``, with the backward as the inverse gather (not a scatter)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(v, source, inverse):
        return v[..., source]

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[2])

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return grad[..., inverse], None, None


def _permute(v: torch.Tensor, source: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``(C v)`` on the last axis for the basis permutation ``C`` with ``(C v)[k] = v[source[k]]``."""
    return _Permute.apply(v, source, inverse)


def _ry_kron(angles: torch.Tensor) -> torch.Tensor:
    """``(2^m, 2^m)``: ``RY(angles_0) x ... x RY(angles_{m-1})`` for ``m`` angles (``1 x 1`` identity for none)."""
    out = torch.ones(1, 1, dtype=angles.dtype, device=angles.device)
    for gate in _ry(angles).unbind(0):
        out = (out[:, None, :, None] * gate[None, :, None, :]).flatten(2).flatten(0, 1)
    return out


def _apply_ry_states(states: torch.Tensor, angles: torch.Tensor, width: int) -> torch.Tensor:
    """``R`` applied to states on the last axis (``(..., 2^n)``), ``R = RY(angles_0) x ... x RY(angles_{n-1})``.

    ``R = A x B`` with ``A`` on the first ``n // 2`` qubits and ``B`` on the rest, so with the state
    as a ``2^(n//2) x 2^(n - n//2)`` matrix ``S`` the result is ``A S B^T``: two matrix products of
    ``O(2^n (2^(n//2) + 2^(n - n//2)))`` per state instead of one of ``O(4^n)``.
    """
    first = width // 2
    left, right = _ry_kron(angles[:first]), _ry_kron(angles[first:])
    grid = states.unflatten(-1, (2**first, 2 ** (width - first)))
    return torch.matmul(torch.matmul(left, grid), right.T).flatten(-2)


def z_signs(width: int, dtype=None, device=None) -> torch.Tensor:
    """``(2^n, n)``: ``S_ji = 1 - 2 bit_i(j)``, the eigenvalue of ``Z_i`` on basis state ``j``."""
    index = torch.arange(2**width, device=device)
    return torch.stack([1 - 2 * ((index >> (width - 1 - q)) & 1) for q in range(width)], -1).to(dtype)


def _apply_ry_layer(rows: torch.Tensor, angles: torch.Tensor, width: int) -> torch.Tensor:
    """``R rows`` for ``R = RY(angles_0) x ... x RY(angles_{n-1})`` acting on axis -2 of ``rows`` (``(..., 2^n, K)``).

    ``angles`` is ``(..., n)`` with leading dimensions that broadcast against those of ``rows``. Each
    RY mixes the two halves of its qubit's axis: ``(v0, v1) -> (c v0 - s v1, s v0 + c v1)``.
    """
    c, s = torch.cos(angles / 2), torch.sin(angles / 2)
    for q in range(width):
        v = rows.unflatten(-2, (2**q, 2, 2 ** (width - 1 - q)))  # (..., a, 2, b, K)
        v0, v1 = v.select(-3, 0), v.select(-3, 1)
        cq, sq = c[..., q, None, None, None], s[..., q, None, None, None]
        rows = torch.stack((cq * v0 - sq * v1, sq * v0 + cq * v1), -3).flatten(-4, -2)
    return rows


def _pair_of(owner: str, what: str, value, minimum: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise QcreepError(f"{owner} {what} must be an integer or a pair of integers, got {value!r}")
        pair = (value[0], value[1])
    else:
        pair = (value, value)
    return tuple(check_int(v, f"{owner} {what}", minimum) for v in pair)


def _one(pair):
    return pair[0] if pair[0] == pair[1] else pair


def _float_dtype(owner: str, dtype) -> torch.dtype:
    dtype = dtype or torch.get_default_dtype()
    if dtype not in (torch.float32, torch.float64):
        raise QcreepError(f"{owner} takes dtype float32 or float64, got {dtype}")
    return dtype


class _ConvPatches:
    """Shared by the four layers: the conv geometry, the input checks, the patches and the 1x1 mixing."""

    def _init_conv(self, in_channels, out_channels, kernel_size, stride, padding, dilation, dtype, device):
        owner = type(self).__name__
        self.in_channels = check_int(in_channels, f"{owner} in_channels", 1)
        self.out_channels = check_int(out_channels, f"{owner} out_channels", 1)
        self.kernel_hw = _pair_of(owner, "kernel_size", kernel_size, 1)
        self._stride = _pair_of(owner, "stride", stride, 1)
        self._padding = _pair_of(owner, "padding", padding, 0)
        self._dilation = _pair_of(owner, "dilation", dilation, 1)
        self.width = quanvolution_qubits(self.kernel_hw)
        dtype = _float_dtype(owner, dtype)
        features = self.width * self.in_channels
        bound = 1 / math.sqrt(features)  # nn.Conv2d's default initialisation, fan-in n C_in
        self.mix_weight = nn.Parameter(torch.empty(out_channels, features, dtype=dtype, device=device)
                                       .uniform_(-bound, bound))
        self.mix_bias = nn.Parameter(torch.empty(out_channels, dtype=dtype, device=device).uniform_(-bound, bound))

    kernel_size = property(lambda self: _one(self.kernel_hw))
    stride = property(lambda self: _one(self._stride))
    padding = property(lambda self: _one(self._padding))
    dilation = property(lambda self: _one(self._dilation))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def output_hw(self, height: int, width: int) -> tuple[int, int]:
        """``(H', W')`` for an input of ``height x width``, as ``nn.Conv2d``."""
        return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in
                     zip((height, width), self.kernel_hw, self._stride, self._padding, self._dilation))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise QcreepError(f"{name} takes a torch.Tensor, got {type(x).__name__}")
        if x.is_complex():
            raise QcreepError(f"{name} takes real input; got a complex tensor")
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise QcreepError(f"{name} expects input (B, {self.in_channels}, H, W) or "
                              f"({self.in_channels}, H, W), got {tuple(x.shape)}")
        if min(self.output_hw(*x.shape[-2:])) < 1:
            kh, kw = self.kernel_hw
            dilated = "" if self._dilation == (1, 1) else f" (dilation {self.dilation})"
            raise QcreepError(f"{name} needs images of at least {kh}x{kw}{dilated} after padding, "
                              f"got {tuple(x.shape)}")
        dtype = self.mix_weight.dtype
        return x.to(dtype) if x.dtype != dtype else x

    def _patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, P, C_in, n)`` pixels of the patches of ``(B, C_in, H, W)`` (row-major in a patch), and ``(H', W')``."""
        batch = x.shape[0]
        h_out, w_out = self.output_hw(*x.shape[-2:])
        cols = F.unfold(x, self.kernel_hw, dilation=self._dilation, padding=self._padding,
                        stride=self._stride)  # (B, C*n, P), channel-major, row-major within a patch
        return cols.reshape(batch, self.in_channels, self.width, h_out * w_out).permute(0, 3, 1, 2), (h_out, w_out)

    def _mix(self, features: torch.Tensor, batch: int, hw: tuple[int, int]) -> torch.Tensor:
        """``(B, C_out, H', W')`` from ``(B, P, C_in, n)`` features: the trainable 1x1 mixing."""
        y = features.flatten(-2) @ self.mix_weight.T + self.mix_bias  # (B, P, C_out)
        return y.permute(0, 2, 1).reshape(batch, self.out_channels, *hw)

    def _run(self, x: torch.Tensor, features) -> torch.Tensor:
        x = self._check_input(x)
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        patches, hw = self._patches(x)
        out = self._mix(features(patches), x.shape[0], hw)
        return out[0] if unbatched else out

    def _conv_repr(self) -> str:
        conv = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        dil = f", dilation={self.dilation}" if self._dilation != (1, 1) else ""
        return f"{self.in_channels}, {self.out_channels}, {conv}{dil}"


class _QuanvolutionBase(_ConvPatches, QuantumLayer):
    """The quantum quanvolution: RY(pi x) encoding of each patch, a real circuit, ``<Z_i>``, 1x1 mixing.

    Subclasses give the rotation angles (``(L, n)``: :meth:`rotation_angles`) and the CNOTs of each
    layer (:meth:`layer_pairs`).
    """

    slot_kind = "conv"

    def _init_quantum(self, in_channels, out_channels, kernel_size, stride, padding, dilation, dtype, device):
        owner = type(self).__name__
        kh, kw = _pair_of(owner, "kernel_size", kernel_size, 1)
        n = kh * kw
        if n > MAX_QUANVOLUTION_QUBITS:
            raise QcreepError(f"{owner} with a {kh}x{kw} kernel needs {n} qubits (one per pixel); it simulates at "
                              f"most {MAX_QUANVOLUTION_QUBITS}")
        self._init_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, dtype, device)
        self.n_qubits = n
        self.register_buffer("_signs", z_signs(n, self.mix_weight.dtype, device), persistent=False)

    # -- what the subclasses give ---------------------------------------------------------------

    def rotation_angles(self) -> torch.Tensor:
        raise NotImplementedError

    def layer_pairs(self) -> list[list[tuple[int, int]]]:
        raise NotImplementedError

    # -- the declared interface -----------------------------------------------------------------

    @classmethod
    def qubits_for(cls, slot) -> int:
        """``n = k_h k_w``, one qubit per pixel of the slot's kernel (9 for 3x3, 25 for 5x5)."""
        return quanvolution_qubits(slot.kernel_size)

    @classmethod
    def fits(cls, slot, max_qubits: int | None = None) -> str | None:
        """None for a conv slot of at most ``min(max_qubits, 10)`` kernel pixels; else why not (one line)."""
        kind = getattr(slot, "kind", None)
        if kind != "conv":
            return f"fills conv slots, not {kind} slots"
        n = cls.qubits_for(slot)
        limit = MAX_QUANVOLUTION_QUBITS if max_qubits is None else min(int(max_qubits), MAX_QUANVOLUTION_QUBITS)
        if n > limit:
            kh, kw = slot.kernel_hw
            return f"needs {n} qubits (one per pixel of the {kh}x{kw} kernel), more than the limit of {limit}"
        return None

    # -- the circuit as matrices ----------------------------------------------------------------

    def _sources(self, device) -> list[torch.Tensor]:
        return [_source_index(self.n_qubits, pairs, device) for pairs in self.layer_pairs()]

    def _rest(self, rows: torch.Tensor, angles: torch.Tensor, sources) -> torch.Tensor:
        """``M rows`` on axis -2, ``M = C_L R_L ... C_2 R_2 C_1`` (``angles`` ``(..., L, n)``; ``R_1`` is folded)."""
        rows = rows[..., sources[0], :]
        for layer in range(1, len(sources)):
            rows = _apply_ry_layer(rows, angles[..., layer, :], self.n_qubits)
            rows = rows[..., sources[layer], :]
        return rows

    def unitary_rest(self) -> torch.Tensor:
        """``M = C_L R_L ... C_2 R_2 C_1``, the real ``(2^n, 2^n)`` orthogonal matrix applied after the encoding
        (the first rotation layer ``R_1`` is folded into the encoding angles)."""
        angles = self.rotation_angles()
        eye = torch.eye(2**self.n_qubits, dtype=angles.dtype, device=angles.device)
        return self._rest(eye, angles, self._sources(angles.device))

    def unitary(self) -> torch.Tensor:
        """The whole circuit ``U = C_L R_L ... C_1 R_1`` as a real ``(2^n, 2^n)`` matrix."""
        angles = self.rotation_angles()
        eye = torch.eye(2**self.n_qubits, dtype=angles.dtype, device=angles.device)
        return self._rest(_apply_ry_layer(eye, angles[0], self.n_qubits), angles, self._sources(angles.device))

    def _permutations(self, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(source, inverse)`` of each layer's CNOT permutation, on ``device``."""
        out = []
        for source in self._sources(device):
            inverse = torch.empty_like(source)
            inverse[source] = torch.arange(source.numel(), device=source.device)
            out.append((source, inverse))
        return out

    def _evolve(self, patches: torch.Tensor):
        """The final states before the last CNOT block, and that block's ``(source, inverse)``.

        The circuit on the states themselves, layer by layer: the product state with ``R_1`` folded into
        the encoding, then ``C_1``, ``R_2``, ``C_2``, ..., ``R_L`` (each ``C`` a gather, each ``R`` two
        small matrix products, :func:`_apply_ry_states`); ``C_L`` is left to the caller.
        """
        angles = self.rotation_angles()
        perms = self._permutations(patches.device)
        rows = product_state(math.pi * patches + angles[0])  # R_1 folded: RY(a) RY(pi x) = RY(pi x + a)
        for layer in range(1, len(perms)):
            rows = _apply_ry_states(_permute(rows, *perms[layer - 1]), angles[layer], self.n_qubits)
        return rows, perms[-1]

    def states(self, patches: torch.Tensor) -> torch.Tensor:
        """``(..., 2^n)`` real final states ``U |psi(x)>`` for pixel values ``(..., n)``."""
        rows, last = self._evolve(patches)
        return _permute(rows, *last)

    def expectations(self, patches: torch.Tensor) -> torch.Tensor:
        """``(..., n)``: ``<Z_i>`` of the circuit for pixel values ``(..., n)``, from ``|phi|^2 S``.

        The last CNOT block permutes the basis, so it is applied to the signs instead of the states:
        ``sum_k phi_{source(k)}^2 S_k = sum_j phi_j^2 S_{inverse(j)}``.
        """
        rows, (_, inverse) = self._evolve(patches)
        return (rows * rows) @ self._signs[inverse]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, self.expectations)

    # -- the reference: circuits for one input --------------------------------------------------

    def _one_input(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x).detach()
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3:
            raise QcreepError(f"{type(self).__name__}.circuits takes one image ({self.in_channels}, H, W), "
                              f"got {tuple(x.shape)}")
        return self._check_input(x).to(torch.float64)

    def circuits(self, x: torch.Tensor) -> list[Circuit]:
        """One circuit per output position (row-major) and input channel ``c`` (in that order): ``RY(pi x_p)``
        on qubit ``p`` for the patch's pixels, then per layer ``RY(a_li)`` on every qubit and its CNOTs,
        measuring the basis probabilities (``<Z_i> = sum_j p_j S_ji``).

        ``x`` is one image ``(C_in, H, W)`` (or ``(1, C_in, H, W)``); gates in complex128 (all real).
        """
        x = self._one_input(x)
        patches, (h_out, w_out) = self._patches(x[None])
        patches = patches[0]  # (P, C, n)
        n = self.n_qubits
        angles = self.rotation_angles().detach().to(torch.float64)
        cnot = _cnot()
        body = []
        for layer, pairs in enumerate(self.layer_pairs()):
            body += [Gate(f"RY(a{layer},{i})", (i,), _ry(angles[layer, i]).to(torch.complex128)) for i in range(n)]
            body += [Gate("CNOT", pair, cnot) for pair in pairs]
        out = []
        for pos in range(h_out * w_out):
            for c in range(self.in_channels):
                encode = [Gate(f"RY(pi x{p})", (p,), _ry(math.pi * patches[pos, c, p]).to(torch.complex128))
                          for p in range(n)]
                out.append(Circuit(n, encode + body, label=type(self).__name__,
                                   metadata={"position": (pos // w_out, pos % w_out), "in_channel": c,
                                             "measures": "probabilities; <Z_i> = sum_j p_j (1 - 2 bit_i(j))"}))
        return out

    def from_measurements(self, x: torch.Tensor, values: list) -> torch.Tensor:
        """``(C_out, H', W')``: the mixing of the ``<Z_i>`` read from the measured probabilities of :meth:`circuits`."""
        x = self._one_input(x)
        h_out, w_out = self.output_hw(*x.shape[-2:])
        probs = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values])
        z = probs @ z_signs(self.n_qubits, torch.float64)  # (P C, n)
        z = z.reshape(h_out * w_out, self.in_channels * self.n_qubits)
        with torch.no_grad():
            y = z @ self.mix_weight.double().cpu().T + self.mix_bias.double().cpu()
        return y.T.reshape(self.out_channels, h_out, w_out)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Each patch's circuit on its own, gate by gate (:mod:`qcreep.sim.program`; slow, no gradients)."""
        x = self._check_input(x)
        unbatched = x.dim() == 3
        batch = x.unsqueeze(0) if unbatched else x
        rows = [self.from_measurements(img, [c.measured() for c in self.circuits(img)]) for img in batch]
        out = torch.stack(rows).to(dtype=x.dtype, device=x.device)
        return out[0] if unbatched else out

    @torch.no_grad()
    def physicality(self, x: torch.Tensor | None = None) -> dict:
        """``|M^T M - I|`` of the circuit after the encoding, and (given inputs) the norms of the final states."""
        m = self.unitary_rest()
        report = {"max_unitarity_error": float((m.T @ m - torch.eye(m.shape[0], dtype=m.dtype,
                                                                    device=m.device)).abs().max())}
        if x is not None:
            x = self._check_input(x)
            patches, _ = self._patches(x if x.dim() == 4 else x[None])
            norms = self.states(patches).norm(dim=-1)
            report.update(min_state_norm=float(norms.min()), max_state_norm=float(norms.max()))
        return report

    def _ansatz_angles(self, values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ansatz(self, x: torch.Tensor):
        """``(n_params, state_fn)``: the state of ``circuits(x)[0]`` (first position, channel 0) as a function of
        the circuit parameters, batched (the folded encoding, then ``M`` applied to the states), complex128."""
        x = self._one_input(x)
        pixels = self._patches(x[None])[0][0, 0, 0]  # (n,)
        sources = self._sources(None)
        n_params = sum(self.get_parameter(name).numel() for name in self.circuit_parameters)

        def state_fn(values: torch.Tensor) -> torch.Tensor:
            angles = self._ansatz_angles(values.to(torch.float64).cpu())  # (B, L, n)
            psi = product_state(math.pi * pixels + angles[:, 0])[..., None]  # (B, 2^n, 1)
            return self._rest(psi, angles, sources)[..., 0].to(torch.complex128)

        return n_params, state_fn


class Quanvolution(_QuanvolutionBase):
    """Henderson et al.'s quanvolution with a fixed random circuit (see the module docstring).

    ``(B, C_in, H, W) -> (B, C_out, H', W')`` as ``nn.Conv2d(C_in, C_out, kernel_size, stride,
    padding, dilation)``. Each ``k_h x k_w`` patch of each channel is encoded with ``RY(pi x)`` on
    ``n = k_h k_w`` qubits, the fixed circuit ``U`` (``layers`` layers of random ``RY`` angles and a
    CNOT ladder along a random qubit order) is applied, ``<Z_i>`` is measured on every qubit, and a
    trainable 1x1 mixing maps the ``n C_in`` expectations to ``C_out`` channels.

    Parameters (all classical): ``mix_weight`` ``(C_out, n C_in)`` and ``mix_bias`` ``(C_out,)``,
    ``n C_in C_out + C_out`` in all, the count of the ``nn.Conv2d``. The circuit is fixed: buffers
    ``circuit_angles`` ``(L, n)`` and ``circuit_order`` ``(L, n)``, in the ``state_dict``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as ``nn.Conv2d``.
        layers: the random circuit's layers ``L`` (default 2).
        circuit_seed: the seed of the random circuit; None (default) draws it from torch's global
            generator, so ``torch.manual_seed`` fixes it.

    Example:
        >>> import torch
        >>> from qcreep.slots import ConvSlot
        >>> conv = Quanvolution(1, 4, kernel_size=2, circuit_seed=0)
        >>> conv(torch.randn(3, 1, 8, 8)).shape, conv.n_qubits, conv.num_parameters
        (torch.Size([3, 4, 7, 7]), 4, 20)
        >>> Quanvolution.fits(ConvSlot(1, 4, 5))
        'needs 25 qubits (one per pixel of the 5x5 kernel), more than the limit of 10'
    """

    circuit_parameters = ()

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1, *,
                 layers: int = DEFAULT_LAYERS, circuit_seed: int | None = None, dtype=None, device=None):
        super().__init__()
        check_int(layers, "Quanvolution layers", 1)
        if circuit_seed is not None:
            check_int(circuit_seed, "Quanvolution circuit_seed", 0)
        n = quanvolution_qubits(_pair_of("Quanvolution", "kernel_size", kernel_size, 1))
        self.layers, self.circuit_seed = layers, circuit_seed
        generator = torch.Generator().manual_seed(circuit_seed) if circuit_seed is not None else None
        # the circuit first, then the mixing: both from the global generator unless a circuit_seed is given
        angles = 2 * math.pi * torch.rand(layers, n, dtype=torch.float64, generator=generator)
        order = torch.stack([torch.randperm(n, generator=generator) for _ in range(layers)])
        self._init_quantum(in_channels, out_channels, kernel_size, stride, padding, dilation, dtype, device)
        self.register_buffer("circuit_angles", angles.to(dtype=self.mix_weight.dtype, device=device))
        self.register_buffer("circuit_order", order.to(device))

    def rotation_angles(self) -> torch.Tensor:
        return self.circuit_angles

    def layer_pairs(self) -> list[list[tuple[int, int]]]:
        return [ladder_pairs(order) for order in self.circuit_order.tolist()]

    def _ansatz_angles(self, values: torch.Tensor) -> torch.Tensor:
        angles = self.circuit_angles.detach().to(torch.float64).cpu()
        return angles.expand(values.shape[0], *angles.shape)

    @classmethod
    def scan_slot(cls, n_qubits: int):
        """None: nothing in the circuit is trained, so there is no circuit-parameter gradient to scan."""
        return None

    def extra_repr(self) -> str:
        seed = f", circuit_seed={self.circuit_seed}" if self.circuit_seed is not None else ""
        return (f"{self._conv_repr()}, qubits={self.n_qubits}, layers={self.layers}{seed}, "
                f"params={self.num_parameters}")


class TrainableQuanvolution(_QuanvolutionBase):
    """Quanvolution with a trainable circuit: ``BasicEntanglerLayers`` of RY (see the module docstring).

    As :class:`Quanvolution`, with ``U(w) = prod_{l=D..1} C R(w_l)``: ``depth`` layers of trainable
    ``RY(w_li)`` on every qubit, each followed by the CNOT ring ``(0,1), (1,2), ..., (n-1,0)`` (one
    CNOT for two qubits, none for one). The same circuit serves every channel and position.

    Parameters: ``weights`` ``(depth, n)`` (the circuit's angles, uniform in ``[0, 2 pi)``),
    ``mix_weight`` ``(C_out, n C_in)`` and ``mix_bias`` ``(C_out,)``: ``depth n + n C_in C_out + C_out``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as ``nn.Conv2d``.
        depth: the trainable layers ``D`` (default 2).

    Example:
        >>> import torch
        >>> conv = TrainableQuanvolution(2, 3, kernel_size=3, padding=1)
        >>> conv(torch.randn(2, 2, 6, 6)).shape, conv.n_qubits, conv.num_parameters  # 2*9 + 9*2*3 + 3
        (torch.Size([2, 3, 6, 6]), 9, 75)
    """

    circuit_parameters = ("weights",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1, *,
                 depth: int = DEFAULT_DEPTH, dtype=None, device=None):
        super().__init__()
        check_int(depth, "TrainableQuanvolution depth", 1)
        self.depth = depth
        self._init_quantum(in_channels, out_channels, kernel_size, stride, padding, dilation, dtype, device)
        self.weights = nn.Parameter(2 * math.pi * torch.rand(depth, self.n_qubits, dtype=self.mix_weight.dtype,
                                                             device=device))

    def rotation_angles(self) -> torch.Tensor:
        return self.weights

    def layer_pairs(self) -> list[list[tuple[int, int]]]:
        return [ring_pairs(self.n_qubits)] * self.depth

    def _ansatz_angles(self, values: torch.Tensor) -> torch.Tensor:
        return values.reshape(values.shape[0], self.depth, self.n_qubits)

    @classmethod
    def scan_slot(cls, n_qubits: int):
        """A one-channel slot whose ``k_h x k_w`` kernel has ``n_qubits`` pixels, as square as can be (2x3 for 6)."""
        from qcreep.slots import ConvSlot

        kh = max(d for d in range(1, math.isqrt(n_qubits) + 1) if n_qubits % d == 0)
        return ConvSlot(1, 1, (kh, n_qubits // kh)), {}

    def extra_repr(self) -> str:
        return f"{self._conv_repr()}, qubits={self.n_qubits}, depth={self.depth}, params={self.num_parameters}"


# ============================================================================ classical twins


class _FourierTwin(_ConvPatches, nn.Module):
    """``u_i(x) = (1 / L) sum_r cos(pi s_ri . x + phi_ri)`` per patch and channel, then the 1x1 mixing."""

    def _init_twin(self, in_channels, out_channels, kernel_size, stride, padding, dilation, modes, circuit_seed,
                   dtype, device):
        owner = type(self).__name__
        if circuit_seed is not None:
            check_int(circuit_seed, f"{owner} circuit_seed", 0)
        n = quanvolution_qubits(_pair_of(owner, "kernel_size", kernel_size, 1))
        generator = torch.Generator().manual_seed(circuit_seed) if circuit_seed is not None else None
        freq = torch.randint(-1, 2, (modes, n, n), generator=generator)
        empty = (freq == 0).all(-1)  # a zero frequency would be a constant feature: give it pixel i
        freq[empty.nonzero(as_tuple=True) + (empty.nonzero()[:, 1],)] = 1
        phases = 2 * math.pi * torch.rand(modes, n, dtype=torch.float64, generator=generator)
        self._init_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, dtype, device)
        self.modes, self.circuit_seed = modes, circuit_seed
        self.register_buffer("frequencies", freq.to(dtype=self.mix_weight.dtype, device=device))
        return phases.to(dtype=self.mix_weight.dtype, device=device)

    def features(self, patches: torch.Tensor) -> torch.Tensor:
        """``(..., n)`` features ``u_i`` of pixel values ``(..., n)``, bounded in ``[-1, 1]``."""
        n = self.width
        t = patches @ self.frequencies.reshape(self.modes * n, n).T  # (..., L n): s_ri . x
        t = math.pi * t.unflatten(-1, (self.modes, n)) + self.phases
        return torch.cos(t).mean(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, self.features)

    def extra_repr(self) -> str:
        return f"{self._conv_repr()}, modes={self.modes}, params={self.num_parameters}"


class QuanvolutionTwin(_FourierTwin):
    """The classical twin of :class:`Quanvolution`: fixed random Fourier features of each patch (module docstring).

    ``u_i(x) = (1 / L) sum_r cos(pi s_ri . x + phi_ri)`` with ``s_ri in {-1, 0, 1}^n`` and phases
    ``phi`` fixed (buffers ``frequencies`` ``(L, n, n)`` and ``phases`` ``(L, n)``, drawn from
    ``circuit_seed`` or torch's global generator), the same class of bounded multilinear
    trigonometric polynomial of the pixels as the fixed circuit's ``<Z_i>``; then the same
    trainable 1x1 mixing. Parameters ``n C_in C_out + C_out``, equal to :class:`Quanvolution`'s.

    Example:
        >>> QuanvolutionTwin(3, 8).num_parameters == Quanvolution(3, 8).num_parameters == 9 * 3 * 8 + 8
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1, *,
                 layers: int = DEFAULT_LAYERS, circuit_seed: int | None = None, dtype=None, device=None):
        super().__init__()
        check_int(layers, "QuanvolutionTwin layers", 1)
        phases = self._init_twin(in_channels, out_channels, kernel_size, stride, padding, dilation, layers,
                                 circuit_seed, dtype, device)
        self.register_buffer("phases", phases)


class TrainableQuanvolutionTwin(_FourierTwin):
    """The classical twin of :class:`TrainableQuanvolution`: the Fourier features of :class:`QuanvolutionTwin`
    with ``depth`` modes per feature and trainable phases ``phi`` (``(depth, n)``, uniform in ``[0, 2 pi)``, as
    the circuit's angles). Parameters ``depth n + n C_in C_out + C_out``, equal to :class:`TrainableQuanvolution`'s.

    Example:
        >>> TrainableQuanvolutionTwin(2, 3).num_parameters == TrainableQuanvolution(2, 3).num_parameters
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1, *,
                 depth: int = DEFAULT_DEPTH, circuit_seed: int | None = None, dtype=None, device=None):
        super().__init__()
        check_int(depth, "TrainableQuanvolutionTwin depth", 1)
        phases = self._init_twin(in_channels, out_channels, kernel_size, stride, padding, dilation, depth,
                                 circuit_seed, dtype, device)
        self.phases = nn.Parameter(phases)
        self.depth = depth


# ============================================================================ registration


def _conv_args(slot):
    return slot.in_channels, slot.out_channels, slot.kernel_size, slot.stride, slot.padding, slot.dilation


@register_layer("quanvolution", slot_kind="conv", quantum=True,
                description="Quanvolution (Henderson et al.): RY(pi x) per pixel of each k x k patch, a fixed random "
                            "RY/CNOT circuit, <Z_i>, a trainable 1x1 mixing (k_h k_w qubits, at most 10)",
                qubits=Quanvolution.qubits_for)
def make_quanvolution(slot, *, layers=DEFAULT_LAYERS, circuit_seed=None, dtype=None, device=None):
    return Quanvolution(*_conv_args(slot), layers=layers, circuit_seed=circuit_seed, dtype=dtype, device=device)


@register_layer("trainable_quanvolution", slot_kind="conv", quantum=True,
                description="TrainableQuanvolution: RY(pi x) per pixel, depth x (trainable RY, CNOT ring), <Z_i>, "
                            "a trainable 1x1 mixing (k_h k_w qubits, at most 10)",
                qubits=TrainableQuanvolution.qubits_for)
def make_trainable_quanvolution(slot, *, depth=DEFAULT_DEPTH, dtype=None, device=None):
    return TrainableQuanvolution(*_conv_args(slot), depth=depth, dtype=dtype, device=device)


@register_layer("quanvolution_twin", slot_kind="conv", quantum=False, twin_of="quanvolution",
                description="QuanvolutionTwin: classical twin of quanvolution, fixed random Fourier features "
                            "cos(pi s.x + phi) of each patch, the same 1x1 mixing, parameter count equal")
def make_quanvolution_twin(slot, *, layers=DEFAULT_LAYERS, circuit_seed=None, dtype=None, device=None):
    return QuanvolutionTwin(*_conv_args(slot), layers=layers, circuit_seed=circuit_seed, dtype=dtype, device=device)


@register_layer("trainable_quanvolution_twin", slot_kind="conv", quantum=False, twin_of="trainable_quanvolution",
                description="TrainableQuanvolutionTwin: classical twin of trainable_quanvolution, Fourier features "
                            "of each patch with trainable phases, the same 1x1 mixing, parameter count equal")
def make_trainable_quanvolution_twin(slot, *, depth=DEFAULT_DEPTH, circuit_seed=None, dtype=None, device=None):
    return TrainableQuanvolutionTwin(*_conv_args(slot), depth=depth, circuit_seed=circuit_seed, dtype=dtype,
                                     device=device)
