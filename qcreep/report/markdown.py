"""Markdown: the summary table printed on the terminal, and the text of ``report.md``.

:func:`markdown_table` is what ``qcreep run`` and ``qcreep report`` print: the summary table, the
notes a newcomer needs to read it (what chance is, how the protocol differs from the published
one, how the learning rate was chosen), and the per-epoch comparison with the published numbers.
:func:`report_text` is the whole ``report.md``; it adds the statistics section, tuning, rung
details, unitarity checks and the protocol of every rung.
"""

from __future__ import annotations

import json
from pathlib import Path

from qcreep.published import (
    END_TO_END_QUANTUM,
    PUBLISHED_EPOCHS,
    PUBLISHED_JAX_PROTOCOL,
    PUBLISHED_TORCH_PROTOCOL,
    canonical_dataset,
)
from qcreep.report.compare import METHODS_TEXT
from qcreep.report.records import PATH_KEY
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


def _table_notes(rows: list[dict]) -> list[str]:
    """Notes under the terminal table: chance, protocol differences, tuning."""
    notes = []
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


def markdown_table(rows: list[dict]) -> str:
    """The rows of :func:`~qcreep.report.summary.summarize` as Markdown, with notes for reading them.

    The summary table has, per rung: seeds, epochs, parameters, learning rate (``"(tuned)"`` when it
    was chosen on the validation split), final test accuracy, test accuracy at the best-validation
    epoch, best test accuracy, final train accuracy, the published PyTorch number at the epoch shown
    with Δ pp (ours minus published), the published JAX real-angle number and seconds per epoch.
    Accuracies are percent, mean ± population sd over seeds. An epoch count marked ``*`` means the
    seeds completed different numbers of epochs and the statistics use the common prefix.

    Under the table come notes: what chance is (``100 / classes`` %) when a rung is within 3 pp of
    it; which rungs ran a protocol different from the published one (their Δ is marked ``†``);
    the tuning budget. Then the per-epoch comparison with the published numbers.

    Example:
        >>> print(markdown_table(summarize(load_records("runs/mnist"))))   # doctest: +SKIP
        | dataset | rung | angles | seeds | epochs | params | lr | final test acc % ...
    """
    lines = [
        ("| dataset | rung | angles | seeds | epochs | params | lr | final test acc % (mean ± sd) "
        "| test acc % @ best val | best test acc % | final train acc % | published @ epoch | Δ pp "
        "| JAX real @100 | s/epoch |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["published_mean"] is not None:
            pub = f"{_pm(r['published_mean'], r['published_sd'])} @ {r['published_epoch']}"
        else:
            pub = "—"
        delta = _signed(r["delta_pp"])
        if r["delta_pp"] is not None and r["protocol_differences"]:
            delta += DIFFERENT_PROTOCOL
        jax = "—" if r["published_jax"] is None else f"{r['published_jax']:.2f}"
        spe = "—" if r["sec_per_epoch"] is None else f"{r['sec_per_epoch']:.2f}"
        lines.append(
            f"| {_md(r['dataset'])} | {_md(r['label'])} | {_md(r['angles'])} | {r['n_seeds']} "
            f"| {_epochs_text(r)} | {params_text(r)} | {_md(r['lr_text'])} "
            f"| {_pm(r['final_test_mean'], r['final_test_sd'])} "
            f"| {_pm(r['test_at_best_val_mean'], r['test_at_best_val_sd'])} "
            f"| {_pm(r['best_test_mean'], r['best_test_sd'])} "
            f"| {_pm(r['final_train_mean'], r['final_train_sd'])} "
            f"| {pub} | {delta} | {jax} | {spe} |")
    notes = _table_notes(rows)
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]

    lines += ["", "### Per-epoch comparison", ""]
    comparable = [r for r in rows if any(p["published_mean"] is not None for p in r["per_epoch"])]
    if not comparable:
        lines.append("No group has published numbers to compare with at epochs "
                     f"{', '.join(str(e) for e in PUBLISHED_EPOCHS)}.")
    else:
        lines += [
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
                     f"{done}{'/' + str(total) if total is not None else ''} epochs)")
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
    if vs_base:
        lines += ["### Each rung against level 0 (all classical)", ""] + _comparison_table(vs_base) + [""]
    if vs_twin:
        lines += ["### Each quantum rung against its classical twin", "",
                  ("The twin has classical layers matched to the quantum ones in parameter count and "
                  "kind of nonlinearity, so a difference here is what the quantum layers add beyond "
                  "size and nonlinearity."), ""] + _comparison_table(vs_twin) + [""]
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


def _tuning_section(rows: list[dict]) -> list[str]:
    tuned = [r for r in rows if r["tuning"]]
    if not tuned:
        return []
    lines = ["## Learning-rate tuning", "",
             ("Settings were chosen on a validation split carved out of the training data; the "
             "test set played no part. Validation accuracy of each candidate is the mean ± sd over "
             "the seeds that tuned."), "",
             "| dataset | rung | angles | chosen | budget | candidates: val acc % |",
             "|---|---|---|---|---|---|"]
    for r in tuned:
        t = r["tuning"]
        if t["chosen"] is not None:
            chosen = _settings_text(t["chosen"])
        else:
            chosen = "; ".join(f"seed {s}: {_settings_text(c)}" for s, c in sorted(t["chosen_by_seed"].items()))
        budget = "differs between seeds" if t["budget_differs"] else _budget_text(t["budget"], t["metric"])
        if not t["all_seeds"]:
            budget += " (not every seed tuned)"
        cands = "; ".join(f"{_settings_text(c['settings'])}: {_pm(c['val_acc_mean'], c['val_acc_sd'])}"
                          for c in t["candidates"]) or "—"
        lines.append(f"| {_md(r['dataset'])} | {_md(r['label'])} | {_md(r['angles'])} | {_md(chosen)} "
                     f"| {_md(budget)} | {_md(cands)} |")
    budgets = {json.dumps(r["tuning"]["budget"], sort_keys=True) for r in tuned}
    if len(budgets) > 1:
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
                         f"first {r['epochs']}")
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
                     f"{r['final_test_mean']:.2f} % after {r['epochs']} epochs vs {base:.1f} % "
                     f"(published end-to-end quantum network), "
                     f"{r['final_test_mean'] - base:+.2f} pp.")
    if lines:
        lines = ["## Against the published end-to-end quantum baseline", ""] + lines + [""]
    return lines


