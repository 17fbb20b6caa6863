"""Creep quantum layers into any ``nn.Module``: find its slots, check everything, swap in a copy.

:func:`creep` walks a model's module tree and runs one forward pass of an example input with
hooks, to find every layer that a registered layer can fill and the shapes it sees:

* each ``nn.Linear`` is a ``dense`` slot (:class:`~qcreep.slots.DenseSlot`);
* each ``nn.Conv2d`` with ``groups=1`` and zero padding is a ``conv`` slot
  (:class:`~qcreep.slots.ConvSlot`, any kernel size, stride, padding and dilation).

Slots are named by their full module names (``features.0``, ``fc1``), in the order the forward
pass calls them. The rest of the network (activations, pooling, normalisation, residual additions,
attention, data-dependent control flow in ``forward``) is never touched: :meth:`Creep.build`
replaces modules in a deep copy of the model by module-tree surgery, not by tracing, so
``forward`` runs as the user wrote it.

Selection (``slots=``) follows PEFT's ``target_modules``: a pattern is a full module name, a dotted
suffix of one (``fc1`` selects ``head.fc1``), a regular expression that matches a whole name, a
module type (``nn.Linear``) or a type's name (``"Linear"``). Every slot is selected by default.
These are errors, raised before anything is built: a pattern that matches nothing, a selected
module that the forward pass calls more than once or that is registered under two names (a
replacement would be shared without anyone noticing), and a selected module that the forward
pass never calls. With the default selection such modules are not errors: they are listed in
:attr:`Creep.unfillable` with the reason, as are grouped convolutions and slots that need more
qubits than ``max_qubits`` for every quantum layer of their kind.

:meth:`Creep.build` returns a new model: slots that stay classical keep a copy of the user's
module with its weights (or get a fresh registered classical layer when the assignment names
one), quantum slots get fresh layers from the registry, created in forward order from the
current torch random state. Every new layer is built and checked against the shapes the slot
saw before the copy is changed, and the user's model is never changed. With every slot
classical, the built model computes exactly what the user's model computes.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from qcreep.creep import creep
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    >>> found = creep(net, torch.zeros(1, 1, 8, 8))
    >>> [(s.name, s.kind, s.input_shape, s.output_shape) for s in found.slots]
    [('0', 'conv', (1, 8, 8), (4, 8, 8)), ('3', 'dense', (256,), (3,))]
    >>> model = found.build({"0": "flipped_quanv3x3"})
    >>> type(model[0]).__name__, type(net[0]).__name__
    ('FlippedQuanv', 'Conv2d')
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import copy
import re
import sys
import types
from dataclasses import dataclass, field

import torch
from torch import nn

from qcreep.errors import QcreepError
from qcreep.layers import count_parameters, create_layer, get_layer_entry, layer_entries, list_layers
from qcreep.sim.paulis import MAX_QUBITS
from qcreep.slots import ConvSlot, DenseSlot

ORIGINAL = "original"
"""The assignment value that keeps a copy of the user's own module (with its weights) in a slot."""

BUILD_ATTRIBUTE = "_qcreep_build"
"""Where a built model keeps what was put in it (an ordinary attribute, so it pickles and copies)."""


@dataclass(frozen=True)
class Slot:
    """One fillable layer of a model.

    ``input_shape`` and ``output_shape`` are per example (without the batch axis), as observed in
    the forward pass of the example input. ``qubits`` gives, for each registered quantum layer of
    the slot's kind, the qubits it needs here.
    """

    name: str
    kind: str
    slot: ConvSlot | DenseSlot
    module_type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    order: int
    qubits: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.name} ({self.module_type}, {self.slot.describe()})"


@dataclass(frozen=True)
class Unfillable:
    """A layer that no registered layer can fill here, and why."""

    name: str
    module_type: str
    reason: str


