"""Tests for qcreep.creep: slots found in any nn.Module, selection, the checks made before anything
changes, and the surgery in a copy (bitwise equal with every slot classical, the user's model
never changed)."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qcreep.creep import ORIGINAL, creep, quantum_layers
from qcreep.errors import QcreepError
from qcreep.layers import FlippedQuanv, FlippedQuanv3x3, patch_qubits
from qcreep.models import backbone_of, fill, level_assignment, summary
from qcreep.slots import ConvSlot

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(7)


class SmallCNN(nn.Module):
    """ReLU, max pooling, a 5x5 convolution and two Linear layers."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 6, 5, padding=2), nn.ReLU())
        self.fc1 = nn.Linear(6 * 6 * 6, 16)
        self.fc2 = nn.Linear(16, classes)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


class Residual(nn.Module):
    """A residual block with batch norm, dropout, attention and data-dependent control flow."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.blocks = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)])
        self.heads = nn.ModuleDict({"proj": nn.Linear(8, 8), "out": nn.Linear(8, 5)})
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        h = self.norm(self.stem(x))
        for block in self.blocks:
            h = h + F.relu(block(h))
        if h.mean() > 1e9:  # data-dependent Python control flow, never taken
            h = -h
        tokens = h.flatten(2).transpose(1, 2)
        tokens, _ = self.attn(tokens, tokens, tokens)
        pooled = self.drop(tokens.mean(1))
        return self.heads["out"](torch.tanh(self.heads["proj"](pooled)))


def test_slots_of_a_cnn_in_forward_order_with_shapes():
    found = creep(SmallCNN(), torch.zeros(2, 1, 12, 12))
    assert found.names == ["features.0", "features.3", "fc1", "fc2"]
    assert [s.kind for s in found.slots] == ["conv", "conv", "dense", "dense"]
    assert [s.input_shape for s in found.slots] == [(1, 12, 12), (4, 6, 6), (216,), (16,)]
    assert [s.output_shape for s in found.slots] == [(4, 12, 12), (6, 6, 6), (16,), (10,)]
    conv5 = found.slot("features.3")
    assert conv5.slot == ConvSlot(4, 6, 5, 1, 2)
    assert conv5.qubits == {"flipped_quanv3x3": 3, "quanvolution": 25, "trainable_quanvolution": 25}
    assert found.slot("features.0").qubits == {"flipped_quanv3x3": 2, "quanvolution": 9, "trainable_quanvolution": 9}
    assert found.slot("fc1").qubits == {"amplitude_circuit": 8, "angle_reuploading": 16, "data_reuploading": 4,
                                        "dressed_circuit": 4}
    assert found.slot("fc1").params == 216 * 16 + 16
    assert found.unfillable == []
    assert found.output_shape == (10,)


def test_nested_module_list_and_dict_names():
    found = creep(Residual(), torch.randn(2, 3, 4, 4))
    # the attention's out_proj is a Linear the attention calls through functional code, never as a module
    assert found.names == ["stem", "blocks.0", "blocks.1", "heads.proj", "heads.out"]
    assert [u.name for u in found.unfillable] == ["attn.out_proj"]
    assert "never called" in found.unfillable[0].reason


@pytest.mark.parametrize("factory,shape", [(SmallCNN, (3, 1, 12, 12)), (Residual, (3, 3, 4, 4))])
def test_every_slot_classical_is_bitwise_equal_and_the_user_model_is_untouched(factory, shape):
    model = factory()
    model.train()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(*shape)
    built = creep(model, x).build()
    assert type(built) is type(model)
    assert built.state_dict().keys() == model.state_dict().keys()
    model.eval()
    built.eval()
    assert torch.equal(built(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # not even the batch-norm statistics moved
    # a training step costs the same graph: same loss, same gradients
    model.train()
    built.train()
    torch.manual_seed(3)
    loss_a = model(x).square().sum()
    torch.manual_seed(3)
    loss_b = built(x).square().sum()
    assert torch.equal(loss_a, loss_b)


def test_quantum_slots_get_fresh_layers_in_a_copy():
    model = SmallCNN()
    found = creep(model, torch.zeros(1, 1, 12, 12))
    built = found.build({"features.3": "flipped_quanv3x3", "fc2": "data_reuploading"}, n_reps=2)
    assert isinstance(built.features[3], FlippedQuanv) and built.features[3].kernel_hw == (5, 5)
    assert built.features[3].n_qubits == 3
    assert type(built.fc2).__name__ == "DataReUploadingLinear" and built.fc2.n_qubits == 4
    assert isinstance(model.features[3], nn.Conv2d) and isinstance(model.fc2, nn.Linear)
    assert torch.equal(built.fc1.weight, model.fc1.weight)  # a classical slot keeps the user's weights
    assert built.fc1.weight is not model.fc1.weight
    assert set(quantum_layers(built)) == {"features.3", "fc2"}
    y = built(torch.randn(4, 1, 12, 12))
    assert y.shape == (4, 10) and torch.isfinite(y).all()
    y.sum().backward()
    assert built.features[3].theta.grad is not None and built.fc2.theta.grad is not None


def test_new_layers_take_the_dtype_of_the_module_they_replace():
    model = SmallCNN().to(F64)
    built = creep(model, torch.zeros(1, 1, 12, 12, dtype=F64)).build({"features.0": "flipped_quanv3x3"})
    assert built.features[0].theta.dtype == F64
    assert built(torch.randn(2, 1, 12, 12, dtype=F64)).dtype == F64


def test_selection_by_name_suffix_regex_and_type():
    model = SmallCNN()
    x = torch.zeros(1, 1, 12, 12)
    assert creep(model, x, slots="fc1").names == ["fc1"]
    assert creep(model, x, slots=["3"]).names == ["features.3"]  # a dotted suffix
    assert creep(model, x, slots=r"fc\d").names == ["fc1", "fc2"]
    assert creep(model, x, slots=nn.Conv2d).names == ["features.0", "features.3"]
    assert creep(model, x, slots=["Linear"]).names == ["fc1", "fc2"]
    with pytest.raises(QcreepError, match=re.escape("slot pattern 'fc9' matches no layer of SmallCNN; candidates: "
                                                    "features.0 (Conv2d), features.3 (Conv2d), fc1 (Linear), "
                                                    "fc2 (Linear)")):
        creep(model, x, slots=["fc1", "fc9"])


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = self.a  # one module under two names
        self.twice = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.twice(self.twice(self.a(x))))


def test_shared_repeated_and_unused_modules():
    x = torch.zeros(2, 4)
    with pytest.raises(QcreepError, match=r"module 'a' is also registered as 'b' \(one module shared by two parents\)"
                                          r".*; candidates: a \(Linear\), b \(Linear\), twice"):
        creep(Shared(), x, slots="a")
    with pytest.raises(QcreepError, match=r"module 'twice' runs 2 times in one forward pass"):
        creep(Shared(), x, slots="twice")
    with pytest.raises(QcreepError, match=r"module 'unused' is never called by the forward pass"):
        creep(Shared(), x, slots="unused")
    found = creep(Shared(), x)  # by default such modules are listed, with the reason, not dropped
    assert found.names == ["out"]
    reasons = {u.name: u.reason for u in found.unfillable}
    assert set(reasons) == {"a", "b", "twice", "unused"}
    assert "shared by two parents" in reasons["a"] and "runs 2 times" in reasons["twice"]


def test_unfillable_layers_are_listed_with_the_reason():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 2, 3, padding_mode="reflect", padding=1),
                          nn.Flatten(), nn.Linear(2 * 4 * 4, 2000), nn.Linear(2000, 3))
    found = creep(model, torch.zeros(1, 4, 6, 6))
    reasons = {u.name: u.reason for u in found.unfillable}
    assert "grouped convolution (groups=2)" in reasons["0"]
    assert "padding_mode 'reflect'" in reasons["1"]
    # 32 -> 2000 needs 11 qubits as a re-uploading layer, 4 as a dressed circuit: a slot, for the latter
    assert found.names == ["3", "4"]  # 4**6 >= 2000 inputs, 2**6 >= 3 outputs: 6 qubits
    assert found.slot("3").qubits == {"amplitude_circuit": 11, "angle_reuploading": 2000, "data_reuploading": 11,
                                      "dressed_circuit": 4}
    assert found.slot("4").qubits == {"amplitude_circuit": 11, "angle_reuploading": 4, "data_reuploading": 6,
                                      "dressed_circuit": 4}
    # a slot is unfillable only when every quantum layer of its kind needs more than the limit
    small = creep(model, torch.zeros(1, 4, 6, 6), max_qubits=3)
    reasons = {u.name: u.reason for u in small.unfillable}
    assert ("needs more qubits than the limit of 3 (amplitude_circuit 11, angle_reuploading 2000, data_reuploading 11, "
            "dressed_circuit 4)"
            in reasons["3"])
    assert small.names == []
    limited = creep(model, torch.zeros(1, 4, 6, 6), max_qubits=5)
    assert limited.names == ["3", "4"]
    with pytest.raises(QcreepError, match=r"unknown slot '1'; slots of Sequential: 3, 4"):
        limited.build({"1": "data_reuploading"})


def test_same_padding_and_dilation_become_a_conv_slot():
    model = nn.Sequential(nn.Conv2d(2, 3, 5, padding="same"), nn.Conv2d(3, 3, 3, dilation=2, stride=2))
    found = creep(model, torch.zeros(1, 2, 9, 9))
    assert found.slots[0].slot == ConvSlot(2, 3, 5, 1, 2)
    assert found.slots[1].slot == ConvSlot(3, 3, 3, 2, 0, 2)
    built = found.build({"0": "flipped_quanv3x3", "1": "flipped_quanv3x3"})
    assert built(torch.randn(2, 2, 9, 9)).shape == model(torch.randn(2, 2, 9, 9)).shape == (2, 3, 3, 3)


def test_everything_is_checked_before_the_copy_changes():
    model = SmallCNN()
    found = creep(model, torch.zeros(1, 1, 12, 12))
    with pytest.raises(QcreepError, match=r"unknown layer 'nope' for slot 'fc2' .*valid: original, "
                                          r"amplitude_circuit, amplitude_twin, angle_reuploading, "
                                          r"angle_reuploading_twin, data_reuploading, dense_twin, "
                                          r"dressed_circuit, dressed_twin, linear"):
        found.build({"fc1": "data_reuploading", "fc2": "nope"})
    with pytest.raises(QcreepError, match=r"slot 'fc1' \(dense \(216,\) -> \(16,\)\) cannot take 'conv2d', which "
                                          r"fills conv slots"):
        found.build("fc1=conv2d")
    with pytest.raises(QcreepError, match=r"slot 'fc2' \(dense \(16,\) -> \(10,\)\), layer 'data_reuploading': "
                                          r".*needs at least 4 qubits"):
        found.build({"fc2": "data_reuploading"}, n_qubits=2)
    with pytest.raises(QcreepError, match=r"entries look like SLOT=LAYER \(e.g. features.0=flipped_quanv3x3"):
        found.build("features.0")
    assert isinstance(model.fc2, nn.Linear)


def test_a_model_that_fails_on_the_example_is_one_error():
    with pytest.raises(QcreepError, match=r"SmallCNN fails on the example input \(1, 3, 12, 12\) \(RuntimeError: "):
        creep(SmallCNN(), torch.zeros(1, 3, 12, 12))
    with pytest.raises(QcreepError, match=r"creep takes an nn.Module, got function"):
        creep(lambda x: x, torch.zeros(1))


def test_a_user_backbone_fills_cumulatively_and_summarises():
    backbone = backbone_of(SmallCNN(), (1, 12, 12), name="small-cnn")
    assert [s.classical for s in backbone.slots] == [ORIGINAL] * 4
    assert [s.quantum for s in backbone.slots] == ["flipped_quanv3x3", "flipped_quanv3x3", "data_reuploading",
                                                  "data_reuploading"]
    assignment = {s.name: (s.quantum if i < 2 else s.classical) for i, s in enumerate(backbone.slots)}
    model = fill(backbone, assignment, n_reps=1)
    rows = summary(model)["slots"]
    assert [r["quantum"] for r in rows] == [True, True, False, False]
    assert [r["layer"] for r in rows][2:] == ["Linear", "Linear"] and rows[2]["original"] is True
    assert rows[1]["params"] == 6 * 4 * 63 + 6 and rows[1]["n_qubits"] == 3
    with pytest.raises(QcreepError, match=r"valid levels: \(none"):
        level_assignment(backbone, 1)


# ------------------------------------------------------------------------------ k x k quanvolution


@pytest.mark.parametrize("kernel,stride,padding,dilation", [
    (1, 1, 0, 1), (2, 2, 0, 1), (3, 1, 1, 1), (5, 1, 2, 1), (5, 2, 1, 2), ((3, 5), 1, (1, 2), 1), (7, 3, 0, 1)])
def test_kxk_quanvolution_fast_equals_reference_and_conv_shapes(kernel, stride, padding, dilation):
    layer = FlippedQuanv(2, 3, kernel, stride, padding, dilation, dtype=F64)
    x = torch.randn(2, 2, 13, 11, dtype=F64)
    fast, ref = layer(x), layer.forward_reference(x)
    conv = nn.Conv2d(2, 3, kernel, stride, padding, dilation, dtype=F64)
    assert fast.shape == conv(x).shape
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)
    q = patch_qubits(kernel)
    assert layer.n_qubits == q and layer.theta.shape == (3, 2, 4**q - 1)
    assert layer.num_parameters == 3 * 2 * (4**q - 1) + 3
    phys = layer.physicality()
    assert phys["max_unitarity_error"] < 1e-12 and abs(phys["min_state_norm"] - 1) < 1e-12


def test_kxk_quanvolution_gradcheck():
    layer = FlippedQuanv(1, 2, 5, padding=1, dtype=F64)
    x = torch.randn(1, 1, 6, 6, dtype=F64, requires_grad=True)

    def f(x, theta, bias):
        return torch.func.functional_call(layer, {"theta": theta, "bias": bias}, (x,))

    assert torch.autograd.gradcheck(f, (x, layer.theta.detach().clone().requires_grad_(),
                                        layer.bias.detach().clone().requires_grad_()))


def test_3x3_layer_is_the_general_layer_with_a_3x3_kernel():
    torch.manual_seed(0)
    a = FlippedQuanv3x3(2, 3, 2, 1, dtype=F64)
    torch.manual_seed(0)
    b = FlippedQuanv(2, 3, 3, 2, 1, dtype=F64)
    x = torch.randn(1, 2, 9, 9, dtype=F64)
    assert torch.equal(a(x), b(x))
    assert a.stride == 2 and a.padding == 1 and a.kernel_size == 3


@pytest.mark.parametrize("kernel,stride,padding,dilation", [(5, 1, 2, 1), (2, 2, 0, 1), ((3, 5), 1, (1, 2), 2)])
def test_kxk_twin_matches_the_quantum_layer_in_count_shape_and_kernel_family(kernel, stride, padding, dilation):
    from qcreep.layers import ConvTwin, create_layer
    from qcreep.slots import ConvSlot

    slot = ConvSlot(3, 4, kernel, stride, padding, dilation)
    quantum = create_layer("flipped_quanv3x3", slot, dtype=F64)
    twin = create_layer("conv3x3_twin", slot, dtype=F64)
    assert isinstance(twin, ConvTwin) and twin.side == 2**quantum.n_qubits
    assert twin.num_parameters == quantum.num_parameters
    x = torch.randn(2, 3, 11, 11, dtype=F64)
    assert twin(x).shape == quantum(x).shape
    k = twin.kernel().detach() * 3  # top-left block of a symmetric PSD matrix of trace 1
    kh, kw = twin.kernel_hw
    square = k[..., :min(kh, kw), :min(kh, kw)]
    torch.testing.assert_close(square, square.mT)
    assert torch.linalg.eigvalsh(square).min() > -1e-12
    assert (torch.diagonal(square, dim1=-2, dim2=-1).sum(-1) <= 1 + 1e-12).all()


def test_qcreep_creep_is_the_entry_point():
    import qcreep

    found = qcreep.creep(SmallCNN(), torch.zeros(1, 1, 12, 12), slots=["fc1"])
    assert found.names == ["fc1"]
    assert qcreep.creep.ORIGINAL == ORIGINAL


class MixedPrecision(nn.Module):
    """A float64 layer between float32 ones: its replacement must come in float64 too."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 5)
        self.b = nn.Linear(5, 4, dtype=F64)
        self.c = nn.Linear(4, 3)

    def forward(self, x):
        return self.c(self.b(self.a(x).double()).float())


def test_modules_of_another_dtype_or_device_get_replacements_there():
    found = creep(MixedPrecision(), torch.zeros(2, 6))
    built = found.build({"b": "data_reuploading", "c": "data_reuploading"}, n_reps=1)
    assert built.b.theta.dtype == F64 and built.c.theta.dtype == torch.float32
    assert built(torch.randn(3, 6)).dtype == torch.float32
    # a model on the meta device: shapes are found without any data, and replacements are made there
    meta = creep(SmallCNN().to("meta"), torch.zeros(1, 1, 12, 12, device="meta"))
    assert meta.names == ["features.0", "features.3", "fc1", "fc2"]
    assert meta.slot("fc1").input_shape == (216,)
    layer = meta.build({"fc2": "linear"}, check=False).fc2
    assert layer.weight.device.type == "meta"
