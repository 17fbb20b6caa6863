r"""The report's "Why a rung wins or loses" section: the diagnostics of ``qcreep diagnose``, rung by rung.

``qcreep diagnose`` (:mod:`qcreep.diagnose`) writes one ``diagnostics/RUN.json`` per run and
``diagnostics/families.json`` (the gradient variance of each quantum family against its register
size). This module reads those files (plain JSON, no training code), groups the runs by rung like
the main table (mean ± population sd over seeds), and writes:

* a table per study: accuracy, parameters ``d``, the effective dimension at initialisation and
  after training at one dataset size (the middle of the computed sizes) with ``d_eff / d``, the
  gradient variance at initialisation (``log10``), and each quantum slot's expressibility and
  entangling capability;
* the differences that the ladder asks about (each quantum rung against level 0 and against its
  twin): the accuracy difference beside the differences of the two measures, and the Spearman
  rank correlation, over all diagnosed runs of a study, of each measure with the final test
  accuracy. These are descriptive: a correlation over a handful of rungs explains nothing by
  itself, and the section says so;
* ``diagnostics.png``: gradient variance against qubits for each family (log scale, with the fitted
  decay), and the normalised effective dimension ``d_eff / d`` against the dataset size per rung.

Example:
    >>> from qcreep.report.diagnostics import diagnostics_rows, diagnostics_section, load_diagnostics
    >>> runs, families = load_diagnostics("qcreep-results")  # doctest: +SKIP
    >>> print("\\n".join(diagnostics_section(diagnostics_rows(runs), families)))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from qcreep.errors import QcreepError

DIAGNOSTICS_KEY = "diagnostics_version"
SUPPORTED_DIAGNOSTICS_VERSIONS = (1,)
FAMILIES_NAME = "families.json"


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QcreepError(f"diagnostics file {path} cannot be read ({type(exc).__name__}); delete it and run "
                          "`qcreep diagnose` again") from None
    if not isinstance(data, dict) or DIAGNOSTICS_KEY not in data:
        return None
    if data[DIAGNOSTICS_KEY] not in SUPPORTED_DIAGNOSTICS_VERSIONS:
        raise QcreepError(f"diagnostics file {path} has version {data[DIAGNOSTICS_KEY]!r}; this qcreep reads "
                          f"{', '.join(map(str, SUPPORTED_DIAGNOSTICS_VERSIONS))}: run `qcreep diagnose` again")
    return data


def load_diagnostics(results_dir) -> tuple[list[dict], dict | None]:
    """The run diagnostics under ``results_dir/diagnostics/`` and its family scan (None where absent)."""
    folder = Path(results_dir) / "diagnostics"
    runs, families = [], None
    if not folder.is_dir():
        return runs, families
    from qcreep.report.records import name_study

    for path in sorted(folder.glob("*.json")):
        data = _read(path)
        if data is None:
            continue
        if path.name == FAMILIES_NAME:
            families = data
        elif "run_id" in data:
            runs.append(name_study(data))
    return runs, families


def _mean_sd(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)


def _log10(value) -> float | None:
    return math.log10(value) if value is not None and value > 0 else None


def reference_size(sizes: list) -> float:
    """The dataset size the table reports: the middle of the computed sizes (10,000 by default)."""
    return sorted(sizes)[len(sizes) // 2]


def _curve(group: list[dict], which: str) -> list | None:
    """Mean ± sd over seeds of the effective dimension at each dataset size (None where none was computed)."""
    per_seed = [r["effective_dimension"][which] for r in group if r["effective_dimension"][which] is not None]
    return [_mean_sd(list(values)) for values in zip(*per_seed)] if per_seed else None


def diagnostics_rows(results: list[dict]) -> list[dict]:
    """One row per (study, rung, settings), in the order the runs were diagnosed, seeds sorted."""
    groups: dict[tuple, list[dict]] = {}
    for res in results:
        key = (res["dataset"], res["label"], json.dumps(res["settings"], sort_keys=True))
        groups.setdefault(key, []).append(res)
    rows = []
    for (dataset, label, _), group in groups.items():
        group.sort(key=lambda r: r["seed"])
        ed = group[0]["effective_dimension"]
        sizes = list(ed["sizes"])
        at = sizes.index(reference_size(sizes))
        d = group[0]["n_params"]

        layers = {}
        for slot, entry in (group[0].get("layers") or {}).items():
            entries = [r["layers"][slot] for r in group if slot in (r.get("layers") or {})]
            layers[slot] = {"layer": entry.get("layer"), "qubits": entry.get("qubits"),
                            "circuit_params": entry.get("circuit_params"),
                            "expressibility": _mean_sd([e["expressibility"] for e in entries]),
                            "expressibility_bias": entry.get("expressibility_bias"),
                            "entangling_capability": _mean_sd([e["entangling_capability"] for e in entries])}
        rows.append({
            "dataset": dataset, "label": label, "twin_of": group[0].get("twin_of"),
            "seeds": [r["seed"] for r in group], "n_params": d, "settings": group[0]["settings"],
            "acc": _mean_sd([None if r.get("final_test_acc") is None else 100 * r["final_test_acc"] for r in group]),
            "sizes": sizes, "size": sizes[at],
            "ed_init_curve": _curve(group, "init"), "ed_trained_curve": _curve(group, "trained"),
            "ed_init": _mean_sd([r["effective_dimension"]["init"][at] for r in group]),
            "ed_trained": _mean_sd([(r["effective_dimension"]["trained"] or [None] * len(sizes))[at] for r in group]),
            "log_var": _mean_sd([_log10(r["gradient_variance"]["mean"]) for r in group]),
            "layers": layers, "runs": group,
            "seconds": sum(r.get("seconds", 0.0) for r in group),
        })
    return rows


def _pm(pair, fmt: str = ".1f") -> str:
    mean, sd = pair
    return "—" if mean is None else f"{mean:{fmt}} ± {sd:{fmt}}"


def _layers_text(layers: dict) -> str:
    if not layers:
        return "—"
    parts = []
    for slot, e in layers.items():
        parts.append(f"{slot} ({e['layer']}, {e['qubits']} q): expr {_pm(e['expressibility'], '.3f')}, "
                     f"ent {_pm(e['entangling_capability'], '.3f')}")
    return "; ".join(parts)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (ties share their mean rank); None with fewer than 3 pairs or no spread."""
    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pairs) < 3:
        return None
    rx, ry = _ranks([p[0] for p in pairs]), _ranks([p[1] for p in pairs])
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def _study_correlations(rows: list[dict]) -> dict[str, tuple[float | None, int]]:
    runs = [(r, row) for row in rows for r in row["runs"]]
    acc = [r.get("final_test_acc") for r, _ in runs]
    at = {id(row): row["sizes"].index(row["size"]) for row in rows}
    measures = {
        "d_eff / d, trained": [None if r["effective_dimension"]["trained"] is None
                               else r["effective_dimension"]["trained"][at[id(row)]] / row["n_params"]
                               for r, row in runs],
        "d_eff / d, at initialisation": [r["effective_dimension"]["init"][at[id(row)]] / row["n_params"]
                                         for r, row in runs],
        "log10 gradient variance": [_log10(r["gradient_variance"]["mean"]) for r, _ in runs],
    }
    return {name: (spearman(values, acc), sum(v is not None and a is not None for v, a in zip(values, acc)))
            for name, values in measures.items()}


