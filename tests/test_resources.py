"""Resource estimates of the quantum layers (qcreep.hardware.resources)."""

from __future__ import annotations

import doctest
import itertools
import math
import sys

import numpy as np
import pytest
import torch

from qcreep.errors import QcreepError
from qcreep.hardware import export, resources
from qcreep.hardware.resources import (
    cx_lower_bound,
    estimate_resources,
    format_resources,
    patch_settings,
    patch_shots,
    patch_variance_bound,
    probability_shots,
    qsd_cx_count,
)
from qcreep.layers import DataReUploadingLinear, FlippedQuanv3x3
from qcreep.models import build_model

F64 = torch.float64


def small_model(level: int = 2, **options):
    torch.manual_seed(3)
    return build_model((1, 8, 8), level=level, num_classes=4, n_reps=2, dtype=F64, **options)


def test_rows_of_a_level_2_model():
    rows = estimate_resources(small_model(), (1, 8, 8), precision=0.02, transpile=False)
    assert [r["slot"] for r in rows] == ["conv1", "conv2", "head"]
    conv1, conv2, head = rows
    assert conv1["output_shape"] == [32, 6, 6] and conv2["input_shape"] == [32, 6, 6]
    assert conv1["settings"] == ["XX", "XZ", "YY", "ZX", "ZZ"]
    # C_out * C_in * H' * W' * settings circuits per image; C_out * C_in * settings per model
    assert conv1["executions_per_image"] == 32 * 1 * 36 * 5
    assert conv2["executions_per_image"] == 16 * 32 * 16 * 5
    assert conv2["executions_per_model"] == 16 * 32 * 5
    assert conv1["shots_per_execution"] == math.ceil(4.6875 / 0.02**2)
    assert conv2["shots_per_execution"] == math.ceil(4.6875 / (32 * 0.02**2))
    for r in rows:
        assert r["shots_per_image"] == r["executions_per_image"] * r["shots_per_execution"]
        assert r["two_qubit_gates"] is None and r["depth"] is None
    assert head["qubits"] == 4 and head["n_reps"] == 2 and head["executions_per_image"] == 1
    assert head["shots_per_execution"] == 625  # ceil(1 / (4 * 0.02**2))
    assert head["reference"] == {"unitaries": 4, "two_qubit_qsd": 4 * 100, "two_qubit_lower_bound": 4 * 61}


def test_level_1_and_bare_layers():
    rows = estimate_resources(small_model(level=1), (1, 8, 8), transpile=False)
    assert [r["layer"] for r in rows] == ["flipped_quanv3x3", "flipped_quanv3x3"]
    assert estimate_resources(small_model(level=0), (1, 8, 8)) == []
    head = DataReUploadingLinear(10, 3, n_reps=1, output_scale="learned", dtype=F64)
    (row,) = estimate_resources(head, (10,), transpile=False)
    assert row["slot"] == "DataReUploadingLinear" and row["qubits"] == 2
    # the learned readout scale exp(a) = 4 multiplies the standard error
    assert row["readout_scale"] == pytest.approx(4.0)
    assert row["shots_per_execution"] == probability_shots(0.01, 4.0) == 40000


def test_shot_formulas():
    assert probability_shots(0.01) == 2500
    assert probability_shots(0.1) == 25
    assert patch_shots(0.01) == 46875
    assert patch_shots(0.01, 32) == math.ceil(46875 / 32)
    with pytest.raises(QcreepError, match="precision must be a number"):
        probability_shots(0)
    with pytest.raises(QcreepError, match="precision"):
        estimate_resources(small_model(), (1, 8, 8), precision=-1)


def test_patch_variance_bound_is_the_maximum_over_sign_patches_and_bounds_random_patches():
    settings = patch_settings()
    assert settings == ("XX", "XZ", "YY", "ZX", "ZZ")
    bound = patch_variance_bound()
    assert bound == 75 / 16
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        a = torch.nn.functional.pad(2 * torch.rand(3, 3, generator=gen, dtype=F64) - 1, (0, 1, 0, 1))
        groups = export.assign_terms(export.pauli_decomposition(0.5 * (a + a.T)), settings)
        assert sum(sum(abs(c) for _, c in terms) ** 2 for terms in groups.values()) <= bound + 1e-12


