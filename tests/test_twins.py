"""Tests for the classical twins (Conv3x3Twin, DenseTwin) and the registry's twin_of / twin_for.

A twin is a control for a quantum layer: the same slot, shapes and parameter count (within 1%; the
twins here match exactly) and the same class of map (linear for the flipped quanvolution, a bounded
probability readout for the re-uploading head). These tests check that contract for every
registered quantum layer in every slot of the HybridNet backbone for every dataset's input shape,
and the mathematics each twin's docstring states.
"""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qcreep.data import describe_datasets
from qcreep.errors import QcreepError
from qcreep.layers import (
    DataReUploadingLinear,
    FlippedQuanv3x3,
    count_parameters,
    create_layer,
    get_layer_entry,
    layer_entries,
    list_layers,
    min_qubits,
    register_layer,
    twins,
    unregister_layer,
)
from qcreep.layers.registry import twin_for
from qcreep.layers.twins import (
    Conv3x3Twin,
    DenseTwin,
    dense_twin_parameter_count,
    match_reuploading,
    reuploading_parameter_count,
)
from qcreep.models import build_model, hybridnet
from qcreep.models import summary as model_summary
from qcreep.slots import Conv3x3Slot, DenseSlot

F64 = torch.float64

QUANTUM = [e for e in layer_entries() if e.quantum]
DATASET_SHAPES = {d["name"]: tuple(d["input_shape"]) for d in describe_datasets()}
TWIN_ASSIGNMENT = {"conv1": "conv3x3_twin", "conv2": "conv3x3_twin", "head": "dense_twin"}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(2409_17583)


def within_one_percent(twin: nn.Module, quantum: nn.Module) -> bool:
    a, b = count_parameters(twin), count_parameters(quantum)
    return abs(a - b) <= 0.01 * b


def small_input(shape, batch=2, dtype=torch.float32):
    return torch.randn(batch, *shape, dtype=dtype)


# ============================================================================ every quantum layer, every slot


def _slot_cases():
    cases = []
    for dataset, shape in sorted(DATASET_SHAPES.items()):
        backbone = hybridnet(shape)
        shapes = {name: (i, o) for name, i, o in backbone.shapes()}
        for spec in backbone.slots:
            for entry in QUANTUM:
                if entry.slot_kind == spec.slot.kind:
                    cases.append(pytest.param(spec, shapes[spec.name], entry.name,
                                              id=f"{dataset}-{spec.name}-{entry.name}"))
    return cases


def test_every_registered_quantum_layer_has_a_twin():
    assert {e.name for e in QUANTUM} >= {"flipped_quanv3x3", "data_reuploading"}
    for entry in QUANTUM:
        twin = get_layer_entry(twin_for(entry.name, entry.slot_kind), entry.slot_kind)
        assert not twin.quantum and twin.twin_of == entry.name and twin.description


@pytest.mark.parametrize("spec,shapes,quantum_name", _slot_cases())
def test_twin_fits_the_slot_like_its_quantum_layer(spec, shapes, quantum_name):
    in_shape, out_shape = shapes
    twin_name = twin_for(quantum_name, spec.slot.kind)
    assert twin_name in list_layers(spec.slot.kind)
    quantum = create_layer(quantum_name, spec.slot)
    twin = create_layer(twin_name, spec.slot)
    assert within_one_percent(twin, quantum)
    assert count_parameters(twin) == count_parameters(quantum)  # the twins here match exactly
    x = small_input(in_shape)
    with torch.no_grad():
        yq, yt = quantum(x), twin(x)
    assert yt.shape == yq.shape == (2, *out_shape)
    assert not yt.is_complex() and yt.dtype == torch.float32
    assert torch.isfinite(yt).all()


