"""DataReUploadingLinear: the paper's data re-uploading circuit, a drop-in for ``nn.Linear``."""

from __future__ import annotations

import torch
from torch import nn

from qcreep.errors import QcreepError
from qcreep.layers._angles import check_angle_mode, check_path, make_parameter, real_bias, real_dtype_of
from qcreep.sim import (
    apply_matrix,
    complex_dtype,
    norm_squared,
    plus_state,
    probabilities,
    special_unitary,
    symmetric_embedding_matrix,
    unitarity_error,
)
from qcreep.sim.circuits import reupload_circuit
from qcreep.sim.paulis import pauli_sum

MAX_QUBITS = 10


def min_qubits(in_features: int, out_features: int) -> int:
    """Smallest ``n`` with ``4**n >= in_features`` and ``2**n >= out_features``."""
    n = 1
    while 4**n < in_features or 2**n < out_features:
        n += 1
    return n


class DataReUploadingLinear(nn.Module):
    r"""Data re-uploading circuit with Hamiltonian embedding (Wang et al., arXiv:2409.17583).

    The input ``x`` (``F = in_features`` values) is zero-padded to ``4**n``, reshaped row-major to a
    ``2**n x 2**n`` matrix ``X`` and embedded as the real symmetric Hamiltonian ``H = (X + X^T) / 2``.
    Starting from ``|+>^n``, the circuit applies ``R = n_reps`` times the data unitary
    ``exp(i H / R)`` followed by a trainable ``SU(2**n)(theta_r) = exp(i sum_k theta_rk P_k)``:

        |psi> = prod_{r=R..1} [ SU(theta_r) exp(i H / R) ] |+>^n,
        y_j   = |<j|psi>|^2 + bias_j,   j < out_features.

    The map is nonlinear in ``x``.

    Shapes:
        input ``(*, in_features)``; output ``(*, out_features)``, real.

    Parameters:
        ``theta``: ``(n_reps, 4**n - 1)`` angles; ``bias``: ``(out_features,)``. Both start standard
        normal, as in the published code. ``n_reps * (4**n - 1) + out_features`` parameters.

    Args:
        n_qubits: register size; ``None`` picks the smallest ``n`` with ``4**n >= in_features`` and
            ``2**n >= out_features`` (7 for the paper's 12544 -> 10 head).
        n_reps: number of re-uploads ``R`` (the paper's PyTorch runs use 10).
        angles: ``"real"`` (physical, default) or ``"complex"`` (the published code's non-unitary
            compatibility mode; see :mod:`qcreep.layers._angles`).
        path: ``"fast"`` (default): one eigendecomposition of ``H`` per sample gives the data
            unitary, which is reused for all ``R`` re-uploads, and the trainable unitaries are built
            once per forward. ``"reference"``: a dense matrix exponential per sample and per
            re-upload, as the published code computes it (slow; for tests and benchmarks).
    """

    def __init__(self, in_features: int, out_features: int, n_qubits: int | None = None,
                 n_reps: int = 10, *, angles: str = "real", path: str = "fast", dtype=None, device=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features), ("n_reps", n_reps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise QcreepError(f"DataReUploadingLinear {name} must be an integer >= 1, got {value!r}")
        needed = min_qubits(in_features, out_features)
        if n_qubits is None:
            n_qubits = needed
        elif isinstance(n_qubits, bool) or not isinstance(n_qubits, int) or n_qubits < needed:
            raise QcreepError(
                f"DataReUploadingLinear({in_features} -> {out_features}) needs at least {needed} qubits "
                f"(4**n >= {in_features} inputs and 2**n >= {out_features} outputs), got n_qubits={n_qubits!r}")
        if n_qubits > MAX_QUBITS:
            raise QcreepError(f"DataReUploadingLinear supports at most {MAX_QUBITS} qubits; {n_qubits} were asked "
                              f"for or needed for {in_features} inputs and {out_features} outputs")
        self.in_features = in_features
        self.out_features = out_features
        self.n_qubits = n_qubits
        self.n_reps = n_reps
        self.angles = check_angle_mode(angles)
        self.path = check_path(path)
        self.theta = make_parameter((n_reps, 4**n_qubits - 1), angles, dtype, device)
        self.bias = make_parameter((out_features,), angles, dtype, device)

    @property
    def num_parameters(self) -> int:
        return self.theta.numel() + self.bias.numel()

    def trainable_unitaries(self) -> torch.Tensor:
        """``(n_reps, 2**n, 2**n)`` complex: ``SU(theta_r)`` for each re-upload."""
        return special_unitary(self.theta)

    def data_hamiltonians(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2**n, 2**n)`` real symmetric ``H`` for a flat batch ``(B, in_features)``."""
        return symmetric_embedding_matrix(x, self.n_qubits)

    def final_states(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        """``(*, 2**n)`` complex states at the end of the circuit."""
        x, lead = self._flatten(x)
        h = self.data_hamiltonians(x)
        cdtype = complex_dtype(h.dtype)
        psi = plus_state(self.n_qubits, (x.shape[0],), dtype=cdtype, device=x.device)
        if (path or self.path) == "reference":
            psi = self._circuit_reference(h, psi)
        else:
            psi = reupload_circuit(h, self.trainable_unitaries(), psi, 1.0 / self.n_reps)
        return psi.reshape(*lead, 2**self.n_qubits)

    def _circuit_reference(self, h: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        for r in range(self.n_reps):
            data_unitary = torch.linalg.matrix_exp(1j * h.to(psi.dtype) / self.n_reps)
            gate = torch.linalg.matrix_exp(1j * pauli_sum(self.theta[r]))
            psi = apply_matrix(gate, apply_matrix(data_unitary, psi))
        return psi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        psi = self.final_states(x)
        return probabilities(psi)[..., : self.out_features] + real_bias(self.bias)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        psi = self.final_states(x, path="reference")
        return probabilities(psi)[..., : self.out_features] + real_bias(self.bias)

    @torch.no_grad()
    def physicality(self, x: torch.Tensor | None = None) -> dict:
        """How far the trainable gates are from unitary, and (given inputs) the final state norms."""
        report = {"max_unitarity_error": float(unitarity_error(self.trainable_unitaries()).max())}
        if x is not None:
            norms = norm_squared(self.final_states(x)).sqrt()
            report.update(min_state_norm=float(norms.min()), max_state_norm=float(norms.max()))
        return report

    def _flatten(self, x: torch.Tensor):
        if x.is_complex():
            raise QcreepError("DataReUploadingLinear takes real input; got a complex tensor")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise QcreepError(f"DataReUploadingLinear expects input (*, {self.in_features}), got {tuple(x.shape)}")
        dtype = real_dtype_of(self.theta)
        lead = x.shape[:-1]
        return x.reshape(-1, self.in_features).to(dtype), lead

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, n_qubits={self.n_qubits}, "
                f"n_reps={self.n_reps}, angles={self.angles!r}, params={self.num_parameters}")
