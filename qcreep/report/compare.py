"""Seed-paired comparisons between rungs: each rung against the all-classical rung, each twin against its rung.

Seed ``k`` of two rungs shares the data order and the split, so rungs are compared seed by seed
on their final test accuracy (percentage points) with :func:`qcreep.stats.paired_comparison`: a
t interval of the mean paired difference, the exact Wilcoxon signed-rank test and Cliff's delta.
Only seeds both rungs completed are paired.
"""

from __future__ import annotations

from qcreep.published import END_TO_END_MODELS
from qcreep.stats import min_pairs_to_resolve, paired_comparison

#: Confidence of the t interval; the Wilcoxon test is read at ``1 - CONFIDENCE``.
CONFIDENCE = 0.95

#: Text for the report: which tests are used and why.
METHODS_TEXT = (
    "Rungs are compared seed by seed (seed k of two rungs shares the data order and the split) on "
    "final test accuracy, in percentage points. For each pair the table gives the mean paired "
    "difference with a 95 % confidence interval from Student's t distribution, the two-sided "
    "Wilcoxon signed-rank test (exact for small samples; recommended for comparing two learners "
    "on paired measurements by Demšar, JMLR 2006), and Cliff's delta (the share of cross-pairs in "
    "which the first rung is higher minus the share in which it is lower, from -1 to 1). A "
    "difference counts as resolved only when the interval excludes 0 and the Wilcoxon p is below "
    f"0.05. With 5 or fewer pairs the exact two-sided Wilcoxon p cannot go below 2/2^n (0.0625 for "
    f"5), so at least {min_pairs_to_resolve(1 - CONFIDENCE)} seeds are needed to resolve anything."
)


def _pair(row_a: dict, row_b: dict) -> tuple[list[int], list[float], list[float]]:
    seeds = sorted(set(row_a["final_test_by_seed"]) & set(row_b["final_test_by_seed"]))
    return (seeds, [row_a["final_test_by_seed"][s] for s in seeds],
            [row_b["final_test_by_seed"][s] for s in seeds])


def _compare(kind: str, row_a: dict, row_b: dict) -> dict:
    seeds, a, b = _pair(row_a, row_b)
    result = paired_comparison(a, b, CONFIDENCE, names=(row_a["label"], row_b["label"]))
    if not seeds:
        result["verdict"] = "no common seeds"
    return {"kind": kind, "dataset": row_a["dataset"], "angles": row_a["angles"],
            "angles_b": row_b["angles"], "a": row_a["label"], "b": row_b["label"],
            "seeds": seeds, "epochs_a": row_a["epochs"], "epochs_b": row_b["epochs"], **result}


def rung_comparisons(rows: list[dict]) -> list[dict]:
    """Paired comparisons of the rows of :func:`~qcreep.report.summary.summarize`, in table order.

    * every rung against level 0 of the same dataset and angle mode (``kind="vs level 0"``,
      A = the rung, B = the row labelled ``"level 0"``, else the first all-classical level-0 row);
    * every twin against the rung it controls (``kind="quantum vs twin"``, A = the quantum rung,
      B = the twin), same angle mode when there is one, else every angle mode of that rung;
    * every rung of a ladder on data ``D`` against a built-in end-to-end model on the same data
      with the same number of classes (a row ``"hamembedding on D"``; ``kind="vs end-to-end"``, B
      labelled ``"hamembedding (end-to-end)"``): the paper's hybrid-against-end-to-end claim on
      equal data.

    Each result holds ``kind``, ``dataset``, ``angles`` (of A), ``angles_b``, ``a``, ``b``,
    ``seeds`` (paired), ``epochs_a``, ``epochs_b`` and every key of
    :func:`qcreep.stats.paired_comparison` (``mean_diff`` is A - B in percentage points).

    Example:
        >>> for c in rung_comparisons(summarize(load_records("runs/mnist"))):  # doctest: +SKIP
        ...     print(c["a"], "vs", c["b"], c["verdict"])
        level 1 vs level 0 not resolved by 5 seeds
        level 2 vs level 0 not resolved by 5 seeds
    """
    out = []
    for row in rows:
        if row["twin_of"]:
            targets = [r for r in rows if r["dataset"] == row["dataset"] and r["label"] == row["twin_of"]
                       and not r["twin_of"]]
            same = [r for r in targets if r["angles"] == row["angles"]]
            for target in same or targets:
                out.append(_compare("quantum vs twin", target, row))
        bases = [r for r in rows if r["dataset"] == row["dataset"] and r["angles"] == row["angles"]
                 and r["level"] == 0 and not r["twin_of"]]
        base = next((r for r in bases if r["label"] == "level 0"), bases[0] if bases else None)
        if base is row:
            continue
        if base is not None:
            out.append(_compare("vs level 0", row, base))
    out += _end_to_end_comparisons(rows)
    return out


def _end_to_end_comparisons(rows: list[dict]) -> list[dict]:
    out = []
    for e2e in rows:
        model, sep, data = e2e["dataset"].partition(" on ")
        if not sep or model not in END_TO_END_MODELS or e2e["twin_of"]:
            continue
        named = {**e2e, "label": f"{model} (end-to-end)"}
        for row in rows:
            if row["dataset"] == data and not row["twin_of"] and row.get("num_classes") == e2e.get("num_classes"):
                out.append(_compare("vs end-to-end", row, named))
    return out
