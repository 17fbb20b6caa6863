"""Finite-shot estimates of the quantum layers' outputs, sampled exactly (or, for large layers, by
a Gaussian with the exact mean and variance).

Random streams. Every image gets its own ``torch.Generator``, seeded from ``(seed, layer index,
image index)`` through a SplitMix64 mix (:func:`stream_seed`). The layer index counts the quantum
layers of a model in ``named_modules`` order; the image index counts the images a layer has been
given since it was built or reset. The draws for an image therefore depend on the seed, the layer
and the image's position in the evaluation, and not on the batch size.

Re-uploading head (``DataReUploadingLinear`` on ``n`` qubits). The circuit is measured ``S``
times in the computational basis. The counts of the ``2**n`` outcomes are multinomial,
``(c_0, ..., c_{2**n - 1}) ~ Multinomial(S, p)``, with ``p`` the exact (or noisy) probabilities,
and the head reads ``p_hat_j = c_j / S`` for ``j < out_features``. Only those counts are drawn, by
the exact conditional-binomial construction ``c_j ~ Binomial(S - sum_{i<j} c_i, p_j / (1 - sum_{i<j}
p_i))``: ``out_features`` scalar draws per image, whatever ``S`` and ``n``. ``E[p_hat_j] = p_j`` and
``Var[p_hat_j] = p_j (1 - p_j) / S``.

Flipped quanvolution. Each output position is measured on its own, as in the paper: for channel
pair ``(o, c)`` and patch ``A`` the observable ``H = (A + A^T) / 2`` (``A`` zero-padded to 4x4) is
not diagonal, so it is split into the Pauli words it can contain. ``H`` is real symmetric, so only
the ten real symmetric words appear (those with an even number of ``Y``)::

    H = h_II II + sum_{P in REAL_WORDS} h_P(A) P,     h_P(A) = Tr(P H) / 4 = sum_{i,j<3} P_ij A_ij / 4,

``REAL_WORDS = IX, IZ, XI, XX, XZ, YY, ZI, ZX, ZZ``. The coefficients are linear in the patch, and
the identity term is known without measuring. The nine words are measured in the **five
qubit-wise commuting settings** of :mod:`qcreep.hardware.export` and :mod:`qcreep.hardware.resources`
(:data:`SETTINGS`): ``XX`` measures ``IX, XI, XX``; ``XZ`` measures ``IZ, XZ``; ``YY`` measures
``YY``; ``ZX`` measures ``ZI, ZX``; ``ZZ`` measures ``ZZ``. **Each setting gets S shots** (5 S shots
per patch and channel pair). A shot of setting ``L0 L1`` gives two signs ``a0, a1 = +-1`` with

    Prob(a0, a1) = (1 + a0 <L0 I> + a1 <I L1> + a0 a1 <L0 L1>) / 4,

and a word of the setting is estimated by the mean of its sign (``a0``, ``a1`` or ``a0 a1``) over
the S shots. The words of one setting come from the same shots, so their estimates are
correlated; the settings are independent. The layer's estimate

    y_o = bias_o + (1 / C_in) sum_c [ h_II(A_c) + sum_P h_P(A_c) e_ocP ]

is unbiased, with variance at every output position

    Var(y_o) = (1 / (C_in**2 S)) sum_c sum_s sum_{P, Q in s} h_P(A_c) h_Q(A_c) (<PQ>_oc - <P>_oc <Q>_oc),

(``PQ`` is again a word of the setting; ``<PP> = 1``): a quadratic form in the patch, computed from
one depthwise convolution (the 9 squares and 5 cross products of the ``h_P``).

Exact sampling draws, per output position and channel pair, the four outcome counts of each of
the settings ``XX``, ``XZ``, ``ZX`` (three conditional binomials each) and the ``+1`` count of the
product sign for ``YY`` and ``ZZ`` (one binomial each; their law needs only ``<YY>``, ``<ZZ>``):
11 draws (:data:`DRAWS_PER_POSITION`). ``shots_mode`` for the quanvolution: ``"exact"`` draws these
``11 C_out C_in H' W'`` binomials per image with ``torch.binomial`` (serial C, measured 40 to 80 ns
a draw on one core: more for small ``S``, where many draws take the inversion branch); ``"gaussian"``
adds to the exact output a normal variable with the variance above (one draw per output value);
``"auto"`` is exact when an image needs at most :data:`AUTO_EXACT_MAX_DRAWS` binomials, Gaussian
otherwise. Measured per image, trained digits HybridNet (level 1), one core: conv1 (35,200 draws)
1.5 to 2.9 ms, conv2 (360,448 draws) 15 to 28 ms, for ``S`` from 100,000 down to 100. So ``auto``
samples digits conv1 exactly and digits conv2 (and MNIST conv1, 316,800 draws) by the Gaussian;
``shots_mode="exact"`` samples any layer exactly. The head is always sampled exactly.

Example:
    >>> import torch
    >>> g = image_generators(0, layer_index=0, start=0, count=2)
    >>> counts = sample_counts(torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float64), 100, 2, g)
    >>> counts[1].tolist(), int(counts[0].sum()) <= 100
    ([100.0, 0.0], True)
    >>> REAL_WORDS
    ('IX', 'IZ', 'XI', 'XX', 'XZ', 'YY', 'ZI', 'ZX', 'ZZ')
    >>> SETTINGS
    {'XX': ('IX', 'XI', 'XX'), 'XZ': ('IZ', 'XZ'), 'YY': ('YY',), 'ZX': ('ZI', 'ZX'), 'ZZ': ('ZZ',)}
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from qcreep.checks import check_int
from qcreep.errors import QcreepError
from qcreep.sim import pauli_matrices, pauli_words

SHOTS_MODES = ("auto", "exact", "gaussian")
# "auto" samples a quantum convolution exactly up to this many binomial draws per image (at most
# about 5 ms per image on one core at 40 to 80 ns a draw), and by the Gaussian with the exact
# variance above it.
AUTO_EXACT_MAX_DRAWS = 2**16
# shots are kept where float64 counts are exact and the sampling is meaningful
MAX_SHOTS = 10**12
REAL_WORDS = tuple(w for w in pauli_words(2) if w.count("Y") % 2 == 0)
# The qubit-wise commuting measurement settings of a patch Hamiltonian and the words each one
# estimates: qcreep.hardware.export's qubitwise_settings / assign_terms of REAL_WORDS (a word goes to
# the first setting, in this order, that measures it).
SETTINGS = {"XX": ("IX", "XI", "XX"), "XZ": ("IZ", "XZ"), "YY": ("YY",), "ZX": ("ZI", "ZX"), "ZZ": ("ZZ",)}
# binomial draws per output position and channel pair: three for each setting read through both
# single-qubit signs (a four-outcome multinomial), one for each setting read through its product sign
DRAWS_PER_POSITION = sum(3 if len(words) > 1 else 1 for words in SETTINGS.values())

_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_seed(seed: int, layer_index: int, image_index: int) -> int:
    """A 63-bit generator seed for one image of one layer: SplitMix64 over the three integers."""
    z = _splitmix64(seed & _MASK64)
    z = _splitmix64(z ^ (layer_index & _MASK64))
    z = _splitmix64(z ^ (image_index & _MASK64))
    return z >> 1


def image_generators(seed: int, layer_index: int, start: int, count: int, device=None) -> list[torch.Generator]:
    """Generators for images ``start .. start + count - 1`` of layer ``layer_index``."""
    out = []
    for image in range(start, start + count):
        gen = torch.Generator(device=device if device is not None else "cpu")
        gen.manual_seed(stream_seed(seed, layer_index, image))
        out.append(gen)
    return out


def sample_counts(probs: torch.Tensor, shots: int, first: int, generators) -> torch.Tensor:
    """Counts of outcomes ``0 .. first - 1`` in ``shots`` measurements, for each row of ``probs``.

    ``probs`` is real ``(B, N)``; rows are clamped at 0 and normalised (in float64) first. The
    counts are the first ``first`` entries of a ``Multinomial(shots, p)`` draw, sampled exactly by
    conditional binomials with ``generators[b]`` for row ``b``. Returns float64 ``(B, first)``.
    """
    check_int(shots, "shots", 1, MAX_SHOTS)
    if probs.is_complex() or probs.dim() != 2:
        raise QcreepError(f"sample_counts takes real probabilities (B, N), got {tuple(probs.shape)} {probs.dtype}")
    if len(generators) != probs.shape[0]:
        raise QcreepError(f"sample_counts needs one generator per row: {probs.shape[0]} rows, {len(generators)}")
    p = probs.detach().to(device="cpu", dtype=torch.float64).clamp_min(0.0)
    p = p / p.sum(-1, keepdim=True)
    # the probability of the outcomes >= j (a reversed cumulative sum, accurate down to the tail)
    left = p.flip(-1).cumsum(-1).flip(-1)
    ratio = torch.where(left > 0, p / left.clamp_min(torch.finfo(torch.float64).tiny), 0.0).clamp(0.0, 1.0)
    counts = torch.zeros(p.shape[0], first, dtype=torch.float64)
    for b, gen in enumerate(generators):
        remaining = torch.tensor(float(shots), dtype=torch.float64)
        for j in range(first):
            c = torch.binomial(remaining.reshape(1), ratio[b, j].reshape(1), generator=gen)[0]
            counts[b, j] = c
            remaining = remaining - c
    return counts.to(probs.device)


@functools.cache
def _word_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """The nine real symmetric words as real 4x4 matrices, and their patch coefficient masks.

    Returns ``(words (9, 4, 4), coefficients (10, 3, 3))``: ``coefficients[0] = I[:3, :3] / 4`` gives
    ``h_II`` and ``coefficients[1 + k] = P_k[:3, :3] / 4`` gives ``h_P`` of word ``REAL_WORDS[k]``.
    """
    names = pauli_words(2)
    mats = pauli_matrices(2, dtype=torch.complex128)
    words = torch.stack([mats[names.index(w)] for w in REAL_WORDS])
    if float(words.imag.abs().max()) != 0.0:
        raise QcreepError("internal error: a word of REAL_WORDS has imaginary entries")
    words = words.real.contiguous()
    identity = torch.eye(4, dtype=torch.float64)
    coefficients = torch.cat((identity[None], words), 0)[:, :3, :3] / 4.0
    return words, coefficients.contiguous()


def pauli_expectations(rho: torch.Tensor) -> torch.Tensor:
    """``<P> = Tr(P rho) = sum_ij P_ij Re(rho)_ij`` for the nine words of :data:`REAL_WORDS`.

    ``rho`` is ``(..., 4, 4)`` complex (a density matrix); the value is real because ``P`` is real
    symmetric and ``Im(rho)`` antisymmetric. Returns real ``(..., 9)``.
    """
    words, _ = _word_tables()
    re = rho.real
    return torch.einsum("kij,...ij->...k", words.to(device=re.device, dtype=re.dtype), re)


def patch_coefficients(layer, x: torch.Tensor) -> torch.Tensor:
    """``h_II`` and ``h_P`` of every patch: real ``(B, C_in, 10, H', W')`` (index 0 is ``h_II``).

    One depthwise convolution with the ten 3x3 coefficient masks, with the layer's stride and
    padding.
    """
    _, coefficients = _word_tables()
    channels = layer.in_channels
    weight = coefficients.to(device=x.device, dtype=x.dtype).repeat(channels, 1, 1).unsqueeze(1)  # (C*10,1,3,3)
    h = F.conv2d(x, weight, stride=layer.stride, padding=layer.padding, groups=channels)
    return h.reshape(x.shape[0], channels, 10, *h.shape[-2:])


def _word_product(p: str, q: str) -> str:
    """The product of two qubit-wise commuting words (no phase: equal letters cancel)."""
    return "".join("I" if a == b else (b if a == "I" else a) for a, b in zip(p, q))


@functools.cache
def _covariance_pairs() -> tuple[tuple[int, int, int], ...]:
    """``(P, Q, PQ)`` indices into :data:`REAL_WORDS` for the pairs ``P < Q`` measured by one setting."""
    pairs = []
    for words in SETTINGS.values():
        for i, p in enumerate(words):
            for q in words[i + 1:]:
                pairs.append((REAL_WORDS.index(p), REAL_WORDS.index(q), REAL_WORDS.index(_word_product(p, q))))
    return tuple(pairs)


def quanv_draws_per_image(layer, height: int, width: int) -> int:
    """Binomial draws the exact quanvolution sampler needs for one ``H x W`` image."""
    h_out = (height + 2 * layer.padding - 3) // layer.stride + 1
    w_out = (width + 2 * layer.padding - 3) // layer.stride + 1
    return layer.out_channels * layer.in_channels * DRAWS_PER_POSITION * h_out * w_out


def resolve_shots_mode(shots_mode: str, layer, x: torch.Tensor) -> str:
    """``"exact"`` or ``"gaussian"`` for a quanvolution on input ``x`` (``"auto"`` by the draw count)."""
    if shots_mode != "auto":
        return shots_mode
    draws = quanv_draws_per_image(layer, x.shape[-2], x.shape[-1])
    return "exact" if draws <= AUTO_EXACT_MAX_DRAWS else "gaussian"


@functools.cache
def _setting_layout() -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[str, int], ...]]:
    """Where each word's estimate comes from, for :func:`_setting_estimates`.

    Returns ``(joint, product, sources)``: the indices in :data:`SETTINGS` of the settings whose
    single-qubit signs are used (``XX``, ``XZ``, ``ZX``) and of the product-only ones (``YY``,
    ``ZZ``), and for each word of :data:`REAL_WORDS` its sign (``"a0"``, ``"a1"``, ``"a0a1"``) and
    setting index.
    """
    names = list(SETTINGS)
    joint = tuple(i for i, s in enumerate(names) if len(SETTINGS[s]) > 1)
    product = tuple(i for i, s in enumerate(names) if len(SETTINGS[s]) == 1)
    sources = []
    for word in REAL_WORDS:
        index = next(i for i, s in enumerate(names) if word in SETTINGS[s])
        setting = names[index]
        sign = {setting[0] + "I": "a0", "I" + setting[1]: "a1", setting: "a0a1"}[word]
        sources.append((sign, index))
    return joint, product, tuple(sources)


def _setting_probabilities(expectations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The conditional-binomial parameters of the five settings, from ``<P>_oc``: ``(O, C, 9)``.

    Returns ``(first (5, O, C), second (3, O, C), third (3, O, C))``. For a joint setting ``L0 L1``
    (rows ``0 .. 2`` of ``second`` and ``third``, in the order of :func:`_setting_layout`'s
    ``joint``) the outcome probabilities ``q = (q_{++}, q_{+-}, q_{-+}, q_{--})`` are
    ``(1 + a0 <L0 I> + a1 <I L1> + a0 a1 <L0 L1>) / 4`` (clamped at 0 and normalised), and the counts
    ``n_{++} ~ Bin(S, q_{++})``, ``n_{+-} ~ Bin(S - n_{++}, q_{+-} / (1 - q_{++}))``,
    ``n_{-+} ~ Bin(S - n_{++} - n_{+-}, q_{-+} / (q_{-+} + q_{--}))``, ``n_{--}`` the rest: an exact
    ``Multinomial(S, q)``. For a product-only setting the ``+1`` count of the product sign is
    ``Bin(S, (1 + <P>) / 2)``. ``first`` holds the first probability of every setting, in
    :data:`SETTINGS` order.
    """
    joint, product, _ = _setting_layout()
    names = list(SETTINGS)
    e = expectations
    index = {w: i for i, w in enumerate(REAL_WORDS)}
    first = torch.empty(len(names), *e.shape[:-1], dtype=e.dtype, device=e.device)
    second, third = [], []
    for s in joint:
        setting = names[s]
        ea, eb, eab = (e[..., index[w]] for w in (setting[0] + "I", "I" + setting[1], setting))
        q = torch.stack((1 + ea + eb + eab, 1 + ea - eb - eab, 1 - ea + eb - eab, 1 - ea - eb + eab)).clamp_min(0.0)
        q = q / q.sum(0, keepdim=True)
        left = q.flip(0).cumsum(0).flip(0)  # the probability of the outcomes >= j
        ratio = torch.where(left > 0, q / left.clamp_min(1e-300), 0.0).clamp(0.0, 1.0)
        first[s] = ratio[0]
        second.append(ratio[1])
        third.append(ratio[2])
    for s in product:
        first[s] = ((1 + e[..., index[names[s]]]) / 2).clamp(0.0, 1.0)
    return first, torch.stack(second), torch.stack(third)