def _slot_of(module: nn.Module) -> tuple[ConvSlot | DenseSlot | None, str | None]:
    """The slot type a module fills, or ``(None, reason)`` when it cannot be filled."""
    if isinstance(module, nn.Linear):
        return DenseSlot(module.in_features, module.out_features), None
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return None, f"a grouped convolution (groups={module.groups}); conv slots take groups=1"
        if module.padding_mode != "zeros":
            return None, f"padding_mode '{module.padding_mode}'; conv slots take zero padding"
        padding = module.padding
        if isinstance(padding, str):
            padding = module._reversed_padding_repeated_twice  # (w_left, w_right, h_top, h_bottom)
            if padding[0] != padding[1] or padding[2] != padding[3]:
                return None, "asymmetric 'same' padding (an even kernel); conv slots take symmetric padding"
            padding = (padding[2], padding[0])
        return ConvSlot(module.in_channels, module.out_channels, tuple(module.kernel_size), tuple(module.stride),
                        tuple(padding), tuple(module.dilation)), None
    return None, None


def _candidate_type(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear | nn.Conv2d)


def _quantum_qubits(slot) -> dict[str, int]:
    out = {}
    for entry in layer_entries(slot.kind):
        if entry.quantum:
            needed = entry.qubits_for(slot)
            if needed is not None:
                out[entry.name] = needed
    return out


def _matches(pattern, name: str, module: nn.Module) -> bool:
    if isinstance(pattern, type):
        return isinstance(module, pattern)
    if not isinstance(pattern, str):
        raise QcreepError(f"slot patterns are module names, suffixes, regular expressions or module types; "
                          f"got {pattern!r}")
    if name == pattern or name.endswith("." + pattern) or type(module).__name__ == pattern:
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _normalise_patterns(slots) -> list | None:
    if slots is None:
        return None
    if isinstance(slots, str | type):
        return [slots]
    patterns = list(slots)
    if not patterns:
        raise QcreepError("slots= selects at least one slot (a name, a suffix, a regex or a module type); "
                          "give None to select every slot")
    return patterns


def _observe(model: nn.Module, example_input, candidates: dict[str, nn.Module]):
    """Run ``example_input`` through a copy of ``model`` in eval mode, counting each candidate's calls.

    Returns ``{name: [calls, input shape, output shape, call index]}`` and the output. The copy keeps the
    user's model, its buffers (batch-norm statistics) and the global random state untouched.
    """
    probe = copy.deepcopy(model)
    probe.eval()
    seen: dict[str, list] = {name: [0, None, None, None] for name in candidates}
    order = iter(range(len(candidates) + 1_000_000))
    modules = dict(probe.named_modules(remove_duplicate=False))
    hooks = []

    def hook(name):
        def record(module, args, output):
            entry = seen[name]
            entry[0] += 1
            if entry[3] is None:
                entry[3] = next(order)
            if entry[1] is None and args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
                entry[1], entry[2] = tuple(args[0].shape), tuple(output.shape)
        return record

    for name in candidates:
        hooks.append(modules[name].register_forward_hook(hook(name)))
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            output = probe(*inputs)
    except QcreepError:
        raise
    except Exception as err:  # the user's forward, whatever it raises
        message = " ".join(str(err).split())
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs if isinstance(x, torch.Tensor))
        raise QcreepError(f"{type(model).__name__} fails on the example input {shapes} "
                          f"({type(err).__name__}: {message})") from None
    finally:
        for h in hooks:
            h.remove()
    return seen, output


