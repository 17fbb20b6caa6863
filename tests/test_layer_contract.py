"""``qcreep.testing.assert_valid_layer``: every registered layer meets the contract, a third-party
quantum layer can meet it too, and each check fails on a layer planted with the defect it is for."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qcreep.layers import QuantumLayer, layer_entries, register_layer, unregister_layer
from qcreep.sim.program import Circuit, Gate
from qcreep.slots import ConvSlot, DenseSlot
from qcreep.testing import assert_valid_layer

SLOTS = {"conv": [ConvSlot(2, 3, 3), ConvSlot(2, 3, 5, stride=2, padding=1), ConvSlot(1, 2, 3, dilation=2)],
         "dense": [DenseSlot(10, 4), DenseSlot(20, 3)]}
CASES = [(e, s) for e in layer_entries() for s in SLOTS[e.slot_kind]]
QUANTUM_CHECKS = {"shapes", "batch", "gradients", "gradcheck", "dtype", "reference", "physicality", "circuits",
                  "export:qiskit", "export:pennylane", "declared", "seed", "state_dict", "pickle"}


def _options(entry) -> dict:
    accepted = entry.accepted_options()
    return {"n_reps": 2} if accepted is None or "n_reps" in accepted else {}


def _refusal(entry, slot):
    """Why a quantum layer's class cannot fill ``slot`` (its ``fits``: too many qubits), or None."""
    from qcreep.layers import create_layer

    if not entry.quantum:
        return None
    with torch.random.fork_rng(devices=[]):
        cls = type(create_layer(entry.name, SLOTS[entry.slot_kind][0], **_options(entry)))
    return cls.fits(slot)


@pytest.mark.parametrize("entry,slot", CASES, ids=[f"{e.name}-{s.describe()}" for e, s in CASES])
def test_every_registered_layer_meets_the_contract(entry, slot):
    reason = _refusal(entry, slot)
    if reason is not None:  # e.g. a quanvolution's 5x5 kernel, 25 qubits: refused with the reason, not built
        from qcreep.errors import QcreepError
        from qcreep.layers import create_layer

        assert "qubits" in reason and "\n" not in reason
        with pytest.raises(QcreepError, match="qubits"):
            create_layer(entry.name, slot, **_options(entry))
        return
    report = assert_valid_layer(entry.name, slot, options=_options(entry))
    if entry.quantum:
        assert set(report["checks"]) == QUANTUM_CHECKS and report["skipped"] == {}
    else:
        assert set(report["checks"]) == QUANTUM_CHECKS - {"reference", "physicality", "circuits", "export:qiskit",
                                                         "export:pennylane", "declared"}
        assert set(report["skipped"]) == {"reference", "physicality", "circuits", "export", "declared"}


# --------------------------------------------------------------------------------------------
# a third-party quantum layer, written against the declared interface


def _ry(angle: torch.Tensor) -> torch.Tensor:
    """``(..., 2, 2)`` real RY(angle) = [[cos a/2, -sin a/2], [sin a/2, cos a/2]]."""
    c, s = torch.cos(angle / 2), torch.sin(angle / 2)
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


class AngleProduct(QuantumLayer):
    """Feature ``i`` as RY(x_i) then a trainable RY(theta_i) on qubit ``i``; the first ``out`` basis
    probabilities plus a bias. The state is a product, so the fast path builds it as one Kronecker
    product per batch, and the reference runs the circuits gate by gate."""

    slot_kind = "dense"

    def __init__(self, in_features: int, out_features: int, *, defect: str = "", dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.n_qubits, self.defect = in_features, out_features, in_features, defect
        self.theta = nn.Parameter(torch.rand(in_features, dtype=dtype) * 2 * math.pi)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype))

    @classmethod
    def qubits_for(cls, slot) -> int:
        return slot.in_features

    def _amplitudes(self, x):
        a = x + self.theta
        return torch.stack((torch.cos(a / 2), torch.sin(a / 2)), -1)  # (B, n, 2), real: RY|0>

    def forward(self, x):
        amps = self._amplitudes(x)
        state = amps[:, 0]
        for i in range(1, self.n_qubits):  # a loop over qubits, not samples
            state = (state[:, :, None] * amps[:, i, None, :]).reshape(x.shape[0], -1)
        if self.defect == "batch":
            state = state - 0.01 * state.mean(0, keepdim=True)
        return state[:, : self.out_features] ** 2 + self.bias

    def forward_reference(self, x):
        rows = []
        for row in x:  # one sample at a time: the state as a Kronecker product of RY(x_i + theta_i)|0>
            state = torch.ones(1, dtype=x.dtype)
            for i in range(self.n_qubits):
                a = row[i] + self.theta[i]
                state = torch.kron(state, torch.stack((torch.cos(a / 2), torch.sin(a / 2))))
            rows.append(state[: self.out_features] ** 2 + self.bias)
        out = torch.stack(rows)
        return out + 1e-6 if self.defect == "reference" else out

    def circuits(self, x):
        gates = []
        for i in range(self.n_qubits):
            gates.append(Gate(f"RY(x{i})", (i,), _ry(x[i].detach().double()).to(torch.complex128)))
            theta = self.theta[i].detach().double() * (1.5 if self.defect == "circuits" else 1.0)
            gates.append(Gate(f"RY(theta{i})", (i,), _ry(theta).to(torch.complex128)))
        return [Circuit(self.n_qubits, gates, label="AngleProduct")]

    def from_measurements(self, x, values):
        return values[0][: self.out_features] + self.bias.detach().double()

    def physicality(self, x=None):
        u = _ry(self.theta.detach())
        eye = torch.eye(2, dtype=u.dtype)
        return {"max_unitarity_error": float((u.mT @ u - eye).abs().max())}