@pytest.mark.parametrize("output_scale,bias_init", [("none", "normal"), ("learned", "zero")])
@pytest.mark.parametrize("n_reps", [1, 3, 10])
@pytest.mark.parametrize("dataset", sorted(DATASET_SHAPES))
def test_twin_network_matches_the_quantum_network(dataset, n_reps, output_scale, bias_init):
    """The model's shared options reach the twins: every slot matches the level-2 slot's count."""
    shape = DATASET_SHAPES[dataset]
    options = {"n_reps": n_reps, "output_scale": output_scale, "bias_init": bias_init, "check": False}
    quantum = model_summary(build_model(shape, level=2, **options))
    if dataset == "digits" and n_reps == 1:
        # 10 * (4**5 - 1) + 10 = 1033 parameters; one hidden unit over 1024 features needs more
        with pytest.raises(QcreepError, match=r"no classical twin matches DataReUploadingLinear\(1024 -> 10"):
            build_model(shape, assignment=TWIN_ASSIGNMENT, **options)
        return
    twin = model_summary(build_model(shape, assignment=TWIN_ASSIGNMENT, **options))
    for q_row, t_row in zip(quantum["slots"], twin["slots"]):
        assert q_row["params"] == t_row["params"], q_row["slot"]
        assert q_row["output"] == t_row["output"]
    assert twin["total_params"] == quantum["total_params"]
    assert not any(row["quantum"] for row in twin["slots"])


def test_twin_network_trains_a_step_and_checks_its_slots():
    model = build_model((1, 12, 12), assignment=TWIN_ASSIGNMENT, n_reps=2, output_scale="learned")
    assert model_summary(model)["total_params"] == model_summary(build_model((1, 12, 12), level=2, n_reps=2,
                                                                             output_scale="learned"))["total_params"]
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 10, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


# ============================================================================ the dense twin's sizes


PAPER = (12544, 10)
DIGITS = (1024, 10)


def _quantum_count(in_features, out_features, n_qubits, n_reps, output_scale):
    head = DataReUploadingLinear(in_features, out_features, n_qubits=n_qubits, n_reps=n_reps, output_scale=output_scale)
    return count_parameters(head)


@pytest.mark.parametrize("output_scale", ["none", "learned"])
@pytest.mark.parametrize("extra_qubits", [0, 1])
@pytest.mark.parametrize("n_reps", [1, 3, 10])
@pytest.mark.parametrize("sizes", [PAPER, DIGITS], ids=["paper", "digits"])
def test_dense_twin_matches_the_reuploading_head(sizes, n_reps, extra_qubits, output_scale):
    in_features, out_features = sizes
    n = min_qubits(in_features, out_features) + extra_qubits
    target = _quantum_count(in_features, out_features, n, n_reps, output_scale)
    assert reuploading_parameter_count(in_features, out_features, n, n_reps, output_scale) == (target, n)
    if sizes == DIGITS and n_reps == 1 and extra_qubits == 0:
        expected = rf"no classical twin matches .* within 1%: it has {target} parameters.* has {target + 22};"
        with pytest.raises(QcreepError, match=expected):
            DenseTwin.matched(in_features, out_features, n, n_reps, output_scale=output_scale)
        return
    twin = DenseTwin.matched(in_features, out_features, n, n_reps, output_scale=output_scale)
    assert count_parameters(twin) == twin.num_parameters == target
    assert match_reuploading(in_features, out_features, n, n_reps, output_scale).params == target
    assert twin.num_parameters == dense_twin_parameter_count(in_features, out_features, twin.hidden, twin.outcomes,
                                                             twin.constant_outcomes, output_scale)
    assert twin.outcomes >= out_features
    assert 0 <= twin.constant_outcomes <= twin.hidden
    assert twin.matched_to == {"layer": "data_reuploading", "n_qubits": n, "n_reps": n_reps, "params": target}


def test_paper_and_digits_heads_sizes():
    # the paper's head: 10 * (4**7 - 1) + 10 = 163840 parameters
    paper = match_reuploading(*PAPER)
    sizes = (paper.hidden, paper.outcomes, paper.constant_outcomes, paper.target, paper.n_qubits)
    assert sizes == (13, 53, 3, 163840, 7)
    assert 13 * 12544 + 13 + 13 * 53 + 56 + 10 == 163840
    digits = match_reuploading(*DIGITS)
    assert (digits.hidden, digits.outcomes, digits.constant_outcomes, digits.target) == (9, 100, 5, 10240)
    learned = match_reuploading(*PAPER, output_scale="learned")
    assert learned.target == 163841 and dense_twin_parameter_count(
        *PAPER, learned.hidden, learned.outcomes, learned.constant_outcomes, "learned") == 163841


