"""The end-to-end Hamiltonian-embedding classifier: fast path, reference, PennyLane, gradients, errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from qcreep.endtoend import HamEmbeddingClassifier, hamembedding
from qcreep.errors import QcreepError
from qcreep.modelspec import make_model

F64 = torch.float64


def images(batch, side, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, side, side, generator=g, dtype=F64) * 2 - 1
    x[:, :, :1] = -1          # a blank row, as padded images have: repeated eigenvalues
    return x


@pytest.mark.parametrize("readout", ["published", "first_qubits"])
@pytest.mark.parametrize("side", [8, 6])
def test_fast_path_equals_the_dense_reference(readout, side):
    torch.manual_seed(1)
    model = HamEmbeddingClassifier((1, side, side), 4, layers=3, readout=readout, dtype=F64)
    x = images(5, side)
    fast, ref = model(x), model.forward_reference(x)
    assert fast.dtype == F64 and fast.shape == (5, 4)
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)
    states = model.final_states(x)
    torch.testing.assert_close(states.abs().square().sum(-1), torch.ones(5, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(states, model.final_states(x, path="reference"), atol=1e-12, rtol=0)


def test_readouts_marginalise_the_right_qubits():
    torch.manual_seed(2)
    model = HamEmbeddingClassifier((1, 8, 8), 4, layers=2, dtype=F64)
    x = images(3, 8)
    probs = model.final_states(x).abs().square()                # (3, 8): qubits 0, 1, 2
    # published: projectors |j><j| (x) I on qubits 0-1, j < 4 -> all of them here
    torch.testing.assert_close(model(x), probs.reshape(3, 4, 2).sum(-1), atol=1e-13, rtol=0)
    first = HamEmbeddingClassifier((1, 8, 8), 2, layers=2, readout="first_qubits", dtype=F64)
    first.load_state_dict(model.state_dict())
    torch.testing.assert_close(first(x), probs.reshape(3, 2, 4).sum(-1), atol=1e-13, rtol=0)
    torch.testing.assert_close(first(x).sum(-1), torch.ones(3, dtype=F64), atol=1e-12, rtol=0)


def test_matches_pennylane_on_the_same_circuit():
    qml = pytest.importorskip("pennylane")
    torch.manual_seed(3)
    model = HamEmbeddingClassifier((1, 8, 8), 4, layers=2, dtype=F64)
    x = images(2, 8, seed=4)
    a = model.hamiltonians(x).numpy()
    times = model.times.detach().numpy()
    theta = model.theta.detach().numpy()
    wires = [0, 1, 2]
    dev = qml.device("default.qubit", wires=3)

    @qml.qnode(dev, interface="numpy")
    def circuit(a_img):
        for w in wires:
            qml.Hadamard(w)
        for layer in range(2):
            qml.exp(qml.Hermitian(a_img, wires=wires), -0.5j * times[layer])
            qml.SpecialUnitary(theta[layer], wires=wires)
        return qml.probs(wires=[0, 1])

    expected = np.stack([np.asarray(circuit(a[i])) for i in range(2)])
    np.testing.assert_allclose(model(x).detach().numpy(), expected, atol=1e-10, rtol=0)
    assert np.ptp(expected) > 1e-3          # not a uniform distribution


def test_parameter_gradients_agree_with_finite_differences():
    torch.manual_seed(5)
    model = HamEmbeddingClassifier((1, 4, 4), 2, layers=2, dtype=F64)
    x = images(3, 4)
    lam, vecs = model.spectrum(x)
    names = [name for name, _ in model.named_parameters()]
    start = tuple(p.detach().clone().requires_grad_() for _, p in model.named_parameters())

    def f(*params):
        return _logits_with(model, dict(zip(names, params)), lam, vecs)

    assert torch.autograd.gradcheck(f, start, eps=1e-6, atol=1e-8)


def _logits_with(model, params, lam, vecs):
    return torch.func.functional_call(_SpectrumLogits(model), {f"model.{k}": v for k, v in params.items()},
                                      (lam, vecs))


class _SpectrumLogits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, lam, vecs):
        return self.model.logits_from_spectrum(lam, vecs)


def test_input_gradients_go_through_the_reference_path():
    torch.manual_seed(6)
    model = HamEmbeddingClassifier((1, 4, 4), 2, layers=2, dtype=F64)
    x = images(2, 4).requires_grad_()
    assert torch.autograd.gradcheck(model, (x,), eps=1e-6, atol=1e-7)


def test_gates_are_unitary_and_the_parameter_count_is_L_times_4_to_the_n():
    model = hamembedding((1, 32, 32), 8, layers=10)
    assert model.n_qubits == 5
    assert model.num_parameters == 10 * 4**5 == sum(p.numel() for p in model.parameters())
    assert model.physicality()["unitarity_error"] < 1e-5


def test_registered_model_spec_pickles_and_moves_dtype():
    model = make_model("hamembedding", (1, 12, 12), 8, seed=0)
    assert isinstance(model, HamEmbeddingClassifier) and model.n_qubits == 4
    again = make_model("hamembedding", (1, 12, 12), 8, seed=0)
    assert torch.equal(model.theta, again.theta)
    x = images(2, 12).float()
    out = model(x)
    clone = pickle.loads(pickle.dumps(model))
    torch.testing.assert_close(clone(x), out, atol=0, rtol=0)
    wide = model.double()
    assert wide(x.double()).dtype == F64
    torch.testing.assert_close(wide(x.double()).float(), out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (3, 32, 32)}, "square grey images"),
    ({"input_shape": (1, 32, 30)}, "square grey images"),
    ({"num_classes": 17}, "do not fit the published readout of 5 qubits"),
    ({"layers": 0}, "layers"),
    ({"readout": "logits"}, "readout must be one of"),
])
def test_bad_settings_are_one_line_errors(kwargs, match):
    with pytest.raises(QcreepError, match=match):
        HamEmbeddingClassifier(**kwargs)


def test_wrong_input_shape_is_refused():
    model = HamEmbeddingClassifier((1, 8, 8), 4, layers=1)
    with pytest.raises(QcreepError, match=r"expects input \(B, 1, 8, 8\)"):
        model(torch.zeros(2, 1, 9, 9))


def test_published_capacity_allows_eight_classes_on_five_qubits():
    model = HamEmbeddingClassifier((1, 28, 28), 8, layers=1)        # 28 -> padded to 32
    with torch.no_grad():
        total = float(model(torch.zeros(1, 1, 28, 28)).sum())
    assert model.n_qubits == 5 and 0.0 < total <= 1.0 + 1e-6


# --- a subset of classes, and the end-to-end model as a rung of `qcreep run` -------------------


def test_classes_select_and_relabel_in_class_order():
    from qcreep.datasources import load_data, parse_classes

    assert parse_classes("0-3") == ["0", "1", "2", "3"]
    assert parse_classes(["1,5", "7"]) == ["1", "5", "7"]
    full_train, full_test, info = load_data("digits")
    train, test, sub = load_data("digits", classes=["7", "2-3"], max_train=50)
    assert sub.num_classes == 3 and sub.classes == ["2", "3", "7"]
    assert len(train) == 50 and set(train.y.tolist()) <= {0, 1, 2}
    expected = full_test.x[torch.isin(full_test.y, torch.tensor([2, 3, 7]))]
    assert torch.equal(test.x, expected)
    relabelled = {2: 0, 3: 1, 7: 2}
    kept = full_test.y[torch.isin(full_test.y, torch.tensor([2, 3, 7]))]
    assert test.y.tolist() == [relabelled[int(v)] for v in kept]
    assert info.num_classes == 10


@pytest.mark.parametrize("classes, match", [
    (["11"], "class '11' is not a class of digits"),
    (["3"], "keeps 1 class of digits; a classifier needs two"),
    (["5-2"], "class range '5-2' is empty"),
])
def test_bad_classes_are_one_line_errors(classes, match):
    from qcreep.config import TrainConfig
    from qcreep.errors import QcreepError

    with pytest.raises(QcreepError, match=match):
        TrainConfig(dataset="digits", classes=classes).validate().fingerprint()


def test_classes_enter_the_fingerprint_only_when_given():
    from qcreep.config import TrainConfig

    plain = TrainConfig(dataset="digits").validate()
    eight = TrainConfig(dataset="digits", classes=["0-7"]).validate()
    assert "classes" not in plain.fingerprint()
    assert eight.fingerprint()["classes"] == [str(k) for k in range(8)]
    assert plain.run_id != eight.run_id


def test_end_to_end_model_runs_beside_the_ladder_from_the_cli(tmp_path, capsys):
    from qcreep.cli import main

    out = tmp_path / "out"
    common = ["--data", "digits", "--classes", "0-7", "--seeds", "1", "--epochs", "1", "--no-tune", "--lr", "0.01",
              "--max-train", "300", "--max-test", "100", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(["run", "--model", "hamembedding", *common]) == 0
    assert main(["run", "--levels", "0", *common]) == 0
    recs = sorted((out / "records").glob("*.json"))
    assert len(recs) == 2
    table = capsys.readouterr().out
    assert "hamembedding on digits" in table
    ham = json.loads(next(p for p in recs if "hamembedding" in p.name).read_text())
    assert ham["config"]["classes"] == [str(k) for k in range(8)]
    assert ham["n_params"] == 10 * 4**4          # 12x12 digits -> 16x16, 4 qubits, L = 10
    assert len(ham["test_accs"]) == 1 and 0 <= ham["test_accs"][0] <= 100
    report = (out / "report.md").read_text()
    assert "### Each rung against the end-to-end quantum model" in report
    assert "| digits | level 0 | hamembedding (end-to-end) | real | 1 |" in report
    assert "Classes: hamembedding on digits, digits kept classes 0, 1, 2, 3, 4, 5, 6, 7 only" in report \
        or "Classes: digits, hamembedding on digits kept classes 0, 1, 2, 3, 4, 5, 6, 7 only" in report
