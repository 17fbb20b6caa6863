"""Networks whose layers are vacancies: the paper's HybridNet, backbones of slots, levels and assignments.

Every network, the paper's included, goes through one mechanism, :func:`qcreep.creep.creep`: its
slots are found in the module tree and filled in a copy (:meth:`qcreep.creep.Creep.build`). A
:class:`Backbone` is a model's found slots together with each slot's classical and quantum
candidates and the model's named **replacement levels**, if it has any.

:class:`HybridNet` is the paper's network, an ordinary ``nn.Module``:

    conv1 (Conv2d C_in -> 32, 3x3) -> conv2 (Conv2d 32 -> 16, 3x3) -> flatten -> head (Linear -> 10)

with no activations and no normalisation. :func:`hybridnet` is its backbone. Its levels are the
paper's (0: all classical, 1: both convolutions quantum, 2: all quantum), and its classical
candidates are the registered ``conv2d`` and ``linear``: every slot of a built HybridNet is a
fresh registered layer, created in slot order from the caller's random state, so a seed gives the
same initial weights as the paper's code. Slots are filled either by level or by an explicit
**assignment** ``{slot: layer name}``; :func:`all_assignments` lists every assignment from
all-classical to all-quantum.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import torch
from torch import nn

from qcreep.creep import ORIGINAL, Creep, build_info, check_candidate, creep, quantum_layers
from qcreep.errors import QcreepError
from qcreep.layers import count_parameters, get_layer_entry, layer_entries
from qcreep.slots import ConvSlot, DenseSlot


@dataclass(frozen=True)
class SlotSpec:
    """A named vacancy: its slot type and the candidates a ladder swaps between."""

    name: str
    slot: ConvSlot | DenseSlot
    classical: str
    quantum: str


def default_quantum(kind: str) -> str:
    """The quantum candidate a slot of ``kind`` gets when its model names none: the paper's layers."""
    return {"conv": "flipped_quanv3x3", "dense": "data_reuploading"}.get(kind) or \
        next(e.name for e in layer_entries(kind) if e.quantum)


@dataclass
class Backbone:
    """A model's slots (found by :func:`qcreep.creep.creep`), their candidates and the model's levels.

    Attributes:
        name: how tables and summaries name the model.
        input_shape: per-example input shape ``(C, H, W)`` or ``(F,)``.
        found: the :class:`~qcreep.creep.Creep` of the template model.
        classical / quantum: each slot's classical and quantum candidate (``original`` keeps the
            user's module; the default quantum candidate is the paper's layer of the slot's kind).
        levels: named replacement levels, ``{level: slots that are quantum}`` (HybridNet's 0, 1, 2).
        keeps_original: whether a slot may keep the template's own module (``original``). HybridNet's
            template is built outside the caller's random state and its weights are never used:
            every slot of it is a fresh registered layer.
    """

    name: str
    input_shape: tuple[int, ...]
    found: Creep
    classical: dict[str, str] = field(default_factory=dict)
    quantum: dict[str, str] = field(default_factory=dict)
    levels: dict[int, tuple[str, ...]] = field(default_factory=dict)
    keeps_original: bool = True
    spec: str | None = None
    structure: str | None = None

    def __post_init__(self):
        for s in self.found.slots:
            self.classical.setdefault(s.name, ORIGINAL)
            self.quantum.setdefault(s.name, default_quantum(s.kind))
        for quantum_slots in self.levels.values():
            for slot in quantum_slots:
                self.slot(slot)

    @property
    def slots(self) -> list[SlotSpec]:
        return [SlotSpec(s.name, s.slot, self.classical[s.name], self.quantum[s.name]) for s in self.found.slots]

    @property
    def slot_names(self) -> list[str]:
        return self.found.names

    def slot(self, name: str) -> SlotSpec:
        for spec in self.slots:
            if spec.name == name:
                return spec
        raise QcreepError(f"unknown slot '{name}'; slots of {self.name}: {', '.join(self.slot_names) or '(none)'}")

    def shapes(self) -> list[tuple[str, tuple, tuple]]:
        """``(slot name, input shape, output shape)`` for every slot, in forward order."""
        return [(s.name, s.input_shape, s.output_shape) for s in self.found.slots]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.found.output_shape)