def test_smallest_twin_is_used_when_within_one_percent():
    # 1 * (4**5 - 1) + 4 = 1027 parameters; the smallest twin has 1024 + 1 + 3 * 4 = 1037 (0.97% more)
    sizes = match_reuploading(1024, 4, n_reps=1)
    assert (sizes.hidden, sizes.outcomes, sizes.constant_outcomes, sizes.params, sizes.target) == (1, 4, 0, 1037, 1027)
    twin = create_layer("dense_twin", DenseSlot(1024, 4), n_reps=1)
    assert within_one_percent(twin, create_layer("data_reuploading", DenseSlot(1024, 4), n_reps=1))
    assert twin.num_parameters == 1037
    with pytest.raises(QcreepError, match=r"it has 1028 parameters, and the smallest twin .* has 1040"):
        match_reuploading(1024, 5, n_reps=1)  # 1.17% more


@pytest.mark.parametrize("case", [(12544, 10, None, 10), (1024, 10, 6, 10), (12544, 10, 8, 3), (10, 4, None, 2),
                                  (300, 7, 5, 4), (1024, 10, 7, 10)])
def test_dense_twin_size_rule_is_the_log_closest_driven_outcomes(case):
    """Brute force over every hidden width: the rule picks the driven-outcome count closest to 2**n."""
    in_features, out_features, n_qubits, n_reps = case
    sizes = match_reuploading(in_features, out_features, n_qubits, n_reps)
    budget = sizes.target - out_features
    feasible = []
    for h in range(1, budget // (in_features + 1) + 1):
        m_a = (budget - h * (in_features + 1)) // (h + 1)
        if m_a >= out_features:
            feasible.append((abs(math.log(m_a / 2**sizes.n_qubits)), -h, h, m_a))
    _, _, h, m_a = min(feasible)
    assert (sizes.hidden, sizes.outcomes) == (h, m_a)


# ============================================================================ the dense twin's map


def test_dense_twin_outputs_are_probabilities_without_scale_or_bias():
    twin = DenseTwin.matched(1024, 10, bias_init="zero")
    x = torch.randn(64, 1024) * torch.logspace(-3, 3, 64)[:, None]  # inputs of very different scales
    with torch.no_grad():
        y = twin(x)
        p = twin.probabilities(x)
    assert y.shape == (64, 10)
    assert (y >= 0).all() and (y <= 1).all()
    assert (y.sum(-1) <= 1 + 1e-6).all()
    assert p.shape == (64, twin.outcomes + twin.constant_outcomes)
    assert torch.allclose(p.sum(-1), torch.ones(64), atol=1e-5)
    assert torch.equal(y, p[:, :10])


def test_dense_twin_learned_scale_and_bias_readout():
    twin = DenseTwin.matched(1024, 10, output_scale="learned", bias_init="zero")
    m = twin.outcomes + twin.constant_outcomes
    assert math.isclose(float(twin.log_scale.detach()), math.log(m), rel_tol=1e-6)  # uniform p maps to 1
    x = torch.randn(16, 1024)
    with torch.no_grad():
        y = twin(x)
        p = twin.probabilities(x)[:, :10]
    assert torch.allclose(y, m * p, rtol=1e-5, atol=1e-6)
    assert (y >= 0).all() and (y.sum(-1) <= m * (1 + 1e-6)).all()
    normal = DenseTwin.matched(1024, 10)
    assert normal.log_scale is None and normal.bias.abs().sum() > 0
    assert torch.equal(twin.bias, torch.zeros(10))


def test_dense_twin_forward_is_the_documented_map():
    twin = DenseTwin(6, 2, hidden=3, outcomes=4, constant_outcomes=2, output_scale="learned", dtype=F64)
    with torch.no_grad():
        for p in twin.parameters():
            p.normal_()
    x = torch.randn(5, 6, dtype=F64)
    x_hat = x / x.square().mean(-1, keepdim=True).sqrt()
    u = twin.weight_in / twin.weight_in.norm(dim=1, keepdim=True)
    hidden = torch.tanh(x_hat @ u.T + twin.bias_in)
    logits = torch.cat([hidden @ twin.weight_out.T + twin.bias_out[:4], twin.bias_out[4:].expand(5, 2)], -1)
    expected = twin.log_scale.exp() * torch.softmax(logits, -1)[:, :2] + twin.bias
    assert torch.allclose(twin(x), expected, atol=1e-12)
    # scale-free in its input, like every normalised map; leading dimensions pass through
    assert torch.allclose(twin(7.5 * x), twin(x), atol=1e-12)
    assert twin(x.reshape(5, 1, 6)).shape == (5, 1, 2)
    assert twin(x[0]).shape == (2,)
    assert torch.isfinite(twin(torch.zeros(3, 6, dtype=F64))).all()


def test_dense_twin_pre_activations_start_unit_scale_for_large_fan_in():
    """A unit's pre-activation is a unit vector times a unit-rms input: about N(0, 1) at any fan-in."""
    twin = DenseTwin.matched(*PAPER)
    x = 50 * torch.randn(256, 12544) + 3
    x_hat = x / x.square().mean(-1, keepdim=True).sqrt()
    with torch.no_grad():
        pre = x_hat @ (twin.weight_in / twin.weight_in.norm(dim=1, keepdim=True)).T
    assert 0.7 < float(pre.std()) < 1.4


# ============================================================================ the conv twin


@pytest.mark.parametrize("c_in,c_out,stride,padding", [(1, 32, 1, 0), (32, 16, 1, 0), (3, 5, 2, 1), (2, 3, 1, 2)])
def test_conv_twin_is_a_linear_convolution(c_in, c_out, stride, padding):
    twin = Conv3x3Twin(c_in, c_out, stride, padding, dtype=F64)
    x, y = torch.randn(2, c_in, 9, 8, dtype=F64), torch.randn(2, c_in, 9, 8, dtype=F64)
    a, b = 1.7, -0.4
    bias = twin.bias.detach()[:, None, None]
    with torch.no_grad():
        lhs = twin(a * x + b * y) - bias
        rhs = a * (twin(x) - bias) + b * (twin(y) - bias)
        conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=padding, dtype=F64)
        assert twin(x).shape == conv(x).shape
        assert torch.equal(twin(x), F.conv2d(x, twin.kernel(), twin.bias, stride=stride, padding=padding))
    assert torch.allclose(lhs, rhs, atol=1e-12)
    assert twin.num_parameters == count_parameters(twin) == 15 * c_in * c_out + c_out
    assert count_parameters(twin) == count_parameters(FlippedQuanv3x3(c_in, c_out, stride, padding))