def test_a_third_party_quantum_layer_meets_the_contract_as_a_registered_name():
    @register_layer("angle_product_test", slot_kind="dense", quantum=True, description="RY product (test)",
                    qubits=AngleProduct.qubits_for)
    def make(slot, *, dtype=None, device=None):
        return AngleProduct(slot.in_features, slot.out_features, dtype=dtype)

    try:
        report = assert_valid_layer("angle_product_test", DenseSlot(3, 2))
    finally:
        unregister_layer("angle_product_test", "dense")
    assert set(report["checks"]) == QUANTUM_CHECKS


def test_an_instance_skips_only_the_seed_check():
    torch.manual_seed(0)
    report = assert_valid_layer(AngleProduct(3, 2), DenseSlot(3, 2))
    assert set(report["checks"]) == QUANTUM_CHECKS - {"seed"}
    assert set(report["skipped"]) == {"seed"}


# --------------------------------------------------------------------------------------------
# each check fails on the defect it is for


class ComplexOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 2))

    def forward(self, x):
        return (x @ self.w).to(torch.complex64)


class _WrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.cos(x) * 1.01  # a 1 % error in the derivative


class WrongGrad(nn.Linear):
    def forward(self, x):
        return _WrongBackward.apply(super().forward(x))


class Unpicklable(nn.Linear):
    def __init__(self, *args):
        super().__init__(*args)
        self.hook = lambda t: t   # a lambda attribute cannot be pickled

    def forward(self, x):
        return self.hook(super().forward(x))


class WrongQubits(AngleProduct):
    @classmethod
    def qubits_for(cls, slot) -> int:
        return slot.in_features + 1


@pytest.mark.parametrize("make,check", [
    (lambda: ComplexOut(), "shapes"),
    (lambda: AngleProduct(3, 2, defect="batch"), "batch"),
    (lambda: WrongGrad(3, 2), "gradcheck"),
    (lambda: AngleProduct(3, 2, defect="reference", dtype=torch.float64), "reference"),
    (lambda: AngleProduct(3, 2, defect="circuits"), "circuits"),
    (lambda: WrongQubits(3, 2), "declared"),
    (lambda: Unpicklable(3, 2), "pickle"),
], ids=["complex-output", "mixes-rows", "wrong-backward", "reference-off-by-1e-6", "circuit-wrong-angle",
        "wrong-qubit-count", "unpicklable"])
def test_each_check_catches_its_defect(make, check):
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match=rf"assert_valid_layer\(\w+\): {check}:"):
        assert_valid_layer(make(), DenseSlot(3, 2))


def test_an_unseeded_factory_fails_the_seed_check():
    state = {"calls": 0}

    @register_layer("unseeded_test", slot_kind="dense", quantum=False, description="draws its own weights (test)")
    def make(slot, *, dtype=None, device=None):
        state["calls"] += 1
        layer = nn.Linear(slot.in_features, slot.out_features)
        generator = torch.Generator().manual_seed(1000 + state["calls"])  # ignores torch.manual_seed
        with torch.no_grad():
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
        return layer

    try:
        with pytest.raises(AssertionError, match=r"seed: two layers built under the same torch.manual_seed differ"):
            assert_valid_layer("unseeded_test", DenseSlot(3, 2))
    finally:
        unregister_layer("unseeded_test", "dense")
