"""Paired comparisons of two rungs over seeds: a t interval, a Wilcoxon test and Cliff's delta.

Seed ``k`` of rung A and seed ``k`` of rung B see the same data order and the same split, so the
natural unit of comparison is the *paired* difference ``d_k = a_k - b_k``. For each pair of rungs
:func:`paired_comparison` reports

* the mean paired difference with a confidence interval from Student's t distribution
  (``mean(d) ± t_{(1+c)/2, n-1} · sd(d) / sqrt(n)``, sample sd with ddof=1);
* the two-sided Wilcoxon signed-rank test on ``d``. Demšar (JMLR 7, 2006, "Statistical
  comparisons of classifiers over multiple data sets") recommends it over the paired t test for
  comparing two learners: it does not assume the differences are normal and an outlying seed
  counts by its rank, not by its size;
* Cliff's delta over the two samples, an effect size that needs no distributional assumption:
  ``(#{a_i > b_j} - #{a_i < b_j}) / (n_a n_b)``, from -1 (every B above every A) to 1.

A difference counts as *resolved* only when both tests agree: the t interval excludes 0 and the
Wilcoxon p is below ``1 - confidence``. With few seeds this is a high bar on purpose. The exact
two-sided Wilcoxon p can never be smaller than ``2 / 2**n``: 0.0625 for 5 pairs, so **5 seeds can
never resolve a difference** at the 5 % level, whatever the numbers; 6 pairs are the minimum
(smallest p = 0.03125).

Only numpy and scipy are used; nothing here imports torch.

Example:
    >>> from qcreep.stats import paired_comparison
    >>> c = paired_comparison([91.0, 92.0, 93.0, 92.5, 91.5, 92.2],
    ...                       [90.0, 90.5, 91.0, 90.8, 90.1, 90.9], names=("level 2", "level 0"))
    >>> c["n"], round(c["mean_diff"], 3), c["wilcoxon_p"], c["verdict"]
    (6, 1.483, 0.03125, 'level 2 better')
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _sp

from qcreep.errors import QcreepError

#: Differences are rounded to this many decimals before ranking and before equality tests, so that
#: floating-point noise (``92.12 - 92.0`` vs ``92.0 - 91.88``) neither breaks ties nor hides zeros.
ROUND_DECIMALS = 10

#: Largest number of non-zero tied differences for which the tie-corrected exact p-value is found by
#: enumerating every sign pattern (2**13 = 8192); above it the normal approximation is used.
MAX_PERMUTATION_PAIRS = 13


def _as_sample(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise QcreepError(f"{name} must be a list of numbers (one per seed), got {values!r}") from None
    if arr.ndim != 1:
        raise QcreepError(f"{name} must be a flat list of numbers (one per seed), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise QcreepError(f"{name} must hold finite numbers, got {arr.tolist()}")
    return arr


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided exact Wilcoxon signed-rank p-value possible with ``n`` pairs: ``2 / 2**n``.

    Example:
        >>> min_wilcoxon_p(5), min_wilcoxon_p(6)
        (0.0625, 0.03125)
    """
    if n < 1:
        return 1.0
    return min(1.0, 2.0 / 2.0 ** n)


def min_pairs_to_resolve(alpha: float = 0.05) -> int:
    """The fewest pairs for which the two-sided exact Wilcoxon test can reach ``p < alpha``.

    Example:
        >>> min_pairs_to_resolve(0.05)
        6
    """
    if not 0 < alpha < 1:
        raise QcreepError(f"alpha must be between 0 and 1, got {alpha!r}")
    n = 1
    while min_wilcoxon_p(n) >= alpha:
        n += 1
    return n


