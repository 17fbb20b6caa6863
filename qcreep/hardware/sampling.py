r"""Exact binomial and multinomial draws for a whole batch at once, from counter-based random streams.

The shot models of the newer layer families (:mod:`qcreep.hardware.families`) draw every count of
every image of a batch in a few tensor operations, with no Python loop over images or circuits,
and still give each image its own random stream, so that the draws do not depend on the batch size.

Streams. Image ``i`` of quantum layer ``l`` under seed ``s`` has the 63-bit key
``k = stream_seed(s, l, i)`` of :func:`qcreep.hardware.shots.stream_seed` (the key the older layers
seed their ``torch.Generator`` with), computed for a range of images at once by
:func:`stream_keys`. A layer draws its counts in *calls* (a level of a binary tree, a step of a
chain, numbered ``c = 0, 1, ...``); call ``c`` of an image reads the SplitMix64 stream of key
``k_c = mix(k XOR mix(c + 1))``, whose ``t``-th number is ``mix(k_c + (t + 1) * 0x9E3779B97F4A7C15)``
(``mix`` the SplitMix64 finaliser). Draw ``d`` of a call (an index fixed by the layer's shape: which
circuit, which node), in round ``r`` of its rejection loop, reads the numbers
``t = 2 (r D + d)`` and ``2 (r D + d) + 1``, ``D`` the number of draws of the call per image. A
number becomes a uniform variate in ``(0, 1)`` as ``(top 53 bits + 1/2) / 2**53``. Everything is
int64 tensor arithmetic (wrapping multiplication), checked bit for bit against Python's integers in
the tests.

Binomial draws (:func:`binomial`) are exact, as in torch's and numpy's samplers: for ``p > 1/2``
the draw is ``n - Binomial(n, 1 - p)``; with ``q = min(p, 1 - p)``, a mean ``n q < 10`` is drawn by
inversion through geometric waiting times (the number of ``Geometric(q)`` gaps, each
``ceil(log U / log(1 - q))``, that fit in ``n`` trials: about ``n q + 1`` rounds), and a larger mean
by Hörmann's transformed rejection with squeeze (BTRS; W. Hörmann, "The generation of binomial
random variates", J. Statist. Comput. Simul. 46, 1993), whose acceptance test uses the log ratio of
the probability of ``k`` to that of the mode, written with Stirling's series so that it stays
accurate for ``n`` up to ``10**12``. Each round of either loop treats every draw still open at once.

Multinomial counts. :func:`tree_counts` draws ``Multinomial(S, p)`` over the ``2**m`` outcomes of
``m`` measured qubits exactly, as ``m`` levels of conditional binomials: the ``S`` shots are split by
the value of qubit 0 (``Binomial(S, P(b_0 = 0))``), each part by qubit 1 given qubit 0, and so on
(``2**m - 1`` draws per circuit, ``m`` calls). :func:`chain_counts` draws the counts of only the first
``J`` outcomes, ``c_j ~ Binomial(S - sum_{i<j} c_i, p_j / (1 - sum_{i<j} p_i))`` (``J`` calls): the
exact joint law of those counts, for readouts that read only the first ``J`` probabilities.

Example:
    >>> import torch
    >>> keys = stream_keys(seed=0, layer_index=0, start=0, count=3)
    >>> from qcreep.hardware.shots import stream_seed
    >>> keys.tolist() == [stream_seed(0, 0, i) for i in range(3)]
    True
    >>> counts = tree_counts(torch.tensor([[[0.5, 0.0, 0.0, 0.5]]] * 3, dtype=torch.float64), 1000, keys)
    >>> counts.shape, counts.sum(-1).flatten().tolist(), counts[..., 1:3].abs().sum().item()
    (torch.Size([3, 1, 4]), [1000.0, 1000.0, 1000.0], 0.0)
"""

from __future__ import annotations

import math

import torch

