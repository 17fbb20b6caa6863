"""Reports over run records: tables, a CSV summary and plots, compared with the published numbers.

A report reads only the JSON run records that ``qcreep run`` writes (one file per run, found
recursively under a results directory). It never imports the training code or torch, so it works on
a machine that only has the result files.

Main entry points:

* :func:`load_records` - read and check every ``*.json`` run record under a directory.
* :func:`summarize` - one row per (dataset, rung label, angles) group, statistics in percent.
* :func:`markdown_table` - the rows as Markdown tables (summary and per-epoch comparison).
* :func:`write_report` - ``report.md``, ``summary.csv`` and PNG plots.

Statistics follow the paper: mean and *population* standard deviation (ddof=0) over seeds.
Only runs whose ``status`` is ``"complete"`` enter the tables; the others are listed as incomplete
and drawn dotted in the learning-curve plots.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from qcreep.errors import QcreepError
from qcreep.published import (
    END_TO_END_QUANTUM,
    PUBLISHED_EPOCHS,
    PUBLISHED_JAX_PROTOCOL,
    PUBLISHED_TORCH_PROTOCOL,
    canonical_dataset,
    published_at,
    published_at_or_before,
    published_jax,
)

#: Record format versions this module can read.
SUPPORTED_RECORD_VERSIONS = (1,)

#: Keys every run record must have.
REQUIRED_KEYS = ("record_version", "dataset", "level", "label", "angles", "seed", "status",
                 "train_accs", "test_accs")

VALID_ANGLES = ("real", "complex")

#: Order of datasets in tables (others follow alphabetically).
DATASET_ORDER = ("digits", "mnist", "fashion-mnist", "cifar10")

_DATASET_TITLES = {"digits": "digits", "mnist": "MNIST", "fashion-mnist": "FashionMNIST",
                   "cifar10": "CIFAR-10"}

#: Key under which :func:`load_records` stores the file a record came from.
PATH_KEY = "_path"


# --------------------------------------------------------------------------------------------
# loading


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _check_record(rec: dict, path: Path) -> None:
    """Raise QcreepError (one line, naming the file) when a record is malformed."""
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise QcreepError(
            f"run record {path} lacks required key(s) {', '.join(missing)}; "
            f"a record needs {', '.join(REQUIRED_KEYS)}")
    version = rec["record_version"]
    if isinstance(version, bool) or version not in SUPPORTED_RECORD_VERSIONS:
        raise QcreepError(
            f"run record {path} has record_version {version!r}; this qcreep reads versions "
            f"{', '.join(str(v) for v in SUPPORTED_RECORD_VERSIONS)}")
    if not isinstance(rec["dataset"], str) or not rec["dataset"].strip():
        raise QcreepError(f"run record {path}: dataset must be a non-empty string such as "
                          f"'mnist', got {rec['dataset']!r}")
    level = rec["level"]
    if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
        raise QcreepError(f"run record {path}: level must be an integer (0, 1, 2) or null, "
                          f"got {level!r}")
    if not isinstance(rec["label"], str) or not rec["label"].strip():
        raise QcreepError(f"run record {path}: label must be a non-empty string such as "
                          f"'level 2', got {rec['label']!r}")
    if rec["angles"] not in VALID_ANGLES:
        raise QcreepError(f"run record {path}: angles must be one of {', '.join(VALID_ANGLES)}, "
                          f"got {rec['angles']!r}")
    seed = rec["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise QcreepError(f"run record {path}: seed must be an integer, got {seed!r}")
    if not isinstance(rec["status"], str):
        raise QcreepError(f"run record {path}: status must be a string such as 'complete' or "
                          f"'running', got {rec['status']!r}")
    for key in ("train_accs", "test_accs"):
        values = rec[key]
        if not isinstance(values, list):
            raise QcreepError(f"run record {path}: {key} must be a list of per-epoch accuracies "
                              f"(fractions in [0, 1]), got {type(values).__name__}")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise QcreepError(f"run record {path}: {key}[{i}] must be a finite number "
                                  f"(fraction in [0, 1]), got {v!r}")
            if not -1e-9 <= v <= 1 + 1e-9:
                raise QcreepError(f"run record {path}: {key}[{i}] = {v!r} is outside [0, 1]; "
                                  "accuracies in records are fractions, not percent")
    if rec["status"] == "complete" and not rec["test_accs"]:
        raise QcreepError(f"run record {path}: status is 'complete' but test_accs is empty; "
                          "a complete run needs at least one epoch of results")
    for key in ("epoch_times", "eval_times", "train_losses", "test_losses"):
        values = rec.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise QcreepError(f"run record {path}: {key} must be a list of numbers, "
                              f"got {_one_line(repr(values))[:60]}")
    for key in ("config", "assignment", "environment"):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            raise QcreepError(f"run record {path}: {key} must be a JSON object, "
                              f"got {type(rec[key]).__name__}")
    unit = rec.get("unitarity")
    if unit is not None and not isinstance(unit, dict):
        raise QcreepError(f"run record {path}: unitarity must be a JSON object or null, "
                          f"got {type(unit).__name__}")


def load_records(results_dir) -> list[dict]:
    """Load every run record (``*.json`` with a top-level ``record_version``) under ``results_dir``.

    The search is recursive and in sorted path order. JSON files whose top level is not an object
    with ``"record_version"`` are skipped (they are not run records). Each returned dict is the
    record as stored plus ``"_path"``: the file it came from (a string).

    Raises QcreepError (one line, naming the file) when a JSON file does not parse or a record
    lacks required keys or has values of the wrong kind, and when no record is found.
    """
    root = Path(results_dir)
    if not root.exists():
        raise QcreepError(f"results directory {root} does not exist; pass the directory given "
                          "to `qcreep run --out DIR`")
    if not root.is_dir():
        raise QcreepError(f"results path {root} is not a directory; pass the directory given "
                          "to `qcreep run --out DIR`")
    records = []
    for path in sorted(p for p in root.rglob("*.json") if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise QcreepError(f"cannot read run record {path}: {_one_line(exc)}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QcreepError(f"run record {path} is not valid JSON ({_one_line(exc)}); "
                              "fix or remove the file") from None
        if not isinstance(data, dict) or "record_version" not in data:
            continue
        _check_record(data, path)
        data[PATH_KEY] = str(path)
        records.append(data)
    if not records:
        raise QcreepError(f"no run records (*.json) found under {root}; "
                          f"run `qcreep run --out {root}` first")
    return records


# --------------------------------------------------------------------------------------------
# statistics


def _is_complete(rec: dict) -> bool:
    return rec.get("status") == "complete"


def _dataset_rank(name: str):
    try:
        return (DATASET_ORDER.index(name), name)
    except ValueError:
        return (len(DATASET_ORDER), name)


def _sort_key(dataset: str, level, label: str, angles: str):
    return (_dataset_rank(dataset), (0, level) if level is not None else (1, 0), label, angles)


def _mean_sd(values) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=0))


def _group_key(rec: dict) -> tuple[str, str, str]:
    return (rec["dataset"], rec["label"], rec["angles"])


def _differing_config_keys(records: list[dict]) -> list[str]:
    """Config keys (ignoring the seed) whose values differ between the records of a group."""
    keys = set()
    for rec in records:
        keys.update((rec.get("config") or {}).keys())
    keys.discard("seed")
    differ = []
    for key in sorted(keys):
        values = {json.dumps((rec.get("config") or {}).get(key), sort_keys=True)
                  for rec in records}
        if len(values) > 1:
            differ.append(key)
    return differ


def _common_config(records: list[dict]) -> dict:
    out = {}
    configs = [rec.get("config") or {} for rec in records]
    for key in set().union(*[c.keys() for c in configs]):
        values = [c.get(key) for c in configs]
        if all(json.dumps(v, sort_keys=True) == json.dumps(values[0], sort_keys=True)
               for v in values):
            out[key] = values[0]
    return out


def _uses_reuploading(level, assignment: dict | None) -> bool:
    if assignment and isinstance(assignment.get("head"), str):
        return "reupload" in assignment["head"]
    return level == 2


def _protocol_differences(dataset: str, level, angles: str, epochs: int, config: dict,
                          assignment: dict | None) -> list[str]:
    """How this group's protocol differs from the published PyTorch runs (empty if it matches)."""
    if level is None or published_at_or_before(dataset, level, PUBLISHED_EPOCHS[-1]) is None:
        return []
    proto = PUBLISHED_TORCH_PROTOCOL
    diffs = []
    if angles != proto["angles"]:
        diffs.append(f"angles {angles} (published: {proto['angles']})")
    if epochs != proto["epochs"]:
        diffs.append(f"{epochs} epochs (published: {proto['epochs']})")
    bs = config.get("batch_size")
    if isinstance(bs, (int, float)) and bs != proto["batch_size"]:
        diffs.append(f"batch {bs} (published: {proto['batch_size']})")
    lr = config.get("lr")
    if isinstance(lr, (int, float)) and not math.isclose(lr, proto["lr"], rel_tol=1e-9):
        diffs.append(f"lr {lr:g} (published: {proto['lr']:g})")
    reps = config.get("n_reps")
    if (_uses_reuploading(level, assignment) and isinstance(reps, (int, float))
            and reps != proto["n_reps"]):
        diffs.append(f"{reps} re-uploads (published: {proto['n_reps']})")
    if config.get("max_train") is not None:
        diffs.append(f"max_train {config['max_train']} (published: full training set)")
    if config.get("max_test") is not None:
        diffs.append(f"max_test {config['max_test']} (published: full test set)")
    return diffs


