"""Tests for the quantum layers (FlippedQuanv3x3, DataReUploadingLinear), their argument checks,
and the layer registry.

The fast paths are checked against the patch-by-patch / matrix-exponential reference paths and
against the closed forms of the paper (kernel = Re(rho)[:3, :3] / C_in; output = probabilities).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qcreep.creep import quantum_layers
from qcreep.errors import QcreepError
from qcreep.layers import (
    DataReUploadingLinear,
    FlippedQuanv3x3,
    count_parameters,
    create_layer,
    list_layers,
    min_qubits,
    register_layer,
    unregister_layer,
)
from qcreep.sim import norm_squared, special_unitary
from qcreep.slots import Conv3x3Slot, DenseSlot

F64 = torch.float64
F32 = torch.float32
# both solvers of the unitaries (qcreep.sim.solvers) pass the same tests
SOLVERS = ["eigh", "expm"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(409_17583)


def perturb_imag(layer: nn.Module, scale: float = 0.3) -> None:
    """Give the complex-mode parameters non-zero imaginary parts (as training would)."""
    with torch.no_grad():
        for p in (layer.theta, layer.bias):
            p.copy_(torch.complex(p.real, scale * torch.randn_like(p.real)))


# ============================================================================ FlippedQuanv3x3

@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype,atol", [(F32, 1e-5), (F64, 1e-12)])
@pytest.mark.parametrize("c_in,c_out", [(1, 1), (3, 5), (32, 4)])
def test_quanv_fast_matches_reference(c_in, c_out, dtype, atol, solver):
    layer = FlippedQuanv3x3(c_in, c_out, solver=solver, dtype=dtype)
    x = torch.randn(2, c_in, 6, 5, dtype=dtype)
    fast = layer(x)
    ref = layer.forward_reference(x)
    assert fast.shape == ref.shape == (2, c_out, 4, 3)
    assert fast.dtype == ref.dtype == dtype
    assert torch.allclose(fast, ref, atol=atol, rtol=0)


@pytest.mark.parametrize("stride,padding", [(2, 0), (1, 1), (2, 1)])
def test_quanv_stride_padding_and_matches_conv_shape(stride, padding):
    layer = FlippedQuanv3x3(3, 2, stride=stride, padding=padding, dtype=F64)
    x = torch.randn(2, 3, 7, 6, dtype=F64)
    fast = layer(x)
    ref = layer.forward_reference(x)
    expected_shape = nn.Conv2d(3, 2, 3, stride=stride, padding=padding)(x.float()).shape
    assert fast.shape == expected_shape
    assert Conv3x3Slot(3, 2, stride, padding).output_shape((3, 7, 6)) == tuple(fast.shape[1:])
    assert torch.allclose(fast, ref, atol=1e-12, rtol=0)


def test_quanv_unbatched_input():
    layer = FlippedQuanv3x3(3, 4, padding=1, dtype=F64)
    x = torch.randn(3, 5, 5, dtype=F64)
    out = layer(x)
    assert out.shape == (4, 5, 5)
    assert torch.allclose(out, layer(x[None])[0], atol=1e-14)
    assert torch.allclose(layer.forward_reference(x), out, atol=1e-12)


def test_quanv_reference_path_option():
    fast = FlippedQuanv3x3(2, 3, dtype=F64)
    ref = FlippedQuanv3x3(2, 3, path="reference", dtype=F64)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 2, 5, 5, dtype=F64)
    assert torch.allclose(fast(x), ref(x), atol=1e-12)


def test_quanv_kernel_is_real_part_of_density_matrix():
    c_in, c_out = 3, 2
    layer = FlippedQuanv3x3(c_in, c_out, dtype=F64)
    psi = layer.states()
    assert psi.shape == (c_out, c_in, 4) and psi.dtype == torch.complex128
    # states are SU(4)(theta)|00>
    assert torch.allclose(psi, special_unitary(layer.theta)[..., 0], atol=1e-14)
    rho = psi[..., :, None] * psi[..., None, :].conj()
    expected = rho.real[..., :3, :3] / c_in
    kernel = layer.kernel()
    assert kernel.shape == (c_out, c_in, 3, 3) and kernel.dtype == F64
    assert torch.allclose(kernel, expected, atol=1e-14)
    x = torch.randn(2, c_in, 6, 6, dtype=F64)
    assert torch.allclose(layer(x), F.conv2d(x, expected, layer.bias), atol=1e-12)


def test_quanv_output_is_mean_of_expectations_by_hand():
    """One output pixel computed from the paper's formula with plain loops."""
    layer = FlippedQuanv3x3(2, 2, dtype=F64)
    x = torch.randn(2, 3, 3, dtype=F64)
    with torch.no_grad():
        psi = layer.states()
        out = layer(x)
        bias = layer.bias.clone()
    for o in range(2):
        total = 0.0
        for c in range(2):
            a = torch.zeros(4, 4, dtype=F64)
            a[:3, :3] = x[c]
            h = 0.5 * (a + a.T)
            total += complex(psi[o, c].conj() @ h.to(psi.dtype) @ psi[o, c]).real
        assert float(out[o, 0, 0]) == pytest.approx(total / 2 + float(bias[o]), abs=1e-12)


