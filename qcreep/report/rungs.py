"""What rung a record belongs to, and the order of rungs in every table and plot.

A *rung* is one way of filling the slots of the network. It is named by the record's label, except
that a label which is an assignment equal to a replacement level of the dataset's HybridNet is
named ``"level N"`` (so the published comparison applies, and the same model trained under two
labels is one rung). A classical twin (a record with ``twin_of``, labelled like ``"level 2 twin"``)
has classical layers matched to a quantum rung in parameter count and kind of nonlinearity.

Order within a dataset (never alphabetical): level 0, then the other levels in order, then
explicit assignments by number of quantum slots (earlier slots turning quantum first, as
:func:`qcreep.models.all_assignments` lists them); each twin comes directly after the rung it
controls. Angle modes of one rung are adjacent.

Recognising an assignment needs the model definitions (:mod:`qcreep.models`, which imports
torch); they are imported only when a record has an explicit assignment and no level. Without
them, assignments are left unrecognised and ordered by the slot names in the record.
"""

from __future__ import annotations

import functools
import re

from qcreep.errors import QcreepError

#: Order of datasets in tables (others follow alphabetically).
DATASET_ORDER = ("digits", "mnist", "fashion-mnist", "cifar10")

#: Number of classes of the datasets qcreep ships specs for (others are looked up in qcreep.data).
KNOWN_NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10}

_LEVEL_LABEL = re.compile(r"^level (\d+)$")
# a level refilled by other quantum families (``qcreep run --quantum``): "level 2 (dense=dressed_circuit)"
_FAMILY_LABEL = re.compile(r"^level (\d+) \((.+)\)$")


def family_level(label: str) -> int | None:
    """The level a rung labelled ``level K (FAMILIES)`` refills with other quantum families, else None."""
    m = _FAMILY_LABEL.match(label or "")
    return int(m.group(1)) if m else None


def dataset_rank(name: str) -> tuple:
    """Sort key of a dataset name: :data:`DATASET_ORDER` first, then the others alphabetically."""
    try:
        return (DATASET_ORDER.index(name), name)
    except ValueError:
        return (len(DATASET_ORDER), name)


def is_study(name: str) -> bool:
    """True for the name of a study of the user's own model or data (:func:`study_name`), not a dataset."""
    return " on " in str(name)


def study_name(rec: dict) -> str:
    """The name a record's results are grouped, titled and plotted under.

    For the paper's HybridNet on a built-in dataset, the dataset's name (``"mnist"``), so that the
    published numbers apply. For anything else, ``"<model> on <data>"`` (``"SmallCNN on digits"``,
    ``"mlp on breast-cancer"``, ``"hybridnet on scans"``), with the labels of
    :func:`qcreep.modelspec.model_label` and :func:`qcreep.datasources.data_label`: the published
    numbers are for HybridNet on its datasets, and are never compared with another network's, nor
    with HybridNet on other data. Records written before model specs existed are HybridNet's.

    Example:
        >>> study_name({"dataset": "mnist"})
        'mnist'
        >>> study_name({"dataset": "/data/breast_cancer.csv", "model": "/src/tabular_mlp.py:mlp",
        ...             "data": {"kind": "csv"}})
        'mlp on breast-cancer'
    """
    dataset = rec["dataset"]
    model = rec.get("model") or (rec.get("config") or {}).get("model") or "hybridnet"
    data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
    if data.get("kind"):
        builtin = data["kind"] == "builtin"
    else:
        builtin = "/" not in dataset and "." not in dataset and not is_study(dataset)
    if model == "hybridnet" and builtin:
        return dataset
    from qcreep.datasources import data_label
    from qcreep.modelspec import model_label

    return f"{model_label(model)} on {data_label(dataset)}"


@functools.lru_cache(maxsize=32)
def _backbone(dataset: str):
    """The dataset's HybridNet backbone; None for a study of another model or data (:func:`is_study`),
    or when the model code cannot be imported."""
    if is_study(dataset):
        return None
    try:
        from qcreep.models import hybridnet
    except ImportError:
        return None
    try:
        from qcreep.data import get_spec

        spec = get_spec(dataset)
        return hybridnet(spec.input_shape, spec.num_classes)
    except (ImportError, QcreepError):
        return hybridnet()  # the slot names and candidates do not depend on the image size


@functools.lru_cache(maxsize=256)
def _level_of_items(dataset: str, items: tuple) -> int | None:
    backbone = _backbone(dataset)
    if backbone is None:
        return None
    from qcreep.models import level_of

    try:
        return level_of(backbone, dict(items))
    except QcreepError:
        return None


def level_of_assignment(dataset: str, assignment) -> int | None:
    """The replacement level that ``assignment`` (``{slot: layer}``) equals for ``dataset``, or None.

    Uses :func:`qcreep.models.level_of` with the dataset's HybridNet backbone.

    Example:
        >>> level_of_assignment("mnist", {"conv1": "flipped_quanv3x3", "conv2": "flipped_quanv3x3",
        ...                               "head": "data_reuploading"})
        2
    """
    if not isinstance(assignment, dict) or not assignment:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in assignment.items()):
        return None
    return _level_of_items(dataset, tuple(sorted(assignment.items())))


def parse_assignment_label(label: str) -> dict | None:
    """``"conv1=a,conv2=b"`` as ``{"conv1": "a", "conv2": "b"}``; None when it is not of that form."""
    parts = [p.strip() for p in str(label).split(",") if p.strip()]
    if not parts or not all("=" in p for p in parts):
        return None
    out = {}
    for part in parts:
        slot, layer = (x.strip() for x in part.split("=", 1))
        if not slot or not layer or slot in out:
            return None
        out[slot] = layer
    return out


