"""The declared interface of a quantum layer: what qcreep asks of every layer that simulates a circuit.

A quantum layer is an ``nn.Module`` that fills a slot (:mod:`qcreep.slots`) with the same input and
output as the classical layer it replaces, computed from a simulated circuit. Subclass
:class:`QuantumLayer` and provide:

- ``forward(x)``: the fast, batched path (real input, real output);
- ``forward_reference(x)``: a slow, independent simulation of the same map, the contract the fast
  path meets (``qcreep.testing.assert_valid_layer`` compares the two in float64);
- ``physicality(x=None)``: ``{"max_unitarity_error", "min_state_norm", "max_state_norm"}`` (the
  norms where states exist; with ``x`` where they depend on the input);
- ``circuits(x)``: the circuits behind the output for **one** input, as
  :class:`qcreep.sim.program.Circuit` (gates as matrices and what is measured), and
  ``from_measurements(x, values)``: the layer's output for that input from the measured values of
  those circuits, in order. Export, shots and the checks read these;
- ``qubits_for(slot)`` (a classmethod): the qubits needed to fill ``slot``; the base's
  :meth:`QuantumLayer.fits` then says whether a slot can be filled at all, and why not.

Optional, for the diagnostics (:mod:`qcreep.diagnostics`, ``qcreep diagnose``):

- ``circuit_parameters``: the names of the parameters that enter the gates (the trainable ansatz;
  readout scales, biases and classical maps around the circuit are left out). None means all;
- ``ansatz(x)``: ``(n_params, state_fn)``, the state of the layer's first circuit for input ``x``
  as a batched function of the circuit parameters. The base builds it from :meth:`circuits`
  (one circuit per parameter vector, slow but independent); a layer may give a faster one, over the
  leading entries of those parameters where its first circuit uses only them (one kernel of a
  quanvolution);
- ``scan_slot(n_qubits)`` (a classmethod): ``(slot, options)`` that the layer fills with
  ``n_qubits`` qubits, for scans over the register size; None where the size cannot be chosen.

The base gives ``parameter_shapes()`` and ``num_parameters`` from the module's parameters, and
``n_qubits`` as an attribute each layer sets. Quantum layers are recognised by
``isinstance(layer, QuantumLayer)`` (:func:`is_quantum_layer`), never by the attributes they happen
to have.

Example:
    >>> from qcreep.layers import DataReUploadingLinear, QuantumLayer
    >>> from qcreep.slots import DenseSlot
    >>> head = DataReUploadingLinear(16, 4, n_reps=2)
    >>> isinstance(head, QuantumLayer), head.parameter_shapes()
    (True, {'theta': (2, 15), 'bias': (4,), 'log_scale': ()})
    >>> DataReUploadingLinear.qubits_for(DenseSlot(12544, 10)), DataReUploadingLinear.fits(DenseSlot(12544, 10), 6)
    (7, 'needs 7 qubits, more than the limit of 6')
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from qcreep.sim.paulis import MAX_QUBITS


class QuantumLayer(nn.Module):
    """Base class of qcreep's quantum layers (see the module docstring for the contract)."""

    #: The slot kind this layer fills (``"dense"`` or ``"conv"``); each subclass sets it.
    slot_kind: str = ""
    #: The register size of the layer's circuit; each instance sets it.
    n_qubits: int
    #: Names of the parameters that enter the circuit's gates; None: every parameter.
    circuit_parameters: tuple[str, ...] | None = None

    # -- what each layer provides ---------------------------------------------------------------

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The slow, independent simulation of ``forward``."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward_reference")

    def physicality(self, x: torch.Tensor | None = None) -> dict:
        """``{"max_unitarity_error", ...}``: how far the gates are from unitary and the states from norm 1."""
        raise NotImplementedError(f"{type(self).__name__} does not define physicality")

    def circuits(self, x: torch.Tensor) -> list:
        """The circuits (:class:`qcreep.sim.program.Circuit`) behind the output for one input ``x``."""
        raise NotImplementedError(f"{type(self).__name__} does not define circuits")

    def from_measurements(self, x: torch.Tensor, values: list) -> torch.Tensor:
        """The output for one input ``x`` from the measured values of :meth:`circuits` (same order)."""
        raise NotImplementedError(f"{type(self).__name__} does not define from_measurements")

    @classmethod
    def qubits_for(cls, slot) -> int:
        """The qubits this layer needs to fill ``slot``."""
        raise NotImplementedError(f"{cls.__name__} does not define qubits_for")

    @classmethod
    def scan_slot(cls, n_qubits: int):
        """``(slot, options)`` that this layer fills with ``n_qubits`` qubits, or None (size not choosable)."""
        return None

    # -- given by the base ----------------------------------------------------------------------

    def ansatz(self, x: torch.Tensor) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
        """``(n_params, state_fn)``: the final state of ``circuits(x)[0]`` as a function of the circuit parameters.

        ``state_fn`` maps ``(B, n_params)`` real parameter vectors (the entries of
        :attr:`circuit_parameters`, flattened in order) to ``(B, 2**n)`` complex128 states, each
        simulated on its own by :meth:`qcreep.sim.program.Circuit.statevector` from a float64 copy
        of the layer; the layer itself is not changed.
        """
        work = copy.deepcopy(self).to(device="cpu", dtype=torch.float64)
        params = dict(work.named_parameters())
        names = list(self.circuit_parameters) if self.circuit_parameters is not None else list(params)
        missing = [n for n in names if n not in params]
        if missing:
            raise NotImplementedError(f"{type(self).__name__}.circuit_parameters names {missing}, which are not "
                                      "parameters of the layer")
        shapes = [params[n].shape for n in names]
        sizes = [math.prod(s) for s in shapes]
        x = x.detach().to(device="cpu", dtype=torch.float64)

        def state_fn(values: torch.Tensor) -> torch.Tensor:
            states = []
            with torch.no_grad():
                for row in values.to(torch.float64):
                    for name, shape, part in zip(names, shapes, row.split(sizes)):
                        params[name].copy_(part.view(shape))
                    states.append(work.circuits(x)[0].statevector())
            return torch.stack(states)

        return sum(sizes), state_fn


    @classmethod
    def fits(cls, slot, max_qubits: int | None = None) -> str | None:
        """None when the layer can fill ``slot``; else the reason, one line (wrong kind, too many qubits)."""
        kind = getattr(slot, "kind", None)
        if cls.slot_kind and kind != cls.slot_kind:
            return f"fills {cls.slot_kind} slots, not {kind} slots"
        qubits = cls.qubits_for(slot)
        limit = MAX_QUBITS if max_qubits is None else min(int(max_qubits), MAX_QUBITS)
        if qubits > limit:
            which = "the simulator's limit" if max_qubits is None or max_qubits >= MAX_QUBITS else "the limit"
            return f"needs {qubits} qubits, more than {which} of {limit}"
        return None

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the trainable parameters, in registration order."""
        return {name: tuple(p.shape) for name, p in self.named_parameters()}

    @property
    def num_parameters(self) -> int:
        """Trainable entries (a complex angle counts once, as in the published counts)."""
        return sum(p.numel() for p in self.parameters())


def is_quantum_layer(module) -> bool:
    """True for an instance of :class:`QuantumLayer`."""
    return isinstance(module, QuantumLayer)