def _setting_estimates(probabilities, shots: int, positions: int, gen) -> torch.Tensor:
    """One image's estimates ``e_ocP`` of the nine words at every position: ``(9, O, C, L)`` float64.

    ``probabilities`` is :func:`_setting_probabilities`' triple. Every setting is sampled with
    ``shots`` shots, exactly: one binomial for each of the five settings (the first count of a
    joint setting, the ``+1`` count of a product-only one), then two conditional binomials for each
    joint setting: ``11 O C L`` draws in three ``torch.binomial`` calls with ``gen``. A word's
    estimate is the mean of its sign over the shots of its setting, e.g. for a joint setting
    ``e_{L0 I} = (n_{++} + n_{+-} - n_{-+} - n_{--}) / S``.
    """
    first, second, third = probabilities
    joint, _, sources = _setting_layout()
    total = float(shots)
    n_first = torch.binomial(torch.full((*first.shape, positions), total, dtype=torch.float64),
                             first[..., None].expand(*first.shape, positions).contiguous(), generator=gen)
    c0 = n_first[list(joint)]
    rest = total - c0
    c1 = torch.binomial(rest, second[..., None].expand_as(rest).contiguous(), generator=gen)
    rest = rest - c1
    c2 = torch.binomial(rest, third[..., None].expand_as(rest).contiguous(), generator=gen)
    c3 = rest - c2
    # the three signs of the joint settings, and the product sign of the others, summed over the shots
    sums = {"a0": (c0 + c1) - (c2 + c3), "a1": (c0 + c2) - (c1 + c3), "a0a1": (c0 + c3) - (c1 + c2)}
    product_sum = 2.0 * n_first - total
    row = {s: i for i, s in enumerate(joint)}
    words = [sums[sign][row[s]] if s in row else product_sum[s] for sign, s in sources]
    return torch.stack(words) / total