class Creep:
    """The slots of one model, found by :func:`creep`; :meth:`build` fills them.

    Attributes:
        model: the user's model (never changed).
        slots: the selected fillable slots, in forward order.
        unfillable: layers that cannot be filled, with the reason.
        output_shape: per-example shape of the model's output on the example input.
    """

    def __init__(self, model: nn.Module, example_input, slots, unfillable, output_shape, batch: int):
        self.model = model
        self.example_input = example_input
        self.slots: list[Slot] = slots
        self.unfillable: list[Unfillable] = unfillable
        self.output_shape = output_shape
        self._batch = batch

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.slots]

    def slot(self, name: str) -> Slot:
        for s in self.slots:
            if s.name == name:
                return s
        raise QcreepError(f"unknown slot '{name}'; slots of {type(self.model).__name__}: "
                          f"{', '.join(self.names) or '(none)'}")

    def parse_assignment(self, assignment) -> dict[str, str]:
        """``{slot: layer}`` for every slot, from a dict or ``"fc1=data_reuploading,features.0=original"``.

        Slots that are not named keep the user's module (``original``). Unknown slots, layers not
        registered for the slot's kind and slots named twice are errors.
        """
        if assignment is None:
            items = {}
        elif isinstance(assignment, str):
            items = {}
            for part in filter(None, (p.strip() for p in assignment.split(","))):
                if "=" not in part:
                    raise QcreepError(f"assignment entries look like SLOT=LAYER (e.g. {self._example()}), "
                                      f"got '{part}'")
                slot, layer = (x.strip() for x in part.split("=", 1))
                if slot in items:
                    raise QcreepError(f"slot '{slot}' is assigned twice in '{assignment}'")
                items[slot] = layer
        elif isinstance(assignment, dict):
            items = dict(assignment)
        else:
            raise QcreepError(f"an assignment is a dict or text like {self._example()}, got {assignment!r}")
        filled = {s.name: ORIGINAL for s in self.slots}
        for name, layer in items.items():
            slot = self.slot(name)
            if layer != ORIGINAL:
                check_candidate(slot.name, slot.slot, layer)
            filled[name] = layer
        return filled

    def _example(self) -> str:
        if not self.slots:
            return "SLOT=LAYER"
        first = self.slots[0]
        quantum = [e.name for e in layer_entries(first.kind) if e.quantum]
        return f"{first.name}={quantum[0] if quantum else ORIGINAL}"

    def build(self, assignment=None, *, check: bool = True, source: nn.Module | None = None,
              **layer_options) -> nn.Module:
        """A new model with ``assignment``'s layers in its slots; the user's model is not changed.

        ``assignment`` maps slot names to registered layer names (or ``original``); unnamed slots
        keep a copy of the user's module. ``layer_options`` go to every layer factory (each takes
        the options it names: ``angles``, ``n_reps``, ``n_qubits``, ``output_scale``, ...). A new
        layer takes the dtype and device of the module it replaces unless ``dtype`` / ``device``
        are given. All new layers are created (in forward order) and checked against the slot's
        shapes before the copy is changed. ``source`` is another instance of the same model (for
        example one initialised from another seed) to copy instead of the model the slots were
        found in.
        """
        base = self.model if source is None else source
        if source is not None:
            ours = [(n, type(m)) for n, m in self.model.named_modules()]
            theirs = [(n, type(m)) for n, m in source.named_modules()]
            if ours != theirs:
                raise QcreepError(f"source model {type(source).__name__} does not have the module tree of "
                                  f"{type(self.model).__name__}; build from an instance of the same model")
        filled = self.parse_assignment(assignment)
        replacements = {}
        for slot in self.slots:
            layer_name = filled[slot.name]
            if layer_name == ORIGINAL:
                continue
            original = base.get_submodule(slot.name)
            options = dict(layer_options)
            param = next(original.parameters(), None)
            if param is not None:
                options.setdefault("dtype", param.dtype)
                options.setdefault("device", param.device)
            try:
                layer = create_layer(layer_name, slot.slot, **options)
            except QcreepError as err:
                raise QcreepError(f"slot '{slot.name}' ({slot.slot.describe()}), layer '{layer_name}': {err}") \
                    from None
            if check:
                _check_layer(slot, layer_name, layer)
            replacements[slot.name] = layer
        model = copy.deepcopy(base)
        for name, layer in replacements.items():
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, layer)
        quantum = [name for name, layer in filled.items()
                   if layer != ORIGINAL and get_layer_entry(layer, self.slot(name).kind).quantum]
        setattr(model, BUILD_ATTRIBUTE, {"assignment": filled, "quantum": quantum,
                                         "slots": {s.name: s.kind for s in self.slots}})
        return model

    def summary(self) -> dict:
        """The slots (kinds, shapes, parameters, qubits per quantum candidate) and the unfillable layers."""
        return {
            "model": type(self.model).__name__,
            "total_params": count_parameters(self.model),
            "output_shape": list(self.output_shape),
            "slots": [{"slot": s.name, "kind": s.kind, "module": s.module_type, "input": list(s.input_shape),
                       "output": list(s.output_shape), "params": s.params, "describe": s.slot.describe(),
                       "qubits": dict(s.qubits)} for s in self.slots],
            "unfillable": [{"slot": u.name, "module": u.module_type, "reason": u.reason} for u in self.unfillable],
        }


