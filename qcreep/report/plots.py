"""PNG plots of a dataset's rungs: learning curves and final accuracies, beside the published numbers.

* ``curves_<dataset>.png``: test accuracy per epoch, mean ± sd band per rung and angle mode
  (solid), validation accuracy where recorded (dashed), incomplete runs (dotted), the published
  PyTorch numbers (squares) at the published epochs within the runs' range, and chance.
* ``final_<dataset>.png``: final test accuracy ± sd per rung with each seed's point, failed seeds
  marked, test accuracy at the best-validation epoch where recorded, the published numbers at the
  same epoch, and the comparisons that the paired statistics resolve.

Accuracies lie in [0, 100], so every band and bar stops there, and the y range fits the data
drawn (chance is drawn when it falls inside it).

Figures are object-oriented Agg figures (no pyplot state, no display needed). Legends sit below
the axes, so they hide no line however many rungs there are; the seed count is in every label.
Files are written atomically through :func:`qcreep.files.atomic_save`.
"""

from __future__ import annotations

import math
import re

import numpy as np

from qcreep.files import atomic_save
from qcreep.published import PUBLISHED_EPOCHS, PUBLISHED_TORCH_PROTOCOL, published_at
from qcreep.report.markdown import title
from qcreep.report.records import plural

#: Angle modes are told apart by markers: complex (non-physical) angles get hollow circles.
_COMPLEX_MARKER = {"marker": "o", "markerfacecolor": "white", "markersize": 4}


def safe_name(name: str) -> str:
    """A dataset name made safe for a file name (``"fashion-mnist"`` stays, spaces become ``_``).

    Example:
        >>> safe_name("my data/set")
        'my_data_set'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def _new_figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> None:
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png"))


def rung_colors(rows, incomplete) -> dict:
    """One colour per rung label, stable across a dataset's plots (tab10, or tab20 past 10 rungs)."""
    import matplotlib

    labels = []
    for item in list(rows) + list(incomplete):
        if item["label"] not in labels:
            labels.append(item["label"])
    palette = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"].colors
    return {lab: palette[i % len(palette)] for i, lab in enumerate(labels)}


def _subsets_text(rows, incomplete) -> str:
    """``" (subsets: first 1000 train / 500 test examples)"`` when --max-train/--max-test were used."""
    train, test = set(), set()
    for r in rows:
        subsets = r.get("subsets") or {}
        if subsets.get("max_train") is not None:
            train.add(subsets["max_train"])
        if subsets.get("max_test") is not None:
            test.add(subsets["max_test"])
    for rec in incomplete:
        config = rec.get("config") or {}
        if config.get("max_train") is not None:
            train.add(config["max_train"])
        if config.get("max_test") is not None:
            test.add(config["max_test"])
    bits = []
    if train:
        bits.append(f"first {'/'.join(str(v) for v in sorted(train))} train")
    if test:
        bits.append(f"{'/'.join(str(v) for v in sorted(test))} test")
    return f" (subsets: {' / '.join(bits)} examples)" if bits else ""


def _chance(rows) -> tuple[float, int] | None:
    for r in rows:
        if r.get("chance_pct") is not None:
            return r["chance_pct"], r["num_classes"]
    return None