def test_conv_twin_kernel_is_a_trace_normalised_psd_block():
    twin = Conv3x3Twin(4, 6, dtype=F64)
    w = twin.factors().detach()
    assert w.shape == (6, 4, 4, 4) and torch.equal(w[..., 3, 3], torch.zeros(6, 4, dtype=F64))
    assert torch.equal(w.flatten(-2)[..., :15], twin.factor.detach())
    gram = w @ w.transpose(-1, -2)
    m = gram / gram.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    kernel = twin.kernel().detach()
    assert torch.allclose(kernel, m[..., :3, :3] / 4, atol=1e-14)
    k = kernel * 4
    assert torch.allclose(k, k.transpose(-1, -2))
    assert (torch.linalg.eigvalsh(k) > -1e-12).all()
    assert (k.diagonal(dim1=-2, dim2=-1).sum(-1) <= 1 + 1e-12).all()
    # the kernel is invariant under rescaling W (only its direction matters)
    with torch.no_grad():
        twin.factor.mul_(3.0)
    assert torch.allclose(twin.kernel().detach(), kernel, atol=1e-14)


def test_conv_twin_reaches_every_quantum_kernel():
    """Any flipped-quanvolution kernel Re(rho)[:3, :3] / C_in is a twin kernel, with W[3, 3] = 0."""
    quantum = FlippedQuanv3x3(2, 3, dtype=F64)
    psi = quantum.states().detach()
    rho = psi.real[..., :, None] * psi.real[..., None, :] + psi.imag[..., :, None] * psi.imag[..., None, :]
    values, vectors = torch.linalg.eigh(rho)
    w = vectors * values.clamp_min(0).sqrt()[..., None, :]  # w w^T = Re(rho)
    # a Householder reflection Q (w -> w Q keeps w w^T) turning the last row onto the first axis
    r = w[..., 3, :]
    v = r - r.norm(dim=-1, keepdim=True) * torch.eye(4, dtype=F64)[0]
    q = torch.eye(4, dtype=F64) - 2 * v[..., :, None] * v[..., None, :] / v.square().sum(-1)[..., None, None]
    w = w @ q
    assert w[..., 3, 3].abs().max() < 1e-12
    twin = Conv3x3Twin(2, 3, dtype=F64)
    with torch.no_grad():
        twin.factor.copy_(w.flatten(-2)[..., :15])
    assert torch.allclose(twin.kernel(), quantum.kernel(), atol=1e-12)