def backbone_of(model: nn.Module, input_shape, *, slots=None, name: str | None = None, classical=None,
                quantum=None, levels=None, dtype=None, keeps_original: bool = True) -> Backbone:
    """The :class:`Backbone` of any ``model`` for inputs of ``input_shape`` (per example)."""
    param = next(model.parameters(), None)
    dtype = dtype or (param.dtype if param is not None and not param.is_complex() else torch.get_default_dtype())
    device = param.device if param is not None else None
    example = torch.zeros(2, *input_shape, dtype=dtype, device=device)
    found = creep(model, example, slots)
    return Backbone(name or type(model).__name__, tuple(input_shape), found, dict(classical or {}),
                    dict(quantum or {}), dict(levels or {}), keeps_original)


class HybridNet(nn.Module):
    """The paper's HybridNet (Wang et al., arXiv:2409.17583) for images of ``input_shape = (C, H, W)``.

    ``conv1 = Conv2d(C, 32, 3)``, ``conv2 = Conv2d(32, 16, 3)``, flatten, ``head = Linear(16 (H - 4)
    (W - 4), num_classes)``; no activations, no normalisation. ``head`` takes 12544 features for
    32x32 inputs (7 qubits when quantum), 1024 for the 12x12 padded digits (5 qubits).

    Example:
        >>> import torch
        >>> net = HybridNet((1, 12, 12))
        >>> net(torch.zeros(2, 1, 12, 12)).shape
        torch.Size([2, 10])
    """

    def __init__(self, input_shape=(1, 32, 32), num_classes: int = 10, *, dtype=None, device=None):
        super().__init__()
        if len(input_shape) != 3:
            raise QcreepError(f"hybridnet takes an image input shape (C, H, W), got {tuple(input_shape)}")
        c, h, w = input_shape
        if h < 5 or w < 5:
            raise QcreepError(f"hybridnet needs images of at least 5x5 (two 3x3 convolutions), "
                              f"got {tuple(input_shape)}")
        self.input_shape = tuple(int(v) for v in input_shape)
        self.conv1 = nn.Conv2d(c, 32, 3, dtype=dtype, device=device)
        self.conv2 = nn.Conv2d(32, 16, 3, dtype=dtype, device=device)
        self.flatten = nn.Flatten(start_dim=1)
        self.head = nn.Linear(16 * (h - 4) * (w - 4), num_classes, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise QcreepError(f"hybridnet expects input (B, {', '.join(map(str, self.input_shape))}), "
                              f"got {tuple(x.shape)}")
        return self.head(self.flatten(self.conv2(self.conv1(x))))


HYBRIDNET_LEVELS = {0: (), 1: ("conv1", "conv2"), 2: ("conv1", "conv2", "head")}


@functools.lru_cache(maxsize=32)
def _hybridnet(input_shape: tuple, num_classes: int) -> Backbone:
    with torch.random.fork_rng(devices=[]):  # its own weights are never used (every slot is built fresh)
        template = HybridNet(input_shape, num_classes)
    return backbone_of(template, input_shape, name="hybridnet", keeps_original=False,
                       classical={"conv1": "conv2d", "conv2": "conv2d", "head": "linear"},
                       quantum={"conv1": "flipped_quanv3x3", "conv2": "flipped_quanv3x3", "head": "data_reuploading"},
                       levels=HYBRIDNET_LEVELS)


def hybridnet(input_shape=(1, 32, 32), num_classes: int = 10) -> Backbone:
    """The paper's HybridNet as a backbone: slots ``conv1``, ``conv2``, ``head`` and levels 0, 1, 2.

    Example:
        >>> backbone = hybridnet((1, 12, 12))
        >>> [(s.name, s.slot.describe()) for s in backbone.slots]  # doctest: +NORMALIZE_WHITESPACE
        [('conv1', "conv 3x3 (1, H, W) -> (32, H', W')"), ('conv2', "conv 3x3 (32, H, W) -> (16, H', W')"),
         ('head', 'dense (1024,) -> (10,)')]
    """
    if isinstance(input_shape, (list, tuple)) and len(input_shape) != 3:
        raise QcreepError(f"hybridnet takes an image input shape (C, H, W), got {tuple(input_shape)}")
    return _hybridnet(tuple(int(v) for v in input_shape), int(num_classes))


def cumulative_levels(slot_names) -> dict[int, tuple[str, ...]]:
    """Level k makes the first k slots quantum, in forward order: the quantum creeping in."""
    names = list(slot_names)
    return {k: tuple(names[:k]) for k in range(len(names) + 1)}


@functools.lru_cache(maxsize=16)
def backbone_for(spec: str, input_shape: tuple, num_classes: int, slots: tuple | None = None) -> Backbone:
    """The backbone of model ``spec`` (:mod:`qcreep.modelspec`) for ``input_shape`` and ``num_classes``.

    HybridNet has the paper's levels and candidates. Any other model keeps its own modules as the
    classical candidates (``original``), takes the paper's layers as the quantum ones, and gets
    cumulative levels (:func:`cumulative_levels`). ``slots`` selects slots as in
    :func:`qcreep.creep.creep`. The template is built outside the caller's random state.
    """
    from qcreep.modelspec import make_model, model_label, structure_hash  # noqa: PLC0415

    input_shape = tuple(int(v) for v in input_shape)
    if spec == "hybridnet":
        if slots:
            raise QcreepError("hybridnet's slots are conv1, conv2 and head; select rungs with --levels or --assign, "
                              "not --slots")
        backbone = hybridnet(input_shape, num_classes)
        backbone.spec = spec
        return backbone
    with torch.random.fork_rng(devices=[]):
        template = make_model(spec, input_shape, num_classes)
        backbone = backbone_of(template, input_shape, slots=list(slots) if slots else None, name=model_label(spec))
    if not backbone.slots and getattr(template, "qcreep_end_to_end", False):
        # an end-to-end model (qcreep.endtoend) has nothing to swap: it runs as one rung, level 0
        backbone.levels = {0: ()}
        backbone.spec = spec
        backbone.structure = structure_hash(template)
        return backbone
    if not backbone.slots:
        found = "; ".join(f"{u.name}: {u.reason}" for u in backbone.found.unfillable) or \
            "it has no nn.Linear or nn.Conv2d"
        raise QcreepError(f"model '{spec}' has no slot that a registered layer can fill ({found})")
    backbone.levels = cumulative_levels(backbone.slot_names)
    backbone.spec = spec
    backbone.structure = structure_hash(template)
    if backbone.output_shape != (num_classes,):
        raise QcreepError(f"model '{spec}' gives outputs of shape {backbone.output_shape} per example; a classifier of "
                          f"{num_classes} classes gives ({num_classes},)")
    return backbone


def level_assignment(backbone: Backbone, level: int) -> dict[str, str]:
    """The assignment of a replacement level: the level's slots quantum, the others classical."""
    if isinstance(level, bool) or level not in backbone.levels:
        valid = ", ".join(str(k) for k in sorted(backbone.levels)) or "(none: this model has no named levels)"
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
                first = backbone.slots[0] if backbone.slots else None
                example = f"{first.name}={first.quantum}" if first else "SLOT=LAYER"
                raise QcreepError(f"assignment entries look like SLOT=LAYER (e.g. {example}), got '{part}'")
            slot, layer = (x.strip() for x in part.split("=", 1))
            if slot in items:
                raise QcreepError(f"slot '{slot}' is assigned twice in '{spec}'")
            items[slot] = layer
        spec = items
    if isinstance(spec, dict) and not spec and not backbone.slots:
        return {}  # an end-to-end model: nothing to assign
    if not isinstance(spec, dict) or not spec:
        raise QcreepError("an assignment names at least one slot, e.g. conv1=flipped_quanv3x3,conv2=conv2d,head=linear")
    assignment = {s.name: s.classical for s in backbone.slots}
    for slot_name, layer in spec.items():
        slot = backbone.slot(slot_name)
        _check_candidate(backbone, slot, layer)
        assignment[slot_name] = layer
    return assignment


def _check_candidate(backbone: Backbone, spec: SlotSpec, layer: str) -> None:
    if layer == ORIGINAL and backbone.keeps_original:
        return
    check_candidate(spec.name, spec.slot, layer, original=backbone.keeps_original)


def all_assignments(backbone: Backbone) -> list[dict[str, str]]:
    """Every classical/quantum assignment of the slots (``2**k`` for ``k`` slots).

    Ordered from all-classical to all-quantum: by the number of quantum slots, then by which slots
    (earlier slots turn quantum first).
    """
    slots = backbone.slots
    combos = sorted(itertools.product((False, True), repeat=len(slots)),
                    key=lambda bits: (sum(bits), [not b for b in bits]))
    return [{s.name: (s.quantum if q else s.classical) for s, q in zip(slots, bits)} for bits in combos]


RUNG_KINDS = ("cumulative", "single", "all")


def rung_assignments(backbone: Backbone, rungs: str = "cumulative") -> list[dict[str, str]]:
    """The ladder of a model over its slots, all-classical first.

    ``cumulative``: rung k has the first k slots (in forward order) quantum, the quantum creeping
    in; ``single``: all-classical, then each slot alone; ``all``: every subset
    (:func:`all_assignments`).

    Example:
        >>> [sorted(k for k, v in a.items() if v != "conv2d" and v != "linear")
        ...  for a in rung_assignments(hybridnet((1, 12, 12)), "single")]
        [[], ['conv1'], ['conv2'], ['head']]
    """
    slots = backbone.slots
    if rungs == "all":
        return all_assignments(backbone)
    if rungs == "cumulative":
        return [{s.name: (s.quantum if i < k else s.classical) for i, s in enumerate(slots)}
                for k in range(len(slots) + 1)]
    if rungs == "single":
        base = {s.name: s.classical for s in slots}
        return [base] + [{**base, s.name: s.quantum} for s in slots]
    raise QcreepError(f"rungs must be one of {', '.join(RUNG_KINDS)}, got {rungs!r}")


def _kind(backbone: Backbone, slot_name: str) -> str:
    return backbone.slot(slot_name).slot.kind


def _is_quantum(backbone: Backbone, slot_name: str, layer: str) -> bool:
    return layer != ORIGINAL and get_layer_entry(layer, _kind(backbone, slot_name)).quantum


def twin_assignment(backbone: Backbone, assignment: dict[str, str]) -> dict[str, str]:
    """``assignment`` with every quantum layer replaced by its registered classical twin.

    Example:
        >>> import qcreep.layers
        >>> backbone = hybridnet((1, 12, 12))
        >>> twin_assignment(backbone, level_assignment(backbone, 1))["conv1"]
        'conv3x3_twin'
    """
    from qcreep.layers.registry import twin_for  # noqa: PLC0415 - the registry grows as layers import

    return {slot_name: twin_for(layer, _kind(backbone, slot_name)) if _is_quantum(backbone, slot_name, layer)
            else layer for slot_name, layer in assignment.items()}


def is_quantum_assignment(backbone: Backbone, assignment: dict[str, str]) -> bool:
    """True when at least one slot holds a quantum layer."""
    return any(_is_quantum(backbone, s, layer) for s, layer in assignment.items())


PAPER_FAMILIES = "paper"


def parse_families(spec, backbone: Backbone) -> dict[str, str]:
    """A family choice from ``"dense=dressed_circuit,conv=quanvolution"`` (or a dict): which registered
    quantum layer fills the quantum slots of each kind (``dense``, ``conv``) or of a named slot.

    ``"paper"`` (or an empty choice) keeps every slot's own quantum candidate (the paper's pair for
    HybridNet). A layer that is not a registered quantum layer of the slot kind is an error.

    Example:
        >>> import qcreep.layers
        >>> parse_families("dense=dressed_circuit", hybridnet((1, 12, 12)))
        {'head': 'dressed_circuit'}
    """
    from qcreep.layers.registry import get_layer_entry  # noqa: PLC0415

    if spec is None or (isinstance(spec, str) and spec.strip() in ("", PAPER_FAMILIES)):
        return {}
    items = spec
    if isinstance(spec, str):
        items = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, eq, layer = (x.strip() for x in part.partition("="))
            if not eq or not key or not layer:
                raise QcreepError(f"a family choice looks like KIND=LAYER or SLOT=LAYER (e.g. dense=dressed_circuit,"
                                  f"conv=quanvolution), got '{part}'")
            if key in items:
                raise QcreepError(f"'{key}' is given two families in '{spec}'")
            items[key] = layer
    kinds = sorted({s.slot.kind for s in backbone.slots})
    names = [s.name for s in backbone.slots]
    chosen: dict[str, str] = {}
    for key, layer in items.items():
        if key in names:
            targets = [key]
        elif key in ("dense", "conv"):
            targets = [s.name for s in backbone.slots if s.slot.kind == key]
            if not targets:
                raise QcreepError(f"{backbone.name} has no {key} slot for '{key}={layer}' (its slot kinds: "
                                  f"{', '.join(kinds) or 'none'})")
        else:
            raise QcreepError(f"'{key}' in a family choice is neither a slot kind (dense, conv) nor a slot of "
                              f"{backbone.name} ({', '.join(names)})")
        for target in targets:
            entry = get_layer_entry(layer, _kind(backbone, target))
            if not entry.quantum:
                raise QcreepError(f"'{layer}' is a classical layer; a family choice names a quantum layer for "
                                  f"{target}")
            chosen[target] = layer
    return chosen


def with_families(backbone: Backbone, assignment: dict[str, str], families: dict[str, str]) -> dict[str, str]:
    """``assignment`` with each quantum slot named in ``families`` (from :func:`parse_families`) refilled."""
    return {slot: families[slot] if slot in families and _is_quantum(backbone, slot, layer) else layer
            for slot, layer in assignment.items()}


def families_label(spec, backbone: Backbone, assignment: dict[str, str]) -> str:
    """The part of a family choice that ``assignment`` uses, as given: ``conv=quanvolution,dense=...``."""
    if spec is None or isinstance(spec, str) and spec.strip() in ("", PAPER_FAMILIES):
        return PAPER_FAMILIES
    items = spec if isinstance(spec, dict) else dict(
        (x.strip() for x in part.partition("=")[::2]) for part in spec.split(",") if part.strip())
    used = []
    for key, layer in items.items():
        targets = [key] if key in assignment else [s.name for s in backbone.slots if s.slot.kind == key]
        if any(assignment.get(t) == layer for t in targets):
            used.append(f"{key}={layer}")
    return ",".join(used)


def assignment_label(assignment: dict[str, str]) -> str:
    """Canonical text form, e.g. ``conv1=flipped_quanv3x3,conv2=conv2d,head=linear``."""
    return ",".join(f"{k}={v}" for k, v in assignment.items())


def level_of(backbone: Backbone, assignment: dict[str, str]) -> int | None:
    """The replacement level an assignment equals, if any."""
    for level in sorted(backbone.levels):
        if level_assignment(backbone, level) == assignment:
            return level
    return None


def fill(backbone: Backbone, assignment: dict[str, str], *, check: bool = True, source: nn.Module | None = None,
         **layer_options) -> nn.Module:
    """``backbone``'s model with every slot filled by ``assignment`` (every slot named), via :meth:`Creep.build`.

    ``source`` is a model of the same structure whose modules (and weights) the slots that stay
    ``original`` keep, e.g. the template built from a run's seed. The built model records its
    backbone's name, input shape and level (see :func:`summary`).
    """
    missing = [s for s in backbone.slot_names if s not in assignment]
    extra = [s for s in assignment if s not in backbone.slot_names]
    if extra:
        backbone.slot(extra[0])
    if missing:
        raise QcreepError(f"no layer assigned to slot(s) {', '.join(missing)} of {backbone.name}")
    for name, layer in assignment.items():
        _check_candidate(backbone, backbone.slot(name), layer)
    model = backbone.found.build({s: assignment[s] for s in backbone.slot_names}, check=check, source=source,
                                 **layer_options)
    info = build_info(model)
    info.update(backbone=backbone.name, input_shape=list(backbone.input_shape),
                level=level_of(backbone, info["assignment"]),
                shapes={name: [list(i), list(o)] for name, i, o in backbone.shapes()})
    return model


def summary(model: nn.Module) -> dict:
    """Per slot of a built model: layer, quantum or not, input/output shape, parameter count; and the total."""
    info = build_info(model)
    if info is None:
        raise QcreepError(f"{type(model).__name__} was not built by qcreep (creep(...).build() or build_model())")
    rows = []
    for name, layer_name in info["assignment"].items():
        layer = model.get_submodule(name)
        kind = info["slots"][name]
        shapes = info.get("shapes", {}).get(name, [[], []])
        quantum = name in info["quantum"]
        shown = type(layer).__name__ if layer_name == ORIGINAL else layer_name
        row = {"slot": name, "kind": kind, "layer": shown, "quantum": quantum, "input": list(shapes[0]),
               "output": list(shapes[1]), "params": count_parameters(layer)}
        for key in ("n_qubits", "n_reps", "output_scale", "bias_init"):
            if hasattr(layer, key):
                row[key] = getattr(layer, key)
        if layer_name != ORIGINAL:
            entry = get_layer_entry(layer_name, kind)
            if entry.twin_of:
                row["twin_of"] = entry.twin_of
        else:
            row["original"] = True
        rows.append(row)
    return {"backbone": info.get("backbone", type(model).__name__), "input_shape": info.get("input_shape", []),
            "assignment": dict(info["assignment"]), "level": info.get("level"), "slots": rows,
            "total_params": count_parameters(model)}


def assignment_of(model: nn.Module) -> dict[str, str]:
    """The assignment a built model was filled with."""
    info = build_info(model)
    return dict(info["assignment"]) if info else {}


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
        if row.get("original"):
            details.append("the model's own layer")
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
                num_classes: int = 10, backbone: Backbone | None = None, **layer_options) -> nn.Module:
    """The paper's HybridNet (or ``backbone``'s model) filled by ``level`` or by ``assignment``.

    Exactly one of ``level`` and ``assignment`` is given. New layers draw their initial values from
    the current torch random state, in slot order.
    """
    backbone = backbone or hybridnet(input_shape, num_classes)
    if (level is None) == (assignment is None):
        raise QcreepError("give exactly one of level (0, 1, 2) and assignment (e.g. conv1=flipped_quanv3x3)")
    filled = level_assignment(backbone, level) if level is not None else parse_assignment(assignment, backbone)
    return fill(backbone, filled, **layer_options)


__all__ = ["Backbone", "HybridNet", "ORIGINAL", "SlotSpec", "all_assignments", "assignment_label", "assignment_of",
           "backbone_of", "build_model", "default_quantum", "families_label", "fill", "format_summary", "hybridnet",
           "is_quantum_assignment", "level_assignment", "level_of", "loss_and_accuracy", "parse_assignment",
           "parse_families", "with_families",
           "quantum_layers", "rung_assignments", "summary", "twin_assignment"]
