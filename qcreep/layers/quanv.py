"""The paper's flipped quanvolution, a drop-in for ``nn.Conv2d(C_in, C_out, k)`` for any kernel size.

:class:`FlippedQuanv` takes any ``k_h x k_w`` kernel, stride, padding and dilation;
:class:`FlippedQuanv3x3` is the paper's 3x3 layer. Both are registered as ``flipped_quanv3x3``
for ``conv`` slots (the name is the paper's; it fills a slot of any kernel size).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from qcreep.checks import check_int
from qcreep.errors import QcreepError
from qcreep.layers._angles import check_angle_mode, check_path, make_parameter, real_bias, real_dtype_of
from qcreep.layers.base import QuantumLayer
from qcreep.layers.registry import register_layer
from qcreep.sim import expval_symmetric, norm_squared, special_unitary, unitarity_error
from qcreep.sim.paulis import pauli_sum
from qcreep.sim.program import Circuit, Gate
from qcreep.sim.solvers import check_solver, resolve_solver
from qcreep.slots import as_pair


def patch_qubits(kernel_size) -> int:
    """Qubits of the flipped quanvolution's state for a kernel: ``max(1, ceil(log2 k))``, ``k = max(k_h, k_w)``.

    The ``k_h x k_w`` patch is zero-padded to the ``2**q x 2**q`` observable, so 3x3 takes 2 qubits,
    5x5 takes 3 and 1x1 or 2x2 take 1.

    Example:
        >>> [patch_qubits(k) for k in (1, 2, 3, 4, 5, 8, 9)]
        [1, 1, 2, 2, 3, 3, 4]
    """
    k = max(as_pair(kernel_size))
    return max(1, math.ceil(math.log2(k)))


def _pair_of(value, what: str, minimum: int) -> tuple[int, int]:
    pair = as_pair(value) if not isinstance(value, (tuple, list)) or len(value) == 2 else None
    if pair is None:
        raise QcreepError(f"FlippedQuanv {what} must be an integer or a pair of integers, got {value!r}")
    for v in pair:
        check_int(v, f"FlippedQuanv {what}", minimum)
    return pair


class FlippedQuanv(QuantumLayer):
    r"""Flipped quanvolution with ``k_h x k_w`` patches (Wang et al., arXiv:2409.17583).

    In the "flipped" model the trainable part is the quantum state and the data is the observable.
    For each pair (output channel ``o``, input channel ``c``) a ``q``-qubit state

        |psi_oc> = SU(2^q)(theta_oc) |0...0>,   SU(2^q)(theta) = exp(i sum_k theta_k P_k)  (4^q - 1 Pauli words)

    with ``q = max(1, ceil(log2 max(k_h, k_w)))`` (2 qubits for 3x3, 3 for 5x5) is measured against
    each ``k_h x k_w`` input patch ``A`` of channel ``c``, zero-padded to ``2^q x 2^q`` (extra rows at
    the bottom, extra columns on the right) and symmetrised, ``H = (A + A^T) / 2``:

        y_o = (1 / C_in) sum_c <psi_oc| H_c |psi_oc> + bias_o.

    Because the state does not depend on the data, and ``Re(rho)`` is symmetric, this is exactly a
    convolution with kernel ``K_oc = Re(rho_oc)[:k_h, :k_w] / C_in``, ``rho = |psi><psi|``: the layer
    is **linear** in its input. Stride, padding (zeros) and dilation act as in ``nn.Conv2d``.

    Shapes:
        input ``(B, C_in, H, W)`` or ``(C_in, H, W)``; output ``(B, C_out, H', W')`` with
        ``H' = (H + 2 padding - dilation (k_h - 1) - 1) // stride + 1`` (as ``nn.Conv2d``).

    Parameters:
        ``theta``: ``(C_out, C_in, 4^q - 1)`` angles; ``bias``: ``(C_out,)``. Both start standard
        normal, as in the published code. ``C_out C_in (4^q - 1) + C_out`` parameters in all
        (``15 C_in C_out + C_out`` for 3x3).

    Args:
        kernel_size, stride, padding, dilation: an int or an ``(h, w)`` pair each, as ``nn.Conv2d``.
        angles: ``"real"`` (physical, default) or ``"complex"`` (the published code's non-unitary
            compatibility mode; see :mod:`qcreep.layers._angles`).
        path: ``"fast"`` (one convolution with the kernel above, default) or ``"reference"`` (a
            simulation of the measurement patch by patch; slow, for tests).
        solver: how the ``C_out x C_in`` unitaries ``SU(2^q)(theta_oc)`` are computed: ``"eigh"`` (a
            batched eigendecomposition), ``"expm"`` (``torch.linalg.matrix_exp``, products only) or
            ``"auto"`` (default: ``"eigh"`` on CPU, ``"expm"`` on GPUs, which run small batched
            eigendecompositions one after another). See :mod:`qcreep.sim.solvers`.

    The states and the kernel are built once per forward, for all channel pairs together: one
    batched exponential, then ``K = R^T R / C_in`` with ``R`` the stacked real and imaginary parts
    of the first ``max(k_h, k_w)`` amplitudes.

    Example:
        >>> import torch
        >>> conv = FlippedQuanv(1, 4, kernel_size=5, padding=2)
        >>> conv(torch.randn(2, 1, 8, 8)).shape, conv.n_qubits
        (torch.Size([2, 4, 8, 8]), 3)
        >>> conv.kernel().shape
        torch.Size([4, 1, 5, 5])
    """

    slot_kind = "conv"
    circuit_parameters = ("theta",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1, *,
                 angles: str = "real", path: str = "fast", solver: str = "auto", dtype=None, device=None):
        super().__init__()
        check_int(in_channels, f"{type(self).__name__} in_channels", 1)
        check_int(out_channels, f"{type(self).__name__} out_channels", 1)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_hw = _pair_of(kernel_size, "kernel_size", 1)
        self._stride = _pair_of(stride, "stride", 1)
        self._padding = _pair_of(padding, "padding", 0)
        self._dilation = _pair_of(dilation, "dilation", 1)
        self.n_qubits = patch_qubits(self.kernel_hw)
        self.angles = check_angle_mode(angles)
        self.path = check_path(path)
        self.solver = check_solver(solver)
        self.theta = make_parameter((out_channels, in_channels, 4**self.n_qubits - 1), angles, dtype, device)
        self.bias = make_parameter((out_channels,), angles, dtype, device)

    @staticmethod
    def _one(pair):
        return pair[0] if pair[0] == pair[1] else pair

    @property
    def kernel_size(self):
        return self._one(self.kernel_hw)

    @property
    def stride(self):
        return self._one(self._stride)

    @property
    def padding(self):
        return self._one(self._padding)

    @property
    def dilation(self):
        return self._one(self._dilation)

    @property
    def num_parameters(self) -> int:
        return self.theta.numel() + self.bias.numel()

    def resolved_solver(self, device=None) -> str:
        """The solver that runs on ``device`` (default: the device of the parameters)."""
        return resolve_solver(self.solver, self.theta.device if device is None else device)

    def gates(self) -> torch.Tensor:
        """The ``(C_out, C_in, 2^q, 2^q)`` complex unitaries ``SU(2^q)(theta_oc)``."""
        return special_unitary(self.theta, self.resolved_solver())

    def states(self) -> torch.Tensor:
        """The ``(C_out, C_in, 2^q)`` complex states ``SU(2^q)(theta_oc)|0...0>`` (first unitary column)."""
        return self.gates()[..., :, 0]

    def kernel(self) -> torch.Tensor:
        """The equivalent ``(C_out, C_in, k_h, k_w)`` real convolution kernel ``Re(rho)[:k_h, :k_w] / C_in``."""
        kh, kw = self.kernel_hw
        psi = self.states()[..., :max(kh, kw)]
        # Re(|psi><psi|)_ij = a_i a_j + b_i b_j = (R^T R)_ij with R = [a; b], from the real and
        # imaginary parts taken explicitly
        rows = torch.stack((psi.real, psi.imag), -2)
        return (rows[..., :kh].mT @ rows[..., :kw]) / self.in_channels

    @torch.no_grad()
    def physicality(self, x: torch.Tensor | None = None) -> dict:
        """How far the gates are from unitary and the states from norm 1 (``x`` is not needed)."""
        gates = self.gates()
        norms = norm_squared(gates[..., :, 0]).sqrt()
        return {"max_unitarity_error": float(unitarity_error(gates).max()),
                "min_state_norm": float(norms.min()), "max_state_norm": float(norms.max())}

    @classmethod
    def qubits_for(cls, slot) -> int:
        """``q = max(1, ceil(log2 k))`` for the slot's ``k x k`` kernel (2 for 3x3, 3 for 5x5)."""
        return patch_qubits(slot.kernel_size)

    @classmethod
    def scan_slot(cls, n_qubits: int):
        """A one-channel slot whose kernel takes ``n_qubits``: side ``2**(n-1) + 1`` (3, 5, 9, 17, ...)."""
        from qcreep.slots import ConvSlot

        return ConvSlot(1, 1, 2 ** (n_qubits - 1) + 1 if n_qubits > 1 else 1), {}

    def ansatz(self, x: torch.Tensor):
        """``(4**q - 1, state_fn)``: the state ``SU(2^q)(theta) |0...0>`` of one kernel (any channel pair;
        the input enters only through the measured observable). Batched matrix exponentials."""
        q = self.n_qubits

        def state_fn(values: torch.Tensor) -> torch.Tensor:
            return torch.linalg.matrix_exp(1j * pauli_sum(values.to(torch.float64)))[..., :, 0]

        return 4**q - 1, state_fn

    def _patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, L, C, k_h, k_w)`` input patches of ``(B, C, H, W)``, as the convolution sees them, and ``(H', W')``."""
        batch, channels, height, width = x.shape
        kh, kw = self.kernel_hw
        h_out, w_out = self.output_hw(height, width)
        patches = F.unfold(x, (kh, kw), dilation=self._dilation, padding=self._padding,
                           stride=self._stride)  # (B, C*kh*kw, L)
        return patches.reshape(batch, channels, kh, kw, h_out * w_out).permute(0, 4, 1, 2, 3), (h_out, w_out)

    def circuits(self, x: torch.Tensor) -> list[Circuit]:
        """One circuit per output channel ``o``, output position and input channel ``c`` (in that order):
        ``SU(2^q)(theta_oc)`` on ``|0...0>``, measuring the symmetrised, zero-padded patch ``H_c``.

        ``x`` is one image ``(C_in, H, W)`` (or ``(1, C_in, H, W)``). The gates are dense matrix
        exponentials in complex128, a path separate from :meth:`gates`.
        """
        x = self._one_input(x)
        side = 2**self.n_qubits
        kh, kw = self.kernel_hw
        patches, (h_out, w_out) = self._patches(x[None])
        padded = F.pad(patches[0], (0, side - kw, 0, side - kh))
        observables = (0.5 * (padded + padded.transpose(-1, -2))).to(torch.complex128)  # (L, C, 2^q, 2^q)
        gates = torch.linalg.matrix_exp(1j * pauli_sum(self.theta.detach().to(torch.float64)))  # (O, C, ., .)
        qubits = tuple(range(self.n_qubits))
        out = []
        for o in range(self.out_channels):
            for pos in range(h_out * w_out):
                for c in range(self.in_channels):
                    out.append(Circuit(self.n_qubits, [Gate(f"SU(2^{self.n_qubits})[{o},{c}]", qubits, gates[o, c])],
                                       observable=observables[pos, c], label=type(self).__name__,
                                       metadata={"out_channel": o, "in_channel": c,
                                                 "position": (pos // w_out, pos % w_out)}))
        return out

    def from_measurements(self, x: torch.Tensor, values: list) -> torch.Tensor:
        """``(C_out, H', W')``: ``bias_o + (1 / C_in) sum_c <H_c>`` from the values of :meth:`circuits`."""
        x = self._one_input(x)
        h_out, w_out = self.output_hw(*x.shape[-2:])
        v = torch.stack([torch.as_tensor(value, dtype=torch.float64) for value in values])
        v = v.reshape(self.out_channels, h_out * w_out, self.in_channels).mean(-1)
        out = v + real_bias(self.bias).detach().to(torch.float64)[:, None]
        return out.reshape(self.out_channels, h_out, w_out)

    def _one_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.angles == "complex":
            raise QcreepError(f"{type(self).__name__} has complex angles (the published code's non-unitary mode): "
                              "its gates are not unitary and no circuit implements them")
        x = torch.as_tensor(x).detach()
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3:
            raise QcreepError(f"{type(self).__name__}.circuits takes one image ({self.in_channels}, H, W), "
                              f"got {tuple(x.shape)}")
        return self._check_input(x).to(torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        if self.path == "reference":
            return self.forward_reference(x)
        return F.conv2d(x, self.kernel(), real_bias(self.bias), stride=self._stride, padding=self._padding,
                        dilation=self._dilation)

    def output_hw(self, height: int, width: int) -> tuple[int, int]:
        """``(H', W')`` for an input of ``height x width``, as ``nn.Conv2d``."""
        return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in
                     zip((height, width), self.kernel_hw, self._stride, self._padding, self._dilation))

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Simulate ``<psi_oc| H |psi_oc>`` for every patch (slow; the contract the fast path meets)."""
        x = self._check_input(x)
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        batch = x.shape[0]
        kh, kw = self.kernel_hw
        side = 2**self.n_qubits
        patches, (h_out, w_out) = self._patches(x)  # (B, L, C, kh, kw)
        padded = F.pad(patches, (0, side - kw, 0, side - kh))  # extra right columns and bottom rows
        observables = 0.5 * (padded + padded.transpose(-1, -2))
        psi = self.states()  # (O, C, 2^q)
        values = expval_symmetric(psi[None, None], observables[:, :, None])  # (B, L, O, C)
        out = values.mean(-1) + real_bias(self.bias)
        out = out.permute(0, 2, 1).reshape(batch, self.out_channels, h_out, w_out)
        return out[0] if unbatched else out

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        if x.is_complex():
            raise QcreepError(f"{name} takes real input; got a complex tensor")
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise QcreepError(f"{name} expects input (B, {self.in_channels}, H, W) or "
                              f"({self.in_channels}, H, W), got {tuple(x.shape)}")
        if min(self.output_hw(*x.shape[-2:])) < 1:
            kh, kw = self.kernel_hw
            dilated = "" if self._dilation == (1, 1) else f" (dilation {self.dilation})"
            raise QcreepError(f"{name} needs images of at least {kh}x{kw}{dilated} after padding, "
                              f"got {tuple(x.shape)}")
        dtype = real_dtype_of(self.theta)
        return x.to(dtype) if x.dtype != dtype else x

    def extra_repr(self) -> str:
        conv = f"kernel_size={self.kernel_size}, " if self.kernel_hw != (3, 3) else ""
        dil = f", dilation={self.dilation}" if self._dilation != (1, 1) else ""
        return (f"{self.in_channels}, {self.out_channels}, {conv}stride={self.stride}, padding={self.padding}{dil}, "
                f"angles={self.angles!r}, solver={self.solver!r}, params={self.num_parameters}")