# ============================================================================ gradients and options


def _twin_cases():
    return [
        pytest.param(lambda: Conv3x3Twin(3, 4, 1, 1), (2, 3, 6, 6), id="conv"),
        pytest.param(lambda: DenseTwin.matched(40, 5, n_reps=2), (4, 40), id="dense-none"),
        pytest.param(lambda: DenseTwin.matched(40, 5, n_reps=2, output_scale="learned", bias_init="zero"), (4, 40),
                     id="dense-learned"),
        pytest.param(lambda: DenseTwin.matched(*DIGITS), (4, 1024), id="dense-digits"),
    ]


@pytest.mark.parametrize("make,shape", _twin_cases())
def test_gradients_reach_every_parameter_and_the_input(make, shape):
    twin = make()
    if isinstance(twin, DenseTwin):
        assert twin.constant_outcomes > 0 or twin.outcomes > 0
    x = torch.randn(shape, requires_grad=True)
    y = twin(x)
    (y * torch.randn(y.shape)).sum().backward()
    for name, p in twin.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    if isinstance(twin, DenseTwin) and twin.constant_outcomes:
        assert twin.bias_out.grad[twin.outcomes:].abs().sum() > 0  # the constant logits train too
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_factories_take_the_model_options_and_ignore_quantum_only_ones():
    conv_slot, dense_slot = Conv3x3Slot(3, 5, stride=2, padding=1), DenseSlot(1024, 10)
    conv = create_layer("conv3x3_twin", conv_slot, angles="complex", path="reference", solver="x", n_reps=3,
                        dtype=F64)
    assert isinstance(conv, Conv3x3Twin)
    assert (conv.in_channels, conv.out_channels, conv.stride, conv.padding) == (3, 5, 2, 1)
    assert all(p.dtype == F64 and not p.is_complex() for p in conv.parameters())
    quanv = create_layer("flipped_quanv3x3", conv_slot, angles="complex")
    assert count_parameters(conv) == count_parameters(quanv)  # a complex angle counts once
    dense = create_layer("dense_twin", dense_slot, n_qubits=6, n_reps=3, output_scale="learned", bias_init="zero",
                         angles="complex", path="reference", kernel_size=9)
    head = create_layer("data_reuploading", dense_slot, n_qubits=6, n_reps=3, output_scale="learned",
                        bias_init="zero", angles="complex")
    assert isinstance(dense, DenseTwin) and dense.output_scale == "learned" and dense.bias_init == "zero"
    assert count_parameters(dense) == count_parameters(head) == 3 * 4095 + 10 + 1
    assert all(not p.is_complex() for p in dense.parameters())


@pytest.mark.parametrize("options", [{}, {"output_scale": "none", "bias_init": "normal"},
                                     {"n_reps": 3}, {"n_qubits": 4, "n_reps": 2}])
@pytest.mark.parametrize("sizes", [(32, 10), DIGITS, PAPER], ids=["32-10", "digits", "paper"])
def test_dense_twin_is_built_from_sizes_like_its_quantum_layer(sizes, options):
    """``DenseTwin(F, out, ...)`` takes DataReUploadingLinear's arguments and defaults, and matches its size."""
    if "n_qubits" in options:  # one qubit more than the minimum (the paper head: the minimum, 7)
        options = {**options, "n_qubits": min_qubits(*sizes) + (sizes != PAPER)}
    twin = DenseTwin(*sizes, **options)
    head = DataReUploadingLinear(*sizes, device="meta", **options)
    assert count_parameters(twin) == count_parameters(head)
    assert (twin.output_scale, twin.bias_init) == (head.output_scale, head.bias_init)
    assert twin.matched_to["n_qubits"] == head.n_qubits and twin.matched_to["n_reps"] == head.n_reps
    assert twin(torch.randn(2, sizes[0])).shape == (2, sizes[1])
    # the registry path still builds it for a slot, with the factory's (published) default readout
    slot_twin = create_layer("dense_twin", DenseSlot(*sizes), **options)
    slot_head = create_layer("data_reuploading", DenseSlot(*sizes), device="meta", **options)
    assert count_parameters(slot_twin) == count_parameters(slot_head)
    assert (slot_twin.output_scale, slot_twin.bias_init) == (slot_head.output_scale, slot_head.bias_init)


