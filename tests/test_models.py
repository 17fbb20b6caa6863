"""Tests for typed slots, the layer registry as models use it, and the HybridNet ladder.

Covers: every level and every assignment on every dataset input shape (forward and backward),
the paper's parameter counts, the order of ``all_assignments``, the per-slot summary, and the
error messages a user sees for things that do not fit.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from qcreep.errors import QcreepError
from qcreep.layers import create_layer, list_layers, register_layer, unregister_layer
from qcreep.models import (
    Backbone,
    all_assignments,
    assignment_label,
    assignment_of,
    backbone_of,
    build_model,
    fill,
    format_summary,
    hybridnet,
    level_assignment,
    level_of,
    parse_assignment,
    quantum_layers,
)
from qcreep.models import (
    summary as model_summary,
)
from qcreep.slots import Conv3x3Slot, DenseSlot

# Input shapes of the datasets qcreep knows: digits (padded 8x8), MNIST / FashionMNIST, CIFAR-10.
SHAPES = {
    "digits": (1, 12, 12),
    "mnist": (1, 32, 32),
    "fashion-mnist": (1, 32, 32),
    "cifar10": (3, 32, 32),
}
C = "conv2d"
Q = "flipped_quanv3x3"
L = "linear"
R = "data_reuploading"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


@contextmanager
def registered(name: str, slot_kind: str, factory, *, quantum: bool = False, description: str = "test layer"):
    """Register ``factory`` for the duration of a ``with`` block, then unregister it."""
    register_layer(name, slot_kind, quantum=quantum, description=description)(factory)
    try:
        yield
    finally:
        unregister_layer(name, slot_kind)


def _check_forward_backward(model: nn.Module, shape):
    x = torch.randn(2, *shape)
    y = model(x)
    assert y.shape == (2, 10)
    assert not y.is_complex()
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    # a random weighting, so that the sum of probabilities being constant cannot hide a zero gradient
    (y * torch.randn_like(y)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"all-zero gradient for {name}"


# --------------------------------------------------------------------------------------- ladder


@pytest.mark.parametrize("dataset", sorted(SHAPES))
@pytest.mark.parametrize("level", [0, 1, 2])
def test_every_level_forward_backward(dataset, level):
    shape = SHAPES[dataset]
    model = build_model(shape, level=level, n_reps=1)
    assert assignment_of(model) == level_assignment(hybridnet(shape), level)
    _check_forward_backward(model, shape)


@pytest.mark.parametrize("dataset", sorted(SHAPES))
@pytest.mark.parametrize("index", range(8))
def test_every_assignment_forward_backward(dataset, index):
    shape = SHAPES[dataset]
    assignments = all_assignments(hybridnet(shape))
    assert len(assignments) == 8
    assignment = assignments[index]
    model = build_model(shape, assignment=assignment, n_reps=1)
    assert assignment_of(model) == assignment
    quantum = set(quantum_layers(model))
    assert quantum == {slot for slot, layer in assignment.items() if layer in (Q, R)}
    _check_forward_backward(model, shape)


def test_assignment_by_text_equals_dict():
    backbone = hybridnet((1, 12, 12))
    text = "conv1=flipped_quanv3x3, head=data_reuploading"
    assert parse_assignment(text, backbone) == {"conv1": Q, "conv2": C, "head": R}
    model = build_model((1, 12, 12), assignment=text, n_reps=1)
    assert assignment_of(model) == {"conv1": Q, "conv2": C, "head": R}


@pytest.mark.parametrize("level,total", [(0, 130_394), (1, 133_658), (2, 172_048)])
def test_paper_parameter_counts(level, total):
    model = build_model((1, 32, 32), level=level)
    summary = model_summary(model)
    assert summary["total_params"] == total
    assert sum(row["params"] for row in summary["slots"]) == total
    assert summary["level"] == level


def test_paper_parameter_counts_per_slot():
    rows = {r["slot"]: r["params"] for r in model_summary(build_model((1, 32, 32), level=2))["slots"]}
    assert rows == {"conv1": 32 * 1 * 15 + 32, "conv2": 16 * 32 * 15 + 16, "head": 10 * (4**7 - 1) + 10}
    rows = {r["slot"]: r["params"] for r in model_summary(build_model((1, 32, 32), level=0))["slots"]}
    assert rows == {"conv1": 9 * 32 + 32, "conv2": 9 * 32 * 16 + 16, "head": 12544 * 10 + 10}


def test_head_qubits_follow_input_size():
    digits = build_model((1, 12, 12), level=2)
    head = digits.head
    assert head.in_features == 16 * 8 * 8 == 1024
    assert head.n_qubits == 5
    assert head.n_reps == 10
    mnist = build_model((1, 32, 32), level=2, n_reps=1)
    assert mnist.head.in_features == 12544
    assert mnist.head.n_qubits == 7
    assert mnist.head.n_reps == 1


def test_layer_options_reach_only_the_layers_that_take_them():
    model = build_model((1, 12, 12), level=2, n_reps=3, n_qubits=6, angles="complex")
    assert model.head.n_qubits == 6
    assert model.head.n_reps == 3
    assert model.head.angles == "complex"
    assert model.conv1.angles == "complex"
    # the classical layers take neither n_reps nor angles, and still build
    model = build_model((1, 12, 12), level=0, n_reps=3, n_qubits=6, angles="complex")
    assert isinstance(model.conv1, nn.Conv2d)
    assert isinstance(model.head, nn.Linear)


def test_float64_model():
    model = build_model((1, 12, 12), level=2, n_reps=1, dtype=torch.float64)
    y = model(torch.randn(2, 1, 12, 12, dtype=torch.float64))
    assert y.dtype == torch.float64 and y.shape == (2, 10)


# --------------------------------------------------------------------------------- assignments


def test_all_assignments_order():
    backbone = hybridnet((1, 32, 32))
    assignments = all_assignments(backbone)
    assert len(assignments) == 8
    assert len({assignment_label(a) for a in assignments}) == 8
    assert assignments[0] == {"conv1": C, "conv2": C, "head": L}
    assert assignments[-1] == {"conv1": Q, "conv2": Q, "head": R}
    n_quantum = [sum(v in (Q, R) for v in a.values()) for a in assignments]
    assert n_quantum == sorted(n_quantum) == [0, 1, 1, 1, 2, 2, 2, 3]
    # earlier slots turn quantum first
    assert assignments[1] == {"conv1": Q, "conv2": C, "head": L}
    assert assignments[2] == {"conv1": C, "conv2": Q, "head": L}
    assert assignments[3] == {"conv1": C, "conv2": C, "head": R}
    assert assignments[4] == {"conv1": Q, "conv2": Q, "head": L}
    for a in assignments:
        assert list(a) == ["conv1", "conv2", "head"]


def test_level_of_mapping():
    backbone = hybridnet((1, 32, 32))
    levels = [level_of(backbone, a) for a in all_assignments(backbone)]
    assert levels == [0, None, None, None, 1, None, None, 2]
    for level in (0, 1, 2):
        assert level_of(backbone, level_assignment(backbone, level)) == level
    assert level_assignment(backbone, 1) == {"conv1": Q, "conv2": Q, "head": L}


def test_assignment_label_round_trip():
    backbone = hybridnet((1, 32, 32))
    for a in all_assignments(backbone):
        label = assignment_label(a)
        assert parse_assignment(label, backbone) == a
    assert assignment_label(all_assignments(backbone)[1]) == "conv1=flipped_quanv3x3,conv2=conv2d,head=linear"


def test_summary_of_assignment_has_no_level():
    model = build_model((1, 32, 32), assignment="conv2=flipped_quanv3x3")
    summary = model_summary(model)
    assert summary["level"] is None
    text = format_summary(summary)
    assert "conv1=conv2d,conv2=flipped_quanv3x3,head=linear" in text
    assert f"total parameters: {summary['total_params']:,}" in text


# ------------------------------------------------------------------------------------- summary


def test_summary_rows_and_shapes():
    model = build_model((1, 32, 32), level=2)
    summary = model_summary(model)
    assert summary["backbone"] == "hybridnet"
    assert summary["input_shape"] == [1, 32, 32]
    assert summary["assignment"] == {"conv1": Q, "conv2": Q, "head": R}
    rows = summary["slots"]
    assert [r["slot"] for r in rows] == ["conv1", "conv2", "head"]
    assert [r["kind"] for r in rows] == ["conv", "conv", "dense"]
    assert [r["quantum"] for r in rows] == [True, True, True]
    assert [(r["input"], r["output"]) for r in rows] == [
        ([1, 32, 32], [32, 30, 30]),
        ([32, 30, 30], [16, 28, 28]),
        ([12544], [10]),
    ]
    # the observed shapes agree with the tensors that flow through the built model
    x = torch.randn(1, 1, 32, 32)
    for row, module in zip(rows, (model.conv1, model.conv2, nn.Sequential(model.flatten, model.head))):
        x = module(x)
        assert list(x.shape[1:]) == row["output"]


def test_summary_shapes_cifar_and_digits():
    rows = model_summary(build_model((3, 32, 32), level=0))["slots"]
    assert rows[0]["input"] == [3, 32, 32] and rows[0]["output"] == [32, 30, 30]
    rows = model_summary(build_model((1, 12, 12), level=0))["slots"]
    assert [r["output"] for r in rows] == [[32, 10, 10], [16, 8, 8], [10]]


def test_format_summary_text():
    summary = model_summary(build_model((1, 32, 32), level=2))
    text = format_summary(summary)
    lines = text.splitlines()
    assert lines[0] == "hybridnet (level 2), input 1x32x32"
    assert lines[-1] == "total parameters: 172,048"
    assert "1x32x32" in text and "32x30x30" in text and "16x28x28" in text and "12544" in text
    assert "flipped_quanv3x3 (quantum)" in text
    assert "data_reuploading (quantum)" in text
    assert "163,840" in text
    text0 = format_summary(model_summary(build_model((1, 32, 32), level=0)))
    assert "total parameters: 130,394" in text0
    assert "(quantum)" not in text0


# ---------------------------------------------------------------------------------- error paths


def test_candidate_of_other_kind_is_refused():
    with pytest.raises(QcreepError, match=r"slot 'head' \(dense \(12544,\) -> \(10,\)\) cannot take 'conv2d', "
                                          r"which fills conv slots; valid for this slot: .*linear"):
        build_model((1, 32, 32), assignment="head=conv2d")
    with pytest.raises(QcreepError, match=r"slot 'conv1' .* cannot take 'data_reuploading', which fills dense"):
        build_model((1, 32, 32), assignment={"conv1": R})


def test_unknown_layer():
    with pytest.raises(QcreepError, match=r"unknown layer 'quanv9' for slot 'conv2' .*; valid: conv2d, "
                                          r"conv3x3_twin, flipped_quanv3x3"):
        build_model((1, 32, 32), assignment="conv2=quanv9")


def test_unknown_layer_in_slot_network():
    backbone = hybridnet((1, 12, 12))
    with pytest.raises(QcreepError, match=r"unknown layer 'nope' for slot 'head'"):
        fill(backbone, {"conv1": C, "conv2": C, "head": "nope"})


def test_unknown_slot():
    with pytest.raises(QcreepError, match=r"unknown slot 'conv3'; slots of hybridnet: conv1, conv2, head"):
        build_model((1, 32, 32), assignment="conv3=flipped_quanv3x3")
    backbone = hybridnet((1, 12, 12))
    with pytest.raises(QcreepError, match=r"unknown slot 'fc'"):
        fill(backbone, {"conv1": C, "conv2": C, "head": L, "fc": L})


def test_missing_slot_in_network():
    backbone = hybridnet((1, 12, 12))
    with pytest.raises(QcreepError, match=r"no layer assigned to slot\(s\) head of hybridnet"):
        fill(backbone, {"conv1": C, "conv2": C})


@pytest.mark.parametrize("level", [3, -1, True, "1"])
def test_unknown_level(level):
    with pytest.raises(QcreepError, match=r"unknown replacement level .* for hybridnet; valid levels: 0, 1, 2"):
        build_model((1, 32, 32), level=level)


def test_level_and_assignment_are_exclusive():
    with pytest.raises(QcreepError, match=r"give exactly one of level .* and assignment"):
        build_model((1, 32, 32), level=0, assignment="conv1=conv2d")
    with pytest.raises(QcreepError, match=r"give exactly one of level"):
        build_model((1, 32, 32))


def test_too_few_qubits_names_the_slot():
    with pytest.raises(QcreepError) as info:
        build_model((1, 32, 32), level=2, n_qubits=3)
    message = str(info.value)
    assert message.startswith("slot 'head' (dense (12544,) -> (10,)), layer 'data_reuploading': ")
    assert "needs at least 7 qubits" in message
    assert "n_qubits=3" in message
    with pytest.raises(QcreepError, match=r"slot 'head' .*needs at least 5 qubits"):
        build_model((1, 12, 12), level=2, n_qubits=4)


def test_too_many_qubits():
    with pytest.raises(QcreepError, match=r"slot 'head' .*at most 10 qubits"):
        build_model((1, 12, 12), level=2, n_qubits=11, n_reps=1)


class _Mismatched(nn.Module):
    """A model whose own layers do not fit each other: its forward fails."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(31, 16, 3)

    def forward(self, x):
        return self.conv2(self.conv1(x))


