"""Loading and checking run records: the JSON files that ``qcreep run`` writes, one per run.

:func:`load_records` finds every ``*.json`` with a top-level ``record_version`` under a results
directory and checks each one; a malformed record is a one-line :class:`~qcreep.errors.QcreepError`
that names the file. Records are only read here, never written.

Required keys: see :data:`REQUIRED_KEYS`. Optional keys, checked when present so that older records
still load: the per-epoch lists ``train_losses``, ``test_losses``, ``epoch_times``, ``eval_times``,
``val_losses`` and ``val_accs``; ``best_epoch`` (1-based epoch of the best validation accuracy) and
``test_acc_at_best``; ``tuning`` (learning-rate search on the validation split); ``twin_of`` (the
quantum rung a classical twin controls); ``readout``, ``solver``; ``config``, ``assignment``,
``environment``, ``unitarity``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from qcreep.errors import QcreepError
from qcreep.report.rungs import study_name

TUNING_FOLDER = "tuning"  # where qcreep run keeps tuning trials (qcreep.tuning.TUNING_DIR)

#: Record format versions this module can read. Version 2 adds the optional keys of the fair ladder
#: (validation curves, best epoch, tuning, twins, readout, solver, split); version 1 records lack them.
SUPPORTED_RECORD_VERSIONS = (1, 2)

#: Keys every run record must have.
REQUIRED_KEYS = ("record_version", "dataset", "level", "label", "angles", "seed", "status",
                 "train_accs", "test_accs")

VALID_ANGLES = ("real", "complex")

#: Key under which :func:`load_records` stores the file a record came from.
PATH_KEY = "_path"

#: Key under which a study's record keeps its data spec as stored (``dataset`` then holds the study's name).
DATA_SPEC_KEY = "_data_spec"

#: Per-epoch lists of accuracies (fractions in [0, 1]).
ACCURACY_LISTS = ("train_accs", "test_accs", "val_accs")

#: Per-epoch lists of other numbers.
NUMBER_LISTS = ("epoch_times", "eval_times", "train_losses", "test_losses", "val_losses")


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines included) turned into one space."""
    return " ".join(str(text).split())


def plural(n, word: str) -> str:
    """``"1 epoch"``, ``"2 epochs"``: ``n`` and ``word`` with an ``s`` unless ``n`` is 1.

    Example:
        >>> plural(1, "epoch"), plural(50, "epoch"), plural("3/50", "epoch")
        ('1 epoch', '50 epochs', '3/50 epochs')
    """
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_fraction(path, key: str, v) -> None:
    if not _is_number(v) or not math.isfinite(v):
        raise QcreepError(f"run record {path}: {key} must be a finite number "
                          f"(fraction in [0, 1]), got {v!r}")
    if not -1e-9 <= v <= 1 + 1e-9:
        raise QcreepError(f"run record {path}: {key} = {v!r} is outside [0, 1]; "
                          "accuracies in records are fractions, not percent")


def _check_required(rec: dict, path: Path) -> None:
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


def _check_lists(rec: dict, path: Path) -> None:
    for key in ACCURACY_LISTS:
        if key not in rec or (key == "val_accs" and rec[key] is None):
            continue
        values = rec[key]
        if not isinstance(values, list):
            raise QcreepError(f"run record {path}: {key} must be a list of per-epoch accuracies "
                              f"(fractions in [0, 1]), got {type(values).__name__}")
        for i, v in enumerate(values):
            _check_fraction(path, f"{key}[{i}]", v)
    scored = "val_accs" if is_trial_record(rec) else "test_accs"  # a tuning trial scores no test split
    if rec["status"] == "complete" and not rec.get(scored):
        raise QcreepError(f"run record {path}: status is 'complete' but {scored} is empty; "
                          "a complete run needs at least one epoch of results")
    for key in NUMBER_LISTS:
        values = rec.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise QcreepError(f"run record {path}: {key} must be a list of numbers, "
                              f"got {one_line(repr(values))[:60]}")


def _check_best(rec: dict, path: Path) -> None:
    best = rec.get("best_epoch")
    if best is not None:
        if isinstance(best, bool) or not isinstance(best, int) or best < 1:
            raise QcreepError(f"run record {path}: best_epoch must be a 1-based epoch number or null, "
                              f"got {best!r}")
        recorded = len(rec.get("val_accs") or [] if is_trial_record(rec) else rec["test_accs"])
        if best > recorded:
            raise QcreepError(f"run record {path}: best_epoch {best} is after the last recorded epoch "
                              f"({recorded})")
    at_best = rec.get("test_acc_at_best")
    if at_best is not None:
        _check_fraction(path, "test_acc_at_best", at_best)


def _check_tuning(tuning, path: Path) -> None:
    if tuning is None:
        return
    if not isinstance(tuning, dict):
        raise QcreepError(f"run record {path}: tuning must be a JSON object or null, "
                          f"got {type(tuning).__name__}")
    chosen = tuning.get("chosen")
    if chosen is not None and not isinstance(chosen, dict):
        raise QcreepError(f"run record {path}: tuning.chosen must be an object such as "
                          f"{{\"lr\": 0.005}}, got {one_line(repr(chosen))[:60]}")
    candidates = tuning.get("candidates")
    if candidates is not None:
        if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
            raise QcreepError(f"run record {path}: tuning.candidates must be a list of objects with "
                              "settings and val_acc")
        for i, cand in enumerate(candidates):
            if cand.get("settings") is not None and not isinstance(cand["settings"], dict):
                raise QcreepError(f"run record {path}: tuning.candidates[{i}].settings must be an object")
            if cand.get("val_acc") is not None:
                _check_fraction(path, f"tuning.candidates[{i}].val_acc", cand["val_acc"])
    budget = tuning.get("budget")
    if budget is not None and not isinstance(budget, dict):
        raise QcreepError(f"run record {path}: tuning.budget must be an object with trials, epochs, "
                          f"metric and grid, got {type(budget).__name__}")


