"""Networks whose layers are vacancies: backbones of typed slots, filled by level or by assignment.

A :class:`Backbone` is an ordered list of steps. A step is either a named :class:`SlotSpec` (a
vacancy with a fixed input/output type and a classical and a quantum default candidate) or a fixed
operation between slots (``flatten``). :func:`hybridnet` is the paper's network:

    conv1 (conv3x3, C_in -> 32) -> conv2 (conv3x3, 32 -> 16) -> flatten -> head (dense -> 10)

with no activations and no normalisation. Slots are filled either by the paper's **replacement
level** (0: all classical, 1: both convolutions quantum, 2: all quantum) or by an explicit
**assignment** ``{slot: layer name}``; :func:`all_assignments` lists every assignment from
all-classical to all-quantum. :class:`SlotNetwork` checks that every filled slot fits, before any
data flows, and reports a per-slot summary.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from qcreep.errors import QcreepError
from qcreep.layers import count_parameters, create_layer, get_layer_entry, list_layers
from qcreep.slots import Conv3x3Slot, DenseSlot


@dataclass(frozen=True)
class SlotSpec:
    """A named vacancy: its slot type and the candidates a ladder swaps between."""

    name: str
    slot: Conv3x3Slot | DenseSlot
    classical: str
    quantum: str


@dataclass(frozen=True)
class FixedStep:
    """A fixed operation between slots. ``op`` is one of :data:`FIXED_OPS`."""

    op: str


def _flatten_shape(shape):
    return (math.prod(shape),)


FIXED_OPS = {"flatten": (lambda: nn.Flatten(start_dim=1), _flatten_shape)}


@dataclass(frozen=True)
class Backbone:
    """An ordered list of slots and fixed steps, for inputs of ``input_shape`` (without batch)."""

    name: str
    input_shape: tuple[int, ...]
    steps: tuple[SlotSpec | FixedStep, ...]
    levels: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self):
        names = [s.name for s in self.slots]
        if len(set(names)) != len(names):
            raise QcreepError(f"backbone '{self.name}' has repeated slot names: {', '.join(names)}")
        for step in self.steps:
            if isinstance(step, FixedStep) and step.op not in FIXED_OPS:
                raise QcreepError(f"unknown fixed step '{step.op}'; valid: {', '.join(sorted(FIXED_OPS))}")
        for quantum_slots in self.levels.values():
            for slot in quantum_slots:
                self.slot(slot)

    @property
    def slots(self) -> list[SlotSpec]:
        return [s for s in self.steps if isinstance(s, SlotSpec)]

    @property
    def slot_names(self) -> list[str]:
        return [s.name for s in self.slots]

    def slot(self, name: str) -> SlotSpec:
        for spec in self.slots:
            if spec.name == name:
                return spec
        raise QcreepError(f"unknown slot '{name}'; slots of {self.name}: {', '.join(self.slot_names)}")

    def shapes(self) -> list[tuple[str, tuple, tuple]]:
        """``(step name, input shape, output shape)`` for every step, by slot shape arithmetic.

        Raises a :class:`QcreepError` naming the slot where the shapes stop fitting.
        """
        shape = tuple(self.input_shape)
        out = []
        for step in self.steps:
            if isinstance(step, SlotSpec):
                new = step.slot.output_shape(shape, step.name)
                out.append((step.name, shape, new))
            else:
                new = FIXED_OPS[step.op][1](shape)
                out.append((step.op, shape, new))
            shape = new
        return out

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes()[-1][2]


def hybridnet(input_shape=(1, 32, 32), num_classes: int = 10) -> Backbone:
    """The paper's HybridNet for images of ``input_shape = (C, H, W)``.

    ``head`` takes ``16 * (H - 4) * (W - 4)`` features: 12544 for 32x32 inputs (7 qubits), 1024 for
    the 12x12 padded digits (5 qubits).
    """
    if len(input_shape) != 3:
        raise QcreepError(f"hybridnet takes an image input shape (C, H, W), got {tuple(input_shape)}")
    c, h, w = input_shape
    if h < 5 or w < 5:
        raise QcreepError(f"hybridnet needs images of at least 5x5 (two 3x3 convolutions), got {tuple(input_shape)}")
    features = 16 * (h - 4) * (w - 4)
    return Backbone(
        name="hybridnet",
        input_shape=tuple(input_shape),
        steps=(
            SlotSpec("conv1", Conv3x3Slot(c, 32), classical="conv2d", quantum="flipped_quanv3x3"),
            SlotSpec("conv2", Conv3x3Slot(32, 16), classical="conv2d", quantum="flipped_quanv3x3"),
            FixedStep("flatten"),
            SlotSpec("head", DenseSlot(features, num_classes), classical="linear", quantum="data_reuploading"),
        ),
        levels={0: (), 1: ("conv1", "conv2"), 2: ("conv1", "conv2", "head")},
    )


def level_assignment(backbone: Backbone, level: int) -> dict[str, str]:
    """The assignment of a replacement level: the level's slots quantum, the others classical."""
    if isinstance(level, bool) or level not in backbone.levels:
        valid = ", ".join(str(k) for k in sorted(backbone.levels))
        raise QcreepError(f"unknown replacement level {level!r} for {backbone.name}; valid levels: {valid}")
    quantum = set(backbone.levels[level])
    return {s.name: (s.quantum if s.name in quantum else s.classical) for s in backbone.slots}