def test_the_bound_covers_the_exact_variance_of_the_estimator():
    """With S shots per setting the estimator's exact variance is sum_s Var(h_s) / S <= B / S."""
    quantum_info = pytest.importorskip("qiskit.quantum_info")
    torch.manual_seed(4)
    conv = FlippedQuanv3x3(1, 1, dtype=F64)
    gen = torch.Generator().manual_seed(1)
    images = [torch.tensor(signs, dtype=F64).reshape(1, 3, 3)
              for signs in itertools.islice(itertools.product((1.0, -1.0), repeat=9), 0, 512, 97)]
    images += [2 * torch.rand(1, 3, 3, generator=gen, dtype=F64) - 1 for _ in range(3)]
    for image in images:
        terms = export.pauli_decomposition(export.patch_hamiltonian(conv, image))
        variance = 0.0
        for setting, circuit in export.measurement_circuits(conv, image):
            probs = quantum_info.Statevector(circuit.remove_final_measurements(inplace=False)).probabilities()
            values = np.zeros(4)
            for label, coeff in export.assign_terms(terms, patch_settings())[setting]:
                mask = sum(1 << (1 - k) for k, ch in enumerate(label) if ch != "I")
                values += coeff * np.array([(-1) ** bin(j & mask).count("1") for j in range(4)])
            variance += float(probs @ values**2 - (probs @ values) ** 2)
        assert variance <= patch_variance_bound() + 1e-12


def test_analytic_references():
    assert [qsd_cx_count(n) for n in (2, 3, 4, 7)] == [3, 20, 100, 7660]
    assert [cx_lower_bound(n) for n in (2, 3, 4, 7)] == [3, 14, 61, 4091]


def test_transpiled_counts_are_cached_and_within_the_references():
    pytest.importorskip("qiskit")
    resources._TRANSPILED.clear()
    first = estimate_resources(small_model(), (1, 8, 8), optimization_level=1)
    conv1, conv2, head = first
    assert conv1["two_qubit_gates"] == 3 and conv1["depth"] > 0  # one generic SU(4) gate
    assert conv1["cached"] is False and conv2["cached"] is True  # same kind and size
    lower, upper = head["reference"]["two_qubit_lower_bound"], head["reference"]["two_qubit_qsd"]
    assert lower <= head["two_qubit_gates"] <= upper
    assert head["transpile_seconds"] >= 0 and head["depth"] >= head["two_qubit_gates"] // 4
    again = estimate_resources(small_model(), (1, 8, 8), optimization_level=1)
    assert all(r["cached"] for r in again)
    assert [r["two_qubit_gates"] for r in again] == [r["two_qubit_gates"] for r in first]
    text = format_resources(first, title="small")
    assert "| conv1 | flipped_quanv3x3 | 2 | 5,760 |" in text and "per model" in text


def test_without_qiskit_the_analytic_fields_remain(monkeypatch):
    monkeypatch.setitem(sys.modules, "qiskit", None)
    rows = estimate_resources(small_model(), (1, 8, 8))
    assert all(r["two_qubit_gates"] is None and r["depth"] is None for r in rows)
    assert all('pip install "qcreep[hardware]"' in " ".join(r["notes"]) for r in rows)
    assert rows[0]["executions_per_image"] == 5760
    text = format_resources(rows)
    assert "n/a" in text and 'pip install "qcreep[hardware]"' in text


def test_complex_angle_layers_have_no_transpiled_counts():
    rows = estimate_resources(small_model(angles="complex"), (1, 8, 8))
    assert all(r["two_qubit_gates"] is None for r in rows)
    assert "not unitary" in rows[-1]["notes"][-1]


def test_wrong_input_shape_is_one_line():
    with pytest.raises(QcreepError, match=r"does not take inputs of shape \(1, 9, 8\)"):
        estimate_resources(small_model(), (1, 9, 8))


