"""A registry of candidate layers, keyed by the kind of slot they fill.

    @register_layer("my_conv", slot_kind="conv3x3", quantum=False, description="...")
    def make_my_conv(slot, *, bias=True):
        return MyConv(slot.in_channels, slot.out_channels, stride=slot.stride, padding=slot.padding)

A factory takes the slot (with its sizes) and keyword options. A model passes its layer options
(for example ``angles``, ``n_reps``, ``n_qubits``) to every factory, and each factory receives
only the options its signature names, so classical and third-party layers need not know about the
quantum ones.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from qcreep.errors import QcreepError
from qcreep.slots import SLOT_KINDS


@dataclass(frozen=True)
class LayerEntry:
    name: str
    slot_kind: str
    factory: Callable[..., nn.Module]
    quantum: bool
    description: str

    def accepted_options(self) -> set[str] | None:
        """Keyword options the factory takes; ``None`` when it takes ``**kwargs``."""
        params = list(inspect.signature(self.factory).parameters.values())[1:]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params}


_REGISTRY: dict[str, dict[str, LayerEntry]] = {kind: {} for kind in SLOT_KINDS}


def _check_kind(slot_kind: str) -> None:
    if slot_kind not in _REGISTRY:
        raise QcreepError(f"unknown slot kind '{slot_kind}'; valid kinds: {', '.join(sorted(_REGISTRY))}")


def register_layer(name: str, slot_kind: str, *, quantum: bool, description: str = ""):
    """Decorator: register ``factory(slot, **options) -> nn.Module`` as ``name`` for ``slot_kind``.

    Registering a name twice for the same slot kind is an error.
    """
    _check_kind(slot_kind)
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise QcreepError(f"layer names are letters, digits, '_' and '-'; got {name!r}")

    def decorator(factory):
        if name in _REGISTRY[slot_kind]:
            raise QcreepError(f"layer '{name}' is already registered for slot kind '{slot_kind}'; "
                              "choose another name or unregister_layer it first")
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        _REGISTRY[slot_kind][name] = LayerEntry(name, slot_kind, factory, bool(quantum), doc)
        return factory

    return decorator


def unregister_layer(name: str, slot_kind: str) -> None:
    """Remove a registration (for tests and interactive sessions)."""
    get_layer_entry(name, slot_kind)
    del _REGISTRY[slot_kind][name]


def get_layer_entry(name: str, slot_kind: str) -> LayerEntry:
    _check_kind(slot_kind)
    try:
        return _REGISTRY[slot_kind][name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY[slot_kind])) or "(none)"
        raise QcreepError(f"unknown layer '{name}' for slot kind '{slot_kind}'; valid: {valid}") from None


def list_layers(slot_kind: str | None = None) -> list[str]:
    """Registered layer names for one slot kind, or ``kind:name`` for all kinds."""
    if slot_kind is not None:
        _check_kind(slot_kind)
        return sorted(_REGISTRY[slot_kind])
    return [f"{kind}:{name}" for kind in sorted(_REGISTRY) for name in sorted(_REGISTRY[kind])]


def layer_entries(slot_kind: str | None = None) -> list[LayerEntry]:
    kinds = [slot_kind] if slot_kind is not None else sorted(_REGISTRY)
    for kind in kinds:
        _check_kind(kind)
    return [_REGISTRY[k][n] for k in kinds for n in sorted(_REGISTRY[k])]


def create_layer(name: str, slot, **options) -> nn.Module:
    """Build the layer registered as ``name`` for ``slot``'s kind.

    Options the factory does not name are dropped, so one set of model-wide options can be given
    to every slot.
    """
    entry = get_layer_entry(name, slot.kind)
    accepted = entry.accepted_options()
    if accepted is not None:
        options = {k: v for k, v in options.items() if k in accepted}
    return entry.factory(slot, **options)
