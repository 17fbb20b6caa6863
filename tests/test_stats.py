"""Tests for qcreep.stats: paired comparisons checked against cases worked out by hand."""

from __future__ import annotations

import ast
import itertools
import math
from pathlib import Path

import pytest

from qcreep.errors import QcreepError
from qcreep.stats import (
    cliffs_delta,
    min_pairs_to_resolve,
    min_wilcoxon_p,
    paired_comparison,
    t_interval,
    wilcoxon_p,
)

# Student's t quantiles from printed tables (two-sided 95 %): t_{0.975, df}.
T975 = {2: 4.302653, 4: 2.776445, 5: 2.570582}

# A hand-worked example with 6 seeds. Differences a - b = 0.5, 1.0, ..., 3.0 (all positive, no ties).
B6 = [90.0, 91.0, 92.0, 93.0, 94.0, 95.0]
A6 = [90.5, 92.0, 93.5, 95.0, 96.5, 98.0]


def test_hand_worked_six_pairs():
    c = paired_comparison(A6, B6)
    assert c["n"] == 6
    # mean of 0.5 .. 3.0 is 1.75; sample variance = sum((d - 1.75)^2) / 5 = 4.375 / 5 = 0.875
    assert c["mean_diff"] == pytest.approx(1.75)
    assert c["sd_diff"] == pytest.approx(math.sqrt(0.875))
    half = T975[5] * math.sqrt(0.875) / math.sqrt(6)          # 0.98166
    assert c["ci_low"] == pytest.approx(1.75 - half, abs=1e-5)
    assert c["ci_high"] == pytest.approx(1.75 + half, abs=1e-5)
    assert c["ci_low"] == pytest.approx(0.76834, abs=1e-4)
    # all 6 differences positive: only the all-plus and all-minus sign patterns are as extreme
    assert c["wilcoxon_p"] == pytest.approx(2 / 64) == pytest.approx(0.03125)
    assert c["wilcoxon_method"] == "exact"
    # Cliff's delta over the samples, counted by hand per a_i: (#b below - #b above)
    # 90.5: 1-5, 92: 2-3, 93.5: 4-2, 95: 5-0, 96.5: 6-0, 98: 6-0  -> 14 / 36
    assert c["cliffs_delta"] == pytest.approx(14 / 36)
    assert c["resolved"] is True
    assert c["verdict"] == "A better"
    assert c["confidence"] == 0.95


def test_b_better_and_names():
    c = paired_comparison(B6, A6, names=("level 2", "level 2 twin"))
    assert c["mean_diff"] == pytest.approx(-1.75)
    assert c["ci_high"] < 0 and c["resolved"]
    assert c["verdict"] == "level 2 twin better"
    assert c["cliffs_delta"] == pytest.approx(-14 / 36)


def test_five_seeds_never_resolve():
    a = [92.0, 93.0, 94.0, 95.0, 96.0]
    b = [90.0, 90.5, 91.0, 91.5, 92.0]                         # every difference positive
    c = paired_comparison(a, b)
    assert c["ci_low"] > 0                                      # the t interval excludes 0 ...
    assert c["wilcoxon_p"] == pytest.approx(2 / 32) == pytest.approx(0.0625)   # ... Wilcoxon cannot
    assert not c["resolved"] and c["verdict"] == "not resolved by 5 seeds"
    assert min_wilcoxon_p(5) == 0.0625 and min_wilcoxon_p(6) == 0.03125
    assert min_pairs_to_resolve(0.05) == 6
    assert min_pairs_to_resolve(0.01) == 8                      # 2/128 = 0.0156, 2/256 = 0.0078


def test_t_interval_formula_small_n():
    # d = 1, 2, 3: mean 2, sample sd 1, t_{0.975,2} = 4.302653
    lo, hi = t_interval([1.0, 2.0, 3.0])
    assert lo == pytest.approx(2 - T975[2] / math.sqrt(3), abs=1e-5)
    assert hi == pytest.approx(2 + T975[2] / math.sqrt(3), abs=1e-5)
    # 5 pairs: d = 1, 2, 3, 4, 5 -> mean 3, sd sqrt(2.5)
    lo, hi = t_interval([1, 2, 3, 4, 5])
    assert hi - 3 == pytest.approx(T975[4] * math.sqrt(2.5) / math.sqrt(5), abs=1e-5)
    assert t_interval([4.0]) is None
    assert t_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)


def _exact_signed_rank_p(ranks, t_minus):
    """Two-sided p by brute force: the share of sign patterns with min(T+, T-) <= the observed one."""
    total = sum(ranks)
    count = 0
    for signs in itertools.product((0, 1), repeat=len(ranks)):
        neg = sum(r for r, s in zip(ranks, signs) if s)
        if min(neg, total - neg) <= t_minus:
            count += 1
    return count / 2 ** len(ranks)


def test_wilcoxon_with_ties_is_exact():
    # |d| = 1, 1, 1, 2, 3, 4: the three 1s share mid-rank 2; the only negative one has rank 2, T- = 2.
    # Sign patterns with T- <= 2: none negative, or one of the three rank-2s: 4 of 64, doubled: 8/64.
    p, method = wilcoxon_p([1.0, 1.0, 2.0, 3.0, -1.0, 4.0])
    assert p == pytest.approx(0.125)
    assert p == pytest.approx(_exact_signed_rank_p([2, 2, 2, 4, 5, 6], 2))
    assert method.startswith("exact with ties")


