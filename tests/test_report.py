"""Tests for qcreep.published and qcreep.report (fast, offline, synthetic run records)."""

from __future__ import annotations

import ast
import csv
import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qcreep import published
from qcreep.errors import OutputError, QcreepError
from qcreep.published import (
    END_TO_END_QUANTUM,
    PUBLISHED_EPOCHS,
    PUBLISHED_JAX,
    PUBLISHED_TORCH,
    published_at,
    published_at_or_before,
)
from qcreep.report import incomplete_runs, load_records, markdown_table, summarize, write_report
from qcreep.report.compare import rung_comparisons
from qcreep.report.plots import curves_figure, final_figure, rung_colors
from qcreep.stats import paired_comparison

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ASSIGN = {
    0: {"conv1": "conv", "conv2": "conv", "head": "linear"},
    2: {"conv1": "flipped_quanv3x3", "conv2": "flipped_quanv3x3", "head": "data_reuploading"},
}


def make_record(dataset="mnist", level=0, angles="real", seed=0, test_accs=None,
                train_accs=None, status="complete", label=None, epoch_times=None,
                n_params=None, config=None, unitarity=None, **extra):
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
    rec.update(extra)
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
    assert not any("angles" in d for d in r["protocol_differences"])  # level 0 has no angles
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
    assert any("1 re-upload (published: 10)" in d for d in l2["protocol_differences"])
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
    lines = lines[lines.index(next(x for x in lines if x.startswith("| dataset |"))):]  # after the answer
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


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions) by the file at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    return imported