def test_quanv_is_linear_in_input():
    layer = FlippedQuanv3x3(3, 4, dtype=F64)
    x = torch.randn(2, 3, 6, 6, dtype=F64)
    y = torch.randn(2, 3, 6, 6, dtype=F64)
    a, b = 1.7, -0.6
    bias = layer.bias[None, :, None, None]
    lhs = layer(a * x + b * y) - bias
    rhs = a * (layer(x) - bias) + b * (layer(y) - bias)
    assert torch.allclose(lhs, rhs, atol=1e-12)
    assert (layer(x) - bias).abs().max() > 1e-2  # not trivially zero


def test_quanv_states_normalised_and_physical():
    layer = FlippedQuanv3x3(4, 3, dtype=F64)
    norms = norm_squared(layer.states())
    assert torch.allclose(norms, torch.ones(3, 4, dtype=F64), atol=1e-12)
    phys = layer.physicality()
    assert phys["max_unitarity_error"] < 1e-12
    assert phys["min_state_norm"] == pytest.approx(1, abs=1e-12)
    assert phys["max_state_norm"] == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
def test_quanv_gradcheck(solver):
    layer = FlippedQuanv3x3(2, 2, stride=1, padding=1, solver=solver, dtype=F64)
    x = torch.randn(1, 2, 4, 4, dtype=F64, requires_grad=True)
    theta = layer.theta.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)

    def fn(theta, bias, x):
        return torch.func.functional_call(layer, {"theta": theta, "bias": bias}, (x,))

    assert torch.autograd.gradcheck(fn, (theta, bias, x))
    # the reference path has the same gradient
    out = fn(theta, bias, x)
    w = torch.randn_like(out)
    g_fast = torch.autograd.grad((w * out).sum(), (theta, bias, x))
    ref_out = _reference_call(layer, theta, bias, x)
    g_ref = torch.autograd.grad((w * ref_out).sum(), (theta, bias, x))
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, atol=1e-12)
        assert a.abs().max() > 1e-6