def quanv_shots_exact(layer, x: torch.Tensor, expectations: torch.Tensor, shots: int, generators) -> torch.Tensor:
    """The finite-shot estimate of a flipped quanvolution, with every binomial drawn.

    ``x`` is ``(B, C_in, H, W)``; ``expectations`` the ``(C_out, C_in, 9)`` values ``<P>_oc`` of the
    (noisy) states. Sampling runs in float64 on the CPU, image ``b`` with ``generators[b]``
    (:func:`_setting_estimates`: ``11 C_out C_in H' W'`` binomial draws, about 40 ns each on one
    core, so about 15 ms per image for the digits conv2); the result has the dtype and device of ``x``.
    """
    check_int(shots, "shots", 1, MAX_SHOTS)
    xd = x.detach().to(device="cpu", dtype=torch.float64)
    h = patch_coefficients(layer, xd)  # (B, C, 10, H', W')
    batch, channels, _, h_out, w_out = h.shape
    h = h.reshape(batch, channels, 10, h_out * w_out)
    probabilities = _setting_probabilities(expectations.detach().to(device="cpu", dtype=torch.float64))
    bias = _real(layer.bias).detach().to(device="cpu", dtype=torch.float64)
    words = h[:, :, 1:].permute(0, 2, 1, 3).contiguous()  # (B, 9, C, L)
    constant = h[:, :, 0].sum(1)  # (B, L)
    out = torch.empty(batch, layer.out_channels, h_out * w_out, dtype=torch.float64)
    for b, gen in enumerate(generators):
        estimates = _setting_estimates(probabilities, shots, h_out * w_out, gen)  # (9, O, C, L)
        values = (estimates * words[b, :, None]).sum((0, 2)) + constant[b]
        out[b] = values / channels + bias[:, None]
    return out.reshape(batch, layer.out_channels, h_out, w_out).to(device=x.device, dtype=x.dtype)


