"""Classical twins: controls for the quantum layers, matched in shape, size and kind of map.

A rung that swaps a classical layer for a quantum one changes three things at once: the kind of
computation, the number of parameters and the shape of the nonlinearity (for example, a bounded
probability readout instead of free logits). A *classical twin* changes only the first. For each
registered quantum layer it is a registered classical layer for the same slot kind with

- the same input and output shapes,
- the same number of trainable parameters for the same options (the contract is within 1%; the
  twins here match exactly, except for re-uploading heads so small that one hidden unit over
  their inputs already exceeds their count),
- the same class of map: linear where the quantum layer is linear, a bounded, probability-like
  readout where the quantum layer's outputs are measured probabilities,
- the same readout and initialisation options, and a design that trains under Adam.

Registered names (slot kind: name, twin of):

- ``conv: conv3x3_twin`` -- :class:`ConvTwin` (:class:`Conv3x3Twin` for 3x3), twin of ``flipped_quanv3x3``;
- ``dense: dense_twin`` -- :class:`DenseTwin`, twin of ``data_reuploading``.

``qcreep.layers.twin_for("data_reuploading", "dense")`` gives ``"dense_twin"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qcreep.checks import check_int
from qcreep.errors import QcreepError
from qcreep.layers.quanv import patch_qubits
from qcreep.layers.registry import register_layer
from qcreep.layers.reupload import DataReUploadingLinear, check_readout

_RMS_EPS = 1e-12


def _check_int(owner: str, name: str, value, low: int) -> int:
    return check_int(value, f"{owner} {name}", low)


def _float_dtype(owner: str, dtype) -> torch.dtype:
    dtype = dtype or torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise QcreepError(f"{owner} takes a real floating dtype (e.g. torch.float32), got {dtype!r}")
    return dtype


def _check_real(owner: str, x: torch.Tensor) -> None:
    if x.is_complex():
        raise QcreepError(f"{owner} takes real input; got a complex tensor")


# ============================================================================ convolution


class ConvTwin(nn.Module):
    r"""Classical twin of the flipped quanvolution: a linear convolution with PSD, trace-bounded kernels.

    The flipped quanvolution (:class:`~qcreep.layers.FlippedQuanv3x3`) is *linear* in its input: it
    is the convolution with kernel ``K_oc = Re(rho_oc)[:3, :3] / C_in``, where ``rho_oc`` is the
    density matrix of a two-qubit pure state built from 15 angles. Each of its kernels is therefore
    the top-left 3x3 block of a real, symmetric, positive semidefinite 4x4 matrix of trace 1, of
    rank at most 2 (``Re(|psi><psi|) = a a^T + b b^T`` for ``psi = a + i b``), divided by ``C_in``.

    The twin is the same kind of linear map, built without quantum mechanics. For each pair
    (output channel ``o``, input channel ``c``) a real 4x4 matrix ``W_oc`` with its last entry
    fixed at 0 (15 free numbers, as the quantum layer has 15 angles) gives

        M_oc = W_oc W_oc^T / ||W_oc||_F^2    (real symmetric PSD, trace 1, any rank up to 4),
        K_oc = M_oc[:3, :3] / C_in,           y = conv2d(x, K) + bias.

    Fixing ``W[3, 3] = 0`` loses no kernel: ``M`` depends on ``W`` only through ``W W^T``, which is
    unchanged by ``W -> W Q`` for any orthogonal ``Q``, and a ``Q`` that turns the last row of
    ``W`` onto the first axis zeroes ``W[3, 3]``. The kernels the twin can reach are the symmetric
    PSD 3x3 matrices of trace at most 1 (over ``C_in``): those of the quantum layer without its
    rank-2 limit. Both layers parametrise their kernels redundantly (15 numbers for 6 independent
    entries), both normalise (unit state, unit trace), so both see the same scale-free geometry.

    For a ``k_h x k_w`` kernel the same holds with ``D = 2^q``, ``q = max(1, ceil(log2 max(k_h,
    k_w)))`` (the quantum layer's qubits): ``W_oc`` is ``D x D`` with its last entry fixed at 0
    (``D^2 - 1`` numbers, the quantum layer's ``4^q - 1`` angles) and ``K_oc = M_oc[:k_h, :k_w] /
    C_in``. :class:`ConvTwin` takes any kernel size, stride, padding and dilation;
    :class:`Conv3x3Twin` is the 3x3 layer.

    Forward is one ``F.conv2d``, as the quantum layer's fast path.

    Parameters (``C_in C_out (D^2 - 1) + C_out``, exactly the quantum layer's count; 15 per pair for 3x3):
        ``factor``: ``(C_out, C_in, D^2 - 1)``, the first entries of each ``W_oc`` in row-major order;
        ``bias``: ``(C_out,)``. Both start standard normal, as the quantum layer's angles and bias
        (the published initialisation).

    Shapes:
        input ``(B, C_in, H, W)`` or ``(C_in, H, W)``; output ``(B, C_out, H', W')`` with
        ``H' = (H + 2 padding - dilation (k_h - 1) - 1) // stride + 1`` (as ``nn.Conv2d``).

    Example:
        >>> import torch
        >>> twin = Conv3x3Twin(1, 32)
        >>> twin.num_parameters  # 15 * 1 * 32 + 32, as FlippedQuanv3x3(1, 32)
        512
        >>> twin(torch.randn(2, 1, 12, 12)).shape
        torch.Size([2, 32, 10, 10])
        >>> k = twin.kernel().detach()[0, 0] * twin.in_channels  # symmetric PSD, trace <= 1
        >>> bool(torch.allclose(k, k.T) and torch.linalg.eigvalsh(k).min() > -1e-6 and k.trace() <= 1)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1, *,
                 dtype=None, device=None):
        super().__init__()
        owner = type(self).__name__
        self.in_channels = _check_int(owner, "in_channels", in_channels, 1)
        self.out_channels = _check_int(owner, "out_channels", out_channels, 1)
        self.kernel_hw = _pair_of(owner, "kernel_size", kernel_size, 1)
        self._stride = _pair_of(owner, "stride", stride, 1)
        self._padding = _pair_of(owner, "padding", padding, 0)
        self._dilation = _pair_of(owner, "dilation", dilation, 1)
        self.side = 2**patch_qubits(self.kernel_hw)
        dtype = _float_dtype(owner, dtype)
        self.factor = nn.Parameter(torch.randn(out_channels, in_channels, self.side**2 - 1, dtype=dtype,
                                               device=device))
        self.bias = nn.Parameter(torch.randn(out_channels, dtype=dtype, device=device))

    stride = property(lambda self: _one(self._stride))
    padding = property(lambda self: _one(self._padding))
    dilation = property(lambda self: _one(self._dilation))
    kernel_size = property(lambda self: _one(self.kernel_hw))

    @property
    def num_parameters(self) -> int:
        return self.factor.numel() + self.bias.numel()

    def factors(self) -> torch.Tensor:
        """The ``(C_out, C_in, D, D)`` matrices ``W_oc`` (last entry 0)."""
        return F.pad(self.factor, (0, 1)).unflatten(-1, (self.side, self.side))

    def kernel(self) -> torch.Tensor:
        """The ``(C_out, C_in, k_h, k_w)`` kernel ``(W W^T / ||W||_F^2)[:k_h, :k_w] / C_in``."""
        kh, kw = self.kernel_hw
        w = self.factors()
        gram = w[..., :kh, :] @ w[..., :kw, :].transpose(-1, -2)  # (W W^T)[:kh, :kw]
        norm = w.square().sum(dim=(-1, -2), keepdim=True)  # ||W||_F^2 = trace(W W^T)
        return gram / (norm * self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        owner = type(self).__name__
        _check_real(owner, x)
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise QcreepError(f"{owner} expects input (B, {self.in_channels}, H, W) or "
                              f"({self.in_channels}, H, W), got {tuple(x.shape)}")
        sizes = [(n + 2 * p - d * (k - 1) - 1) // st + 1 for n, k, st, p, d in
                 zip(x.shape[-2:], self.kernel_hw, self._stride, self._padding, self._dilation)]
        if min(sizes) < 1:
            kh, kw = self.kernel_hw
            raise QcreepError(f"{owner} needs images of at least {kh}x{kw} after padding, got {tuple(x.shape)}")
        x = x.to(self.bias.dtype)
        return F.conv2d(x, self.kernel(), self.bias, stride=self._stride, padding=self._padding,
                        dilation=self._dilation)

    def extra_repr(self) -> str:
        conv = f"kernel_size={self.kernel_size}, " if self.kernel_hw != (3, 3) else ""
        dil = f", dilation={self.dilation}" if self._dilation != (1, 1) else ""
        return (f"{self.in_channels}, {self.out_channels}, {conv}stride={self.stride}, padding={self.padding}{dil}, "
                f"params={self.num_parameters}")


class Conv3x3Twin(ConvTwin):
    """The classical twin of :class:`~qcreep.layers.FlippedQuanv3x3`: a :class:`ConvTwin` with a 3x3 kernel.

    ``Conv3x3Twin(C_in, C_out, stride, padding)``; ``15 C_in C_out + C_out`` parameters.

    Example:
        >>> import torch
        >>> twin = Conv3x3Twin(1, 32)
        >>> twin.num_parameters  # 15 * 1 * 32 + 32, as FlippedQuanv3x3(1, 32)
        512
        >>> twin(torch.randn(2, 1, 12, 12)).shape
        torch.Size([2, 32, 10, 10])
        >>> k = twin.kernel().detach()[0, 0] * twin.in_channels  # symmetric PSD, trace <= 1
        >>> bool(torch.allclose(k, k.T) and torch.linalg.eigvalsh(k).min() > -1e-6 and k.trace() <= 1)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, stride=1, padding=0, *, dilation=1, dtype=None,
                 device=None):
        super().__init__(in_channels, out_channels, 3, stride, padding, dilation, dtype=dtype, device=device)


def _one(pair):
    return pair[0] if pair[0] == pair[1] else pair


def _pair_of(owner: str, what: str, value, minimum: int) -> tuple[int, int]:
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise QcreepError(f"{owner} {what} must be an integer or a pair of integers, got {value!r}")
        return (_check_int(owner, what, value[0], minimum), _check_int(owner, what, value[1], minimum))
    v = _check_int(owner, what, value, minimum)
    return (v, v)


@register_layer("conv3x3_twin", slot_kind="conv", quantum=False, twin_of="flipped_quanv3x3",
                description="ConvTwin: classical twin of flipped_quanv3x3, linear conv with PSD trace-normalised "
                            "kernels, C_in C_out (D^2 - 1) + C_out parameters")
def make_conv3x3_twin(slot, *, angles=None, path=None, solver=None, dtype=None, device=None):
    """Classical twin of ``flipped_quanv3x3``; the quantum-only options are accepted and ignored."""
    if tuple(slot.kernel_hw) == (3, 3):
        return Conv3x3Twin(slot.in_channels, slot.out_channels, slot.stride, slot.padding, dilation=slot.dilation,
                           dtype=dtype, device=device)
    return ConvTwin(slot.in_channels, slot.out_channels, slot.kernel_size, slot.stride, slot.padding, slot.dilation,
                    dtype=dtype, device=device)


# ============================================================================ dense head


@dataclass(frozen=True)
class DenseTwinSizes:
    """The sizes of a :class:`DenseTwin` matched to a re-uploading head.

    ``hidden`` tanh units, ``outcomes`` input-driven outcomes, ``constant_outcomes`` outcomes with
    an input-independent logit; ``params``, the twin's parameter count; ``target``, the quantum
    head's (equal to ``params`` except in the rare case :func:`match_reuploading` describes), and
    ``n_qubits``, the quantum head's register size.
    """

    hidden: int
    outcomes: int
    constant_outcomes: int
    params: int
    target: int
    n_qubits: int


def dense_twin_parameter_count(in_features: int, out_features: int, hidden: int, outcomes: int,
                               constant_outcomes: int = 0, output_scale: str = "none") -> int:
    """``F h + h + h m_a + (m_a + m_c) + out`` (+1 with ``output_scale="learned"``)."""
    m = outcomes + constant_outcomes
    return (in_features * hidden + hidden + hidden * outcomes + m + out_features
            + (1 if output_scale == "learned" else 0))


def reuploading_parameter_count(in_features: int, out_features: int, n_qubits: int | None = None,
                                n_reps: int = 10, output_scale: str = "none") -> tuple[int, int]:
    """``(parameters, n_qubits)`` of ``DataReUploadingLinear`` with these options.

    The layer is built on the ``meta`` device (no memory, no values), so the count is the layer's
    own and its option checks and messages apply.
    """
    head = DataReUploadingLinear(in_features, out_features, n_qubits=n_qubits, n_reps=n_reps,
                                 output_scale=output_scale, device="meta")
    return sum(p.numel() for p in head.parameters()), head.n_qubits


def match_reuploading(in_features: int, out_features: int, n_qubits: int | None = None, n_reps: int = 10,
                      output_scale: str = "none") -> DenseTwinSizes:
    """Sizes of the :class:`DenseTwin` whose parameter count equals the re-uploading head's.

    With ``P`` the quantum head's count, ``F`` inputs, ``out`` outputs and ``e`` = 1 for a learned
    scale (else 0), the twin has ``h (F + 1) + m_a (h + 1) + m_c + out + e`` parameters. For each
    ``h`` the budget left after the hidden layer, ``B_h = P - out - e - h (F + 1)``, buys
    ``m_a = B_h // (h + 1)`` input-driven outcomes; the remainder ``m_c = B_h % (h + 1)`` (fewer
    than ``h + 1``) becomes outcomes with a constant trainable logit, so the count is met exactly.
    ``h`` ranges over the values with ``m_a >= out``; among them the rule picks the ``m_a`` closest
    in log scale to ``2**n``, the number of outcomes of the quantum register (ties: the larger
    ``h``). Since ``m_a`` falls as ``h`` grows, the two ``h`` around ``m_a = 2**n`` are the only
    candidates.

    When ``P < F + 1 + 3 out + e``, even one hidden unit and ``out`` outcomes need more than ``P``:
    that smallest twin is used if it is within 1% of ``P``, and otherwise a :class:`QcreepError`
    says that no twin matches.
    """
    output_scale, _ = check_readout(output_scale, "normal")
    try:
        target, n = reuploading_parameter_count(in_features, out_features, n_qubits, n_reps, output_scale)
    except QcreepError as err:
        raise QcreepError(f"cannot match a classical twin to the re-uploading head: {err}") from None
    extra = 1 if output_scale == "learned" else 0
    budget = target - out_features - extra
    h_max = (budget - out_features) // (in_features + 1 + out_features)
    if h_max < 1:
        smallest = dense_twin_parameter_count(in_features, out_features, 1, out_features, 0, output_scale)
        if smallest - target <= 0.01 * target:
            return DenseTwinSizes(1, out_features, 0, smallest, target, n)
        raise QcreepError(
            f"no classical twin matches DataReUploadingLinear({in_features} -> {out_features}, n_qubits={n}, "
            f"n_reps={n_reps}) within 1%: it has {target} parameters, and the smallest twin (1 hidden unit, "
            f"{out_features} outcomes) has {smallest}; use more re-uploads or qubits")

    def driven(h: int) -> int:
        return (budget - h * (in_features + 1)) // (h + 1)

    register = 2**n
    # largest h with driven(h) >= 2**n, and the next one
    h0 = (budget - register) // (in_features + 1 + register)
    candidates = {min(max(h, 1), h_max) for h in (h0, h0 + 1)}
    best = min(candidates, key=lambda h: (abs(math.log(driven(h) / register)), -h))
    m_a = driven(best)
    m_c = budget - best * (in_features + 1) - m_a * (best + 1)
    sizes = DenseTwinSizes(best, m_a, m_c, target, target, n)
    assert dense_twin_parameter_count(in_features, out_features, best, m_a, m_c, output_scale) == target
    return sizes


class DenseTwin(nn.Module):
    r"""Classical twin of the data re-uploading head: a normalised tanh layer read out as probabilities.

    The re-uploading head (:class:`~qcreep.layers.DataReUploadingLinear`) maps ``F`` features to
    a normalised state of ``2**n`` amplitudes through a nonlinear, bounded circuit and reads the
    probabilities of the first ``out`` basis states, ``y_j = s |<j|psi>|^2 + b_j``. Its outputs are
    bounded and probability-like: each in ``[0, s]`` before the bias, summing to at most ``s``.

    The twin keeps that readout and replaces the circuit by a classical nonlinear map:

        x_hat = x / rms(x)                                  (per sample, no parameters)
        u_k   = w_k / ||w_k||                               (unit rows, k < h)
        h_k   = tanh(u_k . x_hat + c_k)                     (h hidden units)
        z     = [V h + d_{:m_a},  d_{m_a:}]                 (m_a driven and m_c constant logits)
        p     = softmax(z)                                  (m = m_a + m_c outcomes)
        y_j   = s p_j + b_j,   j < out

    with the quantum head's readout options: ``s = 1`` (``output_scale="none"``) or a trainable
    ``s = exp(a)``, ``a`` starting at ``log(m)`` so that a uniform distribution maps to 1, as the
    quantum head's ``a`` starts at ``log(2**n)`` (``"learned"``); ``b`` standard normal
    (``bias_init="normal"``, published) or zero (``"zero"``).

    Why it trains: with ``F`` in the thousands, an ordinary ``tanh(W x + c)`` saturates after a
    few Adam steps, because Adam moves every one of the ``F`` weights of a unit by about the
    learning rate ``lr`` at once, shifting its pre-activation by about ``lr F`` (times the input
    scale). Here a unit's pre-activation is the projection of the unit-rms input on a unit vector,
    so it starts near ``N(0, 1)`` whatever ``F`` and the input scale. Only the direction of ``w``
    counts, so a step of ``lr`` per weight turns ``u`` by about ``lr / ||w||`` per unit of norm:
    with ``w`` started standard normal (``||w|| ~ sqrt(F)``) a step moves the pre-activation by
    about ``lr sqrt(F)``, not ``lr F``. That is the order of the quantum head's own sensitivity: a
    step of ``lr`` on each of its ``4**n - 1`` angles (``2**n ~ sqrt(F)``) moves each re-upload's
    generator by about ``lr 2**n``. The initial scale of ``w`` therefore sets the effective step and
    is part of the design. Normalising the input also keeps the map bounded and well-conditioned
    whatever the scale of the features that reach it, as the circuit's outputs are bounded whatever
    its input. (The price: the twin sees only the direction of its input, ``f(c x) = f(x)`` for
    ``c > 0``; the circuit's output depends on the scale of ``x`` too.)

    Sizes: ``m_a >= out`` driven outcomes, ``h`` hidden units and ``m_c <= h`` constant outcomes
    are chosen by :func:`match_reuploading` so that the parameter count equals the quantum head's
    exactly (within 1% for heads so small that one hidden unit already exceeds their count), with
    ``m_a`` as close as possible (log scale) to the register's ``2**n`` outcomes.
    The ``m_c`` constant outcomes are unread, like the register's basis states beyond ``out``:
    trainable sinks of probability mass that only absorb the last few parameters of the budget.
    Each hidden unit costs ``F + 1 + m_a`` parameters, so a small budget buys few: the twin of
    ``DataReUploadingLinear(1024, 10, n_reps=2)`` (2,057 parameters) has ``h = 1`` and barely
    trains, while the circuit spends the same budget on angles that see every feature. Check
    ``hidden`` before reading a quantum-against-twin difference at small ``n_reps``.

    Parameters (``F h + h + h m_a + m + out``, plus 1 with ``output_scale="learned"``):
        ``weight_in``: ``(h, F)``, standard normal (only its row directions enter the map; their
        norm, about ``sqrt(F)``, sets the effective Adam step, see above);
        ``bias_in``: ``(h,)``, zero; ``weight_out``: ``(m_a, h)``, normal with variance ``1 / h``
        (logits start within about 0.6 of each other, so ``p`` starts near uniform, as the circuit's
        probabilities start near ``2**-n``); ``bias_out``: ``(m,)``, zero; ``bias``: ``(out,)``;
        ``log_scale``: ``()`` with ``output_scale="learned"``.

    Shapes:
        input ``(*, F)``; output ``(*, out)``, real.

    Args:
        in_features, out_features, n_qubits, n_reps, output_scale, bias_init: as
            :class:`~qcreep.layers.DataReUploadingLinear`, with the same defaults (a learned scale and
            zero biases; ``n_qubits`` the minimum, ``n_reps`` 10): ``DenseTwin(F, out, ...)`` is the
            twin of ``DataReUploadingLinear(F, out, ...)``, with its parameter count.
        hidden, outcomes, constant_outcomes: explicit sizes instead (``hidden`` and ``outcomes``
            together, ``constant_outcomes`` default 0; then ``n_qubits`` and ``n_reps`` are not taken).
        :meth:`matched` and the registry factory ``dense_twin`` default to the published readout, as
        the ``data_reuploading`` factory does.

    Example:
        >>> import torch
        >>> from qcreep.layers import DataReUploadingLinear
        >>> twin = DenseTwin(1024, 10)  # the digits head: 5 qubits, 10 re-uploads, learned scale
        >>> twin.hidden, twin.outcomes, twin.constant_outcomes
        (9, 100, 5)
        >>> twin.num_parameters == DataReUploadingLinear(1024, 10).num_parameters == 10 * (4**5 - 1) + 10 + 1
        True
        >>> DenseTwin(32, 10).num_parameters == DataReUploadingLinear(32, 10).num_parameters
        True
        >>> twin = DenseTwin(16, 4, hidden=2, outcomes=6, output_scale="none")
        >>> y = twin(torch.randn(3, 16))
        >>> y.shape, bool((y >= 0).all()) and bool((y.sum(-1) <= 1 + 1e-6).all())
        (torch.Size([3, 4]), True)
    """

    def __init__(self, in_features: int, out_features: int, n_qubits: int | None = None, n_reps: int | None = None,
                 *, output_scale: str = "learned", bias_init: str = "zero", hidden: int | None = None,
                 outcomes: int | None = None, constant_outcomes: int | None = None, dtype=None, device=None):
        super().__init__()
        owner = "DenseTwin"
        self.in_features = _check_int(owner, "in_features", in_features, 1)
        self.out_features = _check_int(owner, "out_features", out_features, 1)
        self.output_scale, self.bias_init = check_readout(output_scale, bias_init)
        self.matched_to: dict | None = None
        if hidden is None and outcomes is None and constant_outcomes is None:
            n_reps = 10 if n_reps is None else n_reps
            sizes = match_reuploading(in_features, out_features, n_qubits, n_reps, output_scale)
            hidden, outcomes, constant_outcomes = sizes.hidden, sizes.outcomes, sizes.constant_outcomes
            self.matched_to = {"layer": "data_reuploading", "n_qubits": sizes.n_qubits,
                               "n_reps": n_reps, "params": sizes.target}
        elif hidden is None or outcomes is None:
            raise QcreepError(f"{owner} takes hidden and outcomes together (explicit sizes) or neither (sizes "
                              f"matched to DataReUploadingLinear({in_features}, {out_features}, n_qubits, n_reps)); "
                              f"got hidden={hidden!r}, outcomes={outcomes!r}")
        elif n_qubits is not None or n_reps is not None:
            raise QcreepError(f"{owner}: n_qubits and n_reps size a twin matched to the re-uploading head; with "
                              f"explicit hidden and outcomes leave them out (got n_qubits={n_qubits!r}, "
                              f"n_reps={n_reps!r})")
        self.hidden = _check_int(owner, "hidden", hidden, 1)
        self.outcomes = _check_int(owner, "outcomes", outcomes, 1)
        self.constant_outcomes = _check_int(owner, "constant_outcomes", constant_outcomes or 0, 0)
        if outcomes < out_features:
            raise QcreepError(f"{owner} reads the first {out_features} outcomes, so it needs outcomes >= "
                              f"{out_features} input-driven outcomes; got outcomes={outcomes}")
        dtype = _float_dtype(owner, dtype)
        m = outcomes + self.constant_outcomes
        kw = {"dtype": dtype, "device": device}
        self.weight_in = nn.Parameter(torch.randn(hidden, in_features, **kw))
        self.bias_in = nn.Parameter(torch.zeros(hidden, **kw))
        self.weight_out = nn.Parameter(torch.randn(outcomes, hidden, **kw) / math.sqrt(hidden))
        self.bias_out = nn.Parameter(torch.zeros(m, **kw))
        self.bias = nn.Parameter(torch.randn(out_features, **kw) if bias_init == "normal"
                                 else torch.zeros(out_features, **kw))
        if output_scale == "learned":
            self.log_scale = nn.Parameter(torch.full((), math.log(m), **kw))
        else:
            self.register_parameter("log_scale", None)

    @classmethod
    def matched(cls, in_features: int, out_features: int, n_qubits: int | None = None, n_reps: int = 10, *,
                output_scale: str = "none", bias_init: str = "normal", dtype=None, device=None) -> DenseTwin:
        """The twin of ``DataReUploadingLinear(in_features, out_features, n_qubits, n_reps, ...)``.

        As ``DenseTwin(in_features, out_features, n_qubits, n_reps, ...)``, but with the published readout
        as its default, as the registry factories ``data_reuploading`` and ``dense_twin`` have.
        """
        return cls(in_features, out_features, n_qubits, n_reps, output_scale=output_scale, bias_init=bias_init,
                   dtype=dtype, device=device)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``(*, m)``: the softmax over all ``m`` outcomes (read or not)."""
        owner = "DenseTwin"
        _check_real(owner, x)
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise QcreepError(f"{owner} expects input (*, {self.in_features}), got {tuple(x.shape)}")
        x = x.to(self.bias.dtype)
        x_hat = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + _RMS_EPS)
        rows = self.weight_in / self.weight_in.norm(dim=1, keepdim=True)
        hidden = torch.tanh(F.linear(x_hat, rows, self.bias_in))
        driven = F.linear(hidden, self.weight_out, self.bias_out[: self.outcomes])
        if self.constant_outcomes:
            constant = self.bias_out[self.outcomes:].expand(*driven.shape[:-1], self.constant_outcomes)
            driven = torch.cat([driven, constant], dim=-1)
        return torch.softmax(driven, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.probabilities(x)[..., : self.out_features]
        if self.log_scale is not None:
            probs = probs * self.log_scale.exp()
        return probs + self.bias

    def extra_repr(self) -> str:
        text = (f"in_features={self.in_features}, out_features={self.out_features}, hidden={self.hidden}, "
                f"outcomes={self.outcomes}, constant_outcomes={self.constant_outcomes}, "
                f"output_scale={self.output_scale!r}, bias_init={self.bias_init!r}, params={self.num_parameters}")
        if self.matched_to:
            matched = self.matched_to
            text += f", twin of data_reuploading(n_qubits={matched['n_qubits']}, n_reps={matched['n_reps']})"
        return text


@register_layer("dense_twin", slot_kind="dense", quantum=False, twin_of="data_reuploading",
                description="DenseTwin: classical twin of data_reuploading, unit-row tanh layer read out as "
                            "softmax probabilities, parameter count equal to the quantum head's")
def make_dense_twin(slot, *, n_qubits=None, n_reps=10, output_scale="none", bias_init="normal", angles=None,
                    path=None, solver=None, dtype=None, device=None):
    """Classical twin of ``data_reuploading`` for the same options; quantum-only options are ignored."""
    return DenseTwin.matched(slot.in_features, slot.out_features, n_qubits, n_reps, output_scale=output_scale,
                             bias_init=bias_init, dtype=dtype, device=device)