def _reference_call(layer, theta, bias, x):
    class _Ref(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.forward_reference(x)

    return torch.func.functional_call(_Ref(layer), {"inner.theta": theta, "inner.bias": bias}, (x,))


def test_quanv_parameter_shapes_and_count():
    layer = FlippedQuanv3x3(3, 5)
    assert layer.theta.shape == (5, 3, 15)
    assert layer.bias.shape == (5,)
    assert layer.theta.dtype == layer.bias.dtype == torch.get_default_dtype()
    assert layer.num_parameters == 5 * 3 * 15 + 5 == count_parameters(layer)
    assert sorted(n for n, _ in layer.named_parameters()) == ["bias", "theta"]


def test_quanv_complex_mode():
    layer = FlippedQuanv3x3(3, 2, angles="complex", dtype=F64)
    assert layer.theta.is_complex() and layer.bias.is_complex()
    assert layer.theta.dtype == layer.bias.dtype == torch.complex128
    assert layer.theta.imag.abs().max() == 0  # starts on the unitary manifold
    x = torch.randn(2, 3, 5, 5, dtype=F64)
    assert layer.physicality()["max_unitarity_error"] < 1e-10
    perturb_imag(layer)
    out = layer(x)
    assert not out.is_complex() and out.dtype == F64
    assert torch.allclose(out, layer.forward_reference(x), atol=1e-11)
    phys = layer.physicality()
    assert phys["max_unitarity_error"] > 1e-2
    assert abs(phys["min_state_norm"] - 1) > 1e-3 or abs(phys["max_state_norm"] - 1) > 1e-3
    # bias contributes its real part only
    psi = layer.states()
    rho_re = psi.real[..., :, None] * psi.real[..., None, :] + psi.imag[..., :, None] * psi.imag[..., None, :]
    expected = F.conv2d(x, rho_re[..., :3, :3] / 3, layer.bias.real)
    assert torch.allclose(out, expected, atol=1e-12)


def test_quanv_complex_mode_float32_output_dtype_and_backward():
    layer = FlippedQuanv3x3(2, 2, angles="complex", dtype=F32)
    assert layer.theta.dtype == torch.complex64
    perturb_imag(layer)
    out = layer(torch.randn(1, 2, 4, 4))
    assert out.dtype == F32
    out.sum().backward()
    assert layer.theta.grad is not None and layer.theta.grad.is_complex()
    assert layer.theta.grad.imag.abs().max() > 0  # the imaginary parts are trained too
    assert torch.isfinite(torch.view_as_real(layer.theta.grad)).all()


def test_quanv_float64_input_into_float32_layer_is_cast():
    layer = FlippedQuanv3x3(1, 1, dtype=F32)
    x = torch.randn(1, 1, 4, 4, dtype=F64)
    out = layer(x)
    assert out.dtype == F32
    assert torch.allclose(out, layer(x.float()))


# ============================================================================ DataReUploadingLinear

@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype,atol", [(F32, 1e-4), (F64, 1e-10)])
@pytest.mark.parametrize("in_f,out_f,reps", [(14, 3, 2), (10, 10, 3), (40, 5, 2)])
def test_reupload_fast_matches_reference(in_f, out_f, reps, dtype, atol, solver):
    layer = DataReUploadingLinear(in_f, out_f, n_reps=reps, solver=solver, dtype=dtype)
    x = torch.randn(4, in_f, dtype=dtype)
    fast = layer(x)
    ref = layer.forward_reference(x)
    assert fast.shape == ref.shape == (4, out_f)
    assert fast.dtype == ref.dtype == dtype
    assert torch.allclose(fast, ref, atol=atol, rtol=0)


def test_reupload_leading_batch_dims():
    layer = DataReUploadingLinear(14, 3, n_reps=2, dtype=F64)
    x = torch.randn(2, 3, 14, dtype=F64)
    out = layer(x)
    assert out.shape == (2, 3, 3)
    flat = layer(x.reshape(6, 14)).reshape(2, 3, 3)
    assert torch.allclose(out, flat, atol=1e-14)
    single = layer(x[1, 2])
    assert single.shape == (3,)
    assert torch.allclose(single, out[1, 2], atol=1e-14)
    assert torch.allclose(layer.forward_reference(x), out, atol=1e-10)


@pytest.mark.parametrize("in_f,out_f,expected", [(12544, 10, 7), (1024, 10, 5), (1025, 10, 6),
                                                 (10, 10, 4), (16, 2, 2), (17, 2, 3), (1, 1, 1),
                                                 (4, 5, 3)])
def test_min_qubits(in_f, out_f, expected):
    assert min_qubits(in_f, out_f) == expected


@pytest.mark.parametrize("in_f,out_f,expected", [(1024, 10, 5), (10, 10, 4), (16, 2, 2)])
def test_reupload_default_n_qubits(in_f, out_f, expected):
    layer = DataReUploadingLinear(in_f, out_f, n_reps=1)
    assert layer.n_qubits == expected
    assert 4**layer.n_qubits >= in_f and 2**layer.n_qubits >= out_f
    assert layer.theta.shape == (1, 4**expected - 1)


def test_reupload_paper_head_picks_seven_qubits():
    layer = DataReUploadingLinear(12544, 10, n_reps=1)
    assert layer.n_qubits == 7
    assert layer.theta.shape == (1, 16383)
    assert layer.num_parameters == 16383 + 10 + 1  # and the learned output scale


def test_reupload_default_readout_is_the_one_that_trains():
    """A bare DataReUploadingLinear reads out as qcreep run does: a learned scale and zero biases."""
    layer = DataReUploadingLinear(14, 3, n_reps=1)
    assert (layer.output_scale, layer.bias_init) == ("learned", "zero")
    assert layer.log_scale is not None and torch.equal(layer.bias.detach(), torch.zeros(3))
    assert float(layer.log_scale.detach()) == pytest.approx(layer.n_qubits * math.log(2.0))
    assert layer.num_parameters == 1 * (4**2 - 1) + 3 + 1
    published = DataReUploadingLinear(14, 3, n_reps=1, output_scale="none", bias_init="normal")
    assert published.log_scale is None and published.num_parameters == 15 + 3
    # the registry factory (and so build_model) keeps the published readout: the paper's network
    slot_head = create_layer("data_reuploading", DenseSlot(14, 3), n_reps=1)
    assert (slot_head.output_scale, slot_head.bias_init) == ("none", "normal")


def test_reupload_explicit_n_qubits():
    layer = DataReUploadingLinear(10, 3, n_qubits=3, n_reps=2, dtype=F64)
    assert layer.n_qubits == 3 and layer.theta.shape == (2, 63)
    x = torch.randn(2, 10, dtype=F64)
    assert torch.allclose(layer(x), layer.forward_reference(x), atol=1e-10)


@pytest.mark.parametrize("in_f,out_f,n,needed", [(1024, 10, 4, 5), (10, 10, 3, 4), (16, 5, 2, 3)])
def test_reupload_too_few_qubits(in_f, out_f, n, needed):
    with pytest.raises(QcreepError, match=rf"DataReUploadingLinear\({in_f} -> {out_f}\) needs at least "
                                          rf"{needed} qubits .*got n_qubits={n}"):
        DataReUploadingLinear(in_f, out_f, n_qubits=n)


def test_reupload_too_many_qubits():
    with pytest.raises(QcreepError, match=r"supports at most 10 qubits; 11 were asked"):
        DataReUploadingLinear(5, 2, n_qubits=11, n_reps=1)


def test_reupload_outputs_are_probabilities():
    layer = DataReUploadingLinear(14, 3, n_reps=2, output_scale="none", bias_init="normal", dtype=F64)
    x = 3 * torch.randn(8, 14, dtype=F64)
    p = layer(x) - layer.bias
    assert (p >= 0).all() and (p <= 1).all()
    assert (p.sum(-1) <= 1 + 1e-12).all()
    assert (p.sum(-1) < 1 - 1e-6).any()  # one outcome of four is dropped

    full = DataReUploadingLinear(14, 4, n_reps=2, output_scale="none", dtype=F64)
    q = full(x) - full.bias
    assert (q >= 0).all()
    assert torch.allclose(q.sum(-1), torch.ones(8, dtype=F64), atol=1e-12)


def test_reupload_first_outputs_match_full_register():
    """Dropping outcomes only truncates: out_features=3 gives the first 3 of the 4 probabilities."""
    small = DataReUploadingLinear(14, 3, n_reps=2, dtype=F64)
    full = DataReUploadingLinear(14, 4, n_reps=2, dtype=F64)
    with torch.no_grad():
        full.theta.copy_(small.theta)
    x = torch.randn(5, 14, dtype=F64)
    assert torch.allclose(small(x) - small.bias, (full(x) - full.bias)[:, :3], atol=1e-14)


def test_reupload_final_states_by_hand():
    """The circuit from the paper, written with matrix_exp: |+>, then R x [SU(theta_r) exp(iH/R)]."""
    layer = DataReUploadingLinear(13, 4, n_reps=3, dtype=F64)
    x = torch.randn(13, dtype=F64)
    padded = torch.cat([x, torch.zeros(3, dtype=F64)]).reshape(4, 4)
    h = 0.5 * (padded + padded.T)
    psi = torch.full((4,), 0.5, dtype=torch.complex128)
    for r in range(3):
        psi = torch.linalg.matrix_exp(1j * h.to(psi.dtype) / 3) @ psi
        psi = special_unitary(layer.theta[r]) @ psi
    assert torch.allclose(layer.final_states(x), psi, atol=1e-10)
    # the default readout: a learned scale exp(a), a = log(2**n) at the start, and zero biases
    assert torch.allclose(layer(x), layer.log_scale.exp() * psi.abs() ** 2 + layer.bias, atol=1e-10)
    assert torch.allclose(layer.log_scale.exp(), torch.tensor(4.0, dtype=F64))


def test_reupload_physicality_real_mode():
    layer = DataReUploadingLinear(14, 3, n_reps=2, dtype=F64)
    phys = layer.physicality(torch.randn(5, 14, dtype=F64))
    assert phys["max_unitarity_error"] < 1e-12
    assert phys["min_state_norm"] == pytest.approx(1, abs=1e-12)
    assert phys["max_state_norm"] == pytest.approx(1, abs=1e-12)
    assert set(layer.physicality()) == {"max_unitarity_error"}


def test_reupload_complex_mode():
    layer = DataReUploadingLinear(14, 3, n_reps=2, angles="complex", output_scale="none", bias_init="normal",
                                  dtype=F64)
    assert layer.theta.dtype == layer.bias.dtype == torch.complex128
    x = torch.randn(5, 14, dtype=F64)
    assert layer.physicality(x)["max_unitarity_error"] < 1e-10  # imag parts start at zero
    perturb_imag(layer)
    out = layer(x)
    assert out.dtype == F64 and not out.is_complex()
    assert torch.allclose(out, layer.forward_reference(x), atol=1e-10)
    phys = layer.physicality(x)
    assert phys["max_unitarity_error"] > 1e-2
    assert abs(phys["min_state_norm"] - 1) > 1e-2 or abs(phys["max_state_norm"] - 1) > 1e-2
    # outputs are no longer probabilities of a normalised state; the real bias part is added
    psi = layer.final_states(x)
    assert torch.allclose(out, psi.abs()[:, :3] ** 2 + layer.bias.real, atol=1e-12)


def test_reupload_complex_mode_float32_gradients():
    layer = DataReUploadingLinear(14, 3, n_reps=2, angles="complex", dtype=F32)
    assert layer.theta.dtype == torch.complex64
    perturb_imag(layer, 0.1)
    out = layer(torch.randn(3, 14))
    assert out.dtype == F32
    out.sum().backward()
    for p in (layer.theta, layer.bias):
        assert p.grad is not None and torch.isfinite(torch.view_as_real(p.grad)).all()
    assert layer.theta.grad.imag.abs().max() > 0


def _functional(layer, reference=False):
    def fn(theta, bias, x):
        if reference:
            saved = layer.path
            layer.path = "reference"
        try:
            return torch.func.functional_call(layer, {"theta": theta, "bias": bias}, (x,))
        finally:
            if reference:
                layer.path = saved
    return fn


@pytest.mark.parametrize("solver", SOLVERS)
def test_reupload_gradcheck(solver):
    layer = DataReUploadingLinear(14, 3, n_reps=2, solver=solver, dtype=F64)
    theta = (0.5 * layer.theta.detach()).clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)
    x = torch.randn(2, 14, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(_functional(layer), (theta, bias, x), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("solver", SOLVERS)
def test_reupload_gradient_fast_equals_reference(solver):
    layer = DataReUploadingLinear(14, 4, n_reps=3, solver=solver, dtype=F64)
    theta = layer.theta.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)
    # a degenerate data Hamiltonian (all-zero input) next to a random one
    x = torch.cat([torch.zeros(1, 14, dtype=F64), torch.randn(2, 14, dtype=F64)]).requires_grad_(True)
    w = torch.randn(3, 4, dtype=F64)
    g_fast = torch.autograd.grad((w * _functional(layer)(theta, bias, x)).sum(), (theta, bias, x))
    g_ref = torch.autograd.grad((w * _functional(layer, True)(theta, bias, x)).sum(), (theta, bias, x))
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, atol=1e-10)
        assert a.abs().max() > 1e-4