def test_docstring_examples():
    result = doctest.testmod(resources, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- the newer layer families


def family_model():
    from qcreep.layers import AmplitudeCircuit, AngleReuploading, DressedCircuit, Quanvolution, TrainableQuanvolution

    torch.manual_seed(5)
    return torch.nn.Sequential(
        TrainableQuanvolution(1, 2, kernel_size=2, dtype=F64),       # 4 qubits, 7x7 positions
        Quanvolution(2, 2, kernel_size=(1, 3), stride=2, circuit_seed=3, dtype=F64),  # 3 qubits
        torch.nn.Flatten(),
        DressedCircuit(2 * 4 * 3, 5, width=3, depth=2, dtype=F64),
        AngleReuploading(5, 4, layers=3, dtype=F64),
        AmplitudeCircuit(4, 3, dtype=F64))


def _layer_inputs(model, x):
    captured = {}
    def recorder(name):
        def hook(module, args):
            captured.setdefault(name, args[0][0])  # returns None: the input is not replaced
        return hook

    hooks = [m.register_forward_pre_hook(recorder(name))
             for name, m in model.named_modules() if name and not isinstance(m, torch.nn.Flatten)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return captured


def test_family_rows_count_the_circuits_the_layers_return():
    model = family_model()
    rows = estimate_resources(model, (1, 8, 8), precision=0.05, transpile=False)
    assert [(r["slot"], r["layer"], r["qubits"]) for r in rows] == [
        ("0", "trainable_quanvolution", 4), ("1", "quanvolution", 3), ("3", "dressed_circuit", 3),
        ("4", "angle_reuploading", 4), ("5", "amplitude_circuit", 2)]
    inputs = _layer_inputs(model, torch.rand(1, 1, 8, 8, dtype=F64))
    for row in rows:
        layer = model.get_submodule(row["slot"])
        circuits = layer.circuits(inputs[row["slot"]])
        assert row["executions_per_image"] == len(circuits)
        for circuit in circuits:
            one = sum(len(g.qubits) == 1 for g in circuit.gates)
            two = sum(len(g.qubits) == 2 for g in circuit.gates)
            assert all(len(g.qubits) <= 2 for g in circuit.gates)
            prep = 0 if circuit.initial is None else circuit.initial.numel()
            assert row["circuit_gates"] == {"one_qubit": one, "two_qubit": two, "state_preparation": prep}
        assert row["shots_per_image"] == row["executions_per_image"] * row["shots_per_execution"]
        assert row["two_qubit_gates"] is None and "transpile=False" in " ".join(row["notes"])
    text = format_resources(rows)
    assert "| 3 | dressed_circuit | 3 | 3 |" in text and "2-amplitude" not in text and "4-amplitude" in text


def _max_output_variance(layer, x, shots):
    """The largest exact variance over the layer's outputs of the shot estimate, noise-free, for inputs ``x``."""
    from qcreep.layers import AmplitudeCircuit, AngleReuploading, DressedCircuit

    with torch.no_grad():
        if isinstance(layer, DressedCircuit):
            z = layer.expectations(x)
            return float(((1 - z**2) @ layer.post.weight.square().T).max()) / shots
        if isinstance(layer, AmplitudeCircuit):
            p = layer.probabilities(x)
            return float(layer.log_scale.exp()) ** 2 * float((p * (1 - p)).max()) / shots
        if isinstance(layer, AngleReuploading):
            return float(layer.log_scale.exp()) ** 2 * float((1 - layer.expectations(x) ** 2).max()) / shots
        patches = layer._patches(x)[0]  # (B, P, C, n)
        probs = layer.states(patches) ** 2  # (B, P, C, 2^n)
        index = torch.arange(2**layer.n_qubits)
        signs = torch.stack([1 - 2 * ((index >> (layer.n_qubits - 1 - q)) & 1) for q in range(layer.n_qubits)],
                            -1).to(F64)
        z = probs @ signs
        second = torch.einsum("bpcj,ji,jk->bpcik", probs, signs, signs)
        cov = second - z[..., :, None] * z[..., None, :]
        w = layer.mix_weight.reshape(layer.out_channels, layer.in_channels, layer.n_qubits)
        var = torch.einsum("oci,bpcik,ock->bpo", w, cov, w)
        return float(var.max()) / shots


def test_family_shots_reach_the_precision():
    model = family_model()
    eps = 0.05
    rows = {r["slot"]: r for r in estimate_resources(model, (1, 8, 8), precision=eps, transpile=False)}
    captured = {}

    def recorder(name):
        def hook(module, args):
            captured[name] = args[0]
        return hook

    hooks = [m.register_forward_pre_hook(recorder(name)) for name, m in model.named_modules() if name in rows]
    with torch.no_grad():
        model(torch.rand(6, 1, 8, 8, dtype=F64) * 2 - 1)
    for h in hooks:
        h.remove()
    assert set(captured) == set(rows)
    for slot, row in rows.items():
        layer, shots = model.get_submodule(slot), row["shots_per_execution"]
        variance = _max_output_variance(layer, captured[slot], shots)
        assert 0 < variance <= eps**2 * (1 + 1e-9), slot
        # the shots are those of the formula (module docstring)
        assert resources.family_shots(layer, eps) == shots and shots > 1
    dressed = model.get_submodule("3")
    bound = float(dressed.post.weight.detach().square().sum(1).max())
    assert rows["3"]["shots_per_execution"] == math.ceil(bound / eps**2 - 1e-9)
    amplitude = model.get_submodule("5")
    assert rows["5"]["shots_per_execution"] == probability_shots(eps, float(amplitude.log_scale.detach().exp()))


def test_family_transpiled_counts_are_generic_and_cached():
    pytest.importorskip("qiskit")
    resources._TRANSPILED.clear()
    rows = estimate_resources(family_model(), (1, 8, 8), precision=0.05)
    for row in rows:
        listed = row["circuit_gates"]["two_qubit"]
        assert row["cached"] is False and row["depth"] > 0 and row["transpile_seconds"] >= 0
        if row["circuit_gates"]["state_preparation"]:
            assert row["two_qubit_gates"] >= listed  # plus the synthesised state preparation
        else:
            assert row["two_qubit_gates"] == listed  # each CNOT or CZ becomes one CX
    again = estimate_resources(family_model(), (1, 8, 8), precision=0.05)
    assert all(r["cached"] for r in again)
    assert [r["two_qubit_gates"] for r in again] == [r["two_qubit_gates"] for r in rows]
