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