def _unitarity_summary(records: list[dict]) -> dict | None:
    units = [rec["unitarity"] for rec in records if isinstance(rec.get("unitarity"), dict)]
    if not units:
        return None
    out = {}
    for key, agg in (("max_unitarity_error", max), ("min_state_norm", min),
                     ("max_state_norm", max)):
        vals = [u[key] for u in units
                if isinstance(u.get(key), (int, float)) and not isinstance(u.get(key), bool)]
        out[key] = float(agg(vals)) if vals else None
    return out


def _dedupe_seeds(recs: list[dict]) -> tuple[list[dict], list[str]]:
    """Keep one record per seed (the one with most epochs, then the last path); list the others.

    Two complete records of one group with the same seed are a copied or repeated run; counting
    both would inflate the number of seeds and shrink the standard deviation.
    """
    by_seed: dict[int, list[dict]] = {}
    for rec in recs:
        by_seed.setdefault(rec["seed"], []).append(rec)
    kept, dropped = [], []
    for seed in sorted(by_seed):
        cands = sorted(by_seed[seed], key=lambda r: (len(r["test_accs"]), r.get(PATH_KEY, "")))
        kept.append(cands[-1])
        dropped.extend(str(r.get(PATH_KEY)) for r in cands[:-1])
    return kept, dropped