def test_reupload_is_nonlinear_in_input():
    layer = DataReUploadingLinear(14, 3, n_reps=2, dtype=F64)
    x = torch.randn(4, 14, dtype=F64)
    y = torch.randn(4, 14, dtype=F64)
    bias = layer.bias
    def f(v):
        return layer(v) - bias

    assert (f(2 * x) - 2 * f(x)).abs().max() > 1e-2
    assert (f(x + y) - f(x) - f(y)).abs().max() > 1e-2
    # a linear map would send 0 to 0; the circuit does not
    assert f(torch.zeros(14, dtype=F64)).abs().max() > 1e-3


def test_reupload_parameter_shapes():
    layer = DataReUploadingLinear(40, 5, n_reps=4, output_scale="none")
    assert layer.n_qubits == 3
    assert layer.theta.shape == (4, 63)
    assert layer.bias.shape == (5,)
    assert layer.num_parameters == 4 * 63 + 5 == count_parameters(layer)
    assert layer.trainable_unitaries().shape == (4, 8, 8)


# ============================================================================ argument errors

def test_quanv_wrong_channel_count():
    layer = FlippedQuanv3x3(3, 2)
    with pytest.raises(QcreepError, match=r"FlippedQuanv3x3 expects input \(B, 3, H, W\) or \(3, H, W\), "
                                          r"got \(2, 2, 5, 5\)"):
        layer(torch.randn(2, 2, 5, 5))
    with pytest.raises(QcreepError, match=r"got \(2, 5, 5\)"):
        layer.forward_reference(torch.randn(2, 5, 5))


