"""--quantum KIND=FAMILY: which registered quantum layers fill a ladder's quantum slots, and one ladder
comparing families rung by rung with their twins."""

from __future__ import annotations

import pytest

import qcreep.layers  # noqa: F401 - registers the layers
from qcreep.cli import main
from qcreep.errors import ConfigError, QcreepError
from qcreep.models import families_label, hybridnet, level_assignment, parse_families, with_families
from qcreep.report.rungs import family_level, rung_key
from qcreep.sweep import plan


def test_kinds_and_slot_names_expand_to_slots():
    backbone = hybridnet((1, 12, 12))
    assert parse_families("paper", backbone) == {}
    assert parse_families("conv=quanvolution", backbone) == {"conv1": "quanvolution", "conv2": "quanvolution"}
    assert parse_families("conv2=trainable_quanvolution,dense=amplitude_circuit", backbone) == {
        "conv2": "trainable_quanvolution", "head": "amplitude_circuit"}
    level1 = level_assignment(backbone, 1)
    # only quantum slots are refilled: level 1's classical head stays linear
    assert with_families(backbone, level1, {"head": "dressed_circuit", "conv1": "quanvolution"}) == {
        "conv1": "quanvolution", "conv2": "flipped_quanv3x3", "head": "linear"}
    assert families_label("dense=dressed_circuit,conv=quanvolution", backbone,
                          {"conv1": "quanvolution", "conv2": "quanvolution", "head": "linear"}) == "conv=quanvolution"


@pytest.mark.parametrize("spec, match", [
    ("dense=linear", "'linear' is a classical layer"),
    ("fc=dressed_circuit", "'fc' in a family choice is neither a slot kind"),
    ("dense", "looks like KIND=LAYER"),
    ("dense=nosuch", "unknown layer 'nosuch' for slot kind 'dense'"),
    ("conv=dressed_circuit", "unknown layer 'dressed_circuit' for slot kind 'conv'"),
    ("dense=dressed_circuit,dense=amplitude_circuit", "'dense' is given two families"),
])
def test_bad_family_choices_are_one_line_errors(spec, match):
    with pytest.raises(QcreepError, match=match):
        parse_families(spec, hybridnet((1, 12, 12)))
    with pytest.raises(ConfigError, match=match):
        plan(["digits"], levels=[2], quantum=[spec])


def test_one_ladder_plans_every_rung_per_family_with_its_twin():
    configs = plan(["digits"], levels=[0, 1, 2], seeds=range(2), twins=True, epochs=1,
                   quantum=["paper", "dense=dressed_circuit,conv=quanvolution"])
    labels = []
    for c in configs:
        if c.rung_label not in labels:
            labels.append(c.rung_label)
    assert labels == ["level 0", "level 1", "level 1 twin", "level 2", "level 2 twin",
                      "level 1 (conv=quanvolution)", "level 1 (conv=quanvolution) twin",
                      "level 2 (dense=dressed_circuit,conv=quanvolution)",
                      "level 2 (dense=dressed_circuit,conv=quanvolution) twin"]
    assert len(configs) == 2 * len(labels)          # level 0 is planned once, not once per family
    by_label = {c.rung_label: c for c in configs}
    assert by_label["level 2 (dense=dressed_circuit,conv=quanvolution)"].assignment == {
        "conv1": "quanvolution", "conv2": "quanvolution", "head": "dressed_circuit"}
    assert by_label["level 2 (dense=dressed_circuit,conv=quanvolution) twin"].assignment == {
        "conv1": "quanvolution_twin", "conv2": "quanvolution_twin", "head": "dressed_twin"}
    assert len({c.run_id for c in configs}) == len(configs)
    # the paper's pair as the only choice is the plain ladder
    plain = plan(["digits"], levels=[0, 1, 2], seeds=range(2), twins=True, epochs=1)
    assert [c.run_id for c in plan(["digits"], levels=[0, 1, 2], seeds=range(2), twins=True, epochs=1,
                                   quantum=["paper"])] == [c.run_id for c in plain]


def test_refilled_levels_sort_after_their_level_with_the_twin_after_the_rung():
    assert family_level("level 2 (dense=dressed_circuit)") == 2 and family_level("level 2") is None
    names = ["level 2 (dense=dressed_circuit) twin", "level 2 (dense=dressed_circuit)", "level 2 twin",
             "level 2", "level 1", "level 0"]
    key = {n: rung_key("digits", n, twin_of=n[:-5] if n.endswith(" twin") else None) for n in names}
    assert sorted(names, key=key.get) == ["level 0", "level 1", "level 2", "level 2 twin",
                                          "level 2 (dense=dressed_circuit)", "level 2 (dense=dressed_circuit) twin"]