def _difference(a: float | None, b: float | None, fmt: str) -> str:
    return "—" if a is None or b is None else f"{a - b:+{fmt}}"


def _normalised_trained(row: dict) -> float | None:
    mean = row["ed_trained"][0]
    return None if mean is None else mean / row["n_params"]


def _contrasts(rows: list[dict]) -> list[str]:
    """Each quantum rung against level 0 and against its twin: the accuracy and the two measures."""
    base = next((r for r in rows if r["label"] == "level 0"), None)
    lines = []
    for row in rows:
        if not row["layers"]:
            continue  # classical rungs and twins are the other side
        others = [("level 0", base)] if base is not None and base is not row else []
        twin = next((r for r in rows if r["twin_of"] == row["label"]), None)
        if twin is not None:
            others.append((f"its twin ({twin['label']})", twin))
        for name, other in others:
            lines.append(f"| {row['label']} − {name} | {_difference(row['acc'][0], other['acc'][0], '.2f')} | "
                         f"{_difference(_normalised_trained(row), _normalised_trained(other), '.4f')} | "
                         f"{_difference(row['log_var'][0], other['log_var'][0], '.2f')} |")
    if not lines:
        return []
    return ["| rung − other | Δ test acc (pp) | Δ d_eff / d, trained | Δ log10 gradient variance |",
            "|---|---|---|---|", *lines, ""]