def record_level(rec: dict) -> int | None:
    """The replacement level a record's model is: its ``level``, else the level its assignment equals.

    A classical twin (``twin_of`` set) has no level: it is not one of the paper's rungs.
    """
    if rec.get("twin_of"):
        return None
    if rec.get("level") is not None:
        return rec["level"]
    return level_of_assignment(rec["dataset"], rec.get("assignment"))


def canonical_label(dataset: str, label: str) -> str:
    """``label`` with an assignment that equals a level replaced by ``"level N"``."""
    assignment = parse_assignment_label(label)
    if assignment is not None:
        level = level_of_assignment(dataset, assignment)
        if level is not None:
            return f"level {level}"
    return label


def rung_name(rec: dict) -> str:
    """The name of the rung a record belongs to (see the module docstring).

    A label that is an assignment (``"conv1=...,conv2=...,head=..."``) equal to a level becomes
    ``"level N"``; so does a label of a record whose ``level`` is set when the label is its
    assignment. Any other label (a twin's, or a variant the sweep named) is kept as it is.
    """
    label = rec["label"]
    if rec.get("twin_of"):
        return label
    if parse_assignment_label(label) is not None:
        if rec.get("level") is not None:
            return f"level {rec['level']}"
        return canonical_label(rec["dataset"], label)
    return label


def twin_target(rec: dict) -> str | None:
    """The rung a twin record controls (``twin_of``, with a level's assignment named as the level)."""
    twin = rec.get("twin_of")
    return canonical_label(rec["dataset"], twin) if twin else None


def _quantum_bits_from_summary(rec: dict) -> tuple | None:
    summary = rec.get("summary")
    if not isinstance(summary, list):
        return None
    bits = [bool(row.get("quantum")) for row in summary
            if isinstance(row, dict) and row.get("kind") != "fixed" and "quantum" in row]
    return tuple(bits) if bits else None


def _quantum_bits_from_assignment(dataset: str, assignment: dict) -> tuple | None:
    backbone = _backbone(dataset)
    if backbone is None:
        return None
    try:
        from qcreep.layers import get_layer_entry
    except ImportError:  # pragma: no cover - the layers come with the models
        get_layer_entry = None
    bits = []
    for spec in backbone.slots:
        layer = assignment.get(spec.name)
        if layer is None:
            bits.append(False)
            continue
        quantum = layer == spec.quantum
        if get_layer_entry is not None:
            try:
                quantum = get_layer_entry(layer, spec.slot.kind).quantum
            except QcreepError:
                pass
        bits.append(quantum)
    return tuple(bits)


def _assignment_key(dataset: str, assignment: dict | None, label: str, rec: dict | None = None) -> tuple:
    bits = _quantum_bits_from_summary(rec) if rec is not None else None
    if bits is None and assignment:
        bits = _quantum_bits_from_assignment(dataset, assignment)
    if bits is None:
        return (2, 0, (), label)
    # fewer quantum slots first; among equals, earlier slots turn quantum first
    return (1, sum(bits), tuple(not b for b in bits), label)


def base_key(dataset: str, label: str, level=None, assignment=None, rec=None) -> tuple:
    """Sort key of a (non-twin) rung: ``(0, level, ...)`` for levels, ``(1, #quantum, ...)`` otherwise."""
    if level is None:
        m = _LEVEL_LABEL.match(label)
        if m:
            level = int(m.group(1))
    if level is not None:
        return (0, level, (), "")
    refilled = family_level(label)
    if refilled is not None:
        return (0, refilled, (1,), label)
    if assignment is None:
        assignment = parse_assignment_label(label)
    return _assignment_key(dataset, assignment, label, rec)


def rung_key(dataset: str, name: str, level=None, assignment=None, twin_of=None, rec=None) -> tuple:
    """Sort key of a rung within its dataset: the rung it controls (if a twin), then twin after it.

    Example:
        >>> names = ["level 2 twin", "level 2", "level 0", "level 1"]
        >>> keyed = {n: rung_key("mnist", n, twin_of="level 2" if n.endswith("twin") else None)
        ...          for n in names}
        >>> sorted(names, key=keyed.get)
        ['level 0', 'level 1', 'level 2', 'level 2 twin']
    """
    if twin_of:
        return (base_key(dataset, twin_of), 1, name)
    return (base_key(dataset, name, level, assignment, rec), 0, name)


def sort_key(dataset: str, name: str, angles: str, level=None, assignment=None, twin_of=None, rec=None) -> tuple:
    """Sort key of a table row: dataset, rung (see :func:`rung_key`), angle mode."""
    return (dataset_rank(dataset), rung_key(dataset, name, level, assignment, twin_of, rec), angles)


def record_sort_key(rec: dict) -> tuple:
    """:func:`sort_key` of a single record."""
    return sort_key(rec["dataset"], rung_name(rec), rec["angles"], record_level(rec), rec.get("assignment"),
                    twin_target(rec), rec)


def num_classes(rec: dict) -> int | None:
    """The number of classes of a record's dataset (for the chance level), or None if unknown.

    Taken from ``num_classes`` in the record or its config, else from the output of the last slot in
    the record's model summary, else from the dataset specs.
    """
    data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
    for source in (rec, rec.get("config") or {}, data):
        value = source.get("num_classes")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 2:
            return value
    summary = rec.get("summary")
    if isinstance(summary, list) and summary and isinstance(summary[-1], dict):
        out = summary[-1].get("output")
        if isinstance(out, list) and len(out) == 1 and isinstance(out[0], int) and out[0] >= 2:
            return out[0]
    if rec["dataset"] in KNOWN_NUM_CLASSES:
        return KNOWN_NUM_CLASSES[rec["dataset"]]
    try:
        from qcreep.data import get_spec

        return get_spec(rec["dataset"]).num_classes
    except (ImportError, QcreepError):
        return None