from qcreep.checks import check_int
from qcreep.errors import QcreepError

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
# the mean below which a binomial is drawn by inversion (torch and numpy use the same threshold)
INVERSION_MEAN = 10.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _signed(value: int) -> int:
    """An unsigned 64-bit integer as the int64 with the same bits."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _srl(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 tensors (``>>`` on int64 is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """The SplitMix64 finaliser on int64 tensors (multiplication wraps modulo 2**64)."""
    z = (z ^ _srl(z, 30)) * _signed(_MIX1)
    z = (z ^ _srl(z, 27)) * _signed(_MIX2)
    return z ^ _srl(z, 31)


def _mix_int(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def stream_keys(seed: int, layer_index: int, start: int, count: int, device=None) -> torch.Tensor:
    """``(count,)`` int64: :func:`qcreep.hardware.shots.stream_seed` of images ``start .. start + count - 1``.

    ``stream_seed`` is SplitMix64 applied three times, ``z -> mix(z + gamma)``, over the seed, then the
    layer index, then the image index (each XOR-ed in), shifted right by one bit: the first two
    steps are the same for every image, the last runs on a tensor of image indices.
    """
    check_int(seed, "seed", 0)
    check_int(layer_index, "layer_index", 0)
    check_int(start, "start", 0)
    check_int(count, "count", 0)
    z = _mix_int(seed + _GAMMA)
    z = _mix_int((z ^ layer_index) + _GAMMA)
    images = torch.arange(start, start + count, dtype=torch.int64, device=device)
    out = _mix((images ^ _signed(z)) + _signed(_GAMMA))
    return _srl(out, 1)


def _call_keys(keys: torch.Tensor, call: int) -> torch.Tensor:
    return _mix(keys ^ _signed(_mix_int(call + 1)))


def _uniform(key: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """Uniform variates in the open interval ``(0, 1)``, float64: number ``counter`` of the stream of ``key``."""
    z = _mix(key + (counter + 1) * _signed(_GAMMA))
    return (_srl(z, 11).to(torch.float64) + 0.5) * 2.0**-53


def _stirling_tail(x: torch.Tensor) -> torch.Tensor:
    """``log x! - [(x + 1/2) log(x + 1) - (x + 1) + log(2 pi) / 2]`` for integers ``x >= 0`` (float64).

    From ``lgamma`` below 16 (where the difference is computed without cancellation), else the
    Stirling series ``1/(12 y) - 1/(360 y^3) + 1/(1260 y^5)``, ``y = x + 1`` (error below 1e-12).
    """
    y = x + 1.0
    series = 1.0 / (12.0 * y) - 1.0 / (360.0 * y**3) + 1.0 / (1260.0 * y**5)
    small = x.clamp(max=16.0)
    exact = torch.lgamma(small + 1.0) - ((small + 0.5) * torch.log(small + 1.0) - (small + 1.0) + _HALF_LOG_2PI)
    return torch.where(x < 16.0, exact, series)


def log_pmf_ratio(k: torch.Tensor, m: torch.Tensor, n: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``log(f(k) / f(m))`` for the ``Binomial(n, q)`` probabilities ``f``, integers ``0 <= k, m <= n`` (float64).

    ``log m! - log k! + log (n - m)! - log (n - k)! + (k - m) log(q / (1 - q))``, rearranged with
    Stirling's formula into terms of size ``O(|k - m| log n)``, which stays accurate to about 1e-12
    for ``n`` up to ``10**12`` (the four ``lgamma`` values themselves are of size ``n log n``).
    """
    lpq = torch.log(q) - torch.log1p(-q)
    return ((m + 0.5) * torch.log1p((m - k) / (k + 1.0))
            + (n - m + 0.5) * torch.log1p((k - m) / (n - k + 1.0))
            + (k - m) * (torch.log((n - k + 1.0) / (k + 1.0)) + lpq)
            + _stirling_tail(m) - _stirling_tail(k) + _stirling_tail(n - m) - _stirling_tail(n - k))