def test_wilcoxon_exact_matches_enumeration():
    d = [0.3, -0.1, 0.7, 1.2, -0.4, 0.9, 1.5]                  # ranks of |d|: 2, 1, 4, 6, 3, 5, 7
    p, method = wilcoxon_p(d)
    assert method == "exact"
    assert p == pytest.approx(_exact_signed_rank_p([2, 1, 4, 6, 3, 5, 7], 1 + 3))


def test_zero_differences():
    # all zero: nothing to rank, p = 1
    c = paired_comparison([92.0] * 4, [92.0] * 4)
    assert c["wilcoxon_p"] == 1.0 and c["wilcoxon_method"] == "all differences zero"
    assert c["mean_diff"] == 0.0 and (c["ci_low"], c["ci_high"]) == (0.0, 0.0)
    assert c["cliffs_delta"] == 0.0
    assert not c["resolved"] and c["verdict"] == "not resolved by 4 seeds"
    # zeros are dropped before ranking (Wilcoxon's treatment): as if n = 6 all positive
    p, _ = wilcoxon_p([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert p == pytest.approx(2 / 64)


def test_floating_point_noise_is_not_a_difference():
    a = [0.1 + 0.2, 0.1 + 0.2, 0.1 + 0.2]                      # 0.30000000000000004
    b = [0.3, 0.3, 0.3]
    c = paired_comparison(a, b)
    assert c["wilcoxon_p"] == 1.0 and c["cliffs_delta"] == 0.0 and not c["resolved"]


def test_too_few_pairs():
    one = paired_comparison([93.0], [92.0])
    assert one["n"] == 1 and one["mean_diff"] == pytest.approx(1.0)
    assert one["ci_low"] is None and one["wilcoxon_p"] is None and one["sd_diff"] is None
    assert one["cliffs_delta"] == 1.0
    assert not one["resolved"] and one["verdict"] == "not resolved by 1 seed"
    none = paired_comparison([], [])
    assert none["n"] == 0 and none["mean_diff"] is None and none["cliffs_delta"] is None
    assert none["verdict"] == "no paired seeds" and not none["resolved"]
    assert wilcoxon_p([1.0]) == (None, "too few pairs")


def test_cliffs_delta_cases():
    assert cliffs_delta([5, 6, 7], [1, 2, 3]) == 1.0           # fully separated
    assert cliffs_delta([1, 2, 3], [5, 6, 7]) == -1.0
    assert cliffs_delta([1, 2, 3], [1, 2, 3]) == 0.0           # identical
    assert cliffs_delta([1, 2], [1]) == pytest.approx((1 - 0) / 2)   # unequal sizes: 2 > 1, 1 = 1
    assert cliffs_delta([], [1.0]) is None
    # 3 vs (1, 3, 5): one below, one equal, one above -> 0
    assert cliffs_delta([3], [1, 3, 5]) == 0.0


def test_large_sample_with_ties_uses_normal_approximation():
    d = [1.0, -1.0, 2.0, 2.0] * 5                                # 20 tied differences
    p, method = wilcoxon_p(d)
    assert method == "normal approximation" and 0 < p <= 1


def test_one_outlier_does_not_resolve():
    # a positive mean made by one outlying seed while 7 of 8 seeds are worse: neither test resolves
    d = [-1.0, -1.1, -1.2, -1.3, -1.4, -1.5, -1.6, 60.0]
    c = paired_comparison(d, [0.0] * 8)
    assert c["mean_diff"] == pytest.approx(50.9 / 8)
    assert c["ci_low"] < 0 < c["ci_high"]
    # T+ = 8 (the outlier has the top rank): 2 * #{sign patterns with T+ <= 8} / 256 = 2 * 25 / 256
    assert c["wilcoxon_p"] == pytest.approx(_exact_signed_rank_p(range(1, 9), 8))
    assert c["wilcoxon_p"] == pytest.approx(50 / 256)
    assert c["cliffs_delta"] == pytest.approx((1 * 8 - 7 * 8) / 64)   # 1 value above the 8 zeros, 7 below
    assert not c["resolved"]


@pytest.mark.parametrize("a,b,fragment", [
    ([1.0, 2.0, 3.0], [1.0, 2.0], "got 3 value(s) for A and 2 for B"),
    ([1.0], [1.0, 2.0], "one value per seed"),
    ([1.0, float("nan")], [1.0, 2.0], "finite numbers"),
    ([[1.0, 2.0]], [[1.0, 2.0]], "flat list"),
    (["x"], [1.0], "list of numbers"),
])
def test_bad_inputs(a, b, fragment):
    with pytest.raises(QcreepError) as info:
        paired_comparison(a, b)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_bad_confidence():
    with pytest.raises(QcreepError, match="confidence must be a number between 0 and 1"):
        paired_comparison([1.0, 2.0], [0.0, 1.0], confidence=95)
    with pytest.raises(QcreepError, match="alpha must be between 0 and 1"):
        min_pairs_to_resolve(0)


def test_other_confidence_level():
    # 90 %: t_{0.95,5} = 2.015048; p = 0.03125 < 0.10, so it resolves as well
    c = paired_comparison(A6, B6, confidence=0.90)
    assert c["ci_low"] == pytest.approx(1.75 - 2.015048 * math.sqrt(0.875) / math.sqrt(6), abs=1e-5)
    assert c["resolved"]


def test_stats_imports_no_torch():
    tree = ast.parse((Path(__file__).resolve().parents[1] / "qcreep" / "stats.py").read_text(encoding="utf-8"))
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m.startswith("torch") for m in modules)
    assert modules <= {"__future__", "math", "numpy", "scipy", "qcreep.errors"}


def test_docstring_examples():
    import doctest

    import qcreep.stats

    result = doctest.testmod(qcreep.stats, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0