def t_interval(diffs, confidence: float = 0.95) -> tuple[float, float] | None:
    """Confidence interval of the mean of ``diffs`` from Student's t distribution; None for n < 2.

    ``mean ± t.ppf((1 + confidence) / 2, n - 1) · s / sqrt(n)`` with ``s`` the sample standard
    deviation (ddof=1). When every difference is the same the interval is that single value.

    Example:
        >>> lo, hi = t_interval([1.0, 2.0, 3.0])
        >>> round(lo, 4), round(hi, 4)      # 2 ± 4.3027 · 1 / sqrt(3)
        (-0.4841, 4.4841)
    """
    _check_confidence(confidence)
    d = _as_sample(diffs, "diffs")
    n = d.size
    if n < 2:
        return None
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    half = float(_sp.t.ppf((1.0 + confidence) / 2.0, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def wilcoxon_p(diffs) -> tuple[float | None, str]:
    """Two-sided Wilcoxon signed-rank p-value of ``diffs`` and the method used.

    Zero differences are dropped (Wilcoxon's own treatment). Then:

    * fewer than 2 differences in all: ``(None, "too few pairs")``;
    * every difference zero: ``(1.0, "all differences zero")``;
    * no ties among the ``|d|``: ``scipy.stats.wilcoxon(..., method="exact")``, the exact null
      distribution (``"exact"``);
    * ties, at most :data:`MAX_PERMUTATION_PAIRS` non-zero differences: the exact distribution of
      the mid-rank statistic, by enumerating all ``2**n`` sign patterns
      (``scipy.stats.PermutationMethod``; ``"exact with ties (all 2**n sign patterns)"``);
    * ties and more pairs: the normal approximation with tie and continuity correction
      (``"normal approximation"``).

    Example:
        >>> wilcoxon_p([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])     # all positive, n = 6: 2 / 64
        (0.03125, 'exact')
    """
    d = np.round(_as_sample(diffs, "diffs"), ROUND_DECIMALS)
    if d.size < 2:
        return None, "too few pairs"
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0, "all differences zero"
    m = nz.size
    ties = np.unique(np.abs(nz)).size < m
    if not ties:
        res = _sp.wilcoxon(nz, alternative="two-sided", method="exact")
        method = "exact"
    elif m <= MAX_PERMUTATION_PAIRS:
        res = _sp.wilcoxon(nz, alternative="two-sided", method=_sp.PermutationMethod(n_resamples=2 ** m))
        method = "exact with ties (all 2**n sign patterns)"
    else:
        res = _sp.wilcoxon(nz, alternative="two-sided", method="asymptotic", correction=True)
        method = "normal approximation"
    return min(1.0, float(res.pvalue)), method


def cliffs_delta(a, b) -> float | None:
    """Cliff's delta of sample ``a`` over sample ``b``: ``(#{a_i > b_j} - #{a_i < b_j}) / (n_a n_b)``.

    Counted directly over all ``n_a · n_b`` pairs (the samples need not have the same length).
    1 when every value of ``a`` is above every value of ``b``, -1 for the reverse, 0 when they
    overlap evenly (for instance identical samples). None when a sample is empty.

    Example:
        >>> cliffs_delta([3, 4, 5], [1, 2]), cliffs_delta([1, 2], [1, 2])
        (1.0, 0.0)
    """
    x = np.round(_as_sample(a, "a"), ROUND_DECIMALS)
    y = np.round(_as_sample(b, "b"), ROUND_DECIMALS)
    if x.size == 0 or y.size == 0:
        return None
    greater = int(np.sum(x[:, None] > y[None, :]))
    less = int(np.sum(x[:, None] < y[None, :]))
    return (greater - less) / (x.size * y.size)


def _check_confidence(confidence) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise QcreepError(f"confidence must be a number between 0 and 1 (e.g. 0.95), got {confidence!r}")


def _seeds_text(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def paired_comparison(a, b, confidence: float = 0.95, *, names=("A", "B")) -> dict:
    """Compare rung A with rung B over paired seeds (``a[k]`` and ``b[k]`` come from seed ``k``).

    Higher values are taken to be better (accuracies). Returns a dict with

    * ``n``: number of pairs; ``mean_diff``: mean of ``a - b`` (None when n = 0);
      ``sd_diff``: sample sd of the differences (ddof=1; None for n < 2);
    * ``ci_low``, ``ci_high``: the ``confidence`` interval of the mean paired difference from
      Student's t distribution (:func:`t_interval`; None for n < 2); ``confidence``;
    * ``wilcoxon_p``: two-sided Wilcoxon signed-rank p (:func:`wilcoxon_p`): exact for small n,
      1.0 when every difference is zero, None for n < 2; ``wilcoxon_method`` says which was used;
    * ``cliffs_delta``: effect size of the sample ``a`` over the sample ``b`` (:func:`cliffs_delta`);
    * ``resolved``: True only when the t interval excludes 0 **and** ``wilcoxon_p < 1 - confidence``
      (and the two agree on the direction);
    * ``verdict``: ``"<A> better"``, ``"<B> better"`` or ``"not resolved by <n> seeds"``, with the
      names from ``names``.

    The Wilcoxon signed-rank test is the one Demšar (JMLR 2006) recommends for comparing two
    learners on paired measurements; the t interval gives the size of the difference in the units
    of the data. Note that with 5 pairs the smallest two-sided exact Wilcoxon p is 2/32 = 0.0625,
    so 5 seeds can never resolve a difference at the 5 % level; 6 pairs are the minimum.

    Raises :class:`~qcreep.errors.QcreepError` when ``a`` and ``b`` differ in length, hold
    non-finite values, or ``confidence`` is not in (0, 1).

    Example:
        >>> c = paired_comparison([92.0, 92.4, 91.8, 92.1, 92.3], [92.1, 92.0, 92.0, 92.2, 91.9])
        >>> c["n"], c["resolved"], c["verdict"]
        (5, False, 'not resolved by 5 seeds')
    """
    _check_confidence(confidence)
    x = _as_sample(a, "a")
    y = _as_sample(b, "b")
    name_a, name_b = (str(v) for v in names)
    if x.size != y.size:
        raise QcreepError(f"a paired comparison needs one value per seed from each rung: got {x.size} "
                          f"value(s) for {name_a} and {y.size} for {name_b}; pair them by seed first")
    n = int(x.size)
    out = {"n": n, "mean_diff": None, "sd_diff": None, "ci_low": None, "ci_high": None,
           "confidence": float(confidence), "wilcoxon_p": None, "wilcoxon_method": "too few pairs",
           "cliffs_delta": None, "resolved": False, "verdict": "no paired seeds"}
    if n == 0:
        return out
    d = x - y
    out["mean_diff"] = float(d.mean())
    out["cliffs_delta"] = cliffs_delta(x, y)
    out["verdict"] = f"not resolved by {_seeds_text(n)}"
    if n < 2:
        return out
    out["sd_diff"] = float(d.std(ddof=1))
    out["ci_low"], out["ci_high"] = t_interval(d, confidence)
    out["wilcoxon_p"], out["wilcoxon_method"] = wilcoxon_p(d)
    excludes_zero = out["ci_low"] > 0 or out["ci_high"] < 0
    significant = out["wilcoxon_p"] < 1.0 - confidence
    if excludes_zero and significant and _rank_direction(d) == np.sign(out["mean_diff"]):
        out["resolved"] = True
        out["verdict"] = f"{name_a} better" if out["mean_diff"] > 0 else f"{name_b} better"
    return out


def _rank_direction(d: np.ndarray) -> float:
    """+1 when the positive differences carry more rank than the negative ones, -1 for the reverse."""
    d = np.round(d, ROUND_DECIMALS)
    nz = d[d != 0]
    if nz.size == 0:
        return 0.0
    ranks = _sp.rankdata(np.abs(nz))
    return float(np.sign(ranks[nz > 0].sum() - ranks[nz < 0].sum()))