class FlippedQuanv3x3(FlippedQuanv):
    r"""The paper's flipped quanvolution with 3x3 patches: two qubits, 15 angles per channel pair.

    ``FlippedQuanv3x3(C_in, C_out, stride, padding)`` is ``FlippedQuanv(C_in, C_out, 3, stride,
    padding)``; see :class:`FlippedQuanv` for the mathematics. A drop-in for ``nn.Conv2d(C_in, C_out, 3)``.

    Example:
        >>> import torch
        >>> conv = FlippedQuanv3x3(1, 4)
        >>> conv(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 4, 6, 6])
        >>> conv.kernel().shape, conv.resolved_solver()
        (torch.Size([4, 1, 3, 3]), 'eigh')
    """

    def __init__(self, in_channels: int, out_channels: int, stride=1, padding=0, *, dilation=1,
                 angles: str = "real", path: str = "fast", solver: str = "auto", dtype=None, device=None):
        super().__init__(in_channels, out_channels, 3, stride, padding, dilation, angles=angles, path=path,
                         solver=solver, dtype=dtype, device=device)


@register_layer("flipped_quanv3x3", slot_kind="conv", quantum=True,
                description="FlippedQuanv: an SU(2^q) state per channel pair, the k x k patch as observable",
                qubits=FlippedQuanv.qubits_for)
def make_flipped_quanv(slot, *, angles="real", path="fast", solver="auto", dtype=None, device=None):
    cls = FlippedQuanv3x3 if as_pair(slot.kernel_size) == (3, 3) else FlippedQuanv
    if cls is FlippedQuanv3x3:
        return cls(slot.in_channels, slot.out_channels, slot.stride, slot.padding, dilation=slot.dilation,
                   angles=angles, path=path, solver=solver, dtype=dtype, device=device)
    return cls(slot.in_channels, slot.out_channels, slot.kernel_size, slot.stride, slot.padding, slot.dilation,
               angles=angles, path=path, solver=solver, dtype=dtype, device=device)