def test_quanv_2d_input():
    layer = FlippedQuanv3x3(1, 2)
    with pytest.raises(QcreepError, match=r"FlippedQuanv3x3 expects input \(B, 1, H, W\) or \(1, H, W\), "
                                          r"got \(5, 5\)"):
        layer(torch.randn(5, 5))


def test_quanv_too_small_and_complex_input():
    layer = FlippedQuanv3x3(1, 1)
    with pytest.raises(QcreepError, match=r"needs images of at least 3x3 after padding, got \(1, 1, 2, 5\)"):
        layer(torch.randn(1, 1, 2, 5))
    assert FlippedQuanv3x3(1, 1, padding=1)(torch.randn(1, 1, 2, 2)).shape == (1, 1, 2, 2)
    with pytest.raises(QcreepError, match=r"FlippedQuanv3x3 takes real input; got a complex tensor"):
        layer(torch.randn(1, 1, 4, 4, dtype=torch.complex64))


@pytest.mark.parametrize("kwargs,match", [
    ({"in_channels": 0, "out_channels": 1}, r"FlippedQuanv3x3 in_channels must be an integer >= 1, got 0"),
    ({"in_channels": 1, "out_channels": 2.0}, r"FlippedQuanv3x3 out_channels must be an integer >= 1, got 2.0"),
    ({"in_channels": 1, "out_channels": 1, "stride": 0}, r"stride must be an integer >= 1, got 0"),
    ({"in_channels": 1, "out_channels": 1, "padding": -1}, r"padding must be an integer >= 0, got -1"),
    ({"in_channels": 1, "out_channels": 1, "angles": "foo"},
     r"angles must be one of real, complex \('complex' is the non-physical published-code mode\), got 'foo'"),
    ({"in_channels": 1, "out_channels": 1, "path": "foo"}, r"path must be 'fast' or 'reference', got 'foo'"),
    ({"in_channels": 1, "out_channels": 1, "dtype": torch.float16},
     r"quantum layers take dtype float32 or float64, got torch.float16"),
])
def test_quanv_bad_arguments(kwargs, match):
    with pytest.raises(QcreepError, match=match):
        FlippedQuanv3x3(**kwargs)