def _inversion(n, q, key, draw, per_image):
    """Binomial(n, q) for ``n q < 10`` by geometric waiting times; every open draw in each round."""
    log_fail = torch.log1p(-q)
    out = torch.zeros_like(n)
    total = torch.zeros_like(n)
    open_ = torch.arange(n.numel(), device=n.device)
    r = 0
    while open_.numel():
        u = _uniform(key[open_], 2 * (r * per_image + draw[open_]))
        total[open_] += torch.ceil(torch.log(u) / log_fail[open_])
        fits = total[open_] <= n[open_]
        out[open_[fits]] += 1.0
        open_ = open_[fits]
        r += 1
    return out


def _btrs(n, q, key, draw, per_image):
    """Binomial(n, q) for ``n q >= 10`` (``q <= 1/2``) by Hörmann's BTRS; every open draw in each round."""
    spq = torch.sqrt(n * q * (1.0 - q))
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * q
    c = n * q + 0.5
    v_r = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    mode = torch.floor((n + 1.0) * q)
    out = torch.zeros_like(n)
    open_ = torch.arange(n.numel(), device=n.device)
    r = 0
    while open_.numel():
        counter = 2 * (r * per_image + draw[open_])
        u = _uniform(key[open_], counter) - 0.5
        v = _uniform(key[open_], counter + 1)
        a_, b_, nn = a[open_], b[open_], n[open_]
        us = 0.5 - u.abs()
        k = torch.floor((2.0 * a_ / us + b_) * u + c[open_])
        inside = (k >= 0) & (k <= nn)
        quick = inside & (us >= 0.07) & (v <= v_r[open_])
        # the full test only where the squeeze did not decide (about one draw in five)
        slow = (inside & ~quick).nonzero().flatten()
        accept = quick
        if slow.numel():
            ks, us_s = k[slow], us[slow]
            sel = open_[slow]
            bound = log_pmf_ratio(ks, mode[sel], n[sel], q[sel])
            test = torch.log(v[slow] * alpha[sel] / (a[sel] / (us_s * us_s) + b[sel]))
            accept = accept.clone()
            accept[slow] = test <= bound
        out[open_[accept]] = k[accept]
        open_ = open_[~accept]
        r += 1
    return out


def binomial(count: torch.Tensor, prob: torch.Tensor, keys: torch.Tensor, call: int) -> torch.Tensor:
    """Exact ``Binomial(count, prob)`` draws, ``(B, D)`` float64, row ``b`` from the stream of ``keys[b]``.

    ``count`` holds non-negative integers (float64, up to ``2**53``), ``prob`` values in ``[0, 1]``
    (clamped); both ``(B, D)``. ``call`` numbers the call within the images' streams: two calls with
    the same number draw the same variates. Draw ``d`` of row ``b`` depends only on ``keys[b]``,
    ``call``, ``d``, ``D`` and its own ``count`` and ``prob``, never on the other rows.
    """
    if count.dim() != 2 or prob.shape != count.shape or keys.shape != count.shape[:1]:
        raise QcreepError(f"binomial takes count and prob (B, D) and keys (B,), got {tuple(count.shape)}, "
                          f"{tuple(prob.shape)} and {tuple(keys.shape)}")
    if count.is_complex() or prob.is_complex():
        raise QcreepError("binomial takes real counts and probabilities")
    batch, per_image = count.shape
    n = count.to(torch.float64).reshape(-1)
    p = prob.to(torch.float64).reshape(-1).clamp(0.0, 1.0)
    flip = p > 0.5
    q = torch.where(flip, 1.0 - p, p)
    key = _call_keys(keys.to(device=n.device), call).repeat_interleave(per_image)
    draw = torch.arange(per_image, device=n.device).repeat(batch)
    out = torch.zeros_like(n)
    live = (n > 0) & (q > 0)
    small = live & (n * q < INVERSION_MEAN)
    large = live & ~small
    for mask, sampler in ((small, _inversion), (large, _btrs)):
        idx = mask.nonzero().flatten()
        if idx.numel():
            out[idx] = sampler(n[idx], q[idx], key[idx], draw[idx], per_image)
    out = torch.where(flip, n - out, out)
    return out.reshape(batch, per_image)


def _check_probabilities(probs: torch.Tensor, what: str) -> torch.Tensor:
    if probs.is_complex() or probs.dim() != 3:
        raise QcreepError(f"{what} takes real probabilities (B, circuits, outcomes), got {tuple(probs.shape)} "
                          f"{probs.dtype}")
    return probs.detach().to(torch.float64).clamp_min(0.0)