def test_report_modules_do_not_import_training_code():
    pkg = Path(__file__).resolve().parents[1] / "qcreep"
    files = sorted((pkg / "report").glob("*.py")) + [pkg / "published.py", pkg / "stats.py"]
    assert len(files) >= 9
    for path in files:
        for mod in _top_level_imports(path):
            assert not mod.startswith(("torch", "qcreep.train", "qcreep.models", "qcreep.data",
                                       "qcreep.layers")), (path.name, mod)
    # only rungs.py reaches for the model definitions, lazily, to recognise assignments
    for path in files:
        text = path.read_text(encoding="utf-8")
        lazy = [f"{kw} qcreep.{mod}" for kw in ("from", "import") for mod in ("models", "data", "layers")]
        if path.name != "rungs.py":
            assert not any(s in text for s in lazy), path.name
    code = ("import sys, qcreep.report, qcreep.stats; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('qcreep.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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


# --------------------------------------------------------------------------------------------
# the fair ladder: validation, tuning, twins, assignments, statistics

Q, C = "flipped_quanv3x3", "conv2d"
L2_ASSIGN = {"conv1": Q, "conv2": Q, "head": "data_reuploading"}
L2_ASSIGN_LABEL = f"conv1={Q},conv2={Q},head=data_reuploading"
CONV1_ONLY = f"conv1={Q},conv2={C},head=linear"           # 1 quantum slot, the first
HEAD_ONLY = f"conv1={C},conv2={C},head=data_reuploading"   # 1 quantum slot, the last
CONV1_HEAD = f"conv1={Q},conv2={C},head=data_reuploading"  # 2 quantum slots
TWIN_ASSIGN = {"conv1": "conv2d", "conv2": "conv2d", "head": "linear"}
GRID = {"lr": [0.001, 0.005, 0.01]}
BUDGET = {"trials": 3, "epochs": 10, "metric": "val_acc", "grid": GRID}


def tuning(lr=0.005, budget=None):
    return {"split": "validation", "chosen": {"lr": lr},
            "candidates": [{"settings": {"lr": v}, "val_acc": 0.95 if v == lr else 0.93,
                            "val_loss": 0.2, "epochs": 10} for v in GRID["lr"]],
            "budget": dict(budget or BUDGET)}


def ladder_record(final, seed, **kw):
    """A 5-epoch record ending at test accuracy ``final`` whose validation accuracy peaks at epoch 4."""
    test = [final - 0.04, final - 0.03, final - 0.02, final - 0.01, final]
    val = [final - 0.05, final - 0.03, final - 0.01, final + 0.01, final]
    kw.setdefault("config", {})
    kw["config"] = {"lr": 0.005, "max_train": 1000, "val_fraction": 0.1, **kw["config"]}
    kw.setdefault("tuning", tuning())
    return make_record(seed=seed, test_accs=test, val_accs=val, val_losses=[0.5] * 5, record_version=2,
                       split={"fit": 900, "validation": 100, "test": 10000, "val_fraction": 0.1}, **kw)


# final test accuracy (fraction) per seed: level 2 beats level 0 on every one of 6 seeds
def L0_FINAL(s):
    return 0.90 + 0.001 * s


def L2_FINAL(s):
    return 0.95 + 0.002 * s


def build_ladder(root: Path) -> Path:
    """Records of a fair ladder on mnist (5 epochs, first 1000 training examples, 6 seeds)."""
    for s in range(6):
        write(root / f"l0_s{s}.json", ladder_record(L0_FINAL(s), s, level=0))
        write(root / f"l1_s{s}.json", ladder_record(0.905 + 0.001 * s, s, level=1))
        if s <= 3:
            write(root / f"l2_s{s}.json", ladder_record(L2_FINAL(s), s, level=2, readout={
                "output_scale": "learned", "bias_init": "zero"}, solver="eigh"))
        if s >= 3:  # the same model started as an explicit assignment: seed 3 twice
            write(root / f"l2_assign_s{s}.json", ladder_record(
                L2_FINAL(s), s, level=None, label=L2_ASSIGN_LABEL, assignment=dict(L2_ASSIGN),
                readout={"output_scale": "learned", "bias_init": "zero"}, solver="eigh"))
        if s <= 4:  # the twin: an all-classical assignment, but a twin, not level 0
            write(root / f"twin_s{s}.json", ladder_record(
                0.951 + 0.002 * s - 0.001 * (s % 2), s, level=None, label="level 2 twin",
                twin_of="level 2", assignment=dict(TWIN_ASSIGN), n_params=172_000,
                tuning=tuning(0.01)))
        for label, final in ((HEAD_ONLY, 0.11), (CONV1_HEAD, 0.93), (CONV1_ONLY, 0.91)):
            assignment = dict(part.split("=") for part in label.split(","))
            write(root / f"{label.replace(',', '_').replace('=', '-')}_s{s}.json", ladder_record(
                final + 0.001 * s, s, level=None, label=label, assignment=assignment, tuning=None,
                config={"lr": 0.0005}))
    return root


@pytest.fixture
def ladder(tmp_path):
    return build_ladder(tmp_path / "ladder")


def test_fair_ladder_order_never_alphabetical(ladder):
    rows = summarize(load_records(ladder))
    assert [r["label"] for r in rows] == ["level 0", "level 1", "level 2", "level 2 twin",
                                          CONV1_ONLY, HEAD_ONLY, CONV1_HEAD]
    md = markdown_table(rows)
    positions = [md.index(f"| mnist | {label} | real |") for label in
                 ("level 0", "level 1", "level 2", "level 2 twin", CONV1_ONLY, HEAD_ONLY, CONV1_HEAD)]
    assert positions == sorted(positions)


def test_assignment_equal_to_level_is_that_level_and_counted_once(ladder):
    rows = summarize(load_records(ladder))
    (l2,) = [r for r in rows if r["label"] == "level 2"]
    assert l2["level"] == 2 and l2["seeds"] == [0, 1, 2, 3, 4, 5] and l2["n_seeds"] == 6
    assert l2["aliases"] == [L2_ASSIGN_LABEL]
    assert len(l2["aliases_dropped"]) == 1 and l2["duplicates_dropped"] == []
    # the published comparison applies: mnist level 2 at epoch 5 is 96.07 ± 0.39
    assert l2["published_epoch"] == 5 and l2["published_mean"] == 96.07
    finals = [100 * L2_FINAL(s) for s in range(6)]
    assert l2["final_test_mean"] == pytest.approx(pop_mean_sd(finals)[0])
    assert l2["final_test_sd"] == pytest.approx(pop_mean_sd(finals)[1])
    assert not any(r["label"] == L2_ASSIGN_LABEL for r in rows)
    # the twin is all-classical but stays a twin: not merged into level 0, no published number
    twin = next(r for r in rows if r["label"] == "level 2 twin")
    assert twin["twin_of"] == "level 2" and twin["level"] is None and twin["published_mean"] is None
    l0 = next(r for r in rows if r["label"] == "level 0")
    assert l0["n_seeds"] == 6 and l0["aliases"] == []


def test_report_notes_same_model_under_two_labels(ladder, tmp_path):
    report = Path(write_report(ladder, tmp_path / "out")["report"]).read_text(encoding="utf-8")
    line = next(x for x in report.splitlines() if x.startswith("Same model under two labels"))
    assert "mnist level 2" in line and L2_ASSIGN_LABEL in line and "counted once" in line
    assert "l2_s3.json" in line or "l2_assign_s3.json" in line


def test_validation_tuning_readout_fields(ladder):
    by = {r["label"]: r for r in summarize(load_records(ladder))}
    l0 = by["level 0"]
    # the validation accuracy peaks at epoch 4, where the test accuracy is final - 0.01
    assert l0["best_val_epochs"] == [4] * 6
    at_best = [100 * (L0_FINAL(s) - 0.01) for s in range(6)]
    assert l0["test_at_best_val_mean"] == pytest.approx(pop_mean_sd(at_best)[0])
    assert l0["test_at_best_val_sd"] == pytest.approx(pop_mean_sd(at_best)[1])
    assert l0["final_val_mean"] == pytest.approx(pop_mean_sd([100 * L0_FINAL(s) for s in range(6)])[0])
    assert len(l0["val_curve_mean"]) == 5
    assert l0["lr"] == 0.005 and l0["lr_text"] == "0.005 (tuned)"
    assert l0["tuning"]["budget"] == BUDGET and l0["tuning"]["chosen"] == {"lr": 0.005}
    cand = {c["settings"]["lr"]: c for c in l0["tuning"]["candidates"]}
    # every seed carries the one tuning's block (its trials ran once): counted once, not six times
    assert cand[0.005]["val_acc_mean"] == pytest.approx(95.0) and cand[0.001]["n"] == 1
    assert any("tuned on a validation split" in d for d in l0["protocol_differences"])
    assert "10% of the training data held out for validation (published: none)" in l0["protocol_differences"]
    assert by["level 2 twin"]["lr_text"] == "0.01 (tuned)"
    assert by[HEAD_ONLY]["lr_text"] == "0.0005" and by[HEAD_ONLY]["tuning"] is None
    assert by["level 2"]["readout"] == {"output_scale": "learned", "bias_init": "zero"}
    assert by["level 2"]["solver"] == "eigh" and by["level 0"]["solver"] is None


def test_record_best_epoch_fields_are_used_when_present(tmp_path):
    write(tmp_path / "a.json", make_record(seed=0, test_accs=[0.5, 0.6, 0.7], best_epoch=2,
                                           test_acc_at_best=0.6))
    write(tmp_path / "b.json", make_record(seed=1, test_accs=[0.5, 0.8, 0.7], val_accs=[0.9, 0.5, 0.4]))
    (row,) = summarize(load_records(tmp_path))
    assert row["best_val_epochs"] == [2, 1]
    assert row["test_at_best_val_mean"] == pytest.approx((60.0 + 50.0) / 2)
    # without validation data in every seed there is no validation curve
    assert row["val_curve_mean"] is None and row["final_val_mean"] is None


def test_old_records_without_new_fields(results):
    for r in summarize(load_records(results)):
        assert r["test_at_best_val_mean"] is None and r["tuning"] is None and r["twin_of"] is None
        assert r["val_curve_mean"] is None and r["readout"] is None and r["aliases"] == []


@pytest.mark.parametrize("field,value,fragment", [
    ("val_accs", [0.5, 93.0], "val_accs[1] = 93.0 is outside [0, 1]"),
    ("val_losses", ["x"], "val_losses must be a list of numbers"),
    ("best_epoch", 0, "best_epoch must be a 1-based epoch number"),
    ("best_epoch", 9, "best_epoch 9 is after the last recorded epoch (3)"),
    ("test_acc_at_best", 91.0, "test_acc_at_best = 91.0 is outside [0, 1]"),
    ("tuning", "lr=0.005", "tuning must be a JSON object or null"),
    ("tuning", {"chosen": 0.005}, "tuning.chosen must be an object"),
    ("tuning", {"candidates": [{"settings": {"lr": 1e-3}, "val_acc": 93}]}, "val_acc = 93 is outside"),
    ("twin_of", "", "twin_of must be the label of a quantum rung"),
    ("readout", "learned", "readout must be a JSON object or null"),
    ("solver", 3, "solver must be a string such as 'eigh' or 'expm'"),
])
def test_new_fields_checked(tmp_path, field, value, fragment):
    write(tmp_path / "bad.json", make_record(**{field: value}))
    with pytest.raises(QcreepError) as info:
        load_records(tmp_path)
    msg = str(info.value)
    assert fragment in msg and "bad.json" in msg and "\n" not in msg


def test_null_optional_fields_load(tmp_path):
    write(tmp_path / "r.json", make_record(val_accs=None, best_epoch=None, test_acc_at_best=None, tuning=None,
                                           twin_of=None, readout=None, solver=None))
    (row,) = summarize(load_records(tmp_path))
    assert row["n_seeds"] == 1


def test_statistics_against_level0_and_twin(ladder):
    rows = summarize(load_records(ladder))
    comps = rung_comparisons(rows)
    by = {(c["kind"], c["a"], c["b"]): c for c in comps}
    c = by[("vs level 0", "level 2", "level 0")]
    assert c["seeds"] == [0, 1, 2, 3, 4, 5]
    diffs = [100 * (L2_FINAL(s) - L0_FINAL(s)) for s in range(6)]   # 5.0, 5.1, ..., 5.5 pp
    assert c["mean_diff"] == pytest.approx(sum(diffs) / 6) == pytest.approx(5.25)
    assert c["wilcoxon_p"] == pytest.approx(2 / 64)                    # all 6 positive, exact
    assert c["cliffs_delta"] == pytest.approx(1.0)                     # fully separated
    assert c["resolved"] and c["verdict"] == "level 2 better"
    expected = paired_comparison([100 * L2_FINAL(s) for s in range(6)], [100 * L0_FINAL(s) for s in range(6)])
    assert c["ci_low"] == pytest.approx(expected["ci_low"]) and c["ci_high"] == pytest.approx(expected["ci_high"])
    # the twin has 5 seeds: paired with level 2 on seeds 0..4, which can never resolve
    t = by[("quantum vs twin", "level 2", "level 2 twin")]
    assert t["seeds"] == [0, 1, 2, 3, 4] and t["n"] == 5
    assert not t["resolved"] and t["verdict"] == "not resolved by 5 seeds"
    # every rung but level 0 is compared with level 0; twins with their rung
    assert {k[1] for k in by if k[0] == "vs level 0"} == {
        "level 1", "level 2", "level 2 twin", CONV1_ONLY, HEAD_ONLY, CONV1_HEAD}
    assert [k for k in by if k[0] == "quantum vs twin"] == [("quantum vs twin", "level 2", "level 2 twin")]
    head = by[("vs level 0", HEAD_ONLY, "level 0")]
    assert head["verdict"] == "level 0 better" and head["cliffs_delta"] == pytest.approx(-1.0)


def test_report_statistics_section(ladder, tmp_path):
    report = Path(write_report(ladder, tmp_path / "out")["report"]).read_text(encoding="utf-8")
    section = report.split("## Statistics: paired comparisons over seeds")[1].split("\n## ")[0]
    assert "Wilcoxon signed-rank" in section and "Demšar" in section and "Cliff's delta" in section
    assert "Student's t" in section and "at least 6 seeds" in section
    line = next(x for x in section.splitlines() if x.startswith("| mnist | level 2 | level 0 |"))
    assert "| 6 | +5.25 [" in line and "| 0.0312 |" in line and "| +1.00 |" in line
    assert line.endswith("| level 2 better |")
    twin = next(x for x in section.splitlines() if x.startswith("| mnist | level 2 | level 2 twin |"))
    assert twin.endswith("| not resolved by 5 seeds |")
    assert "## Learning-rate tuning" in report
    tune = report.split("## Learning-rate tuning")[1].split("\n## ")[0]
    # one budget for every rung: said once, above the table
    assert "Every rung had the same budget: 3 trials, 10 epochs each, chosen by val_acc, " \
           "grid lr 0.001, 0.005, 0.01." in tune
    assert tune.count("3 trials") == 1
    assert "| mnist | level 0 | real | lr 0.005 | lr 0.001: 93.00; lr 0.005: 95.00; lr 0.01: 93.00 |" in tune
    assert "± 0.00" not in tune
    details = report.split("## Rung details")[1].split("\n## ")[0]
    assert "| mnist | level 2 twin | real | level 2 |" in details
    assert "output_scale learned, bias_init zero | eigh |" in details


def test_markdown_table_newcomer_notes(ladder):
    md = markdown_table(summarize(load_records(ladder)))
    assert md.startswith("**Answer (MNIST, real angles)**")
    header = next(x for x in md.splitlines() if x.startswith("| dataset | rung |"))
    assert "| lr |" in header and "test acc % @ best val" in header
    row = next(x for x in md.splitlines() if x.startswith("| mnist | level 0 | real |"))
    assert row.count("|") == header.count("|")
    assert "| 6 | 5 | 130000 | 0.005 (tuned) |" in row
    l2 = next(x for x in md.splitlines() if x.startswith("| mnist | level 2 | real |"))
    assert "†" in l2
    # chance: the head-only rung ends near 11 %
    chance = next(x for x in md.splitlines() if "is chance" in x)
    assert "10% is chance for 10 classes" in chance and HEAD_ONLY in chance and "level 0" not in chance
    # the protocol difference is stated in the terminal table itself, with the subsets
    proto = next(x for x in md.splitlines() if "Protocol differs from the published runs" in x)
    assert "5 epochs (published: 50)" in proto and "max_train 1000 (published: full training set)" in proto
    assert "not a failed reproduction" in proto
    tune = next(x for x in md.splitlines() if x.startswith("- lr:"))
    assert "validation split" in tune and "3 trials, 10 epochs each" in tune


def test_markdown_table_no_chance_note_when_far(results):
    md = markdown_table(summarize(load_records(results)))
    assert "is chance" not in md


def test_chance_uses_record_class_count(tmp_path):
    write(tmp_path / "r.json", make_record(dataset="cifar100", test_accs=[0.02], num_classes=100))
    (row,) = summarize(load_records(tmp_path))
    assert row["chance_pct"] == pytest.approx(1.0) and row["near_chance"]
    assert "1% is chance for 100 classes" in markdown_table([row])


def test_different_tuning_budgets_flagged(tmp_path):
    write(tmp_path / "a.json", ladder_record(0.9, 0, level=0))
    write(tmp_path / "b.json", ladder_record(0.9, 0, level=1, tuning=tuning(budget={**BUDGET, "trials": 9})))
    md = markdown_table(summarize(load_records(tmp_path)))
    assert "The tuning budgets differ between rungs" in md


def _legend_texts(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_curves_plot_short_run(ladder):
    rows = [r for r in summarize(load_records(ladder)) if r["dataset"] == "mnist"]
    fig = curves_figure("mnist", rows, [], rung_colors(rows, []))
    ax = fig.axes[0]
    fig.canvas.draw()
    # integer epoch ticks, x range of the runs only (5 epochs, not stretched to 50)
    lo, hi = ax.get_xlim()
    assert hi <= 5.5
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)
    # published markers only at epochs within the runs' range (1 and 5)
    xs = set()
    for container in ax.containers:
        xs.update(float(x) for x in container.lines[0].get_xdata())
    assert xs == {1.0, 5.0}
    texts = _legend_texts(fig)
    assert "level 0, real angles (n=6 seeds)" in texts and "level 2 twin, real angles (n=5 seeds)" in texts
    assert "validation accuracy (dashed)" in texts and "chance (10% for 10 classes)" in texts
    # the legend sits below the axes, so it hides no line
    assert ax.get_legend() is None and len(fig.legends) == 1
    assert fig.legends[0].get_window_extent().y1 <= ax.get_window_extent().y0 + 1
    # validation curves are dashed, one per rung
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and len(ln.get_xdata())]
    assert len(dashed) == len(rows) == 7
    assert "subsets: first 1000 train examples" in ax.get_title()