def quanv_shot_variance(layer, x: torch.Tensor, expectations: torch.Tensor, shots: int) -> torch.Tensor:
    """Variance of the finite-shot estimate at every output: ``(B, C_out, H', W')``.

    ``(1 / (C_in**2 S)) sum_c [ sum_P h_P**2 (1 - <P>**2) + 2 sum_{P<Q same setting} h_P h_Q (<PQ> - <P><Q>) ]``:
    the 9 squares and 5 cross products of the patch coefficients (one depthwise convolution),
    contracted with the per-state weights.
    """
    check_int(shots, "shots", 1, MAX_SHOTS)
    h = patch_coefficients(layer, x)[:, :, 1:]  # (B, C, 9, H', W')
    e = expectations.to(x.dtype)  # (O, C, 9)
    pairs = _covariance_pairs()
    p_idx, q_idx, pq_idx = (list(t) for t in zip(*pairs))
    features = torch.cat((h.square(), h[:, :, p_idx] * h[:, :, q_idx]), 2)  # (B, C, 9 + pairs, H', W')
    weights = torch.cat((1.0 - e.square(), 2.0 * (e[..., pq_idx] - e[..., p_idx] * e[..., q_idx])), -1)
    var = torch.einsum("bcfhw,ocf->bohw", features, weights) / (shots * layer.in_channels**2)
    return var.clamp_min(0.0)


def quanv_shots_gaussian(layer, x: torch.Tensor, mean: torch.Tensor, expectations: torch.Tensor, shots: int,
                         generators) -> torch.Tensor:
    """``mean`` (the exact, possibly noisy, output) plus a normal variable with the exact shot variance."""
    std = quanv_shot_variance(layer, x, expectations, shots).sqrt()
    noise = torch.stack([torch.randn(std.shape[1:], generator=gen, dtype=torch.float64) for gen in generators])
    return mean + std * noise.to(device=x.device, dtype=x.dtype)


def _real(t: torch.Tensor) -> torch.Tensor:
    return t.real if t.is_complex() else t