def test_conv_twin_is_built_from_sizes_like_its_quantum_layer():
    for args in [(1, 32), (3, 8, 2, 1)]:
        assert count_parameters(Conv3x3Twin(*args)) == count_parameters(FlippedQuanv3x3(*args))


@pytest.mark.parametrize("call,message", [
    (lambda: Conv3x3Twin(0, 3), r"Conv3x3Twin in_channels must be an integer >= 1, got 0"),
    (lambda: Conv3x3Twin(1, 3, padding=-1), r"Conv3x3Twin padding must be an integer >= 0"),
    (lambda: Conv3x3Twin(1, 3, dtype=torch.int64), r"Conv3x3Twin takes a real floating dtype"),
    (lambda: Conv3x3Twin(1, 3, dtype=torch.complex64), r"Conv3x3Twin takes a real floating dtype"),
    (lambda: Conv3x3Twin(2, 3)(torch.randn(1, 3, 5, 5)), r"Conv3x3Twin expects input \(B, 2, H, W\)"),
    (lambda: Conv3x3Twin(1, 3)(torch.randn(1, 1, 2, 5)), r"needs images of at least 3x3 after padding"),
    (lambda: Conv3x3Twin(1, 3)(torch.randn(1, 1, 5, 5, dtype=torch.complex64)), r"takes real input"),
    (lambda: DenseTwin(10, 4, hidden=0, outcomes=4), r"DenseTwin hidden must be an integer >= 1, got 0"),
    (lambda: DenseTwin(10, 4, hidden=2, outcomes=3), r"needs outcomes >= 4 input-driven outcomes; got outcomes=3"),
    (lambda: DenseTwin(10, 4, hidden=2, outcomes=4, constant_outcomes=-1), r"constant_outcomes must be an integer"),
    (lambda: DenseTwin(10, 4, hidden=2, outcomes=4, output_scale="big"), r"output_scale must be one of none, learned"),
    (lambda: DenseTwin(10, 4, hidden=2, outcomes=4, bias_init="uniform"), r"bias_init must be one of normal, zero"),
    (lambda: DenseTwin(10, 4, hidden=2, outcomes=4)(torch.randn(3, 11)),
     r"DenseTwin expects input \(\*, 10\), got \(3, 11\)"),
    (lambda: DenseTwin(10, 4, hidden=2, outcomes=4)(torch.randn(3, 10, dtype=torch.complex64)),
     r"DenseTwin takes real input"),
    (lambda: DenseTwin.matched(12544, 10, n_qubits=6),
     r"cannot match a classical twin to the re-uploading head: .*needs at least 7 qubits"),
    (lambda: DenseTwin.matched(100, 4, n_reps=0), r"cannot match a classical twin .* n_reps must be an integer >= 1"),
    (lambda: DenseTwin.matched(100, 4, output_scale="big"), r"output_scale must be one of none, learned"),
    (lambda: DenseTwin.matched(100, 4, bias_init="one"), r"bias_init must be one of normal, zero"),
    (lambda: DenseTwin.matched(4, 2, n_reps=1),
     r"no classical twin matches DataReUploadingLinear\(4 -> 2, n_qubits=1, n_reps=1\) within 1%: it has 5 parameters"),
    (lambda: create_layer("dense_twin", DenseSlot(1024, 10), n_reps=1), r"no classical twin matches"),
    (lambda: DenseTwin(10, 4, hidden=2), r"DenseTwin takes hidden and outcomes together .* or neither"),
    (lambda: DenseTwin(10, 4, n_reps=3, hidden=2, outcomes=4), r"with explicit hidden and outcomes leave them out"),
])
def test_bad_options_are_clear_errors(call, message):
    with pytest.raises(QcreepError, match=message):
        call()


def test_bad_twin_options_name_the_slot_in_a_model():
    with pytest.raises(QcreepError, match=r"slot 'head' .*layer 'dense_twin': no classical twin matches"):
        build_model((1, 12, 12), assignment=TWIN_ASSIGNMENT, n_reps=1)


# ============================================================================ registry


