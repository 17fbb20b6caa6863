"""Contract tests that every registered layer must meet, parametrized over the registry itself.

A new ``register_layer`` call (classical, quantum or third-party, registered before collection)
gets these tests for free: the right output shape and a real dtype, finite values, a gradient on
every parameter, a state-dict round trip, determinism under ``torch.manual_seed``, float64, and
(for quantum layers) real outputs in the published code's complex-angle mode. The whole public
contract, ``qcreep.testing.assert_valid_layer``, runs over the registry in ``test_layer_contract.py``.
"""

from __future__ import annotations

import pytest
import torch

from qcreep.layers import QuantumLayer, create_layer, get_layer_entry, layer_entries
from qcreep.slots import Conv3x3Slot, DenseSlot

# A small slot of each kind and an input batch shape that fits it.
SLOTS = {
    "conv": (Conv3x3Slot(2, 3), (4, 2, 6, 6), (4, 3, 4, 4)),
    "dense": (DenseSlot(10, 4), (5, 10), (5, 4)),
}
ENTRIES = layer_entries()
IDS = [f"{e.slot_kind}:{e.name}" for e in ENTRIES]
QUANTUM = [e for e in ENTRIES if e.quantum]
# the published code's complex-angle mode belongs to the paper's layers, whose factories take ``angles``
COMPLEX_MODE = [e for e in QUANTUM if e.accepted_options() is None or "angles" in e.accepted_options()]




def _options(entry, **extra):
    """``n_reps=2`` where the factory takes it (so quantum layers stay cheap), plus ``extra``."""
    options = dict(extra)
    accepted = entry.accepted_options()
    if accepted is None or "n_reps" in accepted:
        options["n_reps"] = 2
    return options


def _build(entry, seed=0, **extra):
    slot = SLOTS[entry.slot_kind][0]
    torch.manual_seed(seed)
    return create_layer(entry.name, slot, **_options(entry, **extra))


def _input(entry, dtype=torch.float32, seed=99):
    shape = SLOTS[entry.slot_kind][1]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def test_registry_is_not_empty_and_has_the_paper_layers():
    names = {(e.slot_kind, e.name) for e in ENTRIES}
    assert {("conv", "conv2d"), ("conv", "flipped_quanv3x3"), ("dense", "linear"),
            ("dense", "data_reuploading")} <= names
    assert {e.name for e in QUANTUM} >= {"flipped_quanv3x3", "data_reuploading"}
    assert {e.name for e in COMPLEX_MODE} >= {"flipped_quanv3x3", "data_reuploading"}
    for entry in ENTRIES:
        assert entry.slot_kind in SLOTS, f"no contract slot for kind {entry.slot_kind}"
        assert get_layer_entry(entry.name, entry.slot_kind) is entry
        assert entry.description


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_output_shape_dtype_and_finite(entry):
    layer = _build(entry)
    y = layer(_input(entry))
    assert tuple(y.shape) == SLOTS[entry.slot_kind][2]
    assert not y.is_complex()
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    # the slot's own shape arithmetic agrees with the layer
    slot = SLOTS[entry.slot_kind][0]
    assert tuple(y.shape[1:]) == slot.output_shape(SLOTS[entry.slot_kind][1][1:])


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_gradient_on_every_parameter(entry):
    layer = _build(entry)
    params = dict(layer.named_parameters())
    assert params, "a layer that fills a slot should have trainable parameters"
    y = layer(_input(entry))
    # random weights: a plain sum could have an identically zero gradient (probabilities sum to 1)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    (y * weights).sum().backward()
    for name, p in params.items():
        assert p.grad is not None, f"{name} gets no gradient"
        assert p.grad.shape == p.shape
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_gradient_reaches_the_input(entry):
    layer = _build(entry)
    x = _input(entry).requires_grad_(True)
    y = layer(x)
    (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(6))).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_state_dict_round_trip(entry):
    source = _build(entry, seed=1)
    target = _build(entry, seed=2)
    x = _input(entry)
    with torch.no_grad():
        before = target(x)
        expected = source(x)
    assert not torch.equal(before, expected), "two seeds gave the same layer"
    target.load_state_dict(source.state_dict())
    with torch.no_grad():
        assert torch.equal(target(x), expected)
    for (n1, p1), (n2, p2) in zip(source.state_dict().items(), target.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_deterministic_under_manual_seed(entry):
    x = _input(entry)
    with torch.no_grad():
        a = _build(entry, seed=7)(x)
        b = _build(entry, seed=7)(x)
        c = _build(entry, seed=8)(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_float64(entry):
    layer = _build(entry, dtype=torch.float64)
    for p in layer.parameters():
        assert p.dtype in (torch.float64, torch.complex128)
    x = _input(entry, dtype=torch.float64).requires_grad_(True)
    y = layer(x)
    assert y.dtype == torch.float64
    assert tuple(y.shape) == SLOTS[entry.slot_kind][2]
    assert torch.isfinite(y).all()
    y.sum().backward()
    for p in layer.parameters():
        assert p.grad is not None and p.grad.dtype == p.dtype


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_float64_agrees_with_float32(entry):
    """The same parameters in float32 and float64 give the same numbers up to float32 precision."""
    single = _build(entry, seed=3)
    double = _build(entry, seed=3, dtype=torch.float64)
    double.load_state_dict({k: v.to(torch.complex128 if v.is_complex() else torch.float64)
                            for k, v in single.state_dict().items()})
    with torch.no_grad():
        y32 = single(_input(entry))
        y64 = double(_input(entry, dtype=torch.float64))
    assert torch.allclose(y32.double(), y64, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_batch_rows_are_independent(entry):
    """Each sample's output depends only on that sample (no mixing across the batch)."""
    layer = _build(entry)
    x = _input(entry)
    with torch.no_grad():
        full = layer(x)
        single = torch.cat([layer(x[i:i + 1]) for i in range(x.shape[0])])
    assert torch.allclose(full, single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("entry", COMPLEX_MODE, ids=[f"{e.slot_kind}:{e.name}" for e in COMPLEX_MODE])
def test_quantum_complex_angles_give_real_output(entry):
    layer = _build(entry, angles="complex")
    assert any(p.is_complex() for p in layer.parameters())
    # give the angles imaginary parts, as training in this mode does
    with torch.no_grad():
        for p in layer.parameters():
            if p.is_complex():
                p.add_(0.1j * torch.randn(p.shape, generator=torch.Generator().manual_seed(11)))
    y = layer(_input(entry))
    assert not y.is_complex()
    assert y.dtype == torch.float32
    assert tuple(y.shape) == SLOTS[entry.slot_kind][2]
    assert torch.isfinite(y).all()
    (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(12))).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("entry", QUANTUM, ids=[f"{e.slot_kind}:{e.name}" for e in QUANTUM])
def test_quantum_real_angles_are_physical(entry):
    layer = _build(entry)
    assert not any(p.is_complex() for p in layer.parameters())
    assert isinstance(layer, QuantumLayer)
    report = layer.physicality(_input(entry))
    assert report["max_unitarity_error"] < 1e-4
    if "min_state_norm" in report:
        assert abs(report["min_state_norm"] - 1) < 1e-4
        assert abs(report["max_state_norm"] - 1) < 1e-4