def check_candidate(slot_name: str, slot, layer: str, *, original: bool = True) -> None:
    """``layer`` must be registered for ``slot``'s kind; the error lists what is valid there."""
    kind = slot.kind
    if layer in list_layers(kind):
        return
    valid = ", ".join([ORIGINAL, *list_layers(kind)] if original else list_layers(kind))
    other = [k for k in ("conv", "dense") if k != kind and layer in list_layers(k)]
    if other:
        raise QcreepError(f"slot '{slot_name}' ({slot.describe()}) cannot take '{layer}', which fills "
                          f"{other[0]} slots; valid for this slot: {valid}")
    raise QcreepError(f"unknown layer '{layer}' for slot '{slot_name}' ({slot.describe()}); valid: {valid}")


def _check_layer(slot: Slot, layer_name: str, layer: nn.Module) -> None:
    param = next(layer.parameters(), None)
    dtype = (param.real.dtype if param.is_complex() else param.dtype) if param is not None \
        else torch.get_default_dtype()
    device = param.device if param is not None else None
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            y = layer(torch.zeros(1, *slot.input_shape, dtype=dtype, device=device))
    except Exception as err:  # a layer that cannot take the slot's input, whatever it raises
        message = " ".join(str(err).split())
        if not isinstance(err, QcreepError):
            message = f"it fails on input {(1, *slot.input_shape)} ({type(err).__name__}: {message})"
        raise QcreepError(f"slot '{slot.name}' ({slot.slot.describe()}), layer '{layer_name}': {message}") from None
    if not isinstance(y, torch.Tensor) or tuple(y.shape[1:]) != tuple(slot.output_shape) or y.is_complex():
        got = f"{tuple(y.shape[1:])} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise QcreepError(f"slot '{slot.name}' expects real output {tuple(slot.output_shape)} from input "
                          f"{tuple(slot.input_shape)}; layer '{layer_name}' gave {got}")


def _names_of(model: nn.Module) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if name:
            names.setdefault(id(module), []).append(name)
    return names


