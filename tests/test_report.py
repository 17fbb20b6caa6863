"""Tests for qcreep.published and qcreep.report (fast, offline, synthetic run records)."""

from __future__ import annotations

import ast
import csv
import json
import math
from pathlib import Path

import pytest

from qcreep.errors import QcreepError
from qcreep import published
from qcreep.published import (
    END_TO_END_QUANTUM,
    PUBLISHED_EPOCHS,
    PUBLISHED_JAX,
    PUBLISHED_TORCH,
    published_at,
    published_at_or_before,
)
from qcreep.report import load_records, markdown_table, summarize, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ASSIGN = {
    0: {"conv1": "conv", "conv2": "conv", "head": "linear"},
    2: {"conv1": "flipped_quanv3x3", "conv2": "flipped_quanv3x3", "head": "data_reuploading"},
}


def make_record(dataset="mnist", level=0, angles="real", seed=0, test_accs=None,
                train_accs=None, status="complete", label=None, epoch_times=None,
                n_params=None, config=None, unitarity=None):
    test_accs = list(test_accs if test_accs is not None else [0.9, 0.91, 0.92])
    n = len(test_accs)
    train_accs = list(train_accs if train_accs is not None else [a + 0.01 for a in test_accs])
    cfg = {"epochs": n, "batch_size": 200, "lr": 0.0005, "n_reps": 10,
           "max_train": None, "max_test": None}
    cfg.update(config or {})
    rec = {
        "record_version": 1, "qcreep_version": "0.1.0",
        "dataset": dataset, "level": level,
        "assignment": ASSIGN.get(level, ASSIGN[0]),
        "label": label if label is not None else f"level {level}",
        "angles": angles, "seed": seed, "status": status,
        "n_params": n_params if n_params is not None else {0: 130_000, 2: 172_048}.get(level, 1),
        "config": cfg,
        "environment": {"torch": "2.x", "device": "cpu", "threads": 2},
        "epochs_completed": n,
        "train_losses": [1.0] * n, "test_losses": [1.0] * n,
        "train_accs": train_accs, "test_accs": test_accs,
        "epoch_times": epoch_times if epoch_times is not None else [2.0] * n,
        "eval_times": [0.5] * n,
    }
    if unitarity is not None:
        rec["unitarity"] = unitarity
    return rec


def write(path: Path, rec) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec), encoding="utf-8")
    return path


def pop_mean_sd(values):
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


# Test accuracies (fractions) per seed for the groups of the synthetic results directory.
L0_REAL = {0: [0.90, 0.91, 0.92, 0.93, 0.92], 1: [0.89, 0.90, 0.94, 0.91, 0.90],
           2: [0.91, 0.92, 0.93, 0.92, 0.95]}
L0_COMPLEX = {0: [0.88, 0.90, 0.91, 0.92, 0.93], 1: [0.87, 0.91, 0.92, 0.93, 0.91]}
L2_REAL = {0: [0.93, 0.95, 0.96, 0.96, 0.97, 0.97, 0.98],
           1: [0.92, 0.94, 0.95, 0.97, 0.96, 0.97, 0.96]}
L0_TIMES = {0: [1.0, 2.0, 3.0, 4.0, 5.0], 1: [2.0] * 5, 2: [3.0] * 5}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for seed, accs in L0_REAL.items():
        write(root / "mnist" / f"l0_real_s{seed}.json",
              make_record(level=0, angles="real", seed=seed, test_accs=accs,
                          epoch_times=L0_TIMES[seed]))
    for seed, accs in L0_COMPLEX.items():
        write(root / "mnist" / f"l0_complex_s{seed}.json",
              make_record(level=0, angles="complex", seed=seed, test_accs=accs))
    for seed, accs in L2_REAL.items():
        write(root / "mnist" / "deep" / f"l2_real_s{seed}.json",
              make_record(level=2, angles="real", seed=seed, test_accs=accs,
                          config={"epochs": 7, "n_reps": 1},
                          unitarity={"max_unitarity_error": 1e-6 * (seed + 1),
                                     "min_state_norm": 1.0 - 1e-7, "max_state_norm": 1.0}))
    # incomplete run: must not enter the tables
    write(root / "mnist" / "l2_real_s9_running.json",
          make_record(level=2, angles="real", seed=9, test_accs=[0.10, 0.11],
                      status="running", config={"epochs": 7, "n_reps": 1}))
    # explicit assignment (level null) on another dataset
    write(root / "fashion-mnist" / "custom_s0.json",
          make_record(dataset="fashion-mnist", level=None, seed=0,
                      label="conv1=flipped_quanv3x3,conv2=conv,head=linear",
                      test_accs=[0.80, 0.82]))
    # not a run record: skipped
    write(root / "notes.json", {"comment": "not a record"})
    write(root / "list.json", [1, 2, 3])
    return root