def test_reupload_wrong_feature_count_and_complex_input():
    layer = DataReUploadingLinear(14, 3, n_reps=1)
    with pytest.raises(QcreepError, match=r"DataReUploadingLinear expects input \(\*, 14\), got \(2, 13\)"):
        layer(torch.randn(2, 13))
    with pytest.raises(QcreepError, match=r"expects input \(\*, 14\), got \(\)"):
        layer(torch.tensor(1.0))
    with pytest.raises(QcreepError, match=r"DataReUploadingLinear takes real input; got a complex tensor"):
        layer(torch.randn(2, 14, dtype=torch.complex64))
    with pytest.raises(QcreepError, match=r"takes real input"):
        layer.forward_reference(torch.randn(2, 14, dtype=torch.complex64))


@pytest.mark.parametrize("kwargs,match", [
    ({"n_reps": 0}, r"DataReUploadingLinear n_reps must be an integer >= 1, got 0"),
    ({"n_reps": True}, r"DataReUploadingLinear n_reps must be an integer >= 1, got True"),
    ({"angles": "foo"},
     r"angles must be one of real, complex \('complex' is the non-physical published-code mode\), got 'foo'"),
    ({"path": "foo"}, r"path must be 'fast' or 'reference', got 'foo'"),
    ({"n_qubits": 2.5}, r"needs at least 2 qubits .* got n_qubits=2.5"),
])
def test_reupload_bad_arguments(kwargs, match):
    with pytest.raises(QcreepError, match=match):
        DataReUploadingLinear(14, 3, **kwargs)


def test_reupload_bad_sizes():
    with pytest.raises(QcreepError, match=r"DataReUploadingLinear in_features must be an integer >= 1, got 0"):
        DataReUploadingLinear(0, 3)
    with pytest.raises(QcreepError, match=r"DataReUploadingLinear out_features must be an integer >= 1, got -2"):
        DataReUploadingLinear(4, -2)


def test_errors_are_value_errors():
    # callers that catch ValueError also see qcreep's errors
    with pytest.raises(ValueError):
        DataReUploadingLinear(14, 3, n_reps=0)


# ============================================================================ registry

DENSE_LAYERS = ["amplitude_circuit", "amplitude_twin", "angle_reuploading", "angle_reuploading_twin",
                "data_reuploading", "dense_twin", "dressed_circuit", "dressed_twin", "linear"]


def test_list_layers_per_kind():
    assert list_layers("conv3x3") == ["conv2d", "conv3x3_twin", "flipped_quanv3x3", "quanvolution", "quanvolution_twin",
                                      "trainable_quanvolution", "trainable_quanvolution_twin"]
    assert list_layers("dense") == DENSE_LAYERS
    everything = list_layers()
    for name in ("conv:conv2d", "conv:flipped_quanv3x3", "dense:data_reuploading", "dense:linear",
                 "conv:conv3x3_twin", "dense:dense_twin"):
        assert name in everything


def test_list_layers_unknown_kind():
    with pytest.raises(QcreepError, match=r"unknown slot kind 'pool'; valid kinds: conv, dense"):
        list_layers("pool")


def test_create_registered_layers_from_slots():
    conv_slot = Conv3x3Slot(3, 5, stride=2, padding=1)
    quanv = create_layer("flipped_quanv3x3", conv_slot, angles="complex", n_reps=7, dtype=F64)
    assert isinstance(quanv, FlippedQuanv3x3)
    assert (quanv.in_channels, quanv.out_channels, quanv.stride, quanv.padding) == (3, 5, 2, 1)
    assert quanv.angles == "complex" and quanv.theta.dtype == torch.complex128
    conv = create_layer("conv2d", conv_slot, angles="complex", n_reps=7)  # quantum options dropped
    assert isinstance(conv, nn.Conv2d)
    assert conv.in_channels == 3 and conv.out_channels == 5 and conv.stride == (2, 2)
    x = torch.randn(2, 3, 8, 8)
    assert conv(x).shape == quanv(x.double()).shape == (2, 5, 4, 4)

    dense_slot = DenseSlot(14, 3)
    dru = create_layer("data_reuploading", dense_slot, n_reps=2, angles="real", kernel_size=9)
    assert isinstance(dru, DataReUploadingLinear)
    assert dru.n_qubits == 2 and dru.theta.shape == (2, 15) and dru.angles == "real"
    lin = create_layer("linear", dense_slot, n_reps=2)
    assert isinstance(lin, nn.Linear) and (lin.in_features, lin.out_features) == (14, 3)


def test_duplicate_registration_is_an_error():
    with pytest.raises(QcreepError, match=r"layer 'linear' is already registered for slot kind 'dense'"):
        register_layer("linear", "dense", quantum=False)(lambda slot: nn.Identity())
    assert list_layers("dense") == DENSE_LAYERS


def test_unknown_layer_lists_valid_names():
    with pytest.raises(QcreepError, match=r"unknown layer 'nope' for slot kind 'dense'; valid: "
                                          r"amplitude_circuit, amplitude_twin, angle_reuploading, "
                                          r"angle_reuploading_twin, data_reuploading, dense_twin, "
                                          r"dressed_circuit, dressed_twin, linear"):
        create_layer("nope", DenseSlot(4, 2))
    with pytest.raises(QcreepError, match=r"valid: conv2d, conv3x3_twin, flipped_quanv3x3"):
        create_layer("linear", Conv3x3Slot(1, 1))
    with pytest.raises(QcreepError, match=r"unknown layer 'nope'"):
        unregister_layer("nope", "dense")


