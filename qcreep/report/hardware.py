"""The report's "From simulation to hardware" section: accuracy against shots and noise, and resources.

``qcreep evaluate`` (:mod:`qcreep.evaluation`) writes one ``hardware/RUN.json`` per evaluated run:
the exact test accuracy, the accuracy at each shot count and at each depolarising probability,
and the resource estimates of the run's quantum layers. This module reads those files (plain
JSON, no training code), groups them by rung like the main table (mean ± population sd over
seeds), and writes the Markdown section and one plot per dataset.

Example:
    >>> from qcreep.report.hardware import load_hardware, hardware_rows, hardware_section
    >>> rows = hardware_rows(load_hardware("qcreep-results"))  # doctest: +SKIP
    >>> print("\\n".join(hardware_section(rows)))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from qcreep.errors import QcreepError

HARDWARE_KEY = "hardware_version"
SUPPORTED_HARDWARE_VERSIONS = (1,)


def load_hardware(results_dir) -> list[dict]:
    """Every ``hardware/*.json`` result under ``results_dir`` (none is fine: the section is left out)."""
    root = Path(results_dir)
    found = []
    for path in sorted(root.rglob("hardware/*.json")):
        if "tuning" in path.relative_to(root).parts:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise QcreepError(f"hardware result {path} cannot be read ({type(exc).__name__}); delete it and run "
                              "`qcreep evaluate` again") from None
        if not isinstance(data, dict) or HARDWARE_KEY not in data:
            continue
        if data[HARDWARE_KEY] not in SUPPORTED_HARDWARE_VERSIONS:
            raise QcreepError(f"hardware result {path} has version {data[HARDWARE_KEY]!r}; this qcreep reads "
                              f"{', '.join(map(str, SUPPORTED_HARDWARE_VERSIONS))}: run `qcreep evaluate` again")
        from qcreep.report.records import name_study

        found.append(name_study(data))
    return found


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)


def hardware_rows(results: list[dict]) -> list[dict]:
    """One row per (dataset, rung, angles, settings): accuracies in percent, mean and sd over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for res in results:
        key = (res["dataset"], res["label"], res["angles"], res["config_hash"], json.dumps(res["settings"]))
        groups.setdefault(key, []).append(res)
    rows = []
    for (dataset, label, angles, config_hash, _), group in groups.items():
        group.sort(key=lambda r: r["seed"])
        row = {"dataset": dataset, "label": label, "angles": angles, "config_hash": config_hash,
               "twin_of": group[0].get("twin_of"), "seeds": [r["seed"] for r in group],
               "n_test": group[0]["n_test"], "settings": group[0]["settings"],
               "resources": group[0].get("resources") or [],
               "exact": _mean_sd([100 * r["exact"]["test_acc"] for r in group])}
        row["shots"] = [(s, _mean_sd([100 * _at(r["shots"], "shots", s) for r in group]))
                        for s in group[0]["settings"]["shots"]]
        row["noise"] = [(p, _mean_sd([100 * _at(r["noise"], "noise", p) for r in group]))
                        for p in group[0]["settings"]["noise"]]
        row["seconds"] = sum(r.get("seconds", 0.0) for r in group)
        rows.append(row)
    return rows


def _at(entries: list[dict], key: str, value) -> float:
    for entry in entries:
        if entry[key] == value:
            return entry["test_acc"]
    raise QcreepError(f"hardware result lacks the {key} = {value} entry its settings name; run `qcreep evaluate` "
                      "again")


def _pm(pair) -> str:
    mean, sd = pair
    return "—" if mean is None else f"{mean:.2f} ± {sd:.2f}"


def _number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:g}"
    return f"{int(value):,}"


def hardware_section(rows: list[dict]) -> list[str]:
    """Markdown lines of the section (empty when no run was evaluated)."""
    if not rows:
        return []
    lines = ["## From simulation to hardware", "",
             "Each trained quantum rung scored on the test split as a device would run it (`qcreep evaluate`): "
             "with finite shots (each measured value estimated from S samples) and with local depolarising "
             "noise (probability p on every qubit after every gate block, simulated exactly with density "
             "matrices). Test accuracy in percent, mean ± population sd over seeds; the exact column is the "
             "statevector value of the same checkpoints.", ""]
    for row in rows:
        seeds = len(row["seeds"])
        lines.append(f"### {row['dataset']}: {row['label']} ({row['angles']} angles, {seeds} seed"
                     f"{'s' if seeds != 1 else ''}, {row['n_test']} test images, shot seed {row['settings']['seed']})")
        lines.append("")
        if row["shots"]:
            lines.append("| shots S | " + " | ".join(_number(s) for s, _ in row["shots"]) + " | exact |")
            lines.append("|---|" + "---|" * (len(row["shots"]) + 1))
            lines.append("| test acc % | " + " | ".join(_pm(v) for _, v in row["shots"]) + f" | {_pm(row['exact'])} |")
            lines.append("")
        if row["noise"]:
            lines.append("| depolarising p | 0 (exact) | " + " | ".join(f"{p:g}" for p, _ in row["noise"]) + " |")
            lines.append("|---|---|" + "---|" * len(row["noise"]))
            lines.append(f"| test acc % | {_pm(row['exact'])} | " + " | ".join(_pm(v) for _, v in row["noise"]) + " |")
            lines.append("")
        lines += resources_lines(row["resources"])
    return lines


def resources_lines(resources: list[dict]) -> list[str]:
    """A table of per-layer resource estimates (the dicts of :mod:`qcreep.hardware.resources`)."""
    if not resources:
        return []
    from qcreep.hardware.resources import format_resources

    return ["Resources of this rung's quantum layers (`qcreep.hardware.resources`):", "",
            format_resources(resources), ""]


def plot_hardware(dataset: str, rows: list[dict], path) -> None:
    """``hardware_<dataset>.png``: test accuracy against shots (left) and against p (right), per rung."""
    from qcreep.report.markdown import title
    from qcreep.report.plots import _new_figure, _save

    fig = _new_figure((9.0, 3.6))
    ax_shots, ax_noise = fig.subplots(1, 2)
    for k, row in enumerate(rows):
        color = f"C{k % 10}"
        label = f"{row['label']} ({len(row['seeds'])} seed{'s' if len(row['seeds']) != 1 else ''})"
        for ax, points in ((ax_shots, row["shots"]), (ax_noise, row["noise"])):
            xs = [x for x, (m, _) in points if m is not None]
            means = [m for _, (m, _) in points if m is not None]
            sds = [s for _, (m, s) in points if m is not None]
            if xs:
                ax.errorbar(xs, means, yerr=sds, color=color, marker="o", markersize=3, capsize=2, label=label)
            ax.axhline(row["exact"][0], color=color, linestyle=":", linewidth=1)
    ax_shots.set(xscale="log", xlabel="shots S per measured value", ylabel="test accuracy %",
                 title=f"{title(dataset)}: finite shots (dotted: exact)")
    ax_noise.set(xscale="log", xlabel="depolarising p per qubit and gate block", ylabel="test accuracy %",
                 title=f"{title(dataset)}: gate noise (dotted: exact)")
    ax_shots.legend(fontsize=7)
    _save(fig, path)
