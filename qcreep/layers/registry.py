"""A registry of candidate layers, keyed by the kind of slot they fill.

    @register_layer("my_conv", slot_kind="conv", quantum=False, description="...")
    def make_my_conv(slot, *, bias=True):
        return MyConv(slot.in_channels, slot.out_channels, slot.kernel_size, stride=slot.stride, padding=slot.padding)

A factory takes the slot (with its sizes) and keyword options. A model passes its layer options
(for example ``angles``, ``n_reps``, ``n_qubits``) to every factory, and each factory receives
only the options its signature names, so classical and third-party layers need not know about the
quantum ones.

A classical layer registered with ``twin_of="<quantum layer>"`` is that quantum layer's *classical
twin*: the control that has the same shapes, a matched parameter count and the same class of
nonlinearity (see :mod:`qcreep.layers.twins`). Twins are ordinary registered layers, so they appear
in :func:`list_layers` and :func:`layer_entries` like any other; :func:`twin_for` finds a quantum
layer's twin.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from qcreep.errors import QcreepError
from qcreep.slots import SLOT_KINDS, canonical_kind


@dataclass(frozen=True)
class LayerEntry:
    name: str
    slot_kind: str
    factory: Callable[..., nn.Module]
    quantum: bool
    description: str
    twin_of: str | None = None
    """For a classical twin: the name of the quantum layer (same slot kind) it is matched to."""
    qubits: Callable[..., int] | None = None
    """For a quantum layer: ``qubits(slot) -> int``, the qubits it needs to fill ``slot``."""

    def qubits_for(self, slot) -> int | None:
        """The qubits this layer needs for ``slot`` (None for a classical layer or an undeclared count)."""
        return None if self.qubits is None else int(self.qubits(slot))

    def accepted_options(self) -> set[str] | None:
        """Keyword options the factory takes; ``None`` when it takes ``**kwargs``."""
        params = list(inspect.signature(self.factory).parameters.values())[1:]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params}


_REGISTRY: dict[str, dict[str, LayerEntry]] = {kind: {} for kind in SLOT_KINDS}


def _check_kind(slot_kind: str) -> str:
    """``slot_kind`` under its current name (``conv3x3`` is ``conv``); an unknown kind is an error."""
    kind = canonical_kind(slot_kind) if isinstance(slot_kind, str) else slot_kind
    if kind not in _REGISTRY:
        raise QcreepError(f"unknown slot kind '{slot_kind}'; valid kinds: {', '.join(sorted(_REGISTRY))}")
    return kind


def _valid_name(name) -> bool:
    return isinstance(name, str) and name.replace("_", "").replace("-", "").isalnum()


def register_layer(name: str, slot_kind: str, *, quantum: bool, description: str = "", twin_of: str | None = None,
                   qubits: Callable[..., int] | None = None):
    """Decorator: register ``factory(slot, **options) -> nn.Module`` as ``name`` for ``slot_kind``.

    Example:
        >>> from torch import nn
        >>> from qcreep.layers.registry import create_layer, register_layer, unregister_layer
        >>> from qcreep.slots import DenseSlot
        >>> @register_layer("wide_linear", slot_kind="dense", quantum=False)
        ... def make_wide_linear(slot, *, dtype=None):
        ...     return nn.Linear(slot.in_features, slot.out_features, dtype=dtype)
        >>> create_layer("wide_linear", DenseSlot(8, 2), n_reps=3)   # options it does not name are dropped
        Linear(in_features=8, out_features=2, bias=True)
        >>> unregister_layer("wide_linear", "dense")

    ``twin_of`` marks a classical layer as the *classical twin* of the quantum layer of that name
    (same slot kind): a control with the same shapes, a matched parameter count and the same class
    of nonlinearity. :func:`twin_for` finds it. A quantum layer has at most one twin per slot kind;
    the quantum layer itself may be registered before or after its twin.

    ``qubits(slot) -> int`` (quantum layers) says how many qubits the layer needs for a slot, so
    that :func:`qcreep.creep.creep` can say which slots it can fill before building anything.

    Registering a name twice for the same slot kind is an error.
    """
    slot_kind = _check_kind(slot_kind)
    if not _valid_name(name):
        raise QcreepError(f"layer names are letters, digits, '_' and '-'; got {name!r}")
    if twin_of is not None:
        if not _valid_name(twin_of):
            raise QcreepError(f"twin_of names a quantum layer (letters, digits, '_' and '-'); got {twin_of!r}")
        if quantum:
            raise QcreepError(f"layer '{name}' cannot be quantum and a twin: twin_of marks the classical "
                              f"twin of quantum layer '{twin_of}'; register it with quantum=False")
        if twin_of == name:
            raise QcreepError(f"layer '{name}' cannot be its own twin")

    def decorator(factory):
        if name in _REGISTRY[slot_kind]:
            raise QcreepError(f"layer '{name}' is already registered for slot kind '{slot_kind}'; "
                              "choose another name or unregister_layer it first")
        if twin_of is not None:
            taken = _twins_of(twin_of, slot_kind)
            if taken:
                raise QcreepError(f"quantum layer '{twin_of}' already has a classical twin for slot kind "
                                  f"'{slot_kind}' ('{taken[0]}'); unregister_layer it first")
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        _REGISTRY[slot_kind][name] = LayerEntry(name, slot_kind, factory, bool(quantum), doc, twin_of, qubits)
        return factory

    return decorator


def unregister_layer(name: str, slot_kind: str) -> None:
    """Remove a registration (for tests and interactive sessions)."""
    slot_kind = get_layer_entry(name, slot_kind).slot_kind
    del _REGISTRY[slot_kind][name]


def get_layer_entry(name: str, slot_kind: str) -> LayerEntry:
    slot_kind = _check_kind(slot_kind)
    try:
        return _REGISTRY[slot_kind][name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY[slot_kind])) or "(none)"
        raise QcreepError(f"unknown layer '{name}' for slot kind '{slot_kind}'; valid: {valid}") from None


def _twins_of(quantum_name: str, slot_kind: str) -> list[str]:
    return sorted(e.name for e in _REGISTRY[slot_kind].values() if e.twin_of == quantum_name)


def twin_for(name: str, slot_kind: str) -> str:
    """The registered classical twin of the quantum layer ``name`` for ``slot_kind``.

    Raises a :class:`QcreepError` for an unknown name, a classical layer, or a quantum layer that
    has no registered twin; the message lists the quantum layers that have one.
    """
    entry = get_layer_entry(name, slot_kind)
    slot_kind = entry.slot_kind
    with_twins = sorted(e.twin_of for e in _REGISTRY[slot_kind].values()
                        if e.twin_of is not None and e.twin_of in _REGISTRY[slot_kind]
                        and _REGISTRY[slot_kind][e.twin_of].quantum)
    valid = ", ".join(with_twins) or "(none)"
    if not entry.quantum:
        what = f"the classical twin of '{entry.twin_of}'" if entry.twin_of else "a classical layer"
        raise QcreepError(f"layer '{name}' for slot kind '{slot_kind}' is {what}; only quantum layers have "
                          f"twins; quantum layers with a twin: {valid}")
    twins = _twins_of(name, slot_kind)
    if not twins:
        raise QcreepError(f"quantum layer '{name}' has no registered classical twin for slot kind "
                          f"'{slot_kind}'; quantum layers with a twin: {valid}")
    return twins[0]


def list_layers(slot_kind: str | None = None) -> list[str]:
    """Registered layer names for one slot kind, or ``kind:name`` for all kinds."""
    if slot_kind is not None:
        return sorted(_REGISTRY[_check_kind(slot_kind)])
    return [f"{kind}:{name}" for kind in sorted(_REGISTRY) for name in sorted(_REGISTRY[kind])]


def layer_entries(slot_kind: str | None = None) -> list[LayerEntry]:
    kinds = [_check_kind(slot_kind)] if slot_kind is not None else sorted(_REGISTRY)
    return [_REGISTRY[k][n] for k in kinds for n in sorted(_REGISTRY[k])]


def create_layer(name: str, slot, **options) -> nn.Module:
    """Build the layer registered as ``name`` for ``slot``'s kind.

    Options the factory does not name are dropped, so one set of model-wide options can be given
    to every slot. A layer registered as quantum must be a :class:`qcreep.layers.QuantumLayer`.
    """
    entry = get_layer_entry(name, slot.kind)
    accepted = entry.accepted_options()
    if accepted is not None:
        options = {k: v for k, v in options.items() if k in accepted}
    layer = entry.factory(slot, **options)
    if entry.quantum:
        from qcreep.layers.base import QuantumLayer

        if not isinstance(layer, QuantumLayer):
            raise QcreepError(f"layer {name!r} is registered as quantum but its factory returned "
                              f"{type(layer).__name__}, which is not a qcreep.layers.QuantumLayer; subclass it "
                              "(forward_reference, physicality, circuits, qubits_for) and check it with "
                              "qcreep.testing.assert_valid_layer")
    return layer