def report_text(records: list[dict], rows: list[dict], incomplete: list[dict], comparisons: list[dict],
                root, plot_names: list[tuple[str, list[str]]], hardware_lines: list[str] | None = None) -> str:
    """The text of ``report.md`` for the given records, rows, incomplete runs, comparisons and plots.

    ``plot_names`` is ``[(dataset, [file name, ...]), ...]``; images are linked relative to the report.
    ``hardware_lines`` is the "From simulation to hardware" section (:mod:`qcreep.report.hardware`).

    Example:
        >>> text = report_text(records, rows, [], rung_comparisons(rows), "runs", [])  # doctest: +SKIP
        >>> text.splitlines()[0]                                                     # doctest: +SKIP
        '# qcreep report: Let the Quantum Creep In (arXiv:2409.17583)'
    """
    root = Path(root)
    versions = sorted({str(r.get("qcreep_version")) for r in records if r.get("qcreep_version") is not None})
    lines = [
        "# qcreep report: Let the Quantum Creep In (arXiv:2409.17583)",
        "",
        f"Run records: {len(records)} under `{root}` ({len(records) - len(incomplete)} complete, "
        f"{len(incomplete)} incomplete)" + (f"; written by qcreep {', '.join(versions)}" if versions else "") + ".",
        "",
        ("Test accuracy in percent, mean ± population sd (ddof=0) over seeds, as in the paper. "
        "\"published @ epoch\" is the published PyTorch number at our final epoch, or at the "
        "largest published epoch (1, 5, 10, 20, 50) below it; Δ pp = ours − published."),
        "",
        ANGLES_NOTE,
        "",
        "## Summary",
        "",
    ]
    lines += [markdown_table(rows)] if rows else ["No complete runs yet.", ""]
    lines += [_incomplete_line(incomplete, root), ""]
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
    if rows:
        lines += _protocol_section(rows) + [""]
    lines += list(hardware_lines or [])
    lines += ["## Plots", ""]
    for ds, names in plot_names:
        for name in names:  # images sit next to report.md
            lines.append(f"![{title(ds)}: {name}]({name})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