def rows_by(rows):
    return {(r["dataset"], r["label"], r["angles"]): r for r in rows}


# --------------------------------------------------------------------------------------------
# published.py


def test_published_tables_complete_and_in_percent():
    assert PUBLISHED_EPOCHS == (1, 5, 10, 20, 50)
    for ds in ("mnist", "fashion-mnist", "cifar10"):
        for level in (0, 1, 2):
            table = PUBLISHED_TORCH[(ds, level)]
            assert sorted(table) == list(PUBLISHED_EPOCHS)
            for mean, sd in table.values():
                assert 20 < mean < 100 and 0 <= sd < 3
            assert 30 < PUBLISHED_JAX[(ds, level)] < 100
    assert PUBLISHED_TORCH[("mnist", 2)][50] == (96.92, 0.32)
    assert PUBLISHED_TORCH[("cifar10", 1)][1] == (28.98, 1.95)
    assert PUBLISHED_JAX[("fashion-mnist", 2)] == 80.54
    assert END_TO_END_QUANTUM == {"mnist": 89.7, "fashion-mnist": 79.6}


def test_published_at_lookups():
    assert published_at("mnist", 0, 5) == (92.19, 0.27)
    assert published_at("FashionMNIST", 2, 50) == (86.57, 0.62)
    assert published_at("CIFAR-10", 1, 20) == (39.39, 0.46)
    assert published_at("mnist", 0, 7) is None
    assert published_at("digits", 0, 5) is None
    assert published_at("mnist", None, 5) is None
    assert published_at("mnist", 3, 5) is None
    assert published_at_or_before("mnist", 2, 7) == (5, 96.07, 0.39)
    assert published_at_or_before("mnist", 0, 100) == (50, 92.30, 0.13)
    assert published.published_jax("cifar10", 2) == 38.07
    with pytest.raises(QcreepError, match="positive integer"):
        published_at("mnist", 0, 0)
    with pytest.raises(QcreepError, match="positive integer"):
        published_at("mnist", 0, 2.5)


# --------------------------------------------------------------------------------------------
# loading


def test_load_records_recursive_and_skips_non_records(results):
    recs = load_records(results)
    assert len(recs) == 3 + 2 + 2 + 1 + 1
    assert all("_path" in r and r["_path"].endswith(".json") for r in recs)
    assert not any(r["_path"].endswith(("notes.json", "list.json")) for r in recs)


def test_corrupt_json_names_file(results):
    bad = results / "mnist" / "broken_run.json"
    bad.write_text('{"record_version": 1, "dataset": ', encoding="utf-8")
    with pytest.raises(QcreepError) as info:
        load_records(results)
    msg = str(info.value)
    assert "broken_run.json" in msg and "\n" not in msg


def test_missing_keys_names_file(tmp_path):
    rec = make_record()
    del rec["label"], rec["test_accs"]
    write(tmp_path / "r.json", rec)
    with pytest.raises(QcreepError, match=r"r\.json.*label, test_accs") as info:
        load_records(tmp_path)
    assert "\n" not in str(info.value)


def test_percent_accuracies_rejected(tmp_path):
    write(tmp_path / "pct.json", make_record(test_accs=[90.0, 91.0]))
    with pytest.raises(QcreepError, match=r"pct\.json.*fractions"):
        load_records(tmp_path)


def test_bad_angles_and_version_rejected(tmp_path):
    write(tmp_path / "a.json", make_record(angles="imaginary"))
    with pytest.raises(QcreepError, match=r"a\.json.*real, complex"):
        load_records(tmp_path)
    rec = make_record()
    rec["record_version"] = 99
    write(tmp_path / "a.json", rec)
    with pytest.raises(QcreepError, match=r"record_version 99"):
        load_records(tmp_path)