def _check_optional(rec: dict, path: Path) -> None:
    for key in ("config", "assignment", "environment"):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            raise QcreepError(f"run record {path}: {key} must be a JSON object, "
                              f"got {type(rec[key]).__name__}")
    for key in ("unitarity", "readout"):
        value = rec.get(key)
        if value is not None and not isinstance(value, dict):
            raise QcreepError(f"run record {path}: {key} must be a JSON object or null, "
                              f"got {type(value).__name__}")
    twin = rec.get("twin_of")
    if twin is not None and (not isinstance(twin, str) or not twin.strip()):
        raise QcreepError(f"run record {path}: twin_of must be the label of a quantum rung (such as "
                          f"'level 2') or null, got {twin!r}")
    solver = rec.get("solver")
    if solver is not None and not isinstance(solver, str):
        raise QcreepError(f"run record {path}: solver must be a string such as 'eigh' or 'expm', "
                          f"or null, got {solver!r}")
    _check_tuning(rec.get("tuning"), path)


def check_record(rec: dict, path) -> None:
    """Raise :class:`~qcreep.errors.QcreepError` (one line, naming ``path``) when ``rec`` is malformed.

    Example:
        >>> check_record({"record_version": 1}, "r.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        qcreep.errors.QcreepError: run record r.json lacks required key(s) dataset, level, ...
    """
    path = Path(path)
    _check_required(rec, path)
    _check_lists(rec, path)
    _check_best(rec, path)
    _check_optional(rec, path)


def is_trial_record(rec: dict) -> bool:
    """Whether ``rec`` is a tuning trial's record: scored on the validation split only, no test metrics."""
    config = rec.get("config")
    return isinstance(config, dict) and isinstance(config.get("extra"), dict) and bool(config["extra"].get("trial"))


#: Folders of a results folder that hold results about runs, never run records (read by their own sections).
SIDE_FOLDERS = ("diagnostics",)


def _in_tuning_folder(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts[:-1]
    return TUNING_FOLDER in parts or any(folder in parts for folder in SIDE_FOLDERS)


def load_records(results_dir, *, skipped: list | None = None) -> list[dict]:
    """Load every run record (``*.json`` with a top-level ``record_version``) under ``results_dir``.

    The search is recursive and in sorted path order. JSON files whose top level is not an object
    with ``"record_version"`` are skipped (they are not run records), and so are ``diagnostics/``
    (read by :mod:`qcreep.report.diagnostics`) and the ``tuning/``
    folder that ``qcreep run`` keeps its tuning trials in (the chosen settings and every trial's
    validation score are in the final records' ``tuning`` block; pass ``DIR/tuning`` itself to
    load the trials, which hold validation scores only: see :func:`is_trial_record`). Each returned dict is the
    record as stored plus ``"_path"``: the file it came from (a string).

    Raises QcreepError (one line, naming the file) when a JSON file does not parse or a record
    lacks required keys or has values of the wrong kind, and when no record is found. With
    ``skipped`` (a list), such a file is left out instead and ``(path, reason)`` appended to the
    list, so one corrupt record does not hide the others; if no valid record remains the error
    names the skipped files.

    Example:
        >>> records = load_records("runs/mnist")                         # doctest: +SKIP
        >>> sorted({(r["label"], r["seed"]) for r in records})[:2]      # doctest: +SKIP
        [('level 0', 0), ('level 0', 1)]
    """
    root = Path(results_dir)
    if not root.exists():
        raise QcreepError(f"results directory {root} does not exist; pass the directory given "
                          "to `qcreep run --out DIR`")
    if not root.is_dir():
        raise QcreepError(f"results path {root} is not a directory; pass the directory given "
                          "to `qcreep run --out DIR`")
    records = []
    for path in sorted(p for p in root.rglob("*.json") if p.is_file() and not _in_tuning_folder(p, root)):
        try:
            data = _read_record(path)
        except QcreepError as err:
            if skipped is None:
                raise
            skipped.append((str(path), str(err)))
            continue
        if data is not None:
            records.append(data)
    if not records and skipped:
        first = skipped[0][1]
        raise QcreepError(f"no valid run records under {root}: {len(skipped)} skipped as unreadable or malformed "
                          f"(first: {first})")
    if not records:
        raise QcreepError(f"no run records (*.json) found under {root}; "
                          f"run `qcreep run --out {root}` first")
    return records


def _read_record(path: Path) -> dict | None:
    """The checked record in ``path`` (with ``_path``), None for JSON that is not a run record."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise QcreepError(f"cannot read run record {path}: {one_line(exc)}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QcreepError(f"run record {path} is not valid JSON ({one_line(exc)}); "
                          "fix or remove the file") from None
    if not isinstance(data, dict) or "record_version" not in data:
        return None
    check_record(data, path)
    data[PATH_KEY] = str(path)
    name_study(data)
    return data


def name_study(data: dict) -> dict:
    """Group ``data`` (a record or a hardware result) under its study: ``dataset`` becomes
    :func:`~qcreep.report.rungs.study_name` (``"SmallCNN on digits"`` for the user's own model), the
    data spec as stored is kept under ``"_data_spec"``. HybridNet on a built-in dataset is unchanged."""
    study = study_name(data)
    if study != data["dataset"]:
        data[DATA_SPEC_KEY] = data["dataset"]
        data["dataset"] = study
    return data


def is_complete(rec: dict) -> bool:
    """True when the run finished (``status == "complete"``); only those enter the tables."""
    return rec.get("status") == "complete"