def test_a_model_that_fails_on_its_input_is_one_error():
    with pytest.raises(QcreepError, match=r"_Mismatched fails on the example input \(2, 1, 16, 16\) \(RuntimeError: "):
        backbone_of(_Mismatched(), (1, 16, 16))


def test_image_too_small_for_hybridnet():
    with pytest.raises(QcreepError, match=r"hybridnet needs images of at least 5x5"):
        hybridnet((1, 4, 4))
    with pytest.raises(QcreepError, match=r"hybridnet takes an image input shape \(C, H, W\)"):
        hybridnet((32, 32))


def test_backbone_checks():
    with pytest.raises(QcreepError, match=r"unknown slot 'b'; slots of Linear: \(none\)|unknown slot 'b'"):
        backbone_of(nn.Sequential(nn.Linear(4, 2)), (4,), levels={1: ("b",)})
    backbone = backbone_of(nn.Sequential(nn.Linear(4, 2)), (4,), name="tiny")
    with pytest.raises(QcreepError, match=r"unknown replacement level 1 for tiny; valid levels: \(none"):
        level_assignment(backbone, 1)
    assert isinstance(backbone, Backbone) and backbone.slot_names == ["0"]
    assert backbone.slot("0").classical == "original" and backbone.slot("0").quantum == "data_reuploading"


