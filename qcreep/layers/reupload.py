"""DataReUploadingLinear: the paper's data re-uploading circuit, a drop-in for ``nn.Linear``."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from qcreep.checks import check_int, is_int
from qcreep.errors import QcreepError
from qcreep.layers._angles import check_angle_mode, check_path, make_parameter, real_bias, real_dtype_of
from qcreep.layers.base import QuantumLayer
from qcreep.layers.registry import register_layer
from qcreep.sim import (
    apply_matrix,
    complex_dtype,
    norm_squared,
    parallel,
    plus_state,
    probabilities,
    special_unitary,
    symmetric_embedding_matrix,
    unitarity_error,
)
from qcreep.sim.circuits import Prefetch, reupload_features, reupload_features_su
from qcreep.sim.paulis import MAX_QUBITS, pauli_sum
from qcreep.sim.program import Circuit, Gate, hadamard
from qcreep.sim.solvers import check_solver, resolve_solver

OUTPUT_SCALES = ("none", "learned")
BIAS_INITS = ("normal", "zero")


def check_readout(output_scale: str, bias_init: str) -> tuple[str, str]:
    """Validate the readout options shared by the re-uploading head and its classical twin."""
    if output_scale not in OUTPUT_SCALES:
        raise QcreepError(f"output_scale must be one of {', '.join(OUTPUT_SCALES)} "
                          f"('none' is the published readout), got {output_scale!r}")
    if bias_init not in BIAS_INITS:
        raise QcreepError(f"bias_init must be one of {', '.join(BIAS_INITS)} "
                          f"('normal' is the published N(0, 1) initialisation), got {bias_init!r}")
    return output_scale, bias_init


def min_qubits(in_features: int, out_features: int) -> int:
    """Smallest ``n`` with ``4**n >= in_features`` and ``2**n >= out_features``."""
    n = 1
    while 4**n < in_features or 2**n < out_features:
        n += 1
    return n


class DataReUploadingLinear(QuantumLayer):
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
        ``theta``: ``(n_reps, 4**n - 1)`` angles, standard normal as in the published code;
        ``bias``: ``(out_features,)``, zero by default (standard normal with ``bias_init="normal"``);
        ``log_scale``: ``()`` with ``output_scale="learned"`` (the default).
        ``n_reps * (4**n - 1) + out_features`` parameters, plus one with ``output_scale="learned"``.

    Readout (classical post-processing of the measured probabilities; both options are physical):
        The probabilities lie in ``[0, 1]`` and start near ``2**-n``, so with the published N(0, 1)
        biases the logits fed to softmax cross-entropy are dominated by the biases at first, and
        their gradients are weak. ``output_scale="learned"`` multiplies the probabilities by a
        trainable scale ``exp(a)``, ``a`` starting at ``log(2**n)`` so that a uniform distribution
        maps to 1 (a trainable output weight, as in Skolik et al., arXiv:2103.15084):
        ``y_j = exp(a) |<j|psi>|^2 + bias_j``. ``bias_init="zero"`` starts the biases at 0.
        ``output_scale="learned", bias_init="zero"`` is the default, as in ``qcreep run``: with the
        published readout, ``output_scale="none", bias_init="normal"``, the head stays near chance
        under most learning rates. The registry factory ``data_reuploading`` (and so
        :func:`qcreep.models.build_model`) keeps the published readout as its default, so that the
        paper's HybridNet and its parameter count (172,048 at level 2) come out unchanged.

    Args:
        n_qubits: register size; ``None`` picks the smallest ``n`` with ``4**n >= in_features`` and
            ``2**n >= out_features`` (7 for the paper's 12544 -> 10 head).
        n_reps: number of re-uploads ``R`` (the paper's PyTorch runs use 10).
        angles: ``"real"`` (physical, default) or ``"complex"`` (the published code's non-unitary
            compatibility mode; see :mod:`qcreep.layers._angles`).
        output_scale: ``"learned"`` (default) or ``"none"`` (published); see Readout.
        bias_init: ``"zero"`` (default) or ``"normal"`` (published); see Readout.
        path: ``"fast"`` (default): the data unitary is computed once per sample and reused for all
            ``R`` re-uploads, and the trainable unitaries are built once per forward.
            ``"reference"``: a dense matrix exponential per sample and per re-upload, as the
            published code computes it (slow; for tests and benchmarks).
        solver: how the fast path computes ``exp(i H / R)`` and the trainable ``SU(2**n)`` gates:
            ``"eigh"`` (eigendecompositions, spread over the CPU cores), ``"expm"`` (matrix
            products only: a scaled and squared Taylor series of ``cos + i sin`` from real products
            for the data, ``torch.linalg.matrix_exp`` for the gates) or ``"auto"`` (default:
            ``"eigh"`` on CPU, ``"expm"`` on GPUs). See :mod:`qcreep.sim.solvers`. The solver that
            runs is :meth:`resolved_solver`; both give the same values to rounding.

    Example:
        >>> import torch
        >>> head = DataReUploadingLinear(16, 4, n_reps=2)   # learned scale, zero biases
        >>> head.n_qubits, head.num_parameters
        (2, 35)
        >>> published = DataReUploadingLinear(16, 4, n_reps=2, output_scale="none", bias_init="normal")
        >>> published.num_parameters
        34
        >>> head(torch.randn(3, 16)).shape
        torch.Size([3, 4])
        >>> head.solver, head.resolved_solver()        # "auto" runs eigh on CPU
        ('auto', 'eigh')
        >>> gpu_style = DataReUploadingLinear(16, 4, n_reps=2, solver="expm")
        >>> gpu_style.resolved_solver()
        'expm'
    """

    slot_kind = "dense"
    circuit_parameters = ("theta",)

    def __init__(self, in_features: int, out_features: int, n_qubits: int | None = None,
                 n_reps: int = 10, *, angles: str = "real", output_scale: str = "learned", bias_init: str = "zero",
                 path: str = "fast", solver: str = "auto", dtype=None, device=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features), ("n_reps", n_reps)):
            check_int(value, f"DataReUploadingLinear {name}", 1)
        needed = min_qubits(in_features, out_features)
        if n_qubits is None:
            n_qubits = needed
        elif not is_int(n_qubits) or n_qubits < needed:
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
        self.solver = check_solver(solver)
        self.theta = make_parameter((n_reps, 4**n_qubits - 1), angles, dtype, device)
        self.output_scale, self.bias_init = check_readout(output_scale, bias_init)
        self.bias = make_parameter((out_features,), angles, dtype, device)
        if bias_init == "zero":
            with torch.no_grad():
                self.bias.zero_()
        if output_scale == "learned":
            # a classical scale on the measured values: real in both angle modes
            self.log_scale = nn.Parameter(torch.full((), float(n_qubits) * math.log(2.0),
                                                     dtype=real_dtype_of(self.theta), device=device))
        else:
            self.register_parameter("log_scale", None)

    @property
    def num_parameters(self) -> int:
        return self.theta.numel() + self.bias.numel() + (1 if self.log_scale is not None else 0)

    def readout(self, probs: torch.Tensor) -> torch.Tensor:
        """Logits from the measured probabilities of the first ``out_features`` basis states."""
        probs = probs[..., : self.out_features]
        if self.log_scale is not None:
            probs = probs * self.log_scale.exp()
        return probs + real_bias(self.bias)

    def resolved_solver(self, device=None) -> str:
        """The solver the fast path runs on ``device`` (default: the device of the parameters)."""
        return resolve_solver(self.solver, self.theta.device if device is None else device)

    def trainable_unitaries(self) -> torch.Tensor:
        """``(n_reps, 2**n, 2**n)`` complex: ``SU(theta_r)`` for each re-upload."""
        return special_unitary(self.theta, self.resolved_solver())

    def data_hamiltonians(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2**n, 2**n)`` real symmetric ``H`` for a flat batch ``(B, in_features)``."""
        return symmetric_embedding_matrix(x, self.n_qubits)

    def final_states(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        """``(*, 2**n)`` complex states at the end of the circuit."""
        x, lead = self._flatten(x)
        psi = plus_state(self.n_qubits, (x.shape[0],), dtype=complex_dtype(x.dtype), device=x.device)
        if (path or self.path) == "reference":
            psi = self._circuit_reference(self.data_hamiltonians(x), psi)
        else:
            solver = self.resolved_solver()
            # on CPU the eigendecompositions of the data start in the worker threads while this
            # thread builds the gates
            prefetch = Prefetch.start(x, self.n_qubits, solver)
            if solver == "eigh" and not self.theta.is_complex():
                # the gates are built inside the circuit, and their backward pass overlaps the data's
                with parallel.one_thread() if prefetch is not None else contextlib.nullcontext():
                    psi = reupload_features_su(x, self.n_qubits, self.theta, psi, 1.0 / self.n_reps, prefetch)
            elif prefetch is None:
                gates = self.trainable_unitaries()
                psi = reupload_features(x, self.n_qubits, gates, psi, 1.0 / self.n_reps, solver)
            else:
                with parallel.one_thread():
                    with parallel.inline():
                        gates = self.trainable_unitaries()
                    psi = reupload_features(x, self.n_qubits, gates, psi, 1.0 / self.n_reps, solver, prefetch)
        return psi.reshape(*lead, 2**self.n_qubits)

    def _circuit_reference(self, h: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        for r in range(self.n_reps):
            data_unitary = torch.linalg.matrix_exp(1j * h.to(psi.dtype) / self.n_reps)
            gate = torch.linalg.matrix_exp(1j * pauli_sum(self.theta[r]))
            psi = apply_matrix(gate, apply_matrix(data_unitary, psi))
        return psi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(probabilities(self.final_states(x)))

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(probabilities(self.final_states(x, path="reference")))

    @classmethod
    def qubits_for(cls, slot) -> int:
        """The fewest ``n`` with ``4**n >= in_features`` and ``2**n >= out_features``."""
        return min_qubits(slot.in_features, slot.out_features)

    @classmethod
    def scan_slot(cls, n_qubits: int):
        """A two-class slot with ``4**(n-1) + 1`` features, the fewest that need ``n_qubits``."""
        from qcreep.slots import DenseSlot

        return DenseSlot(4 ** (n_qubits - 1) + 1, 2), {}

    def circuits(self, x: torch.Tensor) -> list[Circuit]:
        """The one circuit for input ``x`` (``(in_features,)`` or ``(1, in_features)``): a Hadamard on
        every qubit (``|+>^n``), then ``n_reps`` times ``exp(i H / R)`` and ``SU(theta_r)`` on all qubits,
        measuring the basis probabilities. Dense matrix exponentials in complex128, a path separate from
        the fast kernels."""
        if self.angles == "complex":
            raise QcreepError("DataReUploadingLinear has complex angles (the published code's non-unitary mode): "
                              "its gates are not unitary and no circuit implements them")
        x = torch.as_tensor(x).detach()
        if x.dim() == 2 and x.shape[0] == 1:
            x = x[0]
        if x.is_complex() or x.dim() != 1 or x.shape[0] != self.in_features:
            raise QcreepError(f"DataReUploadingLinear.circuits takes one real input of {self.in_features} features, "
                              f"got {tuple(x.shape)} {x.dtype}")
        n, qubits = self.n_qubits, tuple(range(self.n_qubits))
        h = symmetric_embedding_matrix(x.to(torch.float64)[None], n)[0].to(torch.complex128)
        data = torch.linalg.matrix_exp(1j * h / self.n_reps)
        gates = [Gate("H", (q,), hadamard()) for q in qubits]
        for r in range(self.n_reps):
            su = torch.linalg.matrix_exp(1j * pauli_sum(self.theta[r].detach().to(torch.float64)))
            gates += [Gate("exp(iH/R)", qubits, data), Gate(f"SU(2^n)[{r + 1}]", qubits, su)]
        return [Circuit(n, gates, label="DataReUploadingLinear")]

    def ansatz(self, x: torch.Tensor):
        """``(R (4**n - 1), state_fn)``: the final state of :meth:`circuits` for the one input ``x`` as a
        function of all ``theta`` (rows ``theta_1 .. theta_R`` flattened): ``|+>^n``, then per re-upload
        the fixed ``exp(i H / R)`` and the batched ``SU(theta_r)`` (by eigendecomposition), in complex128."""
        circuit = self.circuits(x)[0]  # checks x, and refuses complex angles
        n, reps, dim = self.n_qubits, self.n_reps, 2**self.n_qubits
        data = circuit.gates[n].matrix.to(torch.complex128)  # exp(i H / R), after the n Hadamards
        start = torch.full((dim,), dim**-0.5, dtype=torch.complex128)

        def state_fn(values: torch.Tensor) -> torch.Tensor:
            theta = values.to(torch.float64).reshape(values.shape[0], reps, dim * dim - 1)
            gates = special_unitary(theta, "eigh")  # (B, R, 2^n, 2^n): exp(i sum_k theta_k P_k)
            psi = start.expand(values.shape[0], dim)
            for r in range(reps):
                psi = torch.einsum("bij,bj->bi", gates[:, r], psi @ data.T)
            return psi

        return reps * (dim * dim - 1), state_fn

    def from_measurements(self, x: torch.Tensor, values: list) -> torch.Tensor:
        """``(out_features,)``: the readout of the measured probabilities of the one circuit."""
        probs = torch.as_tensor(values[0], dtype=torch.float64)
        with torch.no_grad():
            scale = 1.0 if self.log_scale is None else self.log_scale.detach().double().exp()
            return scale * probs[: self.out_features] + real_bias(self.bias).detach().double()

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
                f"n_reps={self.n_reps}, angles={self.angles!r}, output_scale={self.output_scale!r}, "
                f"bias_init={self.bias_init!r}, solver={self.solver!r}, params={self.num_parameters}")


@register_layer("data_reuploading", slot_kind="dense", quantum=True,
                description="DataReUploadingLinear: Hamiltonian embedding re-uploaded between SU(2^n) gates",
                qubits=DataReUploadingLinear.qubits_for)
def make_data_reuploading(slot, *, n_qubits=None, n_reps=10, angles="real", output_scale="none",
                          bias_init="normal", path="fast", solver="auto", dtype=None, device=None):
    """``DataReUploadingLinear`` for a dense slot; the readout defaults to the published one (no scale,
    N(0, 1) biases), so that a model built without options is the paper's network."""
    return DataReUploadingLinear(slot.in_features, slot.out_features, n_qubits=n_qubits, n_reps=n_reps,
                                 angles=angles, output_scale=output_scale, bias_init=bias_init, path=path,
                                 solver=solver, dtype=dtype, device=device)