def summarize(records: list[dict]) -> list[dict]:
    """One row per (dataset, label, angles) group of complete runs, statistics in percent.

    Each row has:

    * ``dataset``, ``level`` (int or None), ``label``, ``angles``, ``assignment``;
    * ``n_seeds``, ``seeds`` (sorted), ``paths`` (record files);
    * ``epochs``: number of epochs every seed of the group completed; all per-run statistics are
      taken over these first ``epochs`` epochs, so seeds are compared at the same point;
      ``epochs_differ`` is True when the seeds completed different numbers of epochs;
    * ``n_params`` (int, or None when seeds disagree), ``n_params_all`` (sorted distinct values);
    * ``final_test_mean``/``final_test_sd``: test accuracy at epoch ``epochs``, mean and
      population sd (ddof=0) over seeds; ``best_test_mean``/``best_test_sd``: each seed's best
      test accuracy over the epochs, then mean and sd; ``final_train_mean``/``final_train_sd``;
    * ``sec_per_epoch``: mean training seconds per epoch (None without ``epoch_times``);
    * ``curve_mean``/``curve_sd``: test accuracy per epoch (lists of length ``epochs``);
    * ``published_epoch``, ``published_mean``, ``published_sd``: the published PyTorch number at
      our final epoch if it is a published epoch (1, 5, 10, 20, 50), else at the largest published
      epoch below it; ``delta_pp`` = ours - published in percentage points (all None when there is
      no published number, e.g. ``level`` is None or the dataset is digits);
    * ``published_jax``: the published real-angle JAX final accuracy (100 epochs) or None;
    * ``per_epoch``: for each published epoch we reached, ``{"epoch", "mean", "sd",
      "published_mean", "published_sd", "delta_pp"}``;
    * ``protocol_differences``: how our protocol differs from the published PyTorch runs;
    * ``config_mismatch``: config keys whose values differ between seeds of the group;
    * ``duplicates_dropped``: record files ignored because another complete record of the group
      has the same seed (the one with most epochs is kept);
    * ``unitarity``: worst ``max_unitarity_error`` / ``min_state_norm`` / ``max_state_norm`` over
      seeds, or None.

    Rows are ordered by dataset (digits, mnist, fashion-mnist, cifar10, then others), level
    (null last), label, angles. Runs that are not complete are left out (see
    :func:`incomplete_runs`).
    """
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for rec in records:
        if _is_complete(rec):
            groups.setdefault(_group_key(rec), []).append(rec)

    rows = []
    for (dataset, label, angles), recs in groups.items():
        recs, dropped = _dedupe_seeds(recs)
        levels = {r["level"] for r in recs}
        level = levels.pop() if len(levels) == 1 else None
        lengths = [len(r["test_accs"]) for r in recs]
        epochs = min(lengths)

        tests = np.array([r["test_accs"][:epochs] for r in recs], dtype=float) * 100.0
        final_test = tests[:, -1]
        best_test = tests.max(axis=1)
        curve_mean = tests.mean(axis=0)
        curve_sd = tests.std(axis=0, ddof=0)

        final_train = []
        for r in recs:
            tr = r["train_accs"]
            if tr:
                final_train.append(100.0 * tr[min(epochs, len(tr)) - 1])
        train_mean, train_sd = _mean_sd(final_train) if final_train else (None, None)

        per_seed_time = []
        for r in recs:
            times = r.get("epoch_times") or []
            times = times[:epochs]
            if times:
                per_seed_time.append(float(np.mean(times)))
        sec_per_epoch = float(np.mean(per_seed_time)) if per_seed_time else None

        params = sorted({r["n_params"] for r in recs
                         if isinstance(r.get("n_params"), int)
                         and not isinstance(r.get("n_params"), bool)})
        n_params = params[0] if len(params) == 1 else None

        assignments = {json.dumps(r.get("assignment"), sort_keys=True) for r in recs}
        assignment = recs[0].get("assignment") if len(assignments) == 1 else None

        fm, fs = _mean_sd(final_test)
        bm, bs = _mean_sd(best_test)

        pub = published_at_or_before(dataset, level, epochs) if level is not None else None
        if pub is not None:
            pub_epoch, pub_mean, pub_sd = pub
            delta = fm - pub_mean
        else:
            pub_epoch = pub_mean = pub_sd = delta = None

        per_epoch = []
        for ep in PUBLISHED_EPOCHS:
            if ep > epochs:
                break
            m, s = float(curve_mean[ep - 1]), float(curve_sd[ep - 1])
            p = published_at(dataset, level, ep) if level is not None else None
            per_epoch.append({
                "epoch": ep, "mean": m, "sd": s,
                "published_mean": p[0] if p else None,
                "published_sd": p[1] if p else None,
                "delta_pp": (m - p[0]) if p else None,
            })

        config = _common_config(recs)
        rows.append({
            "dataset": dataset,
            "level": level,
            "label": label,
            "angles": angles,
            "assignment": assignment,
            "n_seeds": len(recs),
            "seeds": sorted(r["seed"] for r in recs),
            "paths": [r.get(PATH_KEY) for r in recs],
            "epochs": epochs,
            "epochs_differ": len(set(lengths)) > 1,
            "n_params": n_params,
            "n_params_all": params,
            "final_test_mean": fm,
            "final_test_sd": fs,
            "best_test_mean": bm,
            "best_test_sd": bs,
            "final_train_mean": train_mean,
            "final_train_sd": train_sd,
            "sec_per_epoch": sec_per_epoch,
            "curve_mean": [float(v) for v in curve_mean],
            "curve_sd": [float(v) for v in curve_sd],
            "published_epoch": pub_epoch,
            "published_mean": pub_mean,
            "published_sd": pub_sd,
            "delta_pp": delta,
            "published_jax": published_jax(dataset, level) if level is not None else None,
            "per_epoch": per_epoch,
            "protocol_differences": _protocol_differences(dataset, level, angles, epochs,
                                                          config, assignment),
            "config_mismatch": _differing_config_keys(recs),
            "unitarity": _unitarity_summary(recs),
            "duplicates_dropped": dropped,
        })
    rows.sort(key=lambda r: _sort_key(r["dataset"], r["level"], r["label"], r["angles"]))
    return rows