def test_final_plot_seed_counts_and_best_val(ladder):
    rows = summarize(load_records(ladder))
    fig = final_figure("mnist", rows, rung_colors(rows, []))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == 7 and "n=6 seeds" in labels[0] and "n=5 seeds" in labels[3]
    assert "ours: test acc at the best-validation epoch" in _legend_texts(fig)
    assert "(subsets: first 1000 train examples)" in ax.get_title()


def test_curves_plot_published_markers_long_run(tmp_path):
    write(tmp_path / "r.json", make_record(test_accs=[0.9] * 12))
    rows = summarize(load_records(tmp_path))
    ax = curves_figure("mnist", rows, [], rung_colors(rows, [])).axes[0]
    xs = {float(x) for c in ax.containers for x in c.lines[0].get_xdata()}
    assert xs == {1.0, 5.0, 10.0} and ax.get_xlim()[1] <= 12.5
    assert "subsets" not in ax.get_title()


# --------------------------------------------------------------------------------------------
# atomic writes


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_failed_png_write_keeps_old_file(results, tmp_path, monkeypatch):
    out = tmp_path / "out"
    paths = write_report(results, out)
    curves = Path(paths["curves_mnist"])
    old = curves.read_bytes()
    from matplotlib.figure import Figure

    def full_disk(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(OutputError) as info:
        write_report(results, out)
    msg = str(info.value)
    assert "\n" not in msg and "the disk is full" in msg and "curves_mnist.png" in msg
    assert curves.read_bytes() == old
    assert _temp_files(out) == []


def test_failed_csv_write_keeps_old_file(results, tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_report(results, out)
    old_csv = (out / "summary.csv").read_bytes()
    old_report = (out / "report.md").read_bytes()
    replace = os.replace

    def refuse_csv(src, dst, *args, **kwargs):
        if str(dst).endswith("summary.csv"):
            raise OSError(errno.EROFS, "Read-only file system")
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", refuse_csv)
    write(results / "mnist" / "l0_real_s7.json", make_record(seed=7, test_accs=[0.5] * 5))
    with pytest.raises(OutputError) as info:
        write_report(results, out)
    msg = str(info.value)
    assert "\n" not in msg and "summary.csv" in msg and "read-only" in msg
    assert (out / "summary.csv").read_bytes() == old_csv
    assert (out / "report.md").read_bytes() == old_report       # not reached
    assert _temp_files(out) == []


def test_output_dir_is_a_file(results, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="not a folder"):
        write_report(results, blocker)


def test_csv_new_columns(ladder, tmp_path):
    paths = write_report(ladder, tmp_path / "out")
    with open(paths["csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows][:4] == ["level 0", "level 1", "level 2", "level 2 twin"]
    l2 = rows[2]
    assert l2["aliases"] == L2_ASSIGN_LABEL and l2["lr"] == "0.005 (tuned)" and l2["tuned"] == "True"
    assert json.loads(l2["tuning_budget"]) == BUDGET
    assert float(l2["test_at_best_val_mean"]) == pytest.approx(
        pop_mean_sd([100 * (L2_FINAL(s) - 0.01) for s in range(6)])[0], abs=1e-3)
    assert l2["best_val_epochs"] == "4 4 4 4 4 4" and l2["solver"] == "eigh"
    assert rows[3]["twin_of"] == "level 2" and rows[3]["published_mean"] == ""
    assert rows[0]["chance_pct"] == "10"


def test_incomplete_runs_in_rung_order(tmp_path):
    write(tmp_path / "a.json", make_record(level=2, status="running", test_accs=[0.5]))
    write(tmp_path / "b.json", make_record(level=None, label="level 2 twin", twin_of="level 2", status="running",
                                           test_accs=[0.5], assignment=dict(TWIN_ASSIGN)))
    write(tmp_path / "c.json", make_record(level=0, status="running", test_accs=[0.5]))
    write(tmp_path / "d.json", make_record(level=None, label=CONV1_ONLY, status="running", test_accs=[0.5],
                                           assignment=dict(part.split("=") for part in CONV1_ONLY.split(","))))
    assert [r["label"] for r in incomplete_runs(load_records(tmp_path))] == [
        "level 0", "level 2", "level 2 twin", CONV1_ONLY]


def test_twin_of_assignment_label_names_the_level(tmp_path):
    write(tmp_path / "q.json", make_record(level=2))
    write(tmp_path / "t.json", make_record(level=None, label="quantum twin", twin_of=L2_ASSIGN_LABEL,
                                           assignment=dict(TWIN_ASSIGN)))
    rows = summarize(load_records(tmp_path))
    assert [(r["label"], r["twin_of"]) for r in rows] == [("level 2", None), ("quantum twin", "level 2")]
    comps = rung_comparisons(rows)
    assert [(c["kind"], c["a"], c["b"]) for c in comps] == [("quantum vs twin", "level 2", "quantum twin")]
    assert comps[0]["verdict"] == "not resolved by 1 seed"


def test_docstring_examples():
    import doctest
    import importlib

    attempted = 0
    for name in ("records", "rungs", "summary", "compare", "markdown", "tables", "plots", "write"):
        result = doctest.testmod(importlib.import_module(f"qcreep.report.{name}"))
        assert result.failed == 0, name
        attempted += result.attempted
    assert attempted >= 4


def test_custom_label_of_a_level_stays_its_own_rung(tmp_path):
    for s in range(2):
        write(tmp_path / f"a{s}.json", make_record(level=2, seed=s))
        write(tmp_path / f"b{s}.json", make_record(level=2, seed=s, label="level 2 published readout",
                                                   test_accs=[0.5, 0.6, 0.7]))
        write(tmp_path / f"c{s}.json", make_record(level=0, seed=s, label="level 0 wide", test_accs=[0.8] * 3))
        write(tmp_path / f"d{s}.json", make_record(level=0, seed=s, test_accs=[0.85] * 3))
    rows = summarize(load_records(tmp_path))
    assert [r["label"] for r in rows] == ["level 0", "level 0 wide", "level 2", "level 2 published readout"]
    assert all(r["n_seeds"] == 2 and r["aliases"] == [] for r in rows)
    assert rows[3]["published_mean"] is not None        # still level 2: the published number applies
    # every rung is compared with the row labelled "level 0"
    assert {(c["a"], c["b"]) for c in rung_comparisons(rows)} == {
        ("level 0 wide", "level 0"), ("level 2", "level 0"), ("level 2 published readout", "level 0")}


def test_legend_below_axes_with_many_rungs(tmp_path):
    for k in range(9):
        for s in range(2):
            write(tmp_path / f"v{k}_s{s}.json", make_record(level=0, seed=s, label=f"level 0 variant {k}",
                                                            angles="complex" if k % 2 else "real",
                                                            test_accs=[0.5 + 0.04 * k] * 4))
    rows = summarize(load_records(tmp_path))
    assert len(rows) == 9
    fig = curves_figure("mnist", rows, [], rung_colors(rows, []))
    ax = fig.axes[0]
    fig.canvas.draw()
    texts = _legend_texts(fig)
    for k in range(9):
        angles = "complex" if k % 2 else "real"
        assert f"level 0 variant {k}, {angles} angles (n=2 seeds)" in texts
    assert ax.get_legend() is None
    legend_box, axes_box = fig.legends[0].get_window_extent(), ax.get_window_extent()
    assert legend_box.y1 <= axes_box.y0 + 1                       # entirely below the axes
    assert legend_box.x0 >= -1 and legend_box.x1 <= fig.bbox.x1 + 1   # and inside the figure
    # 9 distinct colours, complex angles marked with hollow circles
    colours = {tuple(ln.get_color()) for ln in ax.get_lines() if ln.get_linestyle() == "-"}
    assert len(colours) >= 9
    assert sum(1 for ln in ax.get_lines() if ln.get_marker() == "o") == 4


# --------------------------------------------------------------------------------------------
# issue 17: the answer first, failed seeds, empty columns, tuning table, twin readout, plots


def _answer(md: str) -> list[str]:
    return [x for x in md.splitlines() if x.startswith("- **")]


def test_answer_comes_first_with_interval_p_and_verdict(ladder, tmp_path):
    md = markdown_table(summarize(load_records(ladder)))
    assert md.startswith("**Answer (MNIST, real angles)**: does each quantum rung beat level 0 and its classical twin?")
    assert md.index("**Answer") < md.index("| dataset | rung |")
    lines = _answer(md)
    # the top rung first: against level 0, then against its twin
    assert lines[0].startswith("- **level 2 vs level 0**: +5.25 pp [")
    assert lines[0].endswith("p = 0.031: **better**")
    assert lines[1].startswith("- **level 2 vs level 2 twin**: ")
    assert lines[1].endswith(": **not resolved with 5 seeds**")
    assert lines[2].startswith("- **level 1 vs level 0**:")
    # the explicit assignments and the twin against level 0 are in the statistics section, not here
    assert not any(HEAD_ONLY in x or "level 2 twin vs" in x for x in lines)
    report = Path(write_report(ladder, tmp_path / "out")["report"]).read_text(encoding="utf-8")
    assert report.index("**Answer (MNIST, real angles)**") < report.index("Run records:") < report.index("## Summary")
    assert report.count("**Answer") == 1  # the table under "Summary" does not repeat it


def test_no_answer_without_anything_to_compare(results):
    rows = [r for r in summarize(load_records(results)) if r["level"] == 0]
    md = markdown_table(rows)
    assert md.startswith("| dataset | rung |") and "**Answer" not in md


def digits_record(final, seed, label="level 0", level=0, **kw):
    return make_record(dataset="digits", level=level, seed=seed, label=label, test_accs=[final - 0.05, final],
                       **kw)


def test_columns_that_are_empty_on_every_row_are_left_out(tmp_path):
    for s in range(2):
        write(tmp_path / f"d{s}.json", digits_record(0.95, s))
    md = markdown_table(summarize(load_records(tmp_path)))
    header = next(x for x in md.splitlines() if x.startswith("| dataset |"))
    assert "published" not in header and "Δ pp" not in header and "JAX" not in header
    assert "test acc % @ best val" not in header                    # no validation data recorded
    assert "final test acc % (mean ± sd)" in header and "s/epoch" in header
    assert "No published numbers for digits at these rungs, so the published columns are left out." in md
    assert "Per-epoch comparison" not in md
    row = next(x for x in md.splitlines() if x.startswith("| digits | level 0 |"))
    assert row.count("|") == header.count("|") and "—" not in row


TWIN_FINALS = {0: 0.9422, 1: 0.9533, 2: 0.9689, 3: 0.9444, 4: 0.16, 5: 0.9489}


def test_a_failed_seed_is_named_in_the_table_and_the_report(tmp_path):
    for s, final in TWIN_FINALS.items():
        write(tmp_path / f"twin_s{s}.json", digits_record(final, s, label="level 2 twin", level=None,
                                                          twin_of="level 2"))
        write(tmp_path / f"l0_s{s}.json", digits_record(0.96 + 0.001 * s, s))
    rows = summarize(load_records(tmp_path))
    twin = next(r for r in rows if r["label"] == "level 2 twin")
    assert [f["seed"] for f in twin["failed_seeds"]] == [4]
    assert twin["failed_seeds"][0]["final_test"] == pytest.approx(16.0)
    others = [100 * v for s, v in TWIN_FINALS.items() if s != 4]
    assert twin["final_test_mean_without_failed"] == pytest.approx(pop_mean_sd(others)[0])
    assert twin["final_test_mean"] == pytest.approx(pop_mean_sd([100 * v for v in TWIN_FINALS.values()])[0])
    assert next(r for r in rows if r["label"] == "level 0")["failed_seeds"] == []
    md = markdown_table(rows)
    row = next(x for x in md.splitlines() if x.startswith("| digits | level 2 twin |"))
    assert "(seed 4 failed)" in row
    note = next(x for x in md.splitlines() if x.startswith("- Failed seed:"))
    assert "level 2 twin (real): seed 4 ended at 16.00 % (chance 10 %)" in note
    assert "other 5 seeds reached 94.22–96.89 %" in note and "include it" in note
    assert "closer to chance than to that median" in md      # the rule is stated
    report = Path(write_report(tmp_path, tmp_path / "out")["report"]).read_text(encoding="utf-8")
    assert "seed 4 ended at 16.00 %" in report


@pytest.mark.parametrize("finals,failed", [
    ({0: 0.95, 1: 0.94, 2: 0.22, 3: 0.96}, [2]),      # far from its siblings, though 12 pp above chance
    ({0: 0.95, 1: 0.90, 2: 0.80, 3: 0.96}, []),       # a poor seed that still trained
    ({0: 0.11, 1: 0.105, 2: 0.12}, []),               # the whole rung is near chance: the chance note says so
    ({0: 0.12, 1: 0.95}, [0]),
    ({0: 0.95}, []),
])
def test_failed_seed_rule(finals, failed):
    from qcreep.report.summary import failed_seeds

    assert [f["seed"] for f in failed_seeds({s: 100 * v for s, v in finals.items()}, 10.0)] == failed


def test_tuning_table_sorts_numerically_and_states_one_budget_once(tmp_path):
    grid = [1e-5, 3e-5, 1e-4, 0.1]
    block = {"split": "validation", "chosen": {"lr": 1e-4}, "metric": "val_acc",
             "candidates": [{"settings": {"lr": v}, "val_acc": 0.5 + i * 0.1} for i, v in enumerate(grid)],
             "budget": {"trials": 4, "epochs": 2, "metric": "val_acc", "grid": {"lr": grid}, "seed": 0}}
    for level in (0, 2):
        for s in range(2):
            write(tmp_path / f"l{level}_s{s}.json", make_record(level=level, seed=s, tuning=block))
    rows = summarize(load_records(tmp_path))
    assert [c["settings"]["lr"] for c in rows[0]["tuning"]["candidates"]] == grid
    report = Path(write_report(tmp_path, tmp_path / "out")["report"]).read_text(encoding="utf-8")
    tune = report.split("## Learning-rate tuning")[1].split("\n## ")[0]
    assert "lr 1e-05: 50.00; lr 3e-05: 60.00; lr 0.0001: 70.00; lr 0.1: 80.00" in tune
    assert "± 0.00" not in tune and tune.count("4 trials") == 1 and "| budget |" not in tune


def test_tuning_table_spread_only_over_several_tuning_seeds(tmp_path):
    per_seed = [{"seed": 0, "val_acc": 0.90}, {"seed": 1, "val_acc": 0.94}]
    block = {"split": "validation", "chosen": {"lr": 1e-3},
             "candidates": [{"settings": {"lr": 1e-3}, "val_acc": 0.92, "per_seed": per_seed}],
             "budget": {"trials": 1, "epochs": 2, "metric": "val_acc", "seeds": [0, 1]}}
    write(tmp_path / "r.json", make_record(tuning=block))
    report = Path(write_report(tmp_path, tmp_path / "out")["report"]).read_text(encoding="utf-8")
    assert "lr 0.001: 92.00 ± 2.00 (2 seeds)" in report


def test_rung_details_show_the_readout_of_the_dense_twin(tmp_path):
    twin_assign = {"conv1": "conv3x3_twin", "conv2": "conv3x3_twin", "head": "dense_twin"}
    readout = {"output_scale": "learned", "bias_init": "zero"}
    for s in range(2):
        write(tmp_path / f"t{s}.json", make_record(level=None, seed=s, label="level 2 twin", twin_of="level 2",
                                                   assignment=twin_assign, readout=readout))
        write(tmp_path / f"l0_{s}.json", make_record(level=0, seed=s, readout=readout))
    by = {r["label"]: r for r in summarize(load_records(tmp_path))}
    assert by["level 2 twin"]["readout"] == readout
    assert by["level 0"]["readout"] is None       # a linear head has no readout options
    report = Path(write_report(tmp_path, tmp_path / "out")["report"]).read_text(encoding="utf-8")
    details = report.split("## Rung details")[1].split("\n## ")[0]
    line = next(x for x in details.splitlines() if x.startswith("| mnist | level 2 twin |"))
    assert "| output_scale learned, bias_init zero |" in line


def test_a_corrupt_record_is_skipped_with_a_warning_and_the_rest_reported(results, tmp_path):
    bad = results / "mnist" / "broken_run.json"
    bad.write_text('{"record_version": 1, "dataset": ', encoding="utf-8")
    skipped = []
    records = load_records(results, skipped=skipped)
    assert len(records) == 9 and [Path(p).name for p, _ in skipped] == ["broken_run.json"]
    assert "is not valid JSON" in skipped[0][1]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "qcreep.cli", "report", str(results), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    warning = next(x for x in proc.stderr.splitlines() if "warning" in x)
    assert warning.startswith("qcreep: warning: run record ") and "broken_run.json is not valid JSON" in warning
    assert "| mnist | level 0 | real |" in proc.stdout
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Skipped record files" in report and "broken_run.json" in report


def test_only_corrupt_records_is_still_an_error(tmp_path):
    write(tmp_path / "a.json", make_record(test_accs=[90.0]))
    with pytest.raises(QcreepError, match=r"no valid run records under .*1 skipped .*a\.json.*fractions"):
        load_records(tmp_path, skipped=[])
    with pytest.raises(QcreepError, match=r"no valid run records"):
        write_report(tmp_path)


def test_one_epoch_is_singular(tmp_path):
    write(tmp_path / "a.json", make_record(test_accs=[0.9], config={"epochs": 1}))
    write(tmp_path / "b.json", make_record(seed=1, test_accs=[], status="running", config={"epochs": 1}))
    paths = write_report(tmp_path, tmp_path / "out")
    report = Path(paths["report"]).read_text(encoding="utf-8")
    assert "1 epoch (published: 50)" in report and "0/1 epoch)" in report
    assert "1 epochs" not in report and "1 re-uploads" not in report
    rows = summarize(load_records(tmp_path))
    labels = [t.get_text() for t in final_figure("mnist", rows, rung_colors(rows, [])).axes[0].get_xticklabels()]
    assert "1 epoch, n=1 seed" in labels[0]


def test_plots_stay_within_accuracy_range_show_seeds_and_mark_resolved(tmp_path):
    for s, final in TWIN_FINALS.items():
        write(tmp_path / f"twin_s{s}.json", digits_record(final, s, label="level 2 twin", level=None,
                                                          twin_of="level 2"))
        write(tmp_path / f"l2_s{s}.json", digits_record(0.97 + 0.002 * s, s, label="level 2", level=2))
        write(tmp_path / f"l0_s{s}.json", digits_record(0.96 + 0.001 * s, s))
    rows = summarize(load_records(tmp_path))
    ax = final_figure("digits", rows, rung_colors(rows, [])).axes[0]
    lo, hi = ax.get_ylim()
    assert hi <= 101.5 and lo > 50          # fitted to the rungs near 95 %, not 5 to 115
    for container in ax.containers:         # no bar goes beyond 100 % or below 0 %
        for seg in container.lines[2][0].get_segments():
            assert all(0 <= y <= 100 for _, y in seg)
    seed_points = [ln for ln in ax.get_lines() if ln.get_marker() == "." and len(ln.get_xdata())]
    assert len(seed_points) == 3 * 6 - 1    # every seed but the failed one, drawn as a cross
    crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x" and len(ln.get_xdata())]
    assert len(crosses) == 1
    texts = [t.get_text() for t in ax.texts]
    assert "seed 4: 16.0% (below)" in texts
    assert any("> level 0 *" in t for t in texts)                  # level 2 beats level 0 on all 6 seeds
    assert "resolved, paired over seeds" in ax.get_title()
    curves = curves_figure("digits", rows, [], rung_colors(rows, [])).axes[0]
    assert curves.get_ylim()[1] <= 101.5
    for poly in curves.collections:
        assert all(0 <= y <= 100 for _, y in poly.get_paths()[0].vertices)


# --------------------------------------------------------------------------------------------
# studies of the user's own model or data


def study_record(final, seed, level, assignment, *, model="/src/nets.py:SmallCNN", dataset="mnist",
                 kind="builtin", **kw):
    return make_record(dataset=dataset, level=level, seed=seed, test_accs=[final - 0.05, final],
                       assignment=assignment, model=model, data={"spec": dataset, "kind": kind, "num_classes": 10},
                       readout={"output_scale": "learned", "bias_init": "zero"}, **kw)


STUDY_RUNGS = {0: {"conv": "original", "fc": "original"},
               1: {"conv": "flipped_quanv3x3", "fc": "original"},
               2: {"conv": "flipped_quanv3x3", "fc": "data_reuploading"}}


def test_own_model_is_a_study_never_compared_with_the_published_hybridnet(tmp_path):
    # the user's network on MNIST, and the paper's HybridNet on MNIST: the same dataset and levels
    for s in range(6):
        for level, assignment in STUDY_RUNGS.items():
            write(tmp_path / f"own_l{level}_s{s}.json",
                  study_record(0.9 + 0.01 * level + 0.001 * s, s, level, assignment))
        write(tmp_path / f"paper_l2_s{s}.json", make_record(dataset="mnist", level=2, seed=s))
    rows = summarize(load_records(tmp_path))
    own = [r for r in rows if r["dataset"] == "SmallCNN on mnist"]
    paper = [r for r in rows if r["dataset"] == "mnist"]
    assert [r["label"] for r in own] == ["level 0", "level 1", "level 2"] and len(paper) == 1
    assert paper[0]["published_mean"] is not None                 # HybridNet level 2 on MNIST has one
    assert all(r["published_mean"] is None and r["published_jax"] is None for r in own)
    assert all(r["chance_pct"] == 10.0 for r in own)
    assert own[0]["readout"] is None and own[1]["readout"] is None
    assert own[2]["readout"] is not None                          # a re-uploading layer in a slot called fc
    md = markdown_table(rows)
    assert "| SmallCNN on mnist | level 2 |" in md and "| dataset / model on data |" in md
    assert "Rungs of SmallCNN on mnist (slot=layer; every other slot keeps your module): level 0: none" in md
    assert "level 2: conv=flipped_quanv3x3, fc=data_reuploading" in md
    assert "SmallCNN on mnist is compared with its own level 0 and twins only" in md


def test_report_of_a_study_alone_has_no_published_preamble_and_names_files_by_study(tmp_path):
    for s in range(2):
        for level, assignment in STUDY_RUNGS.items():
            write(tmp_path / "records" / f"l{level}_s{s}.json",
                  study_record(0.8 + 0.05 * level, s, level, assignment, model="/src/tab.py:mlp",
                               dataset="/data/My Scans.csv", kind="csv"))
    written = write_report(tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["curves_mlp_on_my-scans.png", "final_mlp_on_my-scans.png"]
    text = Path(written["report"]).read_text(encoding="utf-8")
    assert "| model on data | rung |" in text and "| mlp on my-scans | level 1 |" in text
    assert "Note on the published numbers" not in text
    assert "Protocol differences from the published runs" not in text
    assert "/data/My Scans.csv" not in text                         # the study's name, not the path
    rows = summarize(load_records(tmp_path))
    assert {r["dataset"] for r in rows} == {"mlp on my-scans"}


def test_records_of_hybridnet_on_a_builtin_keep_the_dataset_name(tmp_path):
    write(tmp_path / "a.json", make_record(dataset="mnist", level=0, model="hybridnet",
                                           data={"spec": "mnist", "kind": "builtin"}))
    write(tmp_path / "b.json", make_record(dataset="digits", level=0))   # written before model specs
    assert sorted(r["dataset"] for r in load_records(tmp_path)) == ["digits", "mnist"]
    write(tmp_path / "c.json", make_record(dataset="/d/digits.npz", level=0, model="hybridnet",
                                           data={"spec": "/d/digits.npz", "kind": "npz"}))
    # HybridNet on a file is a study too, even when the file is named like a built-in dataset
    assert sorted(r["dataset"] for r in load_records(tmp_path)) == ["digits", "hybridnet on digits", "mnist"]