def tree_counts(probs: torch.Tensor, shots: int, keys: torch.Tensor, call: int = 0) -> torch.Tensor:
    """``Multinomial(shots, p)`` counts of all ``2**m`` outcomes of each circuit, exactly: ``(B, G, 2**m)`` float64.

    ``probs`` is real ``(B, G, 2**m)``: ``G`` circuits per image, outcome ``j`` the basis state with
    qubit 0 as its most significant bit (clamped at 0; each row's scale does not matter). Level
    ``l`` (call ``call + l``) splits the shots of every prefix ``b_0 .. b_{l-1}`` by the value of qubit
    ``l``, with the conditional probability of ``b_l = 0`` given the prefix (0 where the prefix has
    probability 0, which then has no shots). Draw index of node ``v`` of circuit ``g`` at level ``l``:
    ``g 2**l + v``. The counts of a row always add up to ``shots``.
    """
    check_int(shots, "shots", 1)
    p = _check_probabilities(probs, "tree_counts")
    batch, circuits, outcomes = p.shape
    m = outcomes.bit_length() - 1
    if outcomes != 2**m:
        raise QcreepError(f"tree_counts needs 2**m outcomes per circuit, got {outcomes}")
    sums = [p]
    for _ in range(m):
        sums.append(sums[-1].reshape(batch, circuits, -1, 2).sum(-1))
    sums.reverse()  # sums[l]: (B, G, 2**l), the probabilities of the prefixes of length l
    counts = torch.full((batch, circuits, 1), float(shots), dtype=torch.float64, device=p.device)
    for level in range(m):
        parent, left = sums[level], sums[level + 1][..., 0::2]
        ratio = torch.where(parent > 0, left / parent.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
        first = binomial(counts.reshape(batch, -1), ratio.reshape(batch, -1).clamp(0.0, 1.0), keys, call + level)
        first = first.reshape(counts.shape)
        counts = torch.stack((first, counts - first), -1).reshape(batch, circuits, -1)
    return counts


def chain_counts(probs: torch.Tensor, shots: int, keys: torch.Tensor, call: int = 0) -> torch.Tensor:
    """Counts of the first ``J`` outcomes of ``Multinomial(shots, p)``, exactly: ``(B, G, J)`` float64.

    ``probs`` is real ``(B, G, J)``: the probabilities of the first ``J`` outcomes only (the other
    outcomes hold the rest of the mass, ``1 - sum_j p_j``). Step ``j`` (call ``call + j``) draws
    ``c_j ~ Binomial(S - sum_{i<j} c_i, p_j / (1 - sum_{i<j} p_i))``, the ratio clamped to ``[0, 1]``.
    """
    check_int(shots, "shots", 1)
    p = _check_probabilities(probs, "chain_counts")
    batch, circuits, first = p.shape
    before = torch.cumsum(p, -1) - p  # sum_{i<j} p_i
    rest = (1.0 - before).clamp_min(0.0)
    ratio = torch.where(rest > 0, p / rest.clamp_min(torch.finfo(torch.float64).tiny), 0.0).clamp(0.0, 1.0)
    left = torch.full((batch, circuits), float(shots), dtype=torch.float64, device=p.device)
    out = torch.empty_like(p)
    for j in range(first):
        c = binomial(left, ratio[..., j], keys, call + j)
        out[..., j] = c
        left = left - c
    return out


def sign_estimates(counts: torch.Tensor, n_qubits: int, shots: int) -> torch.Tensor:
    """``<Z_i>`` estimates ``sum_j c_j (1 - 2 bit_i(j)) / S`` from basis counts ``(..., 2**n)``: ``(..., n)``."""
    index = torch.arange(2**n_qubits, device=counts.device)
    signs = torch.stack([1 - 2 * ((index >> (n_qubits - 1 - q)) & 1) for q in range(n_qubits)], -1)
    return counts.to(torch.float64) @ signs.to(torch.float64) / float(shots)
