"""A quantum layer's circuit for one input, as a plain list of gates: what export, resources and checks read.

Every quantum layer (:class:`qcreep.layers.base.QuantumLayer`) describes the circuits behind its
output for one input as :class:`Circuit` objects: ``n`` qubits starting in ``|0...0>`` (or in a
given normalised initial state, such as an amplitude-embedded input), a list of
:class:`Gate` (a label, the qubits it acts on, its unitary matrix) and what is measured: the
computational-basis probabilities, or the expectation of a Hermitian observable. The layer then
says how its output follows from the measured values (:meth:`QuantumLayer.from_measurements`).

The description is independent of any simulator or toolkit. :meth:`Circuit.statevector` runs it
with a deliberately plain dense simulator (each gate applied by a tensor contraction on its qubits,
in complex128), a path separate from the layers' fast kernels, so that comparing the two checks
both. Exporters translate the same gate list into Qiskit or PennyLane.

Conventions: qubit 0 is the most significant bit of a basis index (``|q0 q1 ... q_{n-1}>``), and a
gate's matrix is written in the order of its ``qubits`` (the first listed is its most significant
bit). With Qiskit's little-endian convention, qcreep qubit ``k`` is Qiskit qubit ``n - 1 - k``, and
the two statevector arrays are then identical.

Example:
    >>> import torch
    >>> h = torch.tensor([[1, 1], [1, -1]], dtype=torch.complex128) / 2**0.5
    >>> cnot = torch.eye(4, dtype=torch.complex128)[[0, 1, 3, 2]]
    >>> bell = Circuit(2, [Gate("H", (0,), h), Gate("CNOT", (0, 1), cnot)])
    >>> bell.probabilities().tolist()
    [0.4999999999999999, 0.0, 0.0, 0.4999999999999999]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from qcreep.errors import QcreepError


@dataclass(frozen=True)
class Gate:
    """A unitary on some qubits: ``matrix`` is ``(2**k, 2**k)`` complex for the ``k`` listed ``qubits``."""

    label: str
    qubits: tuple[int, ...]
    matrix: torch.Tensor

    def __post_init__(self):
        k = len(self.qubits)
        if k == 0 or len(set(self.qubits)) != k:
            raise QcreepError(f"gate {self.label!r} needs distinct qubits, got {self.qubits}")
        if tuple(self.matrix.shape) != (2**k, 2**k):
            raise QcreepError(f"gate {self.label!r} on {k} qubit(s) needs a {2**k}x{2**k} matrix, "
                              f"got {tuple(self.matrix.shape)}")


@dataclass
class Circuit:
    """``n_qubits`` qubits from ``|0...0>`` (or from ``initial``), the ``gates`` in order, then a measurement.

    ``observable`` is a ``(2**n, 2**n)`` Hermitian matrix whose expectation is measured, or None
    for the computational-basis probabilities. ``metadata`` carries what a reader needs (which
    channel pair and output position a quanvolution circuit is, for example). ``initial`` (give it
    by keyword) is a ``(2**n,)`` complex state of norm 1 that the circuit starts from instead of
    ``|0...0>``, in the same basis order (qubit 0 most significant); the exporters prepare it with
    a state-preparation instruction before the gates.
    """

    n_qubits: int
    gates: list[Gate]
    observable: torch.Tensor | None = None
    label: str = ""
    metadata: dict = field(default_factory=dict)
    initial: torch.Tensor | None = None

    def __post_init__(self):
        for gate in self.gates:
            if max(gate.qubits) >= self.n_qubits or min(gate.qubits) < 0:
                raise QcreepError(f"gate {gate.label!r} acts on qubits {gate.qubits}, outside a "
                                  f"{self.n_qubits}-qubit circuit")
        if self.observable is not None and tuple(self.observable.shape) != (2**self.n_qubits,) * 2:
            raise QcreepError(f"the observable of a {self.n_qubits}-qubit circuit is "
                              f"{2**self.n_qubits}x{2**self.n_qubits}, got {tuple(self.observable.shape)}")
        if self.initial is not None:
            self._check_initial()

    def _check_initial(self):
        dim = 2**self.n_qubits
        initial = torch.as_tensor(self.initial)
        if tuple(initial.shape) != (dim,):
            raise QcreepError(f"the initial state of a {self.n_qubits}-qubit circuit is a vector of {dim} amplitudes, "
                              f"got shape {tuple(initial.shape)}")
        initial = initial.detach().to(torch.complex128)
        norm = float(torch.linalg.vector_norm(initial))
        if not abs(norm - 1.0) <= 1e-9:
            raise QcreepError(f"the initial state of circuit {self.label!r} has norm {norm!r}; it must be 1 "
                              "within 1e-9 (normalise it)")
        self.initial = initial

    def statevector(self) -> torch.Tensor:
        """The final state, ``(2**n,)`` complex128, by the plain reference simulation."""
        n = self.n_qubits
        if self.initial is None:
            psi = torch.zeros((2,) * n, dtype=torch.complex128)
            psi[(0,) * n] = 1.0
        else:
            psi = self.initial.detach().to(torch.complex128).reshape((2,) * n)
        for gate in self.gates:
            k = len(gate.qubits)
            u = gate.matrix.detach().to(torch.complex128).reshape((2,) * (2 * k))
            # contract the gate's input indices with the state's axes of its qubits, then put the
            # gate's output indices back where those axes were
            psi = torch.tensordot(u, psi, dims=(list(range(k, 2 * k)), list(gate.qubits)))
            rest = [q for q in range(n) if q not in gate.qubits]
            order = list(gate.qubits) + rest
            psi = psi.permute([order.index(q) for q in range(n)])
        return psi.reshape(2**n)

    def probabilities(self) -> torch.Tensor:
        """``|<j|psi>|^2`` for every basis state ``j``, real float64 (from the real and imaginary parts)."""
        psi = self.statevector()
        return psi.real**2 + psi.imag**2

    def expectation(self) -> torch.Tensor:
        """``<psi| O |psi>`` of the observable, a real float64 scalar (its imaginary part is checked to vanish)."""
        if self.observable is None:
            raise QcreepError(f"circuit {self.label!r} measures probabilities; it has no observable")
        psi = self.statevector()
        value = torch.vdot(psi, self.observable.detach().to(torch.complex128) @ psi)
        if abs(float(value.imag)) > 1e-9 * max(1.0, abs(float(value.real))):
            raise QcreepError(f"the observable of circuit {self.label!r} is not Hermitian: <psi|O|psi> has "
                              f"imaginary part {float(value.imag):.3g}")
        return value.real

    def measured(self) -> torch.Tensor:
        """What the circuit measures: :meth:`expectation` with an observable, else :meth:`probabilities`."""
        return self.probabilities() if self.observable is None else self.expectation()


def hadamard() -> torch.Tensor:
    """The 2x2 Hadamard matrix, complex128."""
    return torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.complex128) / 2**0.5