def test_register_bad_name_or_kind():
    with pytest.raises(QcreepError, match=r"unknown slot kind 'pool'"):
        register_layer("x", "pool", quantum=False)
    with pytest.raises(QcreepError, match=r"layer names are letters, digits, '_' and '-'; got 'bad name!'"):
        register_layer("bad name!", "dense", quantum=False)


def test_third_party_registration_round_trip():
    seen = {}

    @register_layer("test_scaled_identity", slot_kind="dense", quantum=False, description="test layer")
    def make(slot, *, scale=1.0):
        seen["slot"] = slot
        layer = nn.Linear(slot.in_features, slot.out_features, bias=False)
        with torch.no_grad():
            layer.weight.fill_(scale)
        return layer

    try:
        assert list_layers("dense") == [*DENSE_LAYERS, "test_scaled_identity"]
        assert "dense:test_scaled_identity" in list_layers()
        slot = DenseSlot(3, 2)
        layer = create_layer("test_scaled_identity", slot, scale=2.0, angles="complex", n_reps=3)
        assert seen["slot"] is slot
        assert torch.equal(layer(torch.ones(3)), torch.full((2,), 6.0))
        # the same name may exist under another slot kind
        register_layer("test_scaled_identity", slot_kind="conv3x3", quantum=False)(lambda slot: nn.Identity())
        try:
            assert "test_scaled_identity" in list_layers("conv3x3")
        finally:
            unregister_layer("test_scaled_identity", "conv3x3")
    finally:
        unregister_layer("test_scaled_identity", "dense")
    assert list_layers("dense") == DENSE_LAYERS
    assert list_layers("conv3x3") == ["conv2d", "conv3x3_twin", "flipped_quanv3x3", "quanvolution", "quanvolution_twin",
                                      "trainable_quanvolution", "trainable_quanvolution_twin"]
    with pytest.raises(QcreepError, match=r"unknown layer 'test_scaled_identity'"):
        create_layer("test_scaled_identity", DenseSlot(3, 2))


def test_factory_with_var_kwargs_receives_everything():
    received = {}

    @register_layer("test_kwargs_layer", slot_kind="conv3x3", quantum=False)
    def make(slot, **options):
        received.update(options)
        return nn.Identity()

    try:
        create_layer("test_kwargs_layer", Conv3x3Slot(1, 1), angles="real", n_reps=4)
        assert received == {"angles": "real", "n_reps": 4}
    finally:
        unregister_layer("test_kwargs_layer", "conv3x3")
    assert "test_kwargs_layer" not in list_layers("conv3x3")


def test_a_quantum_registration_must_build_a_quantum_layer():
    @register_layer("test_not_quantum", slot_kind="dense", quantum=True)
    def make(slot):
        return nn.Linear(slot.in_features, slot.out_features)

    try:
        with pytest.raises(QcreepError, match=r"layer 'test_not_quantum' is registered as quantum but its factory "
                                              r"returned Linear, which is not a qcreep.layers.QuantumLayer"):
            create_layer("test_not_quantum", DenseSlot(3, 2))
    finally:
        unregister_layer("test_not_quantum", "dense")


# ============================================================================ more gradients