def _legend_columns(labels, width_in: float) -> int:
    """How many legend columns of these labels fit side by side in ``width_in`` inches (1 to 3)."""
    longest = max((len(x) for x in labels), default=0)
    per_column = 0.075 * longest + 0.8  # "small" text is about 0.075 in per character, plus the handle
    return max(1, min(3, len(labels), int(width_in // per_column)))


def _legend_below(fig, ax, width_in: float) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=_legend_columns(labels, width_in),
                   fontsize="small", frameon=False)


def _legend_height(labels, width_in: float) -> float:
    return 0.21 * math.ceil(len(labels) / _legend_columns(labels, width_in)) + 0.2


def _seeds(n: int) -> str:
    return f"n={n} seed" if n == 1 else f"n={n} seeds"


def _fit_y(ax, values) -> None:
    """A y range that fits ``values`` (accuracies in percent) with a small margin, inside [0, 100]."""
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not values:
        ax.set_ylim(0, 100)
        return
    lo, hi = min(values), max(values)
    pad = max(0.08 * (hi - lo), 0.5)
    ax.set_ylim(max(0.0, lo - pad), min(100.0, hi) + min(pad, 1.5))


def _curve_values(rows, incomplete, ax) -> list[float]:
    """Every value the curves figure draws: means, clipped bands, validation, incomplete runs, published."""
    values = []
    for r in rows:
        mean, sd = np.asarray(r["curve_mean"]), np.asarray(r["curve_sd"])
        values += list(np.clip(mean - sd, 0, 100)) + list(np.clip(mean + sd, 0, 100))
        values += list(r.get("val_curve_mean") or [])
    for rec in incomplete:
        values += [100.0 * v for v in rec["test_accs"]]
    for container in ax.containers:  # the published markers and their bars
        values += [float(v) for v in container.lines[0].get_ydata()]
    return values


def curves_figure(dataset: str, rows: list[dict], incomplete: list[dict], colors: dict):
    """The learning-curve figure of one dataset (rows of :func:`~qcreep.report.summary.summarize`).

    Example:
        >>> fig = curves_figure("mnist", rows, [], rung_colors(rows, []))   # doctest: +SKIP
        >>> fig.axes[0].get_xlabel()                                        # doctest: +SKIP
        'epoch'
    """
    max_epoch = max([r["epochs"] for r in rows] + [len(rec["test_accs"]) for rec in incomplete] + [1])
    levels = sorted({r["level"] for r in rows if r["level"] is not None})
    have_val = any(r.get("val_curve_mean") for r in rows)
    width = 8.0
    expected = ([f"{r['label']}, {r['angles']} angles ({_seeds(r['n_seeds'])})" for r in rows]
                + [f"published level {lv} (PyTorch, complex angles, n=5 runs)" for lv in levels]
                + ["incomplete runs (dotted)", "validation accuracy (dashed)", "chance (10% for 10 classes)"])
    fig = _new_figure((width, 4.8 + _legend_height(expected, width)))
    ax = fig.add_subplot()
    for r in rows:
        color = colors[r["label"]]
        x = np.arange(1, r["epochs"] + 1)
        mean, sd = np.asarray(r["curve_mean"]), np.asarray(r["curve_sd"])
        style = dict(_COMPLEX_MARKER, markevery=max(1, r["epochs"] // 10)) if r["angles"] == "complex" else {}
        if not style and r["epochs"] <= 3:
            style = {"marker": "."}
        ax.plot(x, mean, color=color, linestyle="-",
                label=f"{r['label']}, {r['angles']} angles ({_seeds(r['n_seeds'])})", **style)
        # an accuracy lies in [0, 100]: the band is clipped there, as no seed can go beyond it
        ax.fill_between(x, np.clip(mean - sd, 0, 100), np.clip(mean + sd, 0, 100), color=color, alpha=0.18,
                        linewidth=0)
        if r.get("val_curve_mean"):
            ax.plot(x, r["val_curve_mean"], color=color, linestyle="--", linewidth=1.2,
                    marker="." if r["epochs"] <= 3 else None)
    drawn = set()
    for r in rows:
        level = r["level"]
        if level is None or level in drawn:
            continue
        pts = [(e, *published_at(dataset, level, e)) for e in PUBLISHED_EPOCHS
               if e <= max_epoch and published_at(dataset, level, e) is not None]
        if not pts:
            continue
        drawn.add(level)
        e, m, s = (np.array(v, dtype=float) for v in zip(*pts))
        ax.errorbar(e, m, yerr=s, fmt="s", color=colors[r["label"]], markerfacecolor="white", markersize=6,
                    capsize=3, linestyle="none",
                    label=f"published level {level} (PyTorch, complex angles, "
                          f"n={PUBLISHED_TORCH_PROTOCOL['n_runs']} runs)")
    first = True
    for rec in incomplete:
        accs = rec["test_accs"]
        if not accs:
            continue
        x = np.arange(1, len(accs) + 1)
        ax.plot(x, 100.0 * np.asarray(accs, dtype=float), color=colors[rec["label"]], linestyle=":",
                linewidth=1, marker="." if len(accs) <= 3 else None,
                label="incomplete runs (dotted)" if first else None)
        first = False
    if have_val:
        ax.plot([], [], color="dimgray", linestyle="--", label="validation accuracy (dashed)")
    chance = _chance(rows)
    if chance is not None:
        ax.axhline(chance[0], color="grey", linestyle="-.", linewidth=0.8,
                   label=f"chance ({chance[0]:g}% for {chance[1]} classes)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, max_epoch + 0.5)
    _fit_y(ax, _curve_values(rows, incomplete, ax))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    what = "test (solid) and validation (dashed) accuracy" if have_val else "test accuracy"
    subsets = _subsets_text(rows, incomplete)
    ax.set_title(f"{title(dataset)}: {what}, mean ± sd over seeds (band clipped to 0–100)"
                 + (f"\n{subsets.strip()}" if subsets else ""),
                 fontsize="medium")
    ax.grid(True, alpha=0.3)
    if not rows and not any(rec["test_accs"] for rec in incomplete):
        ax.text(0.5, 0.5, "no epochs recorded yet", transform=ax.transAxes, ha="center")
    _legend_below(fig, ax, width)
    return fig


def plot_curves(dataset: str, rows: list[dict], incomplete: list[dict], colors: dict, path) -> None:
    """Write :func:`curves_figure` to ``path`` as PNG, atomically."""
    _save(curves_figure(dataset, rows, incomplete, colors), path)


def _clipped_bar(mean: float, sd: float | None) -> list[list[float]]:
    """Asymmetric error bar of mean ± sd that stops at 0 and 100 (accuracies cannot go beyond them)."""
    sd = sd or 0.0
    return [[mean - max(0.0, mean - sd)], [min(100.0, mean + sd) - mean]]


def _resolved_marks(rows: list[dict], comparisons: list[dict]) -> dict[int, list[str]]:
    """For each row index, the resolved comparisons in which it is A: ``["> level 0 *", ...]``."""
    index = {(r["dataset"], r["label"], r["angles"]): i for i, r in enumerate(rows)}
    marks: dict[int, list[str]] = {}
    for c in comparisons:
        i = index.get((c["dataset"], c["a"], c["angles"]))
        if i is None or not c["resolved"]:
            continue
        marks.setdefault(i, []).append(f"{'>' if c['mean_diff'] > 0 else '<'} {c['b']} *")
    return marks


def final_figure(dataset: str, rows: list[dict], colors: dict, comparisons: list[dict] | None = None):
    """The final-accuracy figure of one dataset: each rung beside the published number at the same epoch.

    Per rung: the mean final test accuracy with its sd bar (clipped to [0, 100]), each seed's final
    accuracy as a small jittered point (a failed seed as a red cross; one below the y range sits on
    the lower edge with its value written beside it), the test accuracy at the best-validation epoch,
    the published numbers. The y range fits the means, the published numbers and the seeds that did
    not fail. A comparison that is resolved (:mod:`qcreep.report.compare`: the 95 % t interval
    excludes 0 and the Wilcoxon p < 0.05) is written above rung A, as ``"> level 0 *"``; the caption
    says when none is.

    Example:
        >>> fig = final_figure("mnist", rows, rung_colors(rows, []))        # doctest: +SKIP
    """
    if comparisons is None:
        from qcreep.report.compare import rung_comparisons

        comparisons = rung_comparisons(rows)
    comparisons = [c for c in comparisons if c["dataset"] == dataset]
    width = max(6.5, 1.6 * len(rows) + 2.5)
    fig = _new_figure((width, 5.6 + _legend_height(["ours: test acc at the best-validation epoch"] * 6, width)))
    ax = fig.add_subplot()
    xs = np.arange(len(rows), dtype=float)
    have_pub = have_jax = have_best = have_failed = False
    in_range, low_points = [], []
    jitter = np.random.default_rng(0)  # fixed: the same report draws the same picture
    for i, r in enumerate(rows):
        color = colors[r["label"]]
        ax.errorbar([xs[i] - 0.2], [r["final_test_mean"]], yerr=_clipped_bar(r["final_test_mean"], r["final_test_sd"]),
                    fmt="o", color=color, markersize=7, capsize=4, linestyle="none", zorder=3)
        in_range.append(r["final_test_mean"])
        failed = {f["seed"] for f in r.get("failed_seeds") or []}
        seeds = sorted(r["final_test_by_seed"])
        offsets = jitter.uniform(-0.07, 0.07, len(seeds))
        for seed, dx in zip(seeds, offsets):
            value = r["final_test_by_seed"][seed]
            if seed in failed:
                low_points.append((i, xs[i] - 0.2 + dx, value, seed))
                have_failed = True
            else:
                ax.plot([xs[i] - 0.2 + dx], [value], marker=".", color=color, alpha=0.55, markersize=5,
                        linestyle="none", zorder=2)
                in_range.append(value)
        if r.get("test_at_best_val_mean") is not None:
            ax.errorbar([xs[i] - 0.05], [r["test_at_best_val_mean"]],
                        yerr=_clipped_bar(r["test_at_best_val_mean"], r["test_at_best_val_sd"]),
                        fmt="D", color=color, markerfacecolor="white", markersize=6, capsize=4, linestyle="none")
            in_range.append(r["test_at_best_val_mean"])
            have_best = True
        if r["published_mean"] is not None:
            ax.errorbar([xs[i] + 0.15], [r["published_mean"]],
                        yerr=_clipped_bar(r["published_mean"], r["published_sd"]),
                        fmt="s", color="black", markerfacecolor="white", markersize=6, capsize=4, linestyle="none")
            in_range.append(r["published_mean"])
            have_pub = True
        if r["published_jax"] is not None:
            ax.plot([xs[i] + 0.3], [r["published_jax"]], marker="^", color="grey", linestyle="none")
            in_range.append(r["published_jax"])
            have_jax = True
    _fit_y(ax, in_range)
    lo, hi = ax.get_ylim()
    below: dict[int, list[str]] = {}
    for i, x, value, seed in low_points:  # failed seeds: at their value, or on the lower edge with it written
        shown = max(value, lo + 0.02 * (hi - lo))
        ax.plot([x], [shown], marker="x", color="tab:red", markersize=7, linestyle="none", zorder=4)
        if value < lo:
            below.setdefault(i, []).append(f"seed {seed}: {value:.1f}% (below)")
    for i, texts in below.items():  # one label per rung, a line per seed, so that they do not overlap
        ax.annotate("\n".join(texts), (xs[i] - 0.2, lo + 0.02 * (hi - lo)), xytext=(8, 3), textcoords="offset points",
                    fontsize="x-small", color="tab:red", va="bottom")
    marks = _resolved_marks(rows, comparisons)
    for i, texts in marks.items():
        ax.annotate("\n".join(texts), (xs[i] - 0.2, hi), xytext=(0, -4), textcoords="offset points", ha="center",
                    va="top", fontsize="x-small")
    # legend proxies, so each kind of marker appears once
    ax.errorbar([], [], yerr=[], fmt="o", color="dimgray", capsize=4, linestyle="none",
                label="ours: final test acc, mean ± sd (clipped to 0–100)")
    ax.plot([], [], marker=".", color="dimgray", alpha=0.55, linestyle="none", label="ours: each seed's final test acc")
    if have_failed:
        ax.plot([], [], marker="x", color="tab:red", linestyle="none",
                label="a failed seed (it stayed near chance while the others trained)")
    if have_best:
        ax.errorbar([], [], yerr=[], fmt="D", color="dimgray", markerfacecolor="white", capsize=4,
                    linestyle="none", label="ours: test acc at the best-validation epoch")
    if have_pub:
        ax.errorbar([], [], yerr=[], fmt="s", color="black", markerfacecolor="white", capsize=4, linestyle="none",
                    label="published PyTorch (complex angles) at the epoch shown")
    if have_jax:
        ax.plot([], [], marker="^", color="grey", linestyle="none", label="published JAX (real angles, 100 epochs)")
    chance = _chance(rows)
    if chance is not None and lo <= chance[0] <= hi:
        ax.axhline(chance[0], color="grey", linestyle="-.", linewidth=0.8,
                   label=f"chance ({chance[0]:g}% for {chance[1]} classes)")
    ticks = []
    for r in rows:
        tick = (f"{r['label'].replace(',', ',' + chr(10))}\n{r['angles']} angles\n{plural(r['epochs'], 'epoch')}, "
                f"{_seeds(r['n_seeds'])}")
        if r["published_epoch"] is not None:
            tick += f"\n(published @ {r['published_epoch']})"
        ticks.append(tick)
    ax.set_xticks(xs)
    ax.set_xticklabels(ticks, fontsize="x-small")
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("test accuracy (%)")
    if marks:
        caption = ("* resolved, paired over seeds (95% t interval excludes 0 and Wilcoxon p < 0.05); "
                   "differences not marked are not resolved")
    elif comparisons:
        caption = "no difference between rungs is resolved by the paired statistics over seeds"
    else:
        caption = ""
    if chance is not None and not lo <= chance[0] <= hi:
        caption += ("; " if caption else "") + f"chance ({chance[0]:g}%) is below the axis"
    ax.set_title(f"{title(dataset)}: final test accuracy{_subsets_text(rows, [])}"
                 + (f"\n{caption}" if caption else ""), fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3)
    _legend_below(fig, ax, width)
    return fig


def plot_final(dataset: str, rows: list[dict], colors: dict, path, comparisons: list[dict] | None = None) -> None:
    """Write :func:`final_figure` to ``path`` as PNG, atomically."""
    _save(final_figure(dataset, rows, colors, comparisons), path)
