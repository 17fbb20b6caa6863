"""``qcreep diagnose`` and ``qcreep run --diagnose``: the diagnostics of every rung of a finished ladder.

The commands run in this process through :func:`qcreep.cli.main` on one tiny trained ladder
(digits, levels 0, 1, 2 and the twins, two seeds, one epoch); the saved numbers are checked
against the pure functions of :mod:`qcreep.diagnostics` applied to the rebuilt networks.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from qcreep.cli import main
from qcreep.cli.diagnose import DEFAULT_SIZES as CLI_SIZES
from qcreep.diagnose import DEFAULT_SIZES, DiagnoseSpec, _ansatz_measures, diagnose_folder
from qcreep.diagnostics import effective_dimension
from qcreep.errors import ConfigError
from qcreep.layers import QuantumLayer, create_layer, get_layer_entry, layer_entries
from qcreep.report.diagnostics import diagnostics_rows, load_diagnostics, spearman
from qcreep.slots import ConvSlot, DenseSlot
from qcreep.train import build_run_model, prepare_data
from qcreep.trained import config_from_record, load_trained

TINY = ["--dataset", "digits", "--seeds", "2", "--epochs", "1", "--max-train", "200", "--max-test", "30",
        "--n-reps", "2", "--no-tune", "--lr", "0.01", "--threads", "1", "--no-progress"]
SMALL = ["--diag-inputs", "6", "--diag-inits", "3", "--diag-samples", "40", "--diag-sizes", "100", "10000",
         "--scan-qubits", "1", "2", "3", "--scan-inits", "12", "--no-progress"]


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "ladder"
    assert main(["run", "--levels", "0", "1", "2", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def diagnosed(ladder):
    assert main(["diagnose", str(ladder), *SMALL]) == 0
    return ladder


def _copy(folder, tmp_path):
    """A copy of a results folder, for the tests that change its diagnostics."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    return copy