def parse_assignment(spec, backbone: Backbone) -> dict[str, str]:
    """An assignment from ``"conv1=flipped_quanv3x3,head=linear"`` or a dict.

    Slots that are not named keep their classical candidate. Unknown slots and layers that are not
    registered for the slot's kind are errors.
    """
    if isinstance(spec, str):
        items = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise QcreepError("assignment entries look like SLOT=LAYER (e.g. conv1=flipped_quanv3x3), "
                                  f"got '{part}'")
            slot, layer = (x.strip() for x in part.split("=", 1))
            if slot in items:
                raise QcreepError(f"slot '{slot}' is assigned twice in '{spec}'")
            items[slot] = layer
        spec = items
    if not isinstance(spec, dict) or not spec:
        raise QcreepError("an assignment names at least one slot, e.g. conv1=flipped_quanv3x3,conv2=conv2d,head=linear")
    assignment = {s.name: s.classical for s in backbone.slots}
    for slot_name, layer in spec.items():
        slot = backbone.slot(slot_name)
        _check_candidate(slot, layer)
        assignment[slot_name] = layer
    return assignment


def _check_candidate(spec: SlotSpec, layer: str) -> None:
    kind = spec.slot.kind
    if layer in list_layers(kind):
        return
    other = [k for k in ("conv3x3", "dense") if k != kind and layer in list_layers(k)]
    if other:
        raise QcreepError(f"slot '{spec.name}' ({spec.slot.describe()}) cannot take '{layer}', which fills "
                          f"{other[0]} slots; valid for this slot: {', '.join(list_layers(kind))}")
    raise QcreepError(f"unknown layer '{layer}' for slot '{spec.name}' ({spec.slot.describe()}); "
                      f"valid: {', '.join(list_layers(kind))}")


def all_assignments(backbone: Backbone) -> list[dict[str, str]]:
    """Every classical/quantum assignment of the slots (``2**k`` for ``k`` slots).

    Ordered from all-classical to all-quantum: by the number of quantum slots, then by which slots
    (earlier slots turn quantum first).
    """
    slots = backbone.slots
    combos = sorted(itertools.product((False, True), repeat=len(slots)),
                    key=lambda bits: (sum(bits), [not b for b in bits]))
    return [{s.name: (s.quantum if q else s.classical) for s, q in zip(slots, bits)} for bits in combos]


def twin_assignment(backbone: Backbone, assignment: dict[str, str]) -> dict[str, str]:
    """``assignment`` with every quantum layer replaced by its registered classical twin.

    Example:
        >>> import qcreep.layers
        >>> backbone = hybridnet((1, 12, 12))
        >>> twin_assignment(backbone, level_assignment(backbone, 1))["conv1"]
        'conv3x3_twin'
    """
    from qcreep.layers.registry import twin_for  # noqa: PLC0415 - the registry grows as layers import

    twin = {}
    for slot_name, layer in assignment.items():
        kind = backbone.slot(slot_name).slot.kind
        twin[slot_name] = twin_for(layer, kind) if get_layer_entry(layer, kind).quantum else layer
    return twin