def incomplete_runs(records: list[dict]) -> list[dict]:
    """Records whose status is not ``"complete"``, in table order then by seed."""
    out = [r for r in records if not _is_complete(r)]
    out.sort(key=lambda r: (_sort_key(r["dataset"], r["level"], r["label"], r["angles"]),
                            r["seed"], r.get(PATH_KEY, "")))
    return out


# --------------------------------------------------------------------------------------------
# Markdown


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


def _params_text(row: dict) -> str:
    if row["n_params"] is not None:
        return str(row["n_params"])
    if row["n_params_all"]:
        return "/".join(str(p) for p in row["n_params_all"])
    return "—"


def _epochs_text(row: dict) -> str:
    return f"{row['epochs']}*" if row["epochs_differ"] else str(row["epochs"])


def markdown_table(rows: list[dict]) -> str:
    """The rows of :func:`summarize` as Markdown: a summary table and a per-epoch comparison.

    Accuracies are percent, mean ± population sd over seeds. "published" is the PyTorch
    (complex-angle) number at the epoch shown; "Δ pp" is ours minus published in percentage points;
    "JAX real @100" is the real-angle JAX implementation after 100 epochs. An epoch count marked
    ``*`` means the seeds completed different numbers of epochs and the statistics use the common
    prefix.
    """
    lines = [
        "| dataset | rung | angles | seeds | epochs | params | final test acc % (mean ± sd) "
        "| best test acc % | final train acc % | published @ epoch | Δ pp | JAX real @100 "
        "| s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["published_mean"] is not None:
            pub = f"{_pm(r['published_mean'], r['published_sd'])} @ {r['published_epoch']}"
        else:
            pub = "—"
        jax = "—" if r["published_jax"] is None else f"{r['published_jax']:.2f}"
        spe = "—" if r["sec_per_epoch"] is None else f"{r['sec_per_epoch']:.2f}"
        lines.append(
            f"| {_md(r['dataset'])} | {_md(r['label'])} | {_md(r['angles'])} | {r['n_seeds']} "
            f"| {_epochs_text(r)} | {_params_text(r)} "
            f"| {_pm(r['final_test_mean'], r['final_test_sd'])} "
            f"| {_pm(r['best_test_mean'], r['best_test_sd'])} "
            f"| {_pm(r['final_train_mean'], r['final_train_sd'])} "
            f"| {pub} | {_signed(r['delta_pp'])} | {jax} | {spe} |")

    lines += ["", "### Per-epoch comparison", ""]
    comparable = [r for r in rows if any(p["published_mean"] is not None for p in r["per_epoch"])]
    if not comparable:
        lines.append("No group has published numbers to compare with at epochs "
                     f"{', '.join(str(e) for e in PUBLISHED_EPOCHS)}.")
    else:
        lines += [
            "| dataset | rung | angles | epoch | ours test acc % (mean ± sd) "
            "| published test acc % (mean ± sd) | Δ pp |",
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
# CSV

CSV_COLUMNS = (
    "dataset", "level", "label", "angles", "n_seeds", "seeds", "epochs", "epochs_differ",
    "n_params", "final_test_mean", "final_test_sd", "best_test_mean", "best_test_sd",
    "final_train_mean", "final_train_sd", "sec_per_epoch", "published_epoch", "published_mean",
    "published_sd", "delta_pp", "published_jax", "protocol_differences", "config_mismatch",
)


def _csv_value(row: dict, key: str):
    value = row[key]
    if key == "seeds":
        return " ".join(str(s) for s in value)
    if key == "n_params":
        return _params_text(row) if row["n_params_all"] else ""
    if key in ("protocol_differences", "config_mismatch"):
        return "; ".join(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([_csv_value(r, k) for k in CSV_COLUMNS])


# --------------------------------------------------------------------------------------------
# plots


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def _new_figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110, constrained_layout=True)
    FigureCanvasAgg(fig)
    return fig


def _title(dataset: str) -> str:
    return _DATASET_TITLES.get(dataset, dataset)


def _rung_colors(rows, incomplete):
    """One colour per rung label, stable across a dataset's plots."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    labels = []
    for item in list(rows) + list(incomplete):
        if item["label"] not in labels:
            labels.append(item["label"])
    return {lab: palette[i % len(palette)] for i, lab in enumerate(labels)}


_LINESTYLES = {"real": "-", "complex": "--"}


def _plot_curves(dataset, rows, incomplete, colors, path: Path) -> None:
    fig = _new_figure((7.5, 4.8))
    ax = fig.add_subplot()
    for r in rows:
        color = colors[r["label"]]
        x = np.arange(1, r["epochs"] + 1)
        mean = np.asarray(r["curve_mean"])
        sd = np.asarray(r["curve_sd"])
        ax.plot(x, mean, color=color, linestyle=_LINESTYLES.get(r["angles"], "-"),
                marker="." if r["epochs"] <= 3 else None,
                label=f"{r['label']} ({r['angles']} angles, n={r['n_seeds']})")
        ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.18, linewidth=0)
    drawn_levels = set()
    for r in rows:
        level = r["level"]
        if level is None or level in drawn_levels:
            continue
        pts = [(e, *published_at(dataset, level, e)) for e in PUBLISHED_EPOCHS
               if published_at(dataset, level, e) is not None]
        if not pts:
            continue
        drawn_levels.add(level)
        e, m, s = (np.array(v, dtype=float) for v in zip(*pts))
        ax.errorbar(e, m, yerr=s, fmt="s", color=colors[r["label"]], markerfacecolor="white",
                    markersize=6, capsize=3, linestyle="none",
                    label=f"published level {level} (PyTorch, complex angles)")
    first_incomplete = True
    for rec in incomplete:
        accs = rec["test_accs"]
        if not accs:
            continue
        x = np.arange(1, len(accs) + 1)
        ax.plot(x, 100.0 * np.asarray(accs, dtype=float), color=colors[rec["label"]],
                linestyle=":", linewidth=1, marker="." if len(accs) <= 3 else None,
                label="incomplete runs (dotted)" if first_incomplete else None)
        first_incomplete = False
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{_title(dataset)}: test accuracy, mean ± sd over seeds")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
    else:
        ax.text(0.5, 0.5, "no epochs recorded yet", transform=ax.transAxes, ha="center")
    fig.savefig(path, format="png")


def _plot_final(dataset, rows, colors, path: Path) -> None:
    fig = _new_figure((max(5.0, 1.6 * len(rows) + 2.5), 4.8))
    ax = fig.add_subplot()
    xs = np.arange(len(rows), dtype=float)
    have_pub = have_jax = False
    for i, r in enumerate(rows):
        color = colors[r["label"]]
        ax.errorbar([xs[i] - 0.15], [r["final_test_mean"]], yerr=[r["final_test_sd"]], fmt="o",
                    color=color, markersize=7, capsize=4, linestyle="none")
        if r["published_mean"] is not None:
            ax.errorbar([xs[i] + 0.15], [r["published_mean"]], yerr=[r["published_sd"]],
                        fmt="s", color="black", markerfacecolor="white", markersize=6,
                        capsize=4, linestyle="none")
            have_pub = True
        if r["published_jax"] is not None:
            ax.plot([xs[i] + 0.3], [r["published_jax"]], marker="^", color="grey",
                    linestyle="none")
            have_jax = True
    # legend proxies, so each kind of marker appears once
    ax.errorbar([], [], yerr=[], fmt="o", color="dimgray", capsize=4, linestyle="none",
                label="ours: final test acc, mean ± sd")
    if have_pub:
        ax.errorbar([], [], yerr=[], fmt="s", color="black", markerfacecolor="white",
                    capsize=4, linestyle="none",
                    label="published PyTorch (complex angles) at the epoch shown")
    if have_jax:
        ax.plot([], [], marker="^", color="grey", linestyle="none",
                label="published JAX (real angles, 100 epochs)")
    ticks = []
    for r in rows:
        wrapped = r["label"].replace(",", ",\n")
        tick = f"{wrapped}\n{r['angles']} angles\n{r['epochs']} epochs"
        if r["published_epoch"] is not None:
            tick += f"\n(published @ {r['published_epoch']})"
        ticks.append(tick)
    ax.set_xticks(xs)
    ax.set_xticklabels(ticks, fontsize="small")
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{_title(dataset)}: final test accuracy")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    fig.savefig(path, format="png")


# --------------------------------------------------------------------------------------------
# report


_ANGLES_NOTE = (
    "**Note on the published numbers.** The published PyTorch results were obtained with "
    "**complex** trainable angles: Adam updates their real and imaginary parts independently, so "
    "after training exp(i·Σθ·P) is in general not unitary and the quantum states are not "
    "normalised. Compare `angles=complex` runs (published-code compatibility) with them; "
    "`angles=real` is the physical model. The authors' real-angle JAX implementation (batch 1000, "
    "lr 5e-3, 100 epochs, 1 re-upload) is given in the \"JAX real @100\" column; its level-2 "
    "gains are much smaller or absent. Levels 0 and 1 are linear models; level 2 also has more "
    "parameters, so a gain there is not by itself evidence that the quantum layer helps. "
    "See PAPER.md."
)


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


def _rel(path, root: Path) -> str:
    p = Path(path)
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _duplicates_line(rows: list[dict], root: Path) -> str | None:
    parts = []
    for r in rows:
        for p in r["duplicates_dropped"]:
            parts.append(f"`{_rel(p, root)}` ({r['dataset']}, {r['label']}, {r['angles']} angles)")
    if not parts:
        return None
    return ("Duplicate seeds (another complete record of the same group has the same seed; the "
            "one with most epochs is used, these are ignored): " + "; ".join(parts) + ".")


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


def _protocol_section(rows: list[dict]) -> list[str]:
    lines = ["## Protocol differences from the published runs", ""]
    proto = PUBLISHED_TORCH_PROTOCOL
    lines.append(
        f"Published PyTorch protocol: Adam, batch {proto['batch_size']}, lr {proto['lr']:g}, "
        f"{proto['epochs']} epochs, {proto['n_reps']} re-uploads, {proto['angles']} angles, "
        f"full datasets, {proto['n_runs']} runs. Published JAX protocol: batch "
        f"{PUBLISHED_JAX_PROTOCOL['batch_size']}, lr {PUBLISHED_JAX_PROTOCOL['lr']:g}, "
        f"{PUBLISHED_JAX_PROTOCOL['epochs']} epochs, {PUBLISHED_JAX_PROTOCOL['n_reps']} "
        f"re-upload, {PUBLISHED_JAX_PROTOCOL['angles']} angles.")
    lines.append("")
    any_row = False
    for r in rows:
        notes = list(r["protocol_differences"])
        if r["config_mismatch"]:
            notes.append("seeds differ in config: " + ", ".join(r["config_mismatch"]))
        if r["epochs_differ"]:
            notes.append(f"seeds completed different numbers of epochs; statistics use the "
                         f"first {r['epochs']}")
        if r["level"] is None:
            notes.append("explicit assignment (no replacement level): no published number")
        elif r["published_mean"] is None:
            notes.append("no published number for this dataset/level")
        if notes:
            any_row = True
            lines.append(f"- {r['dataset']}, {r['label']}, {r['angles']} angles: "
                         + "; ".join(notes) + ".")
        else:
            any_row = True
            lines.append(f"- {r['dataset']}, {r['label']}, {r['angles']} angles: "
                         "same protocol as the published PyTorch runs.")
    if not any_row:
        lines.append("No complete runs.")
    return lines


def _unitarity_section(rows: list[dict]) -> list[str]:
    have = [r for r in rows if r["unitarity"]]
    if not have:
        return []
    lines = ["## Unitarity checks", "",
             "| dataset | rung | angles | max unitarity error | min state norm | max state norm |",
             "|---|---|---|---|---|---|"]

    def fmt(v):
        return "—" if v is None else f"{v:.3g}"

    for r in have:
        u = r["unitarity"]
        lines.append(f"| {_md(r['dataset'])} | {_md(r['label'])} | {_md(r['angles'])} "
                     f"| {fmt(u.get('max_unitarity_error'))} | {fmt(u.get('min_state_norm'))} "
                     f"| {fmt(u.get('max_state_norm'))} |")
    lines.append("")
    return lines


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


def write_report(results_dir, out_dir=None) -> dict:
    """Write ``report.md``, ``summary.csv`` and PNG plots for the run records under ``results_dir``.

    Outputs go to ``out_dir`` (default: ``results_dir``); run records are only read. Per dataset
    there is ``curves_<dataset>.png`` (test accuracy vs epoch, mean ± sd band per rung and angle
    mode, published PyTorch numbers as markers with error bars, incomplete runs dotted) and
    ``final_<dataset>.png`` (final accuracy ± sd beside the published number at the same epoch).

    Returns a dict of the paths written: ``"report"``, ``"csv"``, and ``"curves_<dataset>"`` /
    ``"final_<dataset>"`` for each plot.
    """
    root = Path(results_dir)
    records = load_records(root)
    out = Path(out_dir) if out_dir is not None else root
    if out.exists() and not out.is_dir():
        raise QcreepError(f"report output path {out} is not a directory; pass a directory "
                          "(it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)

    rows = summarize(records)
    incomplete = incomplete_runs(records)
    paths: dict[str, str] = {}

    # plots (object-oriented Agg figures: no pyplot state, no interactive backend)
    datasets = []
    for item in rows + incomplete:
        if item["dataset"] not in datasets:
            datasets.append(item["dataset"])
    datasets.sort(key=_dataset_rank)
    plot_names = []
    for ds in datasets:
        ds_rows = [r for r in rows if r["dataset"] == ds]
        ds_incomplete = [r for r in incomplete if r["dataset"] == ds]
        colors = _rung_colors(ds_rows, ds_incomplete)
        safe = _safe_name(ds)
        curves = out / f"curves_{safe}.png"
        _plot_curves(ds, ds_rows, ds_incomplete, colors, curves)
        paths[f"curves_{ds}"] = str(curves)
        names = [curves.name]
        if ds_rows:
            final = out / f"final_{safe}.png"
            _plot_final(ds, ds_rows, colors, final)
            paths[f"final_{ds}"] = str(final)
            names.append(final.name)
        plot_names.append((ds, names))

    csv_path = out / "summary.csv"
    _write_csv(rows, csv_path)
    paths["csv"] = str(csv_path)

    versions = sorted({str(r.get("qcreep_version")) for r in records
                       if r.get("qcreep_version") is not None})
    lines = [
        "# qcreep report: Let the Quantum Creep In (arXiv:2409.17583)",
        "",
        f"Run records: {len(records)} under `{root}` ({len(records) - len(incomplete)} complete, "
        f"{len(incomplete)} incomplete)"
        + (f"; written by qcreep {', '.join(versions)}" if versions else "") + ".",
        "",
        "Test accuracy in percent, mean ± population sd (ddof=0) over seeds, as in the paper. "
        "\"published @ epoch\" is the published PyTorch number at our final epoch, or at the "
        "largest published epoch (1, 5, 10, 20, 50) below it; Δ pp = ours − published.",
        "",
        _ANGLES_NOTE,
        "",
        "## Summary",
        "",
    ]
    if rows:
        lines.append(markdown_table(rows))
    else:
        lines += ["No complete runs yet.", ""]
    lines.append(_incomplete_line(incomplete, root))
    lines.append("")
    dup = _duplicates_line(rows, root)
    if dup:
        lines += [dup, ""]
    env = _environment_line(records)
    if env:
        lines += [env, ""]
    lines += _baseline_lines(rows)
    lines += _unitarity_section(rows)
    if rows:
        lines += _protocol_section(rows) + [""]
    lines += ["## Plots", ""]
    for ds, names in plot_names:
        for name in names:  # images sit next to report.md
            lines.append(f"![{_title(ds)}: {name}]({name})")
        lines.append("")
    report_path = out / "report.md"
    report_path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    paths["report"] = str(report_path)
    return paths