def test_wrong_input_shape_at_forward():
    model = build_model((1, 12, 12), level=0)
    with pytest.raises(QcreepError, match=re.escape("hybridnet expects input (B, 1, 12, 12), got (2, 1, 32, 32)")):
        model(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize("slot_args,message", [
    ((0, 3), r"in_channels must be an integer >= 1, got 0"),
    ((1, 3, 0), r"stride must be an integer >= 1, got 0"),
    ((1, 3, 1, -1), r"padding must be an integer >= 0, got -1"),
    ((1.0, 3), r"in_channels must be an integer >= 1, got 1.0"),
])
def test_conv_slot_checks(slot_args, message):
    with pytest.raises(QcreepError, match=message):
        Conv3x3Slot(*slot_args)


def test_slot_shape_arithmetic():
    assert Conv3x3Slot(3, 8).output_shape((3, 32, 32)) == (8, 30, 30)
    assert Conv3x3Slot(3, 8, stride=2, padding=1).output_shape((3, 32, 31)) == (8, 16, 16)
    assert DenseSlot(5, 2).output_shape((5,)) == (2,)
    with pytest.raises(QcreepError, match=r"slot 's' .* takes an image \(C, H, W\); it was given shape \(3, 32\)"):
        Conv3x3Slot(3, 8).output_shape((3, 32), "s")
    with pytest.raises(QcreepError, match=r"needs an image of at least 3x3 after padding"):
        Conv3x3Slot(3, 8).output_shape((3, 2, 5), "s")
    with pytest.raises(QcreepError, match=r"out_features must be an integer >= 1, got 0"):
        DenseSlot(3, 0)


class _WrongChannels(nn.Module):
    def __init__(self, slot):
        super().__init__()
        self.conv = nn.Conv2d(slot.in_channels, slot.out_channels + 1, 3)

    def forward(self, x):
        return self.conv(x)


def test_third_party_layer_with_wrong_output_shape():
    with registered("test_wrong_channels", "conv3x3", lambda slot: _WrongChannels(slot)):
        assert "test_wrong_channels" in list_layers("conv")
        expected = re.escape("slot 'conv2' expects real output (16, 28, 28) from input (32, 30, 30); "
                             "layer 'test_wrong_channels' gave (17, 28, 28) torch.float32")
        with pytest.raises(QcreepError, match=expected):
            build_model((1, 32, 32), assignment="conv2=test_wrong_channels")
        # with the build-time check off, the model builds (the mismatch is the user's choice)
        fill(hybridnet((1, 32, 32)), {"conv1": C, "conv2": "test_wrong_channels", "head": L}, check=False)
    assert "test_wrong_channels" not in list_layers("conv")


class _ComplexOut(nn.Module):
    def __init__(self, slot):
        super().__init__()
        self.linear = nn.Linear(slot.in_features, slot.out_features)

    def forward(self, x):
        return torch.complex(self.linear(x), torch.zeros_like(self.linear(x)))


def test_third_party_layer_with_complex_output():
    with registered("test_complex_head", "dense", lambda slot: _ComplexOut(slot)):
        with pytest.raises(QcreepError, match=r"slot 'head' expects real output \(10,\) from input \(1024,\); "
                                              r"layer 'test_complex_head' gave \(10,\) torch.complex64"):
            build_model((1, 12, 12), assignment="head=test_complex_head")


class _IgnoresSlot(nn.Module):
    """A third-party convolution hard-wired to 3 input channels, whatever the slot says."""

    def __init__(self, slot):
        super().__init__()
        self.conv = nn.Conv2d(3, slot.out_channels, 3)

    def forward(self, x):
        return self.conv(x)


def test_third_party_layer_that_crashes_names_the_slot():
    with registered("test_ignores_slot", "conv3x3", lambda slot: _IgnoresSlot(slot)):
        with pytest.raises(QcreepError, match=r"slot 'conv1'.*test_ignores_slot"):
            build_model((1, 32, 32), assignment="conv1=test_ignores_slot")


def test_factory_with_var_keywords_receives_every_option():
    received = {}

    def factory(slot, **options):
        received.update(options)
        return nn.Linear(slot.in_features, slot.out_features)

    with registered("test_kwargs_head", "dense", factory):
        build_model((1, 12, 12), assignment="head=test_kwargs_head", n_reps=3, angles="complex", n_qubits=None)
    # dtype and device come from the module the layer replaces, unless they are given
    assert received == {"n_reps": 3, "angles": "complex", "n_qubits": None, "dtype": torch.float32,
                        "device": torch.device("cpu")}


def test_duplicate_registration():
    with pytest.raises(QcreepError, match=r"layer 'conv2d' is already registered for slot kind 'conv'; "
                                          r"choose another name or unregister_layer it first"):
        register_layer("conv2d", "conv3x3", quantum=False)(lambda slot: nn.Identity())
    with registered("test_dup", "dense", lambda slot: nn.Linear(slot.in_features, slot.out_features)):
        with pytest.raises(QcreepError, match=r"layer 'test_dup' is already registered for slot kind 'dense'"):
            register_layer("test_dup", "dense", quantum=False)(lambda slot: nn.Identity())
    # the original registrations are untouched
    assert isinstance(create_layer("conv2d", Conv3x3Slot(1, 2)), nn.Conv2d)


@pytest.mark.parametrize("text,message", [
    ("conv1:flipped_quanv3x3", r"assignment entries look like SLOT=LAYER \(e.g. conv1=flipped_quanv3x3\), "
                               r"got 'conv1:flipped_quanv3x3'"),
    ("conv1=flipped_quanv3x3,conv2", r"assignment entries look like SLOT=LAYER .*got 'conv2'"),
    ("conv1=conv2d,conv1=flipped_quanv3x3", r"slot 'conv1' is assigned twice"),
    ("", r"an assignment names at least one slot"),
    (" , ", r"an assignment names at least one slot"),
    ("conv1=", r"unknown layer '' for slot 'conv1'"),
])
def test_malformed_assignment_text(text, message):
    with pytest.raises(QcreepError, match=message):
        build_model((1, 32, 32), assignment=text)


def test_malformed_assignment_object():
    with pytest.raises(QcreepError, match=r"an assignment names at least one slot"):
        parse_assignment({}, hybridnet())
    with pytest.raises(QcreepError, match=r"an assignment names at least one slot"):
        parse_assignment(["conv1=conv2d"], hybridnet())


# --------------------------------------------------------------------- README-style third party


class TanhConv(nn.Module):
    """A third-party 3x3 layer: a convolution followed by tanh."""

    def __init__(self, in_channels, out_channels, stride=1, padding=0, *, scale=1.0, dtype=None, device=None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding, dtype=dtype,
                              device=device)
        self.scale = scale

    def forward(self, x):
        return torch.tanh(self.scale * self.conv(x))


class DepthwiseSeparable3x3(nn.Module):
    """Depthwise 3x3 then pointwise 1x1."""

    def __init__(self, slot):
        super().__init__()
        self.depthwise = nn.Conv2d(slot.in_channels, slot.in_channels, 3, stride=slot.stride,
                                   padding=slot.padding, groups=slot.in_channels)
        self.pointwise = nn.Conv2d(slot.in_channels, slot.out_channels, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def test_readme_third_party_layer():
    @register_layer("test_tanh_conv", slot_kind="conv3x3", quantum=False, description="conv + tanh")
    def make_tanh_conv(slot, *, dtype=None, device=None, scale=0.5):
        return TanhConv(slot.in_channels, slot.out_channels, slot.stride, slot.padding, scale=scale,
                        dtype=dtype, device=device)

    try:
        assert "test_tanh_conv" in list_layers("conv")
        assert "conv:test_tanh_conv" in list_layers()
        backbone = hybridnet((1, 12, 12))
        ladder = [
            {"conv1": "test_tanh_conv", "conv2": C, "head": L},
            {"conv1": "test_tanh_conv", "conv2": Q, "head": L},
            {"conv1": "test_tanh_conv", "conv2": Q, "head": R},
        ]
        for assignment in ladder:
            model = build_model((1, 12, 12), assignment=assignment_label(assignment), n_reps=1,
                                angles="real", n_qubits=None)
            assert assignment_of(model) == assignment
            assert isinstance(model.conv1, TanhConv)
            assert model.conv1.scale == 0.5
            assert level_of(backbone, assignment_of(model)) is None
            summary = model_summary(model)
            assert summary["slots"][0]["layer"] == "test_tanh_conv"
            assert summary["slots"][0]["quantum"] is False
            assert summary["slots"][0]["params"] == 9 * 32 + 32
            assert "conv1" not in quantum_layers(model)
            _check_forward_backward(model, (1, 12, 12))
    finally:
        unregister_layer("test_tanh_conv", "conv3x3")
    assert "test_tanh_conv" not in list_layers("conv")
    with pytest.raises(QcreepError, match=r"unknown layer 'test_tanh_conv'"):
        build_model((1, 12, 12), assignment="conv1=test_tanh_conv")


def test_third_party_depthwise_separable_everywhere():
    with registered("test_dwsep", "conv3x3", lambda slot: DepthwiseSeparable3x3(slot)):
        model = build_model((3, 32, 32), assignment="conv1=test_dwsep,conv2=test_dwsep,head=data_reuploading",
                            n_reps=1)
        assert model_summary(model)["slots"][1]["params"] == (32 * 9 + 32) + (32 * 16 + 16)
        _check_forward_backward(model, (3, 32, 32))


def test_twin_assignment_replaces_only_quantum_layers():
    from qcreep.models import is_quantum_assignment, twin_assignment

    backbone = hybridnet((1, 32, 32))
    level1 = level_assignment(backbone, 1)
    assert twin_assignment(backbone, level1) == {"conv1": "conv3x3_twin", "conv2": "conv3x3_twin", "head": "linear"}
    assert twin_assignment(backbone, level_assignment(backbone, 0)) == level_assignment(backbone, 0)
    assert is_quantum_assignment(backbone, level1)
    assert not is_quantum_assignment(backbone, twin_assignment(backbone, level1))
    twin2 = build_model((1, 32, 32), assignment=twin_assignment(backbone, level_assignment(backbone, 2)),
                        output_scale="none")
    assert model_summary(twin2)["total_params"] == 172_048
    assert quantum_layers(twin2) == {}
