"""Markdown: the summary table printed on the terminal, and the text of ``report.md``.

:func:`markdown_table` is what ``qcreep run`` and ``qcreep report`` print: first the answer
(:func:`headline_lines`: does each quantum rung beat level 0 and its classical twin, with the
paired interval and p), then the summary table, the notes a newcomer needs to read it (what chance
is, which seeds failed, how the protocol differs from the published one, how the learning rate was
chosen), and the per-epoch comparison with the published numbers. Columns that would be "—" on
every row (the published numbers on digits, for example) are left out, and a note says so.
:func:`report_text` is the whole ``report.md``: the same answer first, then the table and the
statistics section, tuning, rung details, unitarity checks and the protocol of every rung.
"""

from __future__ import annotations

from pathlib import Path

from qcreep.published import (
    END_TO_END_QUANTUM,
    PUBLISHED_EPOCHS,
    PUBLISHED_JAX_PROTOCOL,
    PUBLISHED_TORCH_PROTOCOL,
    canonical_dataset,
)
from qcreep.report.compare import CONFIDENCE, METHODS_TEXT, rung_comparisons
from qcreep.report.records import PATH_KEY, plural
from qcreep.report.rungs import family_level, is_study
from qcreep.report.summary import NEAR_CHANCE_PP

DATASET_TITLES = {"digits": "digits", "mnist": "MNIST", "fashion-mnist": "FashionMNIST",
                  "cifar10": "CIFAR-10"}

#: Marks a Δ against the published number taken under another protocol.
DIFFERENT_PROTOCOL = "†"