def diagnostics_section(rows: list[dict], families: dict | None) -> list[str]:
    """Markdown lines of the section (empty when nothing was diagnosed)."""
    if not rows and not (families and families.get("families")):
        return []
    from qcreep.report.markdown import title

    lines = ["## Why a rung wins or loses: diagnostics", ""]
    if rows:
        s = rows[0]["settings"]
        lines += [
            f"`qcreep diagnose` on the first {s['inputs']} fitted examples of each run, float64. **Effective "
            "dimension** (Abbas et al. 2021): the trace-normalised Fisher of the whole network at one weight vector, "
            "γ = 1, at initialisation (rebuilt from the run's seed) and after training (its checkpoint); `d_eff / d` "
            "is the fraction of the parameter count. **Gradient variance**: of the cross-entropy gradient, mean over "
            f"the network's parameters, over {s['inits']} fresh initialisations (McClean et al. 2018). "
            f"**Expressibility** (KL divergence from Haar's fidelity distribution, {s['samples']} pairs, {s['bins']} "
            "bins; lower is more expressive; a finite sample adds a bias of about (bins − 1)/(2 pairs)) and "
            "**entangling capability** (mean Meyer-Wallach measure) of each quantum slot's trainable ansatz for "
            "its input at initialisation (Sim et al. 2019). Mean ± population sd over seeds.", ""]
    for study in dict.fromkeys(row["dataset"] for row in rows):
        group = [row for row in rows if row["dataset"] == study]
        size = group[0]["size"]
        lines += [f"### {title(study)}", "",
                  f"| rung | seeds | params d | test acc % | d_eff at init (n = {size:,.0f}) | d_eff trained | "
                  "d_eff / d trained | log10 gradient variance | quantum slots |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in group:
            trained = row["ed_trained"]
            frac = "—" if trained[0] is None else f"{_normalised_trained(row):.4f}"
            lines.append(f"| {row['label']} | {len(row['seeds'])} | {row['n_params']:,} | {_pm(row['acc'], '.2f')} | "
                         f"{_pm(row['ed_init'])} | {_pm(trained)} | {frac} | {_pm(row['log_var'], '.2f')} | "
                         f"{_layers_text(row['layers'])} |")
        lines.append("")
        lines += _contrasts(group)
        corr = _study_correlations(group)
        parts = [f"{name} ρ = {rho:+.2f} ({n} runs)" if rho is not None else f"{name}: too few runs"
                 for name, (rho, n) in corr.items()]
        lines += ["Spearman rank correlation with the final test accuracy over the diagnosed runs: "
                  + "; ".join(parts) + ". A correlation across rungs that differ in many ways at once describes "
                  "this ladder; it does not show that the measure causes the accuracy difference.", ""]
    scans = (families or {}).get("families") or {}
    if scans:
        s = families["settings"]
        lines += ["### Gradient variance against register size", "",
                  f"Each quantum family alone, its first output on random inputs, variance over {s['inits']} "
                  "initialisations of its circuit parameters, fitted as log Var = a − b n (b per qubit; 95% interval).",
                  "", "| family | qubits | variance | decay rate b [95% CI] |", "|---|---|---|---|"]
        for name, entry in scans.items():
            decay = entry.get("decay")
            fitted = f"{decay['rate']:.3f} [{decay['low']:.3f}, {decay['high']:.3f}]" if decay else "no fit"
            lines.append(f"| {name} | {', '.join(map(str, entry['qubits']))} | "
                         f"{', '.join(f'{v:.2e}' for v in entry['variance'])} | {fitted} |")
        lines.append("")
    return lines


def plot_diagnostics(rows: list[dict], families: dict | None, path) -> None:
    """``diagnostics.png``: gradient variance against qubits per family (left), ``d_eff / d`` against n (right)."""
    from qcreep.report.markdown import title
    from qcreep.report.plots import _new_figure, _save

    fig = _new_figure((9.5, 3.8))
    ax_var, ax_ed = fig.subplots(1, 2)
    scans = (families or {}).get("families") or {}
    for k, (name, entry) in enumerate(scans.items()):
        color = f"C{k % 10}"
        ax_var.plot(entry["qubits"], entry["variance"], "o", color=color, label=name)
        decay = entry.get("decay")
        if decay and len(entry["qubits"]) >= 2:
            qs = entry["qubits"]
            logs = [math.log(v) for v in entry["variance"]]
            intercept = statistics.fmean(logs) + decay["rate"] * statistics.fmean(qs)
            ax_var.plot(qs, [math.exp(intercept - decay["rate"] * q) for q in qs], "-", color=color, linewidth=1)
    ax_var.set(yscale="log", xlabel="qubits n", ylabel="gradient variance",
               title="gradient variance at initialisation (line: fit)")
    if scans:
        ax_var.legend(fontsize=7)
    multi = len({row["dataset"] for row in rows}) > 1
    for k, row in enumerate(rows):
        color = f"C{k % 10}"
        label = f"{title(row['dataset'])}: {row['label']}" if multi else row["label"]
        for which, style in (("ed_trained_curve", "-"), ("ed_init_curve", ":")):
            curve = row[which]
            if curve:
                ax_ed.plot(row["sizes"], [m / row["n_params"] for m, _ in curve], style, color=color, marker=".",
                           label=label if style == "-" or not row["ed_trained_curve"] else None)
    ax_ed.set(xscale="log", xlabel="dataset size n", ylabel="d_eff / d",
              title="effective dimension (solid: trained, dotted: init)")
    if rows:
        ax_ed.legend(fontsize=7)
    _save(fig, path)


__all__ = ["diagnostics_rows", "diagnostics_section", "load_diagnostics", "plot_diagnostics", "spearman"]