def test_empty_dir_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QcreepError, match=r"no run records \(\*\.json\) found under .*empty.*"
                                          r"qcreep run --out"):
        load_records(empty)
    # only non-record JSON: still no records
    write(empty / "other.json", {"x": 1})
    with pytest.raises(QcreepError, match="no run records"):
        load_records(empty)
    with pytest.raises(QcreepError, match="does not exist"):
        load_records(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# summarize


def test_summarize_statistics_by_hand(results):
    rows = summarize(load_records(results))
    by = rows_by(rows)
    assert set(by) == {("mnist", "level 0", "real"), ("mnist", "level 0", "complex"),
                       ("mnist", "level 2", "real"),
                       ("fashion-mnist", "conv1=flipped_quanv3x3,conv2=conv,head=linear", "real")}

    r = by[("mnist", "level 0", "real")]
    assert r["n_seeds"] == 3 and r["seeds"] == [0, 1, 2] and r["epochs"] == 5
    assert r["level"] == 0 and r["n_params"] == 130_000
    final = [100 * L0_REAL[s][-1] for s in (0, 1, 2)]          # 92, 90, 95
    m, sd = pop_mean_sd(final)
    assert r["final_test_mean"] == pytest.approx(m) == pytest.approx(92.3333333)
    assert r["final_test_sd"] == pytest.approx(sd)              # population sd (ddof=0)
    assert r["final_test_sd"] == pytest.approx(math.sqrt(((92 - m) ** 2 + (90 - m) ** 2
                                                         + (95 - m) ** 2) / 3))
    best = [100 * max(L0_REAL[s]) for s in (0, 1, 2)]            # 93, 94, 95
    bm, bsd = pop_mean_sd(best)
    assert r["best_test_mean"] == pytest.approx(bm) == pytest.approx(94.0)
    assert r["best_test_sd"] == pytest.approx(bsd)
    trains = [100 * (L0_REAL[s][-1] + 0.01) for s in (0, 1, 2)]
    assert r["final_train_mean"] == pytest.approx(pop_mean_sd(trains)[0])
    # mean seconds per epoch: per-seed means 3, 2, 3
    assert r["sec_per_epoch"] == pytest.approx((3.0 + 2.0 + 3.0) / 3)
    # per-epoch curve
    assert r["curve_mean"][1] == pytest.approx(pop_mean_sd([91, 90, 92])[0])
    assert r["curve_sd"][1] == pytest.approx(pop_mean_sd([91, 90, 92])[1])

    # published comparison at the same epoch (5): mnist level 0 -> 92.19 ± 0.27
    assert r["published_epoch"] == 5
    assert (r["published_mean"], r["published_sd"]) == (92.19, 0.27)
    assert r["delta_pp"] == pytest.approx(m - 92.19)
    assert r["published_jax"] == 92.07
    assert [p["epoch"] for p in r["per_epoch"]] == [1, 5]
    p1 = r["per_epoch"][0]
    assert p1["mean"] == pytest.approx(pop_mean_sd([90, 89, 91])[0])
    assert (p1["published_mean"], p1["published_sd"]) == (91.55, 0.21)
    assert p1["delta_pp"] == pytest.approx(90.0 - 91.55)
    assert any("angles real" in d for d in r["protocol_differences"])
    assert any("5 epochs" in d for d in r["protocol_differences"])
    assert r["config_mismatch"] == []


def test_summarize_groups_by_angles_and_published_before_epoch(results):
    by = rows_by(summarize(load_records(results)))
    c = by[("mnist", "level 0", "complex")]
    assert c["n_seeds"] == 2 and c["seeds"] == [0, 1]
    m, sd = pop_mean_sd([93.0, 91.0])
    assert c["final_test_mean"] == pytest.approx(m) and c["final_test_sd"] == pytest.approx(sd)
    assert not any("angles" in d for d in c["protocol_differences"])

    # level 2 ran 7 epochs: compared with the largest published epoch <= 7, i.e. 5
    l2 = by[("mnist", "level 2", "real")]
    assert l2["epochs"] == 7 and l2["n_seeds"] == 2   # the running seed 9 is excluded
    assert l2["published_epoch"] == 5
    assert (l2["published_mean"], l2["published_sd"]) == (96.07, 0.39)
    assert l2["delta_pp"] == pytest.approx(pop_mean_sd([98.0, 96.0])[0] - 96.07)
    assert any("1 re-uploads" in d for d in l2["protocol_differences"])
    assert l2["unitarity"]["max_unitarity_error"] == pytest.approx(2e-6)

    # explicit assignment: no published comparison
    custom = by[("fashion-mnist", "conv1=flipped_quanv3x3,conv2=conv,head=linear", "real")]
    assert custom["level"] is None
    assert custom["published_mean"] is None and custom["delta_pp"] is None
    assert custom["per_epoch"][0]["published_mean"] is None


def test_summarize_order(results):
    rows = summarize(load_records(results))
    keys = [(r["dataset"], r["label"], r["angles"]) for r in rows]
    assert keys == [("mnist", "level 0", "complex"), ("mnist", "level 0", "real"),
                    ("mnist", "level 2", "real"),
                    ("fashion-mnist", "conv1=flipped_quanv3x3,conv2=conv,head=linear", "real")]


def test_summarize_uneven_epochs_uses_common_prefix(tmp_path):
    write(tmp_path / "a.json", make_record(seed=0, test_accs=[0.5, 0.6, 0.7]))
    write(tmp_path / "b.json", make_record(seed=1, test_accs=[0.4, 0.8],
                                           config={"lr": 0.001}))
    (row,) = summarize(load_records(tmp_path))
    assert row["epochs"] == 2 and row["epochs_differ"]
    assert row["final_test_mean"] == pytest.approx(70.0)
    assert row["final_test_sd"] == pytest.approx(10.0)
    assert row["best_test_mean"] == pytest.approx(70.0)
    assert "lr" in row["config_mismatch"]
    assert row["published_epoch"] == 1      # largest published epoch <= 2


# --------------------------------------------------------------------------------------------
# Markdown, CSV, plots


def test_markdown_table_rows(results):
    md = markdown_table(summarize(load_records(results)))
    lines = md.splitlines()
    row = next(line for line in lines
               if line.startswith("| mnist | level 0 | real |"))
    assert "| 3 | 5 | 130000 |" in row
    assert "92.33 ± 2.05" in row                      # final: mean, population sd
    assert "94.00 ± 0.82" in row                      # best
    assert "92.19 ± 0.27 @ 5" in row and "+0.14" in row
    assert "92.07" in row                             # JAX real-angle final
    assert any(line.startswith("| mnist | level 0 | complex | 2 |") for line in lines)
    assert "Per-epoch comparison" in md
    assert "| mnist | level 0 | real | 1 | 90.00 ± 0.82 | 91.55 ± 0.21 | -1.55 |" in md
    assert "| mnist | level 2 | real | 5 | 96.50 ± 0.50 | 96.07 ± 0.39 | +0.43 |" in md
    # every table line has the same number of cells as its header
    header = lines[0]
    assert row.count("|") == header.count("|")


def test_write_report_outputs(results, tmp_path):
    before = {p: p.read_bytes() for p in results.rglob("*.json")}
    out = tmp_path / "out"
    paths = write_report(results, out)
    # records untouched, outputs elsewhere
    assert {p: p.read_bytes() for p in results.rglob("*.json")} == before
    assert not (results / "report.md").exists()

    for key in ("report", "csv", "curves_mnist", "final_mnist", "curves_fashion-mnist",
                "final_fashion-mnist"):
        assert key in paths and Path(paths[key]).parent == out
    for key, p in paths.items():
        if p.endswith(".png"):
            assert Path(p).read_bytes()[:8] == PNG_SIGNATURE, key
    assert Path(paths["curves_mnist"]).name == "curves_mnist.png"
    assert Path(paths["final_fashion-mnist"]).name == "final_fashion-mnist.png"

    report = Path(paths["report"]).read_text(encoding="utf-8")
    assert report.startswith("# ")
    assert "| mnist | level 0 | real |" in report
    assert "complex" in report and "not unitary" in report
    assert "Incomplete runs" in report and "l2_real_s9_running.json" in report
    assert "status running" in report
    assert "curves_mnist.png" in report

    with open(paths["csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    r0 = next(r for r in rows if r["label"] == "level 0" and r["angles"] == "real")
    assert float(r0["final_test_mean"]) == pytest.approx(92.33333, abs=1e-3)
    assert r0["seeds"] == "0 1 2" and r0["published_epoch"] == "5"


def test_write_report_default_out_dir(results):
    paths = write_report(results)
    assert Path(paths["report"]) == results / "report.md"
    assert (results / "summary.csv").exists()
    # writing again (outputs now present in the results dir) still works and loads same records
    paths2 = write_report(results)
    assert paths2 == paths


def test_write_report_only_incomplete(tmp_path):
    write(tmp_path / "r.json", make_record(status="running", test_accs=[]))
    paths = write_report(tmp_path)
    report = Path(paths["report"]).read_text(encoding="utf-8")
    assert "No complete runs" in report
    assert Path(paths["curves_mnist"]).read_bytes()[:8] == PNG_SIGNATURE
    assert "final_mnist" not in paths


def test_report_modules_do_not_import_training_code():
    pkg = Path(__file__).resolve().parents[1] / "qcreep"
    for name in ("report.py", "published.py"):
        tree = ast.parse((pkg / name).read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
        for mod in imported:
            assert not mod.startswith(("torch", "qcreep.train", "qcreep.models")), (name, mod)


def test_duplicate_seed_counted_once(tmp_path):
    write(tmp_path / "a" / "s0.json", make_record(seed=0, test_accs=[0.5, 0.6]))
    write(tmp_path / "b" / "s0_copy.json", make_record(seed=0, test_accs=[0.5, 0.6, 0.9]))
    write(tmp_path / "s1.json", make_record(seed=1, test_accs=[0.7, 0.8, 0.7]))
    (row,) = summarize(load_records(tmp_path))
    assert row["n_seeds"] == 2 and row["seeds"] == [0, 1]
    assert row["epochs"] == 3 and row["final_test_mean"] == pytest.approx(80.0)
    assert len(row["duplicates_dropped"]) == 1 and row["duplicates_dropped"][0].endswith("s0.json")
    report = Path(write_report(tmp_path)["report"]).read_text(encoding="utf-8")
    assert "Duplicate seeds" in report and "a/s0.json" in report