def title(dataset: str) -> str:
    """The display name of a dataset (``"fashion-mnist"`` -> ``"FashionMNIST"``)."""
    return DATASET_TITLES.get(dataset, dataset)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _pm(mean, sd, digits: int = 2) -> str:
    if mean is None:
        return "—"
    if sd is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _signed(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def params_text(row: dict) -> str:
    """The parameter count of a row, or the distinct counts joined by ``/`` when seeds disagree."""
    if row["n_params"] is not None:
        return str(row["n_params"])
    if row["n_params_all"]:
        return "/".join(str(p) for p in row["n_params_all"])
    return "—"


def _epochs_text(row: dict) -> str:
    return f"{row['epochs']}*" if row["epochs_differ"] else str(row["epochs"])


def _rung(row: dict) -> str:
    return f"{row['dataset']} {row['label']} ({row['angles']})"


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _values_text(values) -> str:
    return ", ".join(_num(v) for v in values) if isinstance(values, list) else _num(values)


def _budget_text(budget: dict | None, metric=None) -> str:
    """``"9 trials, 10 epochs each, chosen by val_acc, grid lr 0.001, 0.005"`` from a tuning budget."""
    if not budget:
        return "budget not recorded"
    bits = []
    if budget.get("trials") is not None:
        bits.append(f"{budget['trials']} trial{'' if budget['trials'] == 1 else 's'}")
    if budget.get("epochs") is not None:
        bits.append(f"{budget['epochs']} epoch{'' if budget['epochs'] == 1 else 's'} each")
    seeds = budget.get("seeds")
    if isinstance(seeds, list) and len(seeds) > 1:
        bits.append(f"mean over seeds {', '.join(map(str, seeds))}")
    elif budget.get("seed") is not None:
        bits.append(f"on seed {budget['seed']}")
    metric = budget.get("metric") or metric
    if metric:
        bits.append(f"chosen by {metric}")
    grid = budget.get("grid")
    if isinstance(grid, dict) and grid:
        bits.append("grid " + "; ".join(f"{k} {_values_text(vals)}" for k, vals in grid.items()))
    return ", ".join(bits) if bits else "budget not recorded"


def _seed_list(seeds) -> str:
    seeds = list(seeds)
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def _failed_cell(row: dict) -> str:
    """`` (seed 4 failed)`` after the final accuracy of a rung with failed seeds, else empty."""
    failed = row.get("failed_seeds") or []
    return f" ({_seed_list(f['seed'] for f in failed)} failed)" if failed else ""


def _failed_note(row: dict) -> str:
    failed = row["failed_seeds"]
    others = [v for s, v in row["final_test_by_seed"].items() if s not in {f["seed"] for f in failed}]
    accs = "; ".join(f"seed {f['seed']} ended at {f['final_test']:.2f} %" for f in failed)
    text = (f"Failed {'seed' if len(failed) == 1 else 'seeds'}: {_rung(row)}: {accs} "
            f"(chance {row['chance_pct']:g} %), while its other {plural(len(others), 'seed')} reached "
            f"{min(others):.2f}–{max(others):.2f} %. The mean ± sd and the paired statistics include "
            f"{'it' if len(failed) == 1 else 'them'}")
    if row["final_test_mean_without_failed"] is not None and len(others) > 0:
        text += (f"; over the other seeds alone the final test accuracy is "
                 f"{_pm(row['final_test_mean_without_failed'], row['final_test_sd_without_failed'])} %")
    return text + "."


#: What the failed-seed flag means, for the notes.
FAILED_RULE = (f"A seed is marked failed when the rung's other seeds trained (their median is more than "
               f"{NEAR_CHANCE_PP:g} pp above chance) and it did not: it ended within {NEAR_CHANCE_PP:g} pp of "
               "chance, or closer to chance than to that median.")


def _verdict_word(c: dict) -> str:
    if not c["seeds"]:
        return "no common seeds"
    if c["resolved"]:
        return "better" if c["mean_diff"] > 0 else "worse"
    return f"not resolved with {plural(c['n'], 'seed')}"


def _level(row: dict) -> int:
    """A row's replacement level, a level refilled by other families (``level 2 (dense=...)``) included."""
    if row["level"] is not None:
        return row["level"]
    return family_level(row["label"]) or 0


def _headline_comparisons(rows: list[dict], comparisons: list[dict]) -> list[dict]:
    """The comparisons that answer the question: each quantum rung against level 0 and against its twin.

    A rung counts when it is a replacement level above 0; where a dataset has none, every rung that
    is not a twin. Highest level first; against level 0 before against the twin.
    """
    by_label = {(r["dataset"], r["label"], r["angles"]): r for r in rows}
    chosen = []
    for c in comparisons:
        row = by_label.get((c["dataset"], c["a"], c["angles"]))
        if row is None or row["twin_of"]:
            continue
        has_levels = any(r["dataset"] == c["dataset"] and _level(r) > 0 for r in rows)
        if has_levels and not _level(row) > 0:
            continue
        chosen.append((c, row))
    order = {id(r): i for i, r in enumerate(rows)}
    chosen.sort(key=lambda cr: (cr[1]["dataset"] != rows[0]["dataset"], -_level(cr[1]),
                                order[id(cr[1])], cr[0]["kind"] != "vs level 0"))
    return [c for c, _ in chosen]


def _headline_line(c: dict, rows: list[dict], prefix: str) -> str:
    if c["mean_diff"] is None:
        stats = "no paired seeds"
    elif c["ci_low"] is None:
        stats = f"{c['mean_diff']:+.2f} pp from {plural(c['n'], 'seed')} (no interval, no test)"
    else:
        stats = (f"{c['mean_diff']:+.2f} pp [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], "
                 f"p = {c['wilcoxon_p']:.2g}")
    line = f"- {prefix}**{c['a']} vs {c['b']}**: {stats}: **{_verdict_word(c)}**"
    failed = []
    for name, angles in ((c["a"], c["angles"]), (c["b"], c["angles_b"])):
        row = next((r for r in rows if r["dataset"] == c["dataset"] and r["label"] == name
                    and r["angles"] == angles), None)
        for f in (row or {}).get("failed_seeds") or []:
            if f["seed"] in c["seeds"]:
                failed.append(f"{name} seed {f['seed']} failed ({f['final_test']:.2f} %)")
    if failed:
        line += "; " + ", ".join(failed) + f", and the difference includes {'it' if len(failed) == 1 else 'them'}"
    return line


def headline_lines(rows: list[dict], comparisons: list[dict] | None = None) -> list[str]:
    """The answer first: each quantum rung against level 0 and against its classical twin.

    One line per comparison (:func:`~qcreep.report.compare.rung_comparisons`, final test accuracy
    paired by seed): the mean difference A − B in percentage points, its 95 % t interval, the
    two-sided Wilcoxon signed-rank p, and the verdict: *better* or *worse* when the interval
    excludes 0 and p < 0.05, else *not resolved with N seeds*. A failed seed in either rung is
    named. Empty when there is nothing to compare (only level 0, say).

    Example:
        >>> rows = summarize(load_records("runs"))                              # doctest: +SKIP
        >>> for line in headline_lines(rows):                                  # doctest: +SKIP
        ...     print(line)
        **Answer (digits, real angles)**: does each quantum rung beat level 0 and its classical twin? ...
        <BLANKLINE>
        - **level 2 vs level 0**: -0.63 pp [-1.80, +0.54], p = 0.31: **not resolved with 6 seeds**
    """
    comparisons = rung_comparisons(rows) if comparisons is None else comparisons
    chosen = _headline_comparisons(rows, comparisons)
    if not chosen:
        return []
    groups = {(c["dataset"], c["angles"]) for c in chosen}
    where = "" if len(groups) > 1 else f" ({title(chosen[0]['dataset'])}, {chosen[0]['angles']} angles)"
    lines = [(f"**Answer{where}**: does each quantum rung beat level 0 and its classical twin? Final test "
              f"accuracy, A − B in percentage points, mean over the paired seeds with its "
              f"{CONFIDENCE:.0%} t interval and the two-sided Wilcoxon signed-rank p; a difference is resolved "
              f"only when the interval excludes 0 and p < {1 - CONFIDENCE:.2g}."), ""]
    for c in chosen:
        prefix = f"{title(c['dataset'])}, {c['angles']}: " if len(groups) > 1 else ""
        lines.append(_headline_line(c, rows, prefix))
    return lines


def _table_notes(rows: list[dict]) -> list[str]:
    """Notes under the terminal table: chance, failed seeds, protocol differences, tuning."""
    notes = []
    subsets: dict[tuple, list[str]] = {}
    for r in rows:
        classes = (r.get("subsets") or {}).get("classes")
        if classes:
            subsets.setdefault(tuple(classes), []).append(r["dataset"])
    for classes, datasets in subsets.items():
        shown = ", ".join(dict.fromkeys(datasets))
        notes.append(f"Classes: {shown} kept classes {', '.join(classes)} only (--classes), relabelled in class order "
                     f"(chance {100 / len(classes):.3g}%); the published numbers are for all classes, so none are "
                     "compared.")
    near = [r for r in rows if r["near_chance"]]
    if near:
        by_chance: dict[tuple, list[str]] = {}
        for r in near:
            by_chance.setdefault((r["chance_pct"], r["num_classes"]), []).append(
                f"{_rung(r)} {r['final_test_mean']:.1f} %")
        for (chance, classes), names in by_chance.items():
            notes.append(f"Chance: {chance:g}% is chance for {classes} classes. At most "
                         f"{NEAR_CHANCE_PP:g} pp above it (not learning under this protocol): "
                         + "; ".join(names) + ".")
    failed = [r for r in rows if r.get("failed_seeds")]
    for r in failed:
        notes.append(_failed_note(r))
    if failed:
        notes.append(FAILED_RULE)
    by_diff: dict[tuple, list[str]] = {}
    for r in rows:
        if r["protocol_differences"] and r["published_mean"] is not None:
            by_diff.setdefault(tuple(r["protocol_differences"]), []).append(_rung(r))
    for diffs, names in by_diff.items():
        notes.append(f"{DIFFERENT_PROTOCOL} Protocol differs from the published runs for "
                     + ", ".join(names) + ": " + "; ".join(diffs)
                     + ". Their Δ pp compares different protocols, so a gap is not a failed "
                       "reproduction.")
    tuned = [r for r in rows if r["tuning"]]
    if tuned:
        budgets: dict[str, list[str]] = {}
        for r in tuned:
            text = _budget_text(r["tuning"]["budget"], r["tuning"]["metric"])
            if r["tuning"]["budget_differs"]:
                text = "budget differs between seeds"
            budgets.setdefault(text, []).append(f"{r['label']} ({r['angles']})")
        split = next((r["tuning"]["split"] for r in tuned if r["tuning"]["split"]), "validation")
        line = (f"lr: \"(tuned)\" = chosen on the {split} split, never on the test set; budget: "
                + "; ".join(f"{text} [{', '.join(names)}]" if len(budgets) > 1 else text
                            for text, names in budgets.items()) + ".")
        if len(budgets) > 1:
            line += " The tuning budgets differ between rungs, so the comparison is not even."
        notes.append(line)
    if any(r["test_at_best_val_mean"] is not None for r in rows):
        notes.append("\"test @ best val\" is the test accuracy at each seed's epoch of highest "
                     "validation accuracy; \"best test\" picks the epoch by the test set and is optimistic.")
    return notes


def _published_cell(r: dict) -> str:
    if r["published_mean"] is None:
        return "—"
    return f"{_pm(r['published_mean'], r['published_sd'])} @ {r['published_epoch']}"


def _delta_cell(r: dict) -> str:
    delta = _signed(r["delta_pp"])
    if r["delta_pp"] is not None and r["protocol_differences"]:
        delta += DIFFERENT_PROTOCOL
    return delta


#: The columns of the summary table: header, cell, and whether the column may be left out when it
#: would be "—" on every row (the key that is None there).
_COLUMNS = (
    ("dataset", lambda r: _md(r["dataset"]), None),
    ("rung", lambda r: _md(r["label"]), None),
    ("angles", lambda r: _md(r["angles"]), None),
    ("seeds", lambda r: str(r["n_seeds"]), None),
    ("epochs", _epochs_text, None),
    ("params", params_text, None),
    ("lr", lambda r: _md(r["lr_text"]), None),
    ("final test acc % (mean ± sd)", lambda r: _pm(r["final_test_mean"], r["final_test_sd"]) + _failed_cell(r), None),
    ("test acc % @ best val", lambda r: _pm(r["test_at_best_val_mean"], r["test_at_best_val_sd"]),
     "test_at_best_val_mean"),
    ("best test acc %", lambda r: _pm(r["best_test_mean"], r["best_test_sd"]), None),
    ("final train acc %", lambda r: _pm(r["final_train_mean"], r["final_train_sd"]), "final_train_mean"),
    ("published @ epoch", _published_cell, "published_mean"),
    ("Δ pp", _delta_cell, "published_mean"),
    ("JAX real @100", lambda r: "—" if r["published_jax"] is None else f"{r['published_jax']:.2f}", "published_jax"),
    ("s/epoch", lambda r: "—" if r["sec_per_epoch"] is None else f"{r['sec_per_epoch']:.2f}", "sec_per_epoch"),
)


def _header(name: str, rows: list[dict]) -> str:
    """The first column is ``dataset``, or ``model on data`` when a row is a study of the user's own model."""
    if name == "dataset" and any(is_study(r["dataset"]) for r in rows):
        return "model on data" if all(is_study(r["dataset"]) for r in rows) else "dataset / model on data"
    return name


def _swapped_text(assignment: dict | None) -> str:
    """``"conv=flipped_quanv3x3, fc1=data_reuploading"``: the slots a rung fills with another layer."""
    swapped = [f"{slot}={layer}" for slot, layer in (assignment or {}).items() if layer != "original"]
    return ", ".join(swapped) if swapped else "none (your model as it is)"


def _study_rung_notes(rows: list[dict]) -> list[str]:
    """One note per study of the user's own model: what each rung swaps (every other slot keeps its module)."""
    notes = []
    for study in sorted({r["dataset"] for r in rows if is_study(r["dataset"])}):
        parts = list(dict.fromkeys(f"{r['label']}: {_swapped_text(r['assignment'])}"
                                   for r in rows if r["dataset"] == study and r["assignment"]))
        if parts:
            notes.append(f"Rungs of {study} (slot=layer; every other slot keeps your module): "
                         + "; ".join(parts) + ".")
    return notes


def markdown_table(rows: list[dict], *, headline: bool = True) -> str:
    """The rows of :func:`~qcreep.report.summary.summarize` as Markdown, with notes for reading them.

    First, with ``headline=True``, the answer (:func:`headline_lines`). Then the summary table,
    per rung: seeds, epochs, parameters, learning rate (``"(tuned)"`` when it was chosen on the
    validation split), final test accuracy (with the seeds that failed, see
    :func:`~qcreep.report.summary.failed_seeds`), test accuracy at the best-validation epoch, best
    test accuracy, final train accuracy, the published PyTorch number at the epoch shown with Δ pp
    (ours minus published), the published JAX real-angle number and seconds per epoch. A column
    that would be "—" on every row is left out. Accuracies are percent, mean ± population sd over
    seeds. An epoch count marked ``*`` means the seeds completed different numbers of epochs and the
    statistics use the common prefix.

    Under the table come notes: what chance is (``100 / classes`` %) when a rung is within 3 pp of
    it; which seeds failed; which rungs ran a protocol different from the published one (their Δ is
    marked ``†``); the tuning budget. Then the per-epoch comparison with the published numbers,
    where there are any.

    Example:
        >>> print(markdown_table(summarize(load_records("runs/mnist"))))   # doctest: +SKIP
        **Answer (MNIST, real angles)**: does each quantum rung beat level 0 ...
    """
    lines = []
    if headline:
        answer = headline_lines(rows)
        if answer:
            lines += answer + [""]
    columns = [c for c in _COLUMNS if c[2] is None or any(r[c[2]] is not None for r in rows)]
    lines += ["| " + " | ".join(_header(c[0], rows) for c in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(c[1](r) for c in columns) + " |")
    notes = _table_notes(rows)
    notes += _study_rung_notes(rows)
    studies = sorted({r["dataset"] for r in rows if is_study(r["dataset"])})
    if studies:
        notes.append(f"The published numbers are for the paper's HybridNet on its datasets, so "
                     f"{', '.join(studies)} {'is' if len(studies) == 1 else 'are'} compared with "
                     f"{'its' if len(studies) == 1 else 'their'} own level 0 and twins only.")
    others = sorted({title(r["dataset"]) for r in rows if not is_study(r["dataset"])})
    if others and not any(r["published_mean"] is not None or r["published_jax"] is not None for r in rows):
        notes.append(f"No published numbers for {', '.join(others)} at these rungs, so the published columns "
                     "are left out.")
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]

    comparable = [r for r in rows if any(p["published_mean"] is not None for p in r["per_epoch"])]
    if any(r["published_mean"] is not None for r in rows) and not comparable:
        lines += ["", "### Per-epoch comparison", "",
                  "No group has published numbers to compare with at epochs "
                  f"{', '.join(str(e) for e in PUBLISHED_EPOCHS)}."]
    elif comparable:
        lines += ["", "### Per-epoch comparison", "",
            ("| dataset | rung | angles | epoch | ours test acc % (mean ± sd) "
            "| published test acc % (mean ± sd) | Δ pp |"),
            "|---|---|---|---|---|---|---|",
        ]
        for r in comparable:
            for p in r["per_epoch"]:
                lines.append(
                    f"| {_md(r['dataset'])} | {_md(r['label'])} | {_md(r['angles'])} "
                    f"| {p['epoch']} | {_pm(p['mean'], p['sd'])} "
                    f"| {_pm(p['published_mean'], p['published_sd'])} "
                    f"| {_signed(p['delta_pp'])} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# report.md sections


ANGLES_NOTE = (
    "**Note on the published numbers.** The published PyTorch results were obtained with "
    "**complex** trainable angles: Adam updates their real and imaginary parts independently, so "
    "after training exp(i·Σθ·P) is in general not unitary and the quantum states are not "
    "normalised. Compare `angles=complex` runs (published-code compatibility) with them; "
    "`angles=real` is the physical model. The authors' real-angle JAX implementation (batch 1000, "
    "lr 5e-3, 100 epochs, 1 re-upload) is given in the \"JAX real @100\" column; its level-2 "
    "gains are much smaller or absent. Levels 0 and 1 are linear models; level 2 also has more "
    "parameters, so a gain there is not by itself evidence that the quantum layer helps: the "
    "classical twins (matched in parameter count and kind of nonlinearity), where present, are the "
    "control for that."
)


def _rel(path, root: Path) -> str:
    p = Path(path)
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _incomplete_line(incomplete: list[dict], root: Path) -> str:
    if not incomplete:
        return "Incomplete runs: none."
    parts = []
    for rec in incomplete:
        shown = _rel(rec.get(PATH_KEY, ""), root)
        total = (rec.get("config") or {}).get("epochs")
        done = len(rec["test_accs"])
        parts.append(f"`{shown}` ({rec['dataset']}, {rec['label']}, {rec['angles']} angles, "
                     f"seed {rec['seed']}, status {rec['status']}, "
                     f"{plural(done, 'epoch') if total is None else str(done) + '/' + plural(total, 'epoch')})")
    return ("Incomplete runs (left out of the tables, drawn dotted in the curves): "
            + "; ".join(parts) + ".")


def _duplicates_lines(rows: list[dict], root: Path) -> list[str]:
    out = []
    parts = [f"`{_rel(p, root)}` ({r['dataset']}, {r['label']}, {r['angles']} angles)"
             for r in rows for p in r["duplicates_dropped"]]
    if parts:
        out += ["Duplicate seeds (another complete record of the same group has the same seed; the "
                "one with most epochs is used, these are ignored): " + "; ".join(parts) + ".", ""]
    for r in rows:
        if not r["aliases"]:
            continue
        line = (f"Same model under two labels: {r['dataset']} {r['label']} ({r['angles']} angles) was "
                f"also recorded as {', '.join('`' + _md(a) + '`' for a in r['aliases'])}; its "
                "assignment equals the level, so the runs form one rung and each seed is counted once")
        if r["aliases_dropped"]:
            line += ("; ignored as repeats of a seed: "
                     + ", ".join(f"`{_rel(p, root)}`" for p in r["aliases_dropped"]))
        out += [line + ".", ""]
    return out


def _environment_line(records: list[dict]) -> str | None:
    envs = set()
    for rec in records:
        env = rec.get("environment") or {}
        bits = []
        if env.get("device") is not None:
            bits.append(str(env["device"]))
        if env.get("threads") is not None:
            bits.append(f"{env['threads']} threads")
        if env.get("torch") is not None:
            bits.append(f"torch {env['torch']}")
        if env.get("cpu"):
            bits.append(str(env["cpu"]))
        if bits:
            envs.add(", ".join(bits))
    if not envs:
        return None
    return "Timings (s/epoch) were measured on: " + "; ".join(sorted(envs)) + "."


def _fmt_p(p) -> str:
    if p is None:
        return "—"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _comparison_table(comps: list[dict]) -> list[str]:
    lines = [("| dataset | A | B | angles | seeds paired | mean A − B, pp [95% CI] | Wilcoxon p "
             "| Cliff's δ | verdict |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for c in comps:
        if c["mean_diff"] is None:
            diff = "—"
        elif c["ci_low"] is None:
            diff = f"{c['mean_diff']:+.2f}"
        else:
            diff = f"{c['mean_diff']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"
        angles = c["angles"] if c["angles"] == c["angles_b"] else f"{c['angles']} vs {c['angles_b']}"
        delta = "—" if c["cliffs_delta"] is None else f"{c['cliffs_delta']:+.2f}"
        lines.append(f"| {_md(c['dataset'])} | {_md(c['a'])} | {_md(c['b'])} | {angles} "
                     f"| {c['n']} | {diff} | {_fmt_p(c['wilcoxon_p'])} | {delta} | {_md(c['verdict'])} |")
    return lines


def _statistics_section(comparisons: list[dict]) -> list[str]:
    lines = ["## Statistics: paired comparisons over seeds", "", METHODS_TEXT, ""]
    if not comparisons:
        return lines + [("No pairs to compare (a comparison needs level 0 of the same dataset and "
                        "angle mode, or a twin and its quantum rung)."), ""]
    vs_base = [c for c in comparisons if c["kind"] == "vs level 0"]
    vs_twin = [c for c in comparisons if c["kind"] == "quantum vs twin"]
    vs_e2e = [c for c in comparisons if c["kind"] == "vs end-to-end"]
    if vs_base:
        lines += ["### Each rung against level 0 (all classical)", ""] + _comparison_table(vs_base) + [""]
    if vs_twin:
        lines += ["### Each quantum rung against its classical twin", "",
                  ("The twin has classical layers matched to the quantum ones in parameter count and "
                  "kind of nonlinearity, so a difference here is what the quantum layers add beyond "
                  "size and nonlinearity."), ""] + _comparison_table(vs_twin) + [""]
    if vs_e2e:
        lines += ["### Each rung against the end-to-end quantum model", "",
                  ("The end-to-end model (qcreep.endtoend) on the same data and classes, seed by seed: the "
                   "paper's hybrid-against-end-to-end comparison on equal data. Its epochs, learning rate and "
                   "tuning are in the tables above; compare them before reading a difference."), ""] \
            + _comparison_table(vs_e2e) + [""]
    other = sorted({c["wilcoxon_method"] for c in comparisons if c["wilcoxon_p"] is not None} - {"exact"})
    if other:
        lines += ["Wilcoxon p-values use the exact null distribution where the differences have no ties; otherwise: "
                  + "; ".join(f"{m} for " + ", ".join(f"{c['a']} vs {c['b']} ({c['angles']})" for c in comparisons
                                                    if c["wilcoxon_method"] == m) for m in other) + ".", ""]
    if any(c["epochs_a"] != c["epochs_b"] for c in comparisons):
        lines += [("Some pairs compare rungs trained for different numbers of epochs (each at its "
                  "own final epoch)."), ""]
    return lines


def _settings_text(settings) -> str:
    if not isinstance(settings, dict) or not settings:
        return "—"
    return ", ".join(f"{k} {_num(v)}" for k, v in settings.items())


def _candidate_text(c: dict) -> str:
    """``"lr 0.001: 97.79"`` for one tuning seed, ``"lr 0.001: 97.50 ± 0.20 (2 seeds)"`` for several."""
    if c["n"] > 1:
        value = f"{_pm(c['val_acc_mean'], c['val_acc_sd'])} ({c['n']} seeds)"
    else:
        value = _pm(c["val_acc_mean"], None)
    return f"{_settings_text(c['settings'])}: {value}"


def _tuning_section(rows: list[dict]) -> list[str]:
    tuned = [r for r in rows if r["tuning"]]
    if not tuned:
        return []
    budgets = {"differs between seeds" if r["tuning"]["budget_differs"]
               else _budget_text(r["tuning"]["budget"], r["tuning"]["metric"]) for r in tuned}
    one_budget = len(budgets) == 1
    lines = ["## Learning-rate tuning", "",
             ("Settings were chosen on a validation split carved out of the training data; the "
              "test set played no part. A candidate's validation accuracy is that of the seed that tuned, "
              "or the mean ± sd over the seeds that tuned, when there were several.")]
    if one_budget:
        lines[-1] += f" Every rung had the same budget: {next(iter(budgets))}."
    lines += ["", "| dataset | rung | angles | chosen |" + ("" if one_budget else " budget |")
              + " candidates: val acc % |",
              "|---|---|---|---|" + ("" if one_budget else "---|") + "---|"]
    for r in tuned:
        t = r["tuning"]
        if t["chosen"] is not None:
            chosen = _settings_text(t["chosen"])
        else:
            chosen = "; ".join(f"seed {s}: {_settings_text(c)}" for s, c in sorted(t["chosen_by_seed"].items()))
        if not t["all_seeds"]:
            chosen += " (not every seed tuned)"
        budget = "differs between seeds" if t["budget_differs"] else _budget_text(t["budget"], t["metric"])
        cands = "; ".join(_candidate_text(c) for c in t["candidates"]) or "—"
        lines.append(f"| {_md(r['dataset'])} | {_md(r['label'])} | {_md(r['angles'])} | {_md(chosen)} "
                     + ("" if one_budget else f"| {_md(budget)} ") + f"| {_md(cands)} |")
    if not one_budget:
        lines += ["", ("The tuning budgets differ between rungs: a rung searched more widely had "
                      "more chances, so the comparison is not even.")]
    untuned = [r for r in rows if not r["tuning"]]
    if untuned:
        lines += ["", "Not tuned (fixed learning rate): "
                  + ", ".join(f"{r['label']} ({r['angles']}, lr {r['lr_text']})" for r in untuned) + "."]
    return lines + [""]


def _details_section(rows: list[dict]) -> list[str]:
    have = [r for r in rows if r["twin_of"] or r["readout"] or r["solver"] or r["readout_differs"]
            or r["solver_differs"] or r["best_val_epochs"]]
    if not have:
        return []
    lines = ["## Rung details", "",
             ("| dataset | rung | angles | twin of | readout | solver | best-validation epochs "
             "| final val acc % |"),
             "|---|---|---|---|---|---|---|---|"]
    for r in have:
        readout = ("differs between seeds" if r["readout_differs"]
                   else ", ".join(f"{k} {v}" for k, v in r["readout"].items()) if r["readout"] else "—")
        solver = "differs between seeds" if r["solver_differs"] else (r["solver"] or "—")
        best = ", ".join(str(e) for e in r["best_val_epochs"]) if r["best_val_epochs"] else "—"
        lines.append(f"| {_md(r['dataset'])} | {_md(r['label'])} | {_md(r['angles'])} "
                     f"| {_md(r['twin_of'] or '—')} | {_md(readout)} | {_md(solver)} | {best} "
                     f"| {_pm(r['final_val_mean'], r['final_val_sd'])} |")
    return lines + [""]


def _protocol_section(rows: list[dict]) -> list[str]:
    proto = PUBLISHED_TORCH_PROTOCOL
    jax = PUBLISHED_JAX_PROTOCOL
    lines = ["## Protocol differences from the published runs", "",
             (f"Published PyTorch protocol: Adam, batch {proto['batch_size']}, lr {proto['lr']:g}, "
             f"{proto['epochs']} epochs, {proto['n_reps']} re-uploads, {proto['angles']} angles, "
             f"full datasets, {proto['n_runs']} runs. Published JAX protocol: batch "
             f"{jax['batch_size']}, lr {jax['lr']:g}, {jax['epochs']} epochs, {jax['n_reps']} "
             f"re-upload, {jax['angles']} angles."), ""]
    for r in rows:
        notes = list(r["protocol_differences"])
        if r["config_mismatch"]:
            notes.append("seeds differ in config: " + ", ".join(r["config_mismatch"]))
        if r["epochs_differ"]:
            notes.append(f"seeds completed different numbers of epochs; statistics use the "
                         f"first {plural(r['epochs'], 'epoch')}")
        if r["twin_of"]:
            notes.append(f"classical twin of {r['twin_of']}: no published number")
        elif r["level"] is None:
            notes.append("explicit assignment (no replacement level): no published number")
        elif r["published_mean"] is None:
            notes.append("no published number for this dataset/level")
        text = "; ".join(notes) if notes else "same protocol as the published PyTorch runs"
        lines.append(f"- {r['dataset']}, {r['label']}, {r['angles']} angles: {text}.")
    return lines


def _unitarity_section(rows: list[dict]) -> list[str]:
    have = [r for r in rows if r["unitarity"]]
    if not have:
        return []
    lines = ["## Unitarity checks", "",
             "max |U†U − I| over every epoch of every seed; state norms after the last epoch, on the first 200 test "
             "images.", "",
             "| dataset | rung | angles | max unitarity error (any epoch) | min state norm | max state norm |",
             "|---|---|---|---|---|---|"]

    def fmt(v):
        return "—" if v is None else f"{v:.3g}"

    for r in have:
        u = r["unitarity"]
        lines.append(f"| {_md(r['dataset'])} | {_md(r['label'])} | {_md(r['angles'])} "
                     f"| {fmt(u.get('max_unitarity_error'))} | {fmt(u.get('min_state_norm'))} "
                     f"| {fmt(u.get('max_state_norm'))} |")
    return lines + [""]


def _baseline_lines(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        base = END_TO_END_QUANTUM.get(canonical_dataset(r["dataset"]))
        if base is None or r["level"] != 2:
            continue
        lines.append(f"- {r['dataset']}, {r['label']}, {r['angles']} angles: "
                     f"{r['final_test_mean']:.2f} % after {plural(r['epochs'], 'epoch')} vs {base:.1f} % "
                     f"(published end-to-end quantum network), "
                     f"{r['final_test_mean'] - base:+.2f} pp.")
    if lines:
        lines = ["## Against the published end-to-end quantum baseline", ""] + lines + [""]
    return lines


def report_text(records: list[dict], rows: list[dict], incomplete: list[dict], comparisons: list[dict],
                root, plot_names: list[tuple[str, list[str]]], hardware_lines: list[str] | None = None,
                skipped: list[tuple[str, str]] | None = None) -> str:
    """The text of ``report.md`` for the given records, rows, incomplete runs, comparisons and plots.

    ``plot_names`` is ``[(dataset, [file name, ...]), ...]``; images are linked relative to the report.
    ``hardware_lines`` are the closing sections: "From simulation to hardware"
    (:mod:`qcreep.report.hardware`) and the diagnostics (:mod:`qcreep.report.diagnostics`). A
    ``dataset`` of None in ``plot_names`` is a plot of the whole folder.
    ``skipped`` is ``[(path, reason), ...]``: record files left out because they are unreadable or malformed.

    Example:
        >>> text = report_text(records, rows, [], rung_comparisons(rows), "runs", [])  # doctest: +SKIP
        >>> text.splitlines()[0]                                                     # doctest: +SKIP
        '# qcreep report: Let the Quantum Creep In (arXiv:2409.17583)'
    """
    root = Path(root)
    versions = sorted({str(r.get("qcreep_version")) for r in records if r.get("qcreep_version") is not None})
    answer = headline_lines(rows, comparisons) if rows else []
    lines = ["# qcreep report: Let the Quantum Creep In (arXiv:2409.17583)", ""]
    if answer:
        lines += answer + [""]
    lines += [
        f"Run records: {len(records)} under `{root}` ({len(records) - len(incomplete)} complete, "
        f"{len(incomplete)} incomplete)" + (f"; written by qcreep {', '.join(versions)}" if versions else "") + ".",
        "",
    ]
    if rows and all(is_study(r["dataset"]) for r in rows):
        lines += [("Test accuracy in percent, mean ± population sd (ddof=0) over seeds. Each rung swaps some of "
                   "your model's slots for quantum layers (or, in a twin, for their parameter-matched classical "
                   "layers) and keeps every other module; the published numbers are for the paper's HybridNet "
                   "and are not compared here."), "", "## Summary", ""]
    else:
        lines += [("Test accuracy in percent, mean ± population sd (ddof=0) over seeds, as in the paper. "
                   "\"published @ epoch\" is the published PyTorch number at our final epoch, or at the "
                   "largest published epoch (1, 5, 10, 20, 50) below it; Δ pp = ours − published."),
                  "", ANGLES_NOTE, "", "## Summary", ""]
    lines += [markdown_table(rows, headline=False)] if rows else ["No complete runs yet.", ""]
    lines += [_incomplete_line(incomplete, root), ""]
    if skipped:
        lines += ["Skipped record files (unreadable or malformed, left out of everything below): "
                  + "; ".join(f"`{_rel(path, root)}`: {_md(reason)}" for path, reason in skipped) + ".", ""]
    lines += _duplicates_lines(rows, root)
    env = _environment_line(records)
    if env:
        lines += [env, ""]
    if rows:
        lines += _statistics_section(comparisons)
    lines += _tuning_section(rows)
    lines += _details_section(rows)
    lines += _baseline_lines(rows)
    lines += _unitarity_section(rows)
    paper_rows = [r for r in rows if not is_study(r["dataset"])]
    if paper_rows:
        lines += _protocol_section(paper_rows) + [""]
    lines += list(hardware_lines or [])
    lines += ["## Plots", ""]
    for ds, names in plot_names:
        for name in names:  # images sit next to report.md
            lines.append(f"![{title(ds) if ds is not None else 'diagnostics'}: {name}]({name})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