def creep(model: nn.Module, example_input, slots=None, *, max_qubits: int = MAX_QUBITS) -> Creep:
    """Find the slots of ``model`` by one forward pass of ``example_input``; see the module docs.

    Args:
        model: any ``nn.Module``; it is not changed (the forward pass runs on a copy, in eval mode).
        example_input: a batch the model takes (a tensor, or a tuple of positional inputs).
        slots: which slots to select: ``None`` (all), a pattern, or a list of patterns (full names,
            dotted suffixes, whole-name regular expressions, module types or type names).
        max_qubits: a slot that every quantum layer of its kind needs more qubits for is unfillable.
    """
    if not isinstance(model, nn.Module):
        raise QcreepError(f"creep takes an nn.Module, got {type(model).__name__}")
    patterns = _normalise_patterns(slots)
    names_of = _names_of(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    candidates = {name: m for name, m in modules.items() if name and _candidate_type(m)}
    seen, output = _observe(model, example_input, candidates)
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    batch = next((int(x.shape[0]) for x in inputs if isinstance(x, torch.Tensor) and x.dim()), 1)

    def listing() -> str:
        return ", ".join(f"{n} ({type(m).__name__})" for n, m in candidates.items()) or "(none)"

    if patterns is not None:
        for pattern in patterns:
            if not any(_matches(pattern, n, m) for n, m in candidates.items()):
                shown = pattern.__name__ if isinstance(pattern, type) else pattern
                raise QcreepError(f"slot pattern '{shown}' matches no layer of {type(model).__name__}; "
                                  f"candidates: {listing()}")
        selected = [n for n, m in candidates.items() if any(_matches(p, n, m) for p in patterns)]
    else:
        selected = list(candidates)

    found, unfillable = [], []
    for name in selected:
        module = candidates[name]
        calls, in_shape, out_shape, _ = seen[name]
        aliases = [n for n in names_of[id(module)] if n != name]
        problem = None
        if aliases:
            problem = (f"module '{name}' is also registered as '{aliases[0]}' (one module shared by two parents); "
                       "a replacement would be shared without anyone noticing")
        elif calls > 1:
            problem = (f"module '{name}' runs {calls} times in one forward pass; a replacement would be shared "
                       "by every call")
        elif calls == 0:
            problem = f"module '{name}' is never called by the forward pass of the example input"
        elif in_shape is None:
            problem = f"module '{name}' does not take and give plain tensors"
        if problem is not None:
            if patterns is not None:
                raise QcreepError(f"{problem}; candidates: {listing()}")
            unfillable.append(Unfillable(name, type(module).__name__, problem.split("; ")[0]))
            continue
        slot_type, reason = _slot_of(module)
        if slot_type is None:
            unfillable.append(Unfillable(name, type(module).__name__, reason))
            continue
        qubits = _quantum_qubits(slot_type)
        if qubits and min(qubits.values()) > max_qubits:
            need = ", ".join(f"{layer} {n}" for layer, n in sorted(qubits.items()))
            unfillable.append(Unfillable(name, type(module).__name__,
                                         f"needs more qubits than the limit of {max_qubits} ({need})"))
            continue
        found.append((name, module, slot_type, in_shape, out_shape, qubits))

    found.sort(key=lambda f: seen[f[0]][3])
    slots_out = [Slot(name, slot_type.kind, slot_type, type(module).__name__, tuple(in_shape[1:]),
                      tuple(out_shape[1:]), count_parameters(module), index, qubits)
                 for index, (name, module, slot_type, in_shape, out_shape, qubits) in enumerate(found)]
    output_shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
    return Creep(model, example_input, slots_out, unfillable, output_shape, batch)


# ------------------------------------------------------------------------------------------------
# what a built model holds


def build_info(model: nn.Module) -> dict | None:
    """What :meth:`Creep.build` put in ``model`` (assignment, quantum slots, slot kinds), or None."""
    return getattr(model, BUILD_ATTRIBUTE, None)


def quantum_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{slot name: module}`` of the quantum layers that :meth:`Creep.build` put in ``model``."""
    info = build_info(model)
    if info is None:
        return {}
    return {name: model.get_submodule(name) for name in info["quantum"]}


def format_slots(summary: dict) -> str:
    """:meth:`Creep.summary` as text: one line per slot, then the layers that cannot be filled and why."""
    header = ("slot", "module", "kind", "input", "output", "params", "qubits if quantum")
    rows = [header]
    for s in summary["slots"]:
        qubits = ", ".join(f"{layer} {n}" for layer, n in sorted(s["qubits"].items())) or "-"
        rows.append((s["slot"], s["module"], s["kind"], "x".join(map(str, s["input"])),
                     "x".join(map(str, s["output"])), f"{s['params']:,}", qubits))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{summary['model']}: {len(summary['slots'])} slot(s), {summary['total_params']:,} parameters, "
             f"output {'x'.join(map(str, summary['output_shape']))}"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    if summary["unfillable"]:
        lines.append("cannot be filled:")
        lines += [f"  {u['slot']} ({u['module']}): {u['reason']}" for u in summary["unfillable"]]
    return "\n".join(lines)


class _CallableModule(types.ModuleType):
    """``qcreep.creep(model, example_input, slots=None)`` calls :func:`creep`: the module is the verb."""

    def __call__(self, *args, **kwargs):
        return creep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
