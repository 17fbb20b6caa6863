"""FlippedQuanv3x3: the paper's flipped quanvolution, a drop-in for ``nn.Conv2d(C_in, C_out, 3)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qcreep.checks import check_int
from qcreep.errors import QcreepError
from qcreep.layers._angles import check_angle_mode, check_path, make_parameter, real_bias, real_dtype_of
from qcreep.layers.registry import register_layer
from qcreep.sim import expval_symmetric, norm_squared, special_unitary, unitarity_error
from qcreep.sim.solvers import check_solver, resolve_solver


class FlippedQuanv3x3(nn.Module):
    r"""Flipped quanvolution with 3x3 patches (Wang et al., arXiv:2409.17583).

    In the "flipped" model the trainable part is the quantum state and the data is the observable.
    For each pair (output channel ``o``, input channel ``c``) a two-qubit state

        |psi_oc> = SU(4)(theta_oc) |00>,   SU(4)(theta) = exp(i sum_k theta_k P_k)  (15 Pauli words)

    is measured against each 3x3 input patch ``A`` of channel ``c``, zero-padded to 4x4 (an extra
    bottom row and right column) and symmetrised, ``H = (A + A^T) / 2``:

        y_o = (1 / C_in) sum_c <psi_oc| H_c |psi_oc> + bias_o.

    Because the state does not depend on the data, this is exactly a convolution with kernel
    ``K_oc = Re(rho_oc)[:3, :3] / C_in``, ``rho = |psi><psi|``: the layer is **linear** in its input.

    Shapes:
        input ``(B, C_in, H, W)`` or ``(C_in, H, W)``; output ``(B, C_out, H', W')`` with
        ``H' = (H + 2 padding - 3) // stride + 1`` (as ``nn.Conv2d``).

    Parameters:
        ``theta``: ``(C_out, C_in, 15)`` angles; ``bias``: ``(C_out,)``. Both start standard normal,
        as in the published code. ``C_out * C_in * 15 + C_out`` parameters in all.

    Args:
        angles: ``"real"`` (physical, default) or ``"complex"`` (the published code's non-unitary
            compatibility mode; see :mod:`qcreep.layers._angles`).
        path: ``"fast"`` (one convolution with the kernel above, default) or ``"reference"`` (a
            simulation of the measurement patch by patch; slow, for tests).
        solver: how the ``C_out x C_in`` unitaries ``SU(4)(theta_oc)`` are computed: ``"eigh"`` (a
            batched eigendecomposition), ``"expm"`` (``torch.linalg.matrix_exp``, products only) or
            ``"auto"`` (default: ``"eigh"`` on CPU, ``"expm"`` on GPUs, which run small batched
            eigendecompositions one after another). See :mod:`qcreep.sim.solvers`.

    The states and the kernel are built once per forward, for all channel pairs together: one
    batched exponential, then ``K = R^T R / C_in`` with ``R`` the stacked real and imaginary parts
    of the first three amplitudes.

    Example:
        >>> import torch
        >>> conv = FlippedQuanv3x3(1, 4)
        >>> conv(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 4, 6, 6])
        >>> conv.kernel().shape, conv.resolved_solver()
        (torch.Size([4, 1, 3, 3]), 'eigh')
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, padding: int = 0, *,
                 angles: str = "real", path: str = "fast", solver: str = "auto", dtype=None, device=None):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                                 ("stride", stride, 1), ("padding", padding, 0)):
            check_int(value, f"FlippedQuanv3x3 {name}", low)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.padding = padding
        self.angles = check_angle_mode(angles)
        self.path = check_path(path)
        self.solver = check_solver(solver)
        self.theta = make_parameter((out_channels, in_channels, 15), angles, dtype, device)
        self.bias = make_parameter((out_channels,), angles, dtype, device)

    @property
    def num_parameters(self) -> int:
        return self.theta.numel() + self.bias.numel()

    def resolved_solver(self, device=None) -> str:
        """The solver that runs on ``device`` (default: the device of the parameters)."""
        return resolve_solver(self.solver, self.theta.device if device is None else device)

    def gates(self) -> torch.Tensor:
        """The ``(C_out, C_in, 4, 4)`` complex unitaries ``SU(4)(theta_oc)``."""
        return special_unitary(self.theta, self.resolved_solver())

    def states(self) -> torch.Tensor:
        """The ``(C_out, C_in, 4)`` complex states ``SU(4)(theta_oc)|00>`` (first unitary column)."""
        return self.gates()[..., :, 0]

    def kernel(self) -> torch.Tensor:
        """The equivalent ``(C_out, C_in, 3, 3)`` real convolution kernel ``Re(rho)[:3, :3] / C_in``."""
        psi = self.states()[..., :3]
        # Re(|psi><psi|)_ij = a_i a_j + b_i b_j = (R^T R)_ij with R = [a; b], from the real and
        # imaginary parts taken explicitly
        rows = torch.stack((psi.real, psi.imag), -2)
        return (rows.mT @ rows) / self.in_channels

    @torch.no_grad()
    def physicality(self, x: torch.Tensor | None = None) -> dict:
        """How far the gates are from unitary and the states from norm 1 (``x`` is not needed)."""
        gates = self.gates()
        norms = norm_squared(gates[..., :, 0]).sqrt()
        return {"max_unitarity_error": float(unitarity_error(gates).max()),
                "min_state_norm": float(norms.min()), "max_state_norm": float(norms.max())}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        if self.path == "reference":
            return self.forward_reference(x)
        return F.conv2d(x, self.kernel(), real_bias(self.bias), stride=self.stride, padding=self.padding)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Simulate ``<psi_oc| H |psi_oc>`` for every patch (slow; the contract the fast path meets)."""
        x = self._check_input(x)
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        batch, channels, height, width = x.shape
        h_out = (height + 2 * self.padding - 3) // self.stride + 1
        w_out = (width + 2 * self.padding - 3) // self.stride + 1
        patches = F.unfold(x, 3, padding=self.padding, stride=self.stride)  # (B, C*9, L)
        patches = patches.reshape(batch, channels, 3, 3, h_out * w_out).permute(0, 4, 1, 2, 3)  # (B, L, C, 3, 3)
        padded = F.pad(patches, (0, 1, 0, 1))  # 4x4: extra right column and bottom row
        observables = 0.5 * (padded + padded.transpose(-1, -2))
        psi = self.states()  # (O, C, 4)
        values = expval_symmetric(psi[None, None], observables[:, :, None])  # (B, L, O, C)
        out = values.mean(-1) + real_bias(self.bias)
        out = out.permute(0, 2, 1).reshape(batch, self.out_channels, h_out, w_out)
        return out[0] if unbatched else out

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_complex():
            raise QcreepError("FlippedQuanv3x3 takes real input; got a complex tensor")
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise QcreepError(f"FlippedQuanv3x3 expects input (B, {self.in_channels}, H, W) or "
                              f"({self.in_channels}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) + 2 * self.padding < 3:
            raise QcreepError(f"FlippedQuanv3x3 needs images of at least 3x3 after padding, got {tuple(x.shape)}")
        dtype = real_dtype_of(self.theta)
        return x.to(dtype) if x.dtype != dtype else x

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, stride={self.stride}, padding={self.padding}, "
                f"angles={self.angles!r}, solver={self.solver!r}, params={self.num_parameters}")


@register_layer("flipped_quanv3x3", slot_kind="conv3x3", quantum=True,
                description="FlippedQuanv3x3: 2-qubit SU(4) state per channel pair, patch as observable")
def make_flipped_quanv3x3(slot, *, angles="real", path="fast", solver="auto", dtype=None, device=None):
    return FlippedQuanv3x3(slot.in_channels, slot.out_channels, slot.stride, slot.padding,
                           angles=angles, path=path, solver=solver, dtype=dtype, device=device)
