"""``summary.csv``: one line per row of :func:`~qcreep.report.summary.summarize`, for spreadsheets and scripts.

Accuracies are percent; floats are written with 6 significant digits; lists are joined with
spaces (seeds) or ``"; "`` (notes); missing values are empty cells. The file is written atomically
through :mod:`qcreep.files`.
"""

from __future__ import annotations

import csv
import io
import json

from qcreep.files import atomic_write_text
from qcreep.report.markdown import params_text

CSV_COLUMNS = (
    "dataset", "level", "label", "angles", "twin_of", "aliases", "n_seeds", "seeds", "epochs",
    "epochs_differ", "n_params", "lr", "tuned", "tuning_budget", "final_test_mean", "final_test_sd",
    "test_at_best_val_mean", "test_at_best_val_sd", "best_val_epochs", "best_test_mean", "best_test_sd",
    "final_train_mean", "final_train_sd", "final_val_mean", "final_val_sd", "num_classes", "chance_pct",
    "readout", "solver", "sec_per_epoch", "published_epoch", "published_mean", "published_sd",
    "delta_pp", "published_jax", "protocol_differences", "config_mismatch",
)


def _csv_value(row: dict, key: str):
    if key == "lr":
        return row["lr_text"] if row["lr_text"] != "—" else ""
    if key == "tuned":
        return bool(row["tuning"])
    if key == "tuning_budget":
        budget = (row["tuning"] or {}).get("budget")
        return json.dumps(budget, sort_keys=True) if budget else ""
    value = row[key]
    if key in ("seeds", "best_val_epochs"):
        return " ".join(str(s) for s in value) if value else ""
    if key == "n_params":
        return params_text(row) if row["n_params_all"] else ""
    if key in ("protocol_differences", "config_mismatch", "aliases"):
        return "; ".join(value)
    if key == "readout":
        return json.dumps(value, sort_keys=True) if value else ""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def csv_text(rows: list[dict]) -> str:
    """The rows as CSV text with the header :data:`CSV_COLUMNS`.

    Example:
        >>> csv_text([]).splitlines()[0].split(",")[:4]
        ['dataset', 'level', 'label', 'angles']
    """
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([_csv_value(r, k) for k in CSV_COLUMNS])
    return buf.getvalue()


def write_csv(rows: list[dict], path) -> None:
    """Write :func:`csv_text` to ``path`` atomically (a failed write leaves the old file intact).

    Example:
        >>> write_csv(summarize(load_records("runs")), "runs/summary.csv")   # doctest: +SKIP
    """
    atomic_write_text(path, csv_text(rows))