def _records(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def test_every_run_is_diagnosed_and_the_report_has_the_section(diagnosed, capsys):
    records = _records(diagnosed)
    assert len(records) == 10  # levels 0, 1, 2 and two twins, two seeds
    for run_id, record in records.items():
        res = json.loads((diagnosed / "diagnostics" / f"{run_id}.json").read_text())
        d = res["n_params"]
        assert d == sum(p.numel() for p in load_trained(diagnosed / "checkpoints" / f"{run_id}.pt").model.parameters())
        ed = res["effective_dimension"]
        assert ed["sizes"] == [100, 10000] and ed["n_inputs"] == 6
        for values in (ed["init"], ed["trained"]):
            assert all(0 < v < d for v in values)
        gv = res["gradient_variance"]
        assert set(gv["per_slot"]) == set(record["config"]["assignment"])
        assert all(v > 0 for v in gv["per_slot"].values()) and gv["mean"] > 0
        quantum = {s for s, name in res["assignment"].items() if get_layer_entry(name, "conv" if s.startswith("conv")
                                                                                 else "dense").quantum}
        assert set(res["layers"]) == quantum
        for entry in res["layers"].values():
            assert entry["expressibility"] > 0 and 0 <= entry["entangling_capability"] <= 1
            assert entry["expressibility_bias"] == pytest.approx(74 / 80)
        assert res["final_test_acc"] == record["test_accs"][-1]
    report = (diagnosed / "report.md").read_text()
    assert "## Why a rung wins or loses: diagnostics" in report
    assert "| level 2 − its twin (level 2 twin) |" in report and "Spearman rank correlation" in report
    assert "### Gradient variance against register size" in report
    assert (diagnosed / "diagnostics.png").stat().st_size > 1000
    assert "![diagnostics: diagnostics.png](diagnostics.png)" in report


def test_the_saved_values_are_the_library_functions_on_the_rebuilt_networks(diagnosed):
    run_id = next(r for r in _records(diagnosed) if "level2_" in r and "seed1" in r)
    res = json.loads((diagnosed / "diagnostics" / f"{run_id}.json").read_text())
    record = _records(diagnosed)[run_id]
    config = config_from_record(record)
    x = prepare_data(config).fit.x[:6].to(torch.float64)
    trained = load_trained(diagnosed / "checkpoints" / f"{run_id}.pt").model.to(torch.float64).eval()
    with torch.random.fork_rng(devices=[]):
        initial = build_run_model(config).to(torch.float64).eval()
    for model, key in ((initial, "init"), (trained, "trained")):
        weights = nn.utils.parameters_to_vector(model.parameters())[None]
        expected = effective_dimension(model, x, [100, 10000], weights)
        assert res["effective_dimension"][key] == pytest.approx(expected, rel=1e-9)
    assert res["effective_dimension"]["init"] != pytest.approx(res["effective_dimension"]["trained"], rel=1e-6)


def test_a_second_call_reads_the_saved_results_and_new_settings_recompute(diagnosed, tmp_path, capsys):
    diagnosed = _copy(diagnosed, tmp_path)
    files = sorted((diagnosed / "diagnostics").glob("*.json"))
    before = {p.name: p.read_bytes() for p in files}
    stamps = {p.name: p.stat().st_mtime_ns for p in files if p.name != "families.json"}
    assert main(["diagnose", str(diagnosed), *SMALL]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 5 and "level 2 twin (2 seeds" in out  # one line per rung
    for p in files:
        assert p.read_bytes() == before[p.name]
        if p.name in stamps:
            assert p.stat().st_mtime_ns == stamps[p.name]  # read back, not written again
    # other settings: only the chosen seed's runs, computed again
    other = [a if a != "40" else "30" for a in SMALL]
    assert main(["diagnose", str(diagnosed), *other, "--seeds", "1"]) == 0
    changed = [p.name for p in files if p.name != "families.json" and p.read_bytes() != before[p.name]]
    assert len(changed) == 5 and all("seed1" in name for name in changed)


def test_the_same_seed_gives_the_same_numbers(ladder, tmp_path):
    ladder = _copy(ladder, tmp_path)
    spec = DiagnoseSpec(inputs=4, inits=2, samples=20, sizes=(1000,), seed=3)
    ids = {r for r in _records(ladder) if "level1_" in r and "seed0" in r}
    first = diagnose_folder(ladder, spec, run_ids=ids)
    for path in (ladder / "diagnostics").glob("*.json"):
        if path.stem in ids:
            path.unlink()
    second = diagnose_folder(ladder, spec, run_ids=ids)

    def clean(res):
        res = json.loads(json.dumps(res))
        res.pop("seconds")
        for part in ("effective_dimension", "gradient_variance"):
            res[part].pop("seconds")
        for entry in res["layers"].values():
            entry.pop("seconds")
        return res

    assert len(first) == 1 and first[0]["layers"]
    assert [clean(r) for r in first] == [clean(r) for r in second]


def test_family_scan_fits_each_quantum_family(diagnosed):
    scans = json.loads((diagnosed / "diagnostics" / "families.json").read_text())
    assert scans["settings"] == {"qubits": [1, 2, 3], "inits": 12, "seed": 0}
    assert set(scans["families"]) == {"data_reuploading", "flipped_quanv3x3"}
    for entry in scans["families"].values():
        assert entry["qubits"] == [1, 2, 3] and all(v > 0 for v in entry["variance"])
        decay = entry["decay"]
        assert decay["low"] <= decay["rate"] <= decay["high"] and decay["confidence"] == 0.95


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_scan_slots_need_the_stated_qubits(kind):
    for entry in layer_entries():
        if entry.slot_kind != kind or not entry.quantum:
            continue
        probe = ConvSlot(1, 1, 3) if kind == "conv" else DenseSlot(4, 2)
        cls = type(create_layer(entry.name, probe, dtype=torch.float64))
        for n in (1, 2, 3, 4):
            sized = cls.scan_slot(n)
            if sized is None:
                continue
            slot, options = sized
            layer = create_layer(entry.name, slot, dtype=torch.float64, **options)
            assert layer.n_qubits == n, (entry.name, n)


def _layer_and_input(name: str, kind: str):
    torch.manual_seed(1)
    if kind == "conv":
        layer = create_layer(name, ConvSlot(2, 2, 3), dtype=torch.float64)
        return layer, torch.randn(2, 3, 3, dtype=torch.float64)
    layer = create_layer(name, DenseSlot(11, 3), dtype=torch.float64)
    return layer, torch.randn(11, dtype=torch.float64)


@pytest.mark.parametrize("entry", [e for e in layer_entries() if e.quantum], ids=lambda e: f"{e.slot_kind}:{e.name}")
def test_each_layers_ansatz_is_the_state_of_its_circuit(entry):
    layer, x = _layer_and_input(entry.name, entry.slot_kind)
    if layer.circuit_parameters == ():  # a fixed circuit: nothing to sample, and the diagnostics say so
        measures = _ansatz_measures(layer, x, DiagnoseSpec())
        assert measures["circuit_params"] == 0 and measures["expressibility"] is None
        return
    n_params, state_fn = layer.ansatz(x)
    generic_n, generic = QuantumLayer.ansatz(layer, x)
    # the circuit parameters named by the layer are its parameters; the base's route runs over all of them
    names = layer.circuit_parameters or [n for n, _ in layer.named_parameters()]
    assert sum(dict(layer.named_parameters())[n].numel() for n in names) == generic_n
    assert 0 < n_params <= generic_n
    values = 6.3 * torch.rand(4, n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    states = state_fn(values)
    assert states.dtype == torch.complex128 and states.shape == (4, 2**layer.n_qubits)
    # a faster ansatz may cover only the leading entries, those that the first circuit uses
    padded = torch.cat([values, torch.zeros(4, generic_n - n_params, dtype=torch.float64)], 1)
    assert torch.allclose(states, generic(padded), atol=1e-10, rtol=0)
    assert torch.allclose(states.abs().pow(2).sum(-1), torch.ones(4, dtype=torch.float64), atol=1e-12)


def test_run_with_diagnose_writes_the_diagnostics(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = [a if a != "2" else "1" for a in TINY]
    assert main(["run", "--levels", "1", "--no-twins", *tiny, "--diagnose", *SMALL, "--out", str(out)]) == 0
    (record,) = _records(out)
    assert (out / "diagnostics" / f"{record}.json").is_file()
    assert set(json.loads((out / "diagnostics" / "families.json").read_text())["families"]) == {"flipped_quanv3x3"}
    assert "## Why a rung wins or loses" in (out / "report.md").read_text()


def test_complex_angles_are_skipped_with_the_reason(tmp_path, capsys):
    out = tmp_path / "complex"
    tiny = [a if a != "2" else "1" for a in TINY]
    assert main(["run", "--levels", "2", "--angles", "complex", "--no-twins", *tiny, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "skipped: complex angles make no physical circuit" in err
    assert err.strip().splitlines()[-1].startswith("qcreep: error: no complete run with real angles under")


@pytest.mark.parametrize("args, message", [
    (["--diag-sizes", "5"], "dataset size must be an integer >= 19"),
    (["--scan-qubits", "2", "3"], "the qubit scan needs at least three register sizes"),
    (["--diag-inits", "1"], "initialisations must be an integer >= 2"),
    (["--diag-inputs", "0"], "expected a positive integer, got '0'"),
])
def test_bad_settings_are_one_line_errors_and_write_nothing(ladder, tmp_path, capsys, args, message):
    before = sorted(p.name for p in ladder.rglob("*"))
    assert main(["diagnose", str(ladder), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert sorted(p.name for p in ladder.rglob("*")) == before


def test_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("qcreep: error:")
    assert not (tmp_path / "nope").exists()


def test_spec_validation_and_defaults():
    assert CLI_SIZES == DEFAULT_SIZES
    with pytest.raises(ConfigError, match="at least one dataset size"):
        DiagnoseSpec(sizes=()).validate()
    spec = DiagnoseSpec(sizes=(1000, 100, 1000), scan_qubits=(4, 2, 3)).validate()
    assert spec.sizes == (100, 1000) and spec.scan_qubits == (2, 3, 4)


def test_spearman_and_rows():
    scipy_stats = pytest.importorskip("scipy.stats")
    xs, ys = [3.0, 1.0, 2.0, 5.0, 4.0, 4.0], [0.1, 0.5, 0.2, 0.9, 0.3, 0.8]
    assert spearman(xs, ys) == pytest.approx(scipy_stats.spearmanr(xs, ys).statistic, abs=1e-12)
    assert spearman([1.0, 2.0], [1.0, 2.0]) is None
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def test_rows_group_seeds_by_rung(diagnosed):
    runs, families = load_diagnostics(diagnosed)
    rows = diagnostics_rows(runs)
    by_label = {row["label"]: row for row in rows}
    assert set(by_label) == {"level 0", "level 1", "level 1 twin", "level 2", "level 2 twin"}
    row = by_label["level 2"]
    assert row["seeds"] == [0, 1] and set(row["layers"]) == {"conv1", "conv2", "head"}
    values = [r["effective_dimension"]["trained"][1] for r in row["runs"]]
    assert row["ed_trained"][0] == pytest.approx(sum(values) / 2)
    assert by_label["level 2 twin"]["twin_of"] == "level 2" and by_label["level 0"]["layers"] == {}
    assert families is not None and "data_reuploading" in families["families"]


def test_a_corrupt_diagnostics_file_is_named(diagnosed, tmp_path, capsys):
    copy = _copy(diagnosed, tmp_path)
    victim = next((copy / "diagnostics").glob("digits_level0*.json"))
    victim.write_text("{not json")
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and victim.name in err and "run `qcreep diagnose` again" in err