@pytest.mark.parametrize("solver", SOLVERS)
def test_quanv_complex_mode_gradcheck(solver):
    layer = FlippedQuanv3x3(2, 2, angles="complex", solver=solver, dtype=F64)
    perturb_imag(layer, 0.2)
    theta = layer.theta.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)
    x = torch.randn(1, 2, 3, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(_functional(layer), (theta, bias, x))


@pytest.mark.parametrize("solver", SOLVERS)
def test_reupload_complex_mode_gradcheck(solver):
    layer = DataReUploadingLinear(5, 3, n_reps=2, angles="complex", solver=solver, dtype=F64)
    perturb_imag(layer, 0.2)
    theta = layer.theta.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)
    x = torch.randn(2, 5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(_functional(layer), (theta, bias, x), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("solver", SOLVERS)
def test_reupload_float32_gradients_match_float64(solver):
    l32 = DataReUploadingLinear(60, 8, n_reps=4, solver=solver, dtype=F32)
    l64 = DataReUploadingLinear(60, 8, n_reps=4, solver=solver, dtype=F64)
    with torch.no_grad():
        l64.theta.copy_(l32.theta.double())
        l64.bias.copy_(l32.bias.double())
    x = torch.randn(5, 60)
    w = torch.randn(5, 8)
    grads = []
    for layer, dtype in ((l32, F32), (l64, F64)):
        xx = x.to(dtype).detach().clone().requires_grad_(True)
        (w.to(dtype) * layer(xx)).sum().backward()
        grads.append((layer.theta.grad.double(), xx.grad.double()))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4 * float(b.abs().max()), rtol=0)


# ============================================================================ empty batches and limits

@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("path", ["fast", "reference"])
def test_reupload_empty_batch(path, solver):
    layer = DataReUploadingLinear(5, 3, n_reps=2, path=path, solver=solver, dtype=F64)
    assert nn.Linear(5, 3)(torch.zeros(0, 5)).shape == (0, 3)
    assert layer(torch.zeros(0, 5, dtype=F64)).shape == (0, 3)


def test_quanv_reference_empty_batch():
    layer = FlippedQuanv3x3(1, 2, dtype=F64)
    x = torch.zeros(0, 1, 4, 4, dtype=F64)
    assert layer(x).shape == (0, 2, 2, 2)
    assert layer.forward_reference(x).shape == (0, 2, 2, 2)


def test_reupload_too_many_qubits_message_names_the_cause():
    with pytest.raises(QcreepError, match=r"supports at most 10 qubits; 11 were asked for or needed for 5 inputs "
                                          r"and 2000 outputs"):
        DataReUploadingLinear(5, 2000)


# ============================================================================ solvers

@pytest.mark.parametrize("cls,args", [(FlippedQuanv3x3, (2, 3)), (DataReUploadingLinear, (14, 3))])
def test_solver_option_and_resolved_solver(cls, args):
    layer = cls(*args, dtype=F64)
    assert layer.solver == "auto" and layer.resolved_solver() == "eigh"  # auto: eigh on CPU
    assert layer.resolved_solver("cuda") == "expm"  # and products only on a GPU
    assert "solver='auto'" in repr(layer)
    for solver in SOLVERS:
        assert cls(*args, solver=solver).resolved_solver("cuda") == solver
    with pytest.raises(QcreepError, match=r"solver must be one of auto, eigh, expm, got 'qr'"):
        cls(*args, solver="qr")


def test_solvers_give_the_same_layers():
    torch.manual_seed(3)
    x = torch.randn(3, 40, dtype=F64)
    outs = []
    for solver in SOLVERS:
        torch.manual_seed(4)
        head = DataReUploadingLinear(40, 5, n_reps=3, solver=solver, dtype=F64)
        out = head(x)
        out.sum().backward()
        outs.append((out.detach(), head.theta.grad))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-11, rtol=0)
    images = torch.randn(2, 3, 6, 6, dtype=F64)
    torch.manual_seed(5)
    conv_eigh = FlippedQuanv3x3(3, 4, solver="eigh", dtype=F64)
    torch.manual_seed(5)
    conv_expm = FlippedQuanv3x3(3, 4, solver="expm", dtype=F64)
    assert torch.allclose(conv_eigh(images), conv_expm(images), atol=1e-12, rtol=0)
    assert torch.allclose(conv_eigh.kernel(), conv_expm.kernel(), atol=1e-14, rtol=0)


def test_registry_factories_pass_the_solver():
    conv = create_layer("flipped_quanv3x3", Conv3x3Slot(2, 3), solver="expm", n_reps=4)
    head = create_layer("data_reuploading", DenseSlot(14, 3), solver="expm", n_reps=2)
    assert conv.solver == "expm" and head.solver == "expm" and head.n_reps == 2
    assert create_layer("conv2d", Conv3x3Slot(2, 3), solver="expm").weight.shape == (3, 2, 3, 3)
    from qcreep.models import build_model

    model = build_model((1, 12, 12), level=2, solver="expm")
    solvers = {name: layer.solver for name, layer in quantum_layers(model).items()}
    assert solvers and set(solvers.values()) == {"expm"}


@pytest.mark.parametrize("solver", SOLVERS)
def test_reupload_float32_states_normalised_at_seven_qubits(solver):
    """Features of order 1 to 10 on the paper's register: states stay normalised to 1e-4 in float32."""
    torch.manual_seed(6)
    head = DataReUploadingLinear(12544, 10, n_qubits=7, n_reps=10, solver=solver)
    assert head.physicality()["max_unitarity_error"] < 1e-5
    for scale in (1.0, 10.0):
        x = scale * (1 + torch.rand(4, 12544))  # entries from `scale` to 2 `scale`
        phys = head.physicality(x)
        assert abs(phys["min_state_norm"] - 1) < 1e-4 and abs(phys["max_state_norm"] - 1) < 1e-4
        x = scale * torch.randn(4, 12544)
        phys = head.physicality(x)
        assert abs(phys["min_state_norm"] - 1) < 1e-4 and abs(phys["max_state_norm"] - 1) < 1e-4


@pytest.mark.parametrize("solver", SOLVERS)
def test_quanv_states_normalised_and_gates_unitary_in_float32(solver):
    layer = FlippedQuanv3x3(8, 16, solver=solver)
    phys = layer.physicality()
    assert phys["max_unitarity_error"] < 1e-5
    assert abs(phys["min_state_norm"] - 1) < 1e-5 and abs(phys["max_state_norm"] - 1) < 1e-5