def test_cli_answers_for_each_family_against_level_0_and_its_twin(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--data", "digits", "--levels", "0", "2", "--assign", "head=data_reuploading",
                 "--quantum", "paper", "dense=dressed_circuit", "--seeds", "2", "--epochs", "1", "--no-tune",
                 "--lr", "0.01", "--n-reps", "2", "--max-train", "200", "--max-test", "100", "--threads", "1",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "**level 2 (dense=dressed_circuit) vs level 0**" in text
    assert "**level 2 (dense=dressed_circuit) vs level 2 (dense=dressed_circuit) twin**" in text
    assert "| conv1=conv2d,conv2=conv2d,head=dressed_circuit |" in text
    # level 0; level 2 and head=... under each of 2 families, each with its twin: 9 rungs x 2 seeds
    assert len(list((out / "records").glob("*.json"))) == 2 * 9


def test_cli_bad_choice_is_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--data", "digits", "--quantum", "dense=conv2d", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--quantum dense=conv2d" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# --- the families' structure: fixed (--structure) and tuned (--tune depth ...) ------------------


def test_structure_reaches_the_layers_and_the_fingerprint():
    from qcreep.config import TrainConfig
    from qcreep.train import build_run_model

    plain = TrainConfig(dataset="digits", level=None, assignment="head=dressed_circuit").validate()
    deep = TrainConfig(dataset="digits", level=None, assignment="head=dressed_circuit",
                       structure={"depth": 3}).validate()
    assert "structure" not in plain.fingerprint() and deep.fingerprint()["structure"] == {"depth": 3}
    assert plain.run_id != deep.run_id
    head = build_run_model(deep).head
    assert head.depth == 3
    twin = TrainConfig(dataset="digits", level=None, assignment="head=dressed_twin", structure={"depth": 3}).validate()
    assert sum(p.numel() for p in build_run_model(twin).head.parameters()) == head.num_parameters


@pytest.mark.parametrize("structure, match", [
    ({"depht": 3}, "unknown structural option"),
    ({"depth": 0}, "depth"),
    ("depth=3", "structure must be a mapping"),
])
def test_bad_structure_is_a_config_error(structure, match):
    from qcreep.config import TrainConfig

    with pytest.raises(ConfigError, match=match):
        TrainConfig(dataset="digits", structure=structure).validate()


def test_structural_tuning_is_for_quantum_rungs_and_twins_follow_them(tmp_path):
    import json

    out = tmp_path / "out"
    code = main(["run", "--data", "digits", "--levels", "0", "--assign", "head=dressed_circuit",
                 "--tune", "lr", "depth", "--tune-epochs", "1", "--lr-grid", "3e-3", "1e-2", "--epochs", "1",
                 "--seeds", "1", "--max-train", "200",
                 "--max-test", "60", "--threads", "1", "--no-progress", "--out", str(out)])
    assert code == 0
    recs = {r["label"]: r for r in (json.loads(p.read_text()) for p in (out / "records").glob("*.json"))}
    quantum = recs["conv1=conv2d,conv2=conv2d,head=dressed_circuit"]
    twin = recs["conv1=conv2d,conv2=conv2d,head=dressed_circuit twin"]
    level0 = recs["level 0"]
    assert len(quantum["tuning"]["candidates"]) == 6                     # lr x depth
    assert len(level0["tuning"]["candidates"]) == 2                      # nothing structural to tune
    assert len(twin["tuning"]["candidates"]) == 2                        # lr only, depth inherited
    depth = quantum["tuning"]["chosen"]["depth"]
    assert quantum["config"]["structure"] == {"depth": depth} == twin["config"]["structure"]
    assert twin["tuning"]["inherited"] == {"from": quantum["label"], "settings": {"depth": depth}}
    assert twin["n_params"] == quantum["n_params"]


def test_fixed_structure_from_the_cli(tmp_path):
    import json

    out = tmp_path / "out"
    assert main(["run", "--data", "digits", "--assign", "head=dressed_circuit", "--structure", "depth=2,width=3",
                 "--no-twins", "--no-tune", "--epochs", "1", "--seeds", "1", "--max-train", "100", "--max-test", "50",
                 "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    rec = json.loads(next((out / "records").glob("*.json")).read_text())
    assert rec["config"]["structure"] == {"depth": 2, "width": 3}
    assert main(["run", "--data", "digits", "--structure", "depth", "--out", str(tmp_path / "bad"),
                 "--no-progress"]) == 2