def is_quantum_assignment(backbone: Backbone, assignment: dict[str, str]) -> bool:
    """True when at least one slot holds a quantum layer."""
    return any(get_layer_entry(layer, backbone.slot(s).slot.kind).quantum for s, layer in assignment.items())


def assignment_label(assignment: dict[str, str]) -> str:
    """Canonical text form, e.g. ``conv1=flipped_quanv3x3,conv2=conv2d,head=linear``."""
    return ",".join(f"{k}={v}" for k, v in assignment.items())


def level_of(backbone: Backbone, assignment: dict[str, str]) -> int | None:
    """The replacement level an assignment equals, if any."""
    for level in sorted(backbone.levels):
        if level_assignment(backbone, level) == assignment:
            return level
    return None


class SlotNetwork(nn.Module):
    """A backbone with every slot filled. ``forward`` runs the steps in order.

    Args:
        backbone: the slots and fixed steps.
        assignment: ``{slot name: registered layer name}`` for every slot.
        layer_options: passed to every layer factory (each takes the options it names), e.g.
            ``angles="real"``, ``n_reps=10``, ``n_qubits=None``, ``dtype``, ``device``.
        check: run one zero input through each filled slot at build time to verify that the layer
            really gives the slot's output shape (catches third-party layers that do not fit).
    """

    def __init__(self, backbone: Backbone, assignment: dict[str, str], *, check: bool = True, **layer_options):
        super().__init__()
        self.backbone = backbone
        missing = [s for s in backbone.slot_names if s not in assignment]
        extra = [s for s in assignment if s not in backbone.slot_names]
        if extra:
            backbone.slot(extra[0])
        if missing:
            raise QcreepError(f"no layer assigned to slot(s) {', '.join(missing)} of {backbone.name}")
        self.assignment = {s: assignment[s] for s in backbone.slot_names}
        shapes = backbone.shapes()
        self._shapes = {name: (i, o) for name, i, o in shapes}
        self.steps = nn.ModuleDict()
        for index, step in enumerate(backbone.steps):
            if isinstance(step, SlotSpec):
                layer_name = self.assignment[step.name]
                _check_candidate(step, layer_name)
                try:
                    layer = create_layer(layer_name, step.slot, **layer_options)
                except QcreepError as err:
                    raise QcreepError(f"slot '{step.name}' ({step.slot.describe()}), layer '{layer_name}': "
                                      f"{err}") from None
                if check:
                    self._check_layer(step, layer_name, layer, layer_options)
                self.steps[step.name] = layer
            else:
                self.steps[f"{step.op}_{index}"] = FIXED_OPS[step.op][0]()

    def _check_layer(self, step: SlotSpec, layer_name: str, layer: nn.Module, options) -> None:
        in_shape, out_shape = self._shapes[step.name]
        param = next(layer.parameters(), None)
        dtype = param.real.dtype if param is not None and param.is_complex() else (
            param.dtype if param is not None else torch.get_default_dtype())
        device = param.device if param is not None else None
        with torch.no_grad():
            try:
                y = layer(torch.zeros(1, *in_shape, dtype=dtype, device=device))
            except Exception as err:  # a layer that cannot take the slot's input, whatever it raises
                message = " ".join(str(err).split())
                if not isinstance(err, QcreepError):
                    message = f"it fails on input {(1, *in_shape)} ({type(err).__name__}: {message})"
                raise QcreepError(f"slot '{step.name}' ({step.slot.describe()}), layer '{layer_name}': "
                                  f"{message}") from None
        if tuple(y.shape[1:]) != tuple(out_shape) or y.is_complex():
            raise QcreepError(f"slot '{step.name}' expects real output {tuple(out_shape)} from input "
                              f"{tuple(in_shape)}; "
                              f"layer '{layer_name}' gave {tuple(y.shape[1:])} {y.dtype}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = tuple(self.backbone.input_shape)
        if tuple(x.shape[1:]) != expected:
            raise QcreepError(f"{self.backbone.name} expects input (B, {', '.join(map(str, expected))}), "
                              f"got {tuple(x.shape)}")
        for module in self.steps.values():
            x = module(x)
        return x

    def quantum_layers(self) -> dict[str, nn.Module]:
        return {name: self.steps[name] for name in self.backbone.slot_names
                if get_layer_entry(self.assignment[name], self.backbone.slot(name).slot.kind).quantum}

    def summary(self) -> dict:
        """Per slot: candidate, quantum or not, input/output shape, parameter count; and the total."""
        rows = []
        for step_name, in_shape, out_shape in self.backbone.shapes():
            if step_name in self.assignment:
                spec = self.backbone.slot(step_name)
                entry = get_layer_entry(self.assignment[step_name], spec.slot.kind)
                layer = self.steps[step_name]
                row = {"slot": step_name, "kind": spec.slot.kind, "layer": entry.name,
                       "quantum": entry.quantum, "input": list(in_shape), "output": list(out_shape),
                       "params": count_parameters(layer)}
                for key in ("n_qubits", "n_reps", "output_scale", "bias_init"):
                    if hasattr(layer, key):
                        row[key] = getattr(layer, key)
                if entry.twin_of:
                    row["twin_of"] = entry.twin_of
                rows.append(row)
            else:
                rows.append({"slot": step_name, "kind": "fixed", "layer": step_name, "quantum": False,
                             "input": list(in_shape), "output": list(out_shape), "params": 0})
        return {"backbone": self.backbone.name, "input_shape": list(self.backbone.input_shape),
                "assignment": dict(self.assignment), "level": level_of(self.backbone, self.assignment),
                "slots": rows, "total_params": count_parameters(self)}


def loss_and_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                      device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction) of ``model`` on ``(x, y)``, in order, without gradients.

    The model's train/eval mode is left as it is; callers set it.

    Example:
        >>> import torch
        >>> logits = torch.nn.Linear(4, 3)
        >>> loss, acc = loss_and_accuracy(logits, torch.randn(10, 4), torch.zeros(10, dtype=torch.long), 4,
        ...                               torch.device("cpu"), torch.float32)
        >>> 0.0 <= acc <= 1.0 and loss > 0
        True
    """
    import torch.nn.functional as F

    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            xb = x[start:start + batch_size].to(device=device, dtype=dtype)
            yb = y[start:start + batch_size].to(device)
            out = model(xb)
            total_loss += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    return total_loss / len(y), correct / len(y)


def format_summary(summary: dict) -> str:
    """The summary as an aligned text table."""
    header = ("slot", "kind", "layer", "input", "output", "params", "details")
    lines = [header]
    for row in summary["slots"]:
        layer = row["layer"] + (" (quantum)" if row["quantum"] else "")
        details = []
        if "n_qubits" in row:
            details.append(f"{row['n_qubits']} qubits")
        if "n_reps" in row:
            details.append(f"{row['n_reps']} re-uploads")
        if "output_scale" in row:
            details.append(f"readout scale {row['output_scale']}, bias init {row['bias_init']}")
        if "twin_of" in row:
            details.append(f"classical twin of {row['twin_of']}")
        lines.append((row["slot"], row["kind"], layer, "x".join(map(str, row["input"])),
                      "x".join(map(str, row["output"])), f"{row['params']:,}", "; ".join(details)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    level = summary.get("level")
    rung = f"level {level}" if level is not None else assignment_label(summary["assignment"])
    text.insert(0, f"{summary['backbone']} ({rung}), input {'x'.join(map(str, summary['input_shape']))}")
    text.append(f"total parameters: {summary['total_params']:,}")
    return "\n".join(text)


def build_model(input_shape=(1, 32, 32), *, level: int | None = None, assignment=None,
                num_classes: int = 10, backbone: Backbone | None = None, **layer_options) -> SlotNetwork:
    """The paper's HybridNet (or ``backbone``) filled by ``level`` or by ``assignment``.

    Exactly one of ``level`` and ``assignment`` is given.
    """
    backbone = backbone or hybridnet(input_shape, num_classes)
    if (level is None) == (assignment is None):
        raise QcreepError("give exactly one of level (0, 1, 2) and assignment (e.g. conv1=flipped_quanv3x3)")
    filled = level_assignment(backbone, level) if level is not None else parse_assignment(assignment, backbone)
    return SlotNetwork(backbone, filled, **layer_options)