def test_twin_for_finds_the_registered_twins():
    assert twin_for("flipped_quanv3x3", "conv3x3") == "conv3x3_twin"
    assert twin_for("data_reuploading", "dense") == "dense_twin"
    assert get_layer_entry("conv3x3_twin", "conv3x3").twin_of == "flipped_quanv3x3"
    assert get_layer_entry("dense_twin", "dense").twin_of == "data_reuploading"
    assert get_layer_entry("data_reuploading", "dense").twin_of is None
    assert get_layer_entry("linear", "dense").twin_of is None
    assert {"conv:conv3x3_twin", "dense:dense_twin"} <= set(list_layers())
    entries = {(e.slot_kind, e.name): e for e in layer_entries()}
    assert entries[("dense", "dense_twin")].twin_of == "data_reuploading"
    assert not entries[("dense", "dense_twin")].quantum


def test_twin_for_errors():
    with pytest.raises(QcreepError, match=r"layer 'linear' for slot kind 'dense' is a classical layer; only quantum "
                                          r"layers have twins; quantum layers with a twin: amplitude_circuit, "
                                          r"angle_reuploading, data_reuploading"):
        twin_for("linear", "dense")
    with pytest.raises(QcreepError, match=r"layer 'conv3x3_twin' for slot kind 'conv' is the classical twin of "
                                          r"'flipped_quanv3x3'.*with a twin: flipped_quanv3x3"):
        twin_for("conv3x3_twin", "conv3x3")
    with pytest.raises(QcreepError, match=r"unknown layer 'nope' for slot kind 'dense'; valid: "):
        twin_for("nope", "dense")
    with pytest.raises(QcreepError, match=r"unknown layer 'data_reuploading' for slot kind 'conv'"):
        twin_for("data_reuploading", "conv3x3")
    with pytest.raises(QcreepError, match=r"unknown slot kind 'pool'"):
        twin_for("linear", "pool")


def test_registering_twins():
    @register_layer("test_q", slot_kind="dense", quantum=True, description="test quantum layer")
    def make_q(slot):
        return nn.Linear(slot.in_features, slot.out_features)

    try:
        with pytest.raises(QcreepError, match=r"quantum layer 'test_q' has no registered classical twin for slot kind "
                                              r"'dense'; quantum layers with a twin: amplitude_circuit, "
                                              r"angle_reuploading, data_reuploading"):
            twin_for("test_q", "dense")
        register_layer("test_q_twin", "dense", quantum=False, twin_of="test_q")(make_q)
        try:
            assert twin_for("test_q", "dense") == "test_q_twin"
            assert "test_q_twin" in list_layers("dense")
            with pytest.raises(QcreepError, match=r"quantum layer 'test_q' already has a classical twin for slot "
                                                  r"kind 'dense' \('test_q_twin'\)"):
                register_layer("test_q_twin2", "dense", quantum=False, twin_of="test_q")(make_q)
            with pytest.raises(QcreepError,
                               match=r"with a twin: amplitude_circuit, angle_reuploading, data_reuploading, "
                                     r"dressed_circuit, test_q"):
                twin_for("linear", "dense")
        finally:
            unregister_layer("test_q_twin", "dense")
        assert "test_q_twin2" not in list_layers("dense")
    finally:
        unregister_layer("test_q", "dense")
    with pytest.raises(QcreepError, match=r"cannot be quantum and a twin"):
        register_layer("test_bad", "dense", quantum=True, twin_of="data_reuploading")
    with pytest.raises(QcreepError, match=r"twin_of names a quantum layer"):
        register_layer("test_bad", "dense", quantum=False, twin_of="no good")
    with pytest.raises(QcreepError, match=r"cannot be its own twin"):
        register_layer("test_bad", "dense", quantum=False, twin_of="test_bad")
    # a twin may be registered before its quantum layer; until then twin_for reports the layer unknown
    register_layer("test_early_twin", "dense", quantum=False, twin_of="test_later")(make_q)
    try:
        with pytest.raises(QcreepError, match=r"unknown layer 'test_later'"):
            twin_for("test_later", "dense")
        register_layer("test_later", "dense", quantum=True)(make_q)
        try:
            assert twin_for("test_later", "dense") == "test_early_twin"
        finally:
            unregister_layer("test_later", "dense")
    finally:
        unregister_layer("test_early_twin", "dense")


def test_docstring_examples():
    result = doctest.testmod(twins, raise_on_error=False, verbose=False)
    assert result.attempted >= 8 and result.failed == 0
