"""What defines one run: :class:`TrainConfig`, its checks, its fingerprint and its run id.

One run is one (model spec, data spec, assignment, settings): the network (``model``, the paper's
``hybridnet`` or an import string, :mod:`qcreep.modelspec`), the data (``dataset``, a built-in
name or a file or folder, :mod:`qcreep.datasources`), the rung and the protocol. A rung is a
replacement level (HybridNet's 0, 1, 2; for another model, level k makes its first k slots
quantum, in forward order) or an explicit assignment of layers to slots; a *twin* rung is the same network
with every quantum layer replaced by its registered classical twin (``twin_of`` names the quantum
rung it controls).

The protocol defaults are the published PyTorch runs (Adam, learning rate 5e-4, batch 200,
cross-entropy, 50 epochs, 10 re-uploads), with two of qcreep's own defaults for a fair ladder:
10% of the training split is held out for validation (``val_fraction``), and the re-uploading
head reads out with a learned output scale and zero-initialised biases (``output_scale``,
``bias_init``; the published readout is ``"none"`` and ``"normal"``). See ``docs/paper.md``.

Example:
    >>> from qcreep.config import TrainConfig
    >>> config = TrainConfig(dataset="digits", level=2, seed=1).validate()
    >>> config.rung_label, config.assignment["head"]
    ('level 2', 'data_reuploading')
    >>> config.run_id.startswith("digits_level2_real_seed1_")
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from qcreep.checks import check_choice, check_int, check_number
from qcreep.data import get_spec
from qcreep.datasources import data_label, info_for, is_builtin, parse_classes
from qcreep.errors import ConfigError, QcreepError
from qcreep.layers._angles import ANGLE_MODES
from qcreep.layers.reupload import BIAS_INITS, OUTPUT_SCALES
from qcreep.models import ORIGINAL, assignment_label, backbone_for, level_assignment, parse_assignment

DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPTIMIZERS = ("adam",)
SOLVERS = ("auto", "eigh", "expm")
# Config keys that change the numbers a run produces. A checkpoint or record written under other
# values of these keys does not belong to the run. ``epochs`` is not among them: a finished run
# can be resumed with more epochs. ``solver`` and ``device`` change results only by rounding.
FINGERPRINT_KEYS = ("dataset", "assignment", "seed", "batch_size", "lr", "optimizer", "n_reps", "n_qubits",
                    "angles", "output_scale", "bias_init", "max_train", "max_test", "val_fraction", "split_seed",
                    "dtype")
# Keys added with own models and data: they enter the fingerprint only when they differ from these
# defaults, so every run of the paper's network on a built-in dataset keeps its hash and file name.
EXTENDED_FINGERPRINT = {"model": "hybridnet", "model_hash": None, "slots": None, "data_digest": None,
                        "test_data": None, "target": None, "test_fraction": 0.2, "standardize": True, "classes": None,
                        "structure": None}
# Structural options of the quantum layer families, offered to every layer factory that names them
# (amplitude_circuit, angle_reuploading and quanvolution take ``layers``; dressed_circuit and
# trainable_quanvolution ``depth``; dressed_circuit and angle_reuploading ``width``), with their twins.
STRUCTURE_KEYS = ("layers", "depth", "width")


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults: the paper's protocol plus a 10% validation split."""

    dataset: str = "digits"
    model: str = "hybridnet"
    level: int | None = 0
    assignment: dict[str, str] | None = None
    seed: int = 0
    epochs: int = 50
    batch_size: int = 200
    lr: float = 5e-4
    optimizer: str = "adam"
    n_reps: int = 10
    n_qubits: int | None = None
    angles: str = "real"
    output_scale: str = "learned"
    bias_init: str = "zero"
    solver: str = "auto"
    max_train: int | None = None
    max_test: int | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    eval_batch_size: int = 1000
    dtype: str = "float32"
    device: str = "cpu"
    data_dir: str | None = None
    threads: int | None = None
    test_data: str | None = None
    target: str | None = None
    test_fraction: float = 0.2
    standardize: bool = True
    classes: list[str] | None = None
    structure: dict | None = None
    slots: list[str] | None = None
    twin_of: str | None = None
    label: str | None = None
    tuning: dict | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Check every value; fill ``assignment`` from ``level``. Returns ``self``."""
        if is_builtin(self.dataset):
            self.dataset = get_spec(self.dataset).name
        elif not isinstance(self.dataset, str | os.PathLike) or not str(self.dataset):
            raise ConfigError(f"dataset must be a built-in name or a file or folder path, got {self.dataset!r}")
        else:
            self.dataset = _absolute(self.dataset)
        if self.test_data is not None and isinstance(self.test_data, str | os.PathLike):
            self.test_data = _absolute(self.test_data)
        from qcreep.modelspec import absolute_spec, check_spec  # noqa: PLC0415

        self.model = absolute_spec(check_spec(self.model))
        for key, minimum in (("seed", 0), ("epochs", 1), ("batch_size", 1), ("n_reps", 1), ("eval_batch_size", 1),
                             ("split_seed", 0)):
            setattr(self, key, check_int(getattr(self, key), key, minimum, error=ConfigError))
        for key in ("max_train", "max_test", "n_qubits", "threads"):
            if getattr(self, key) is not None:
                setattr(self, key, check_int(getattr(self, key), key, 1, error=ConfigError))
        self.lr = check_number(self.lr, "lr", error=ConfigError)
        self.val_fraction = check_number(self.val_fraction, "val_fraction", low_open=False, high=1.0,
                                         error=ConfigError)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS, error=ConfigError)
        check_choice(self.angles, "angles", ANGLE_MODES, note="'complex' is the non-physical published-code mode",
                     error=ConfigError)
        check_choice(self.output_scale, "output_scale", OUTPUT_SCALES, note="'none' is the published readout",
                     error=ConfigError)
        check_choice(self.bias_init, "bias_init", BIAS_INITS, note="'normal' is the published initialisation",
                     error=ConfigError)
        check_choice(self.solver, "solver", SOLVERS, error=ConfigError)
        check_choice(self.dtype, "dtype", tuple(DTYPES), error=ConfigError)
        check_device(self.device)
        self.test_fraction = check_number(self.test_fraction, "test_fraction", high=1.0, error=ConfigError)
        if not isinstance(self.standardize, bool):
            raise ConfigError(f"standardize must be true or false, got {self.standardize!r}")
        for key in ("test_data", "target"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str | int):
                raise ConfigError(f"{key} must be text, got {value!r}")
        if self.target is not None:
            self.target = str(self.target)
        if self.structure is not None:
            if not isinstance(self.structure, dict):
                raise ConfigError(f"structure must be a mapping of {', '.join(STRUCTURE_KEYS)} to integers, "
                                  f"got {self.structure!r}")
            unknown = sorted(set(self.structure) - set(STRUCTURE_KEYS))
            if unknown:
                raise ConfigError(f"unknown structural option(s) {', '.join(unknown)}; valid: "
                                  f"{', '.join(STRUCTURE_KEYS)}")
            self.structure = {k: check_int(v, k, 1, error=ConfigError) for k, v in sorted(self.structure.items())}
            self.structure = self.structure or None
        if self.classes is not None:
            try:
                self.classes = parse_classes(self.classes)
            except QcreepError as err:
                raise ConfigError(str(err)) from None
        if self.slots is not None:
            if isinstance(self.slots, str):
                self.slots = [self.slots]
            if not isinstance(self.slots, list | tuple) or not all(isinstance(p, str) for p in self.slots):
                raise ConfigError(f"slots must be a list of names or patterns, got {self.slots!r}")
            self.slots = list(self.slots)
        backbone = self.backbone()
        if self.level is not None and self.assignment is not None:
            if level_assignment(backbone, self.level) != parse_assignment(self.assignment, backbone):
                raise ConfigError("give level or assignment, not both")
        if self.level is not None:
            self.assignment = level_assignment(backbone, self.level)
        elif self.assignment is not None:
            self.assignment = parse_assignment(self.assignment, backbone)
        else:
            raise ConfigError("a run needs a level (0, 1, 2) or an assignment such as conv1=flipped_quanv3x3")
        return self

    def backbone(self):
        """The slots of this run's model on this run's data (:func:`qcreep.models.backbone_for`)."""
        info = info_for(self)
        try:
            return backbone_for(self.model, info.input_shape, info.num_classes, tuple(self.slots or ()) or None)
        except ConfigError:
            raise
        except QcreepError as err:
            raise ConfigError(f"model '{self.model}' on data '{self.dataset}': {err}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> dict:
        """The values of :data:`FINGERPRINT_KEYS` (after validation, so equal runs give equal values), and
        those of :data:`EXTENDED_FINGERPRINT` that differ from their defaults: the model's spec and
        structure hash, the data's digest, the slot selection and the data options."""
        if self.assignment is None or not isinstance(self.assignment, dict):
            self.validate()
        values = {k: getattr(self, k) for k in FINGERPRINT_KEYS}
        extended = {"model": self.model, "slots": self.slots, "test_data": self.test_data, "target": self.target,
                    "test_fraction": self.test_fraction, "standardize": self.standardize, "classes": self.classes,
                    "structure": self.structure,
                    "model_hash": None if self.model == "hybridnet" else self.backbone().structure,
                    "data_digest": None if is_builtin(self.dataset) else info_for(self).digest}
        values.update({k: v for k, v in extended.items() if v != EXTENDED_FINGERPRINT[k]})
        return values

    @property
    def config_hash(self) -> str:
        """8 hex digits of the fingerprint without the seed: equal for the seeds of one rung and protocol."""
        keys = {k: v for k, v in self.fingerprint().items() if k != "seed"}
        return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def rung_label(self) -> str:
        if self.label:
            return self.label
        return f"level {self.level}" if self.level is not None else assignment_label(self.assignment)

    @property
    def run_id(self) -> str:
        """File name of the run: dataset, rung, angle mode, seed and the config hash.

        The hash makes runs with different settings land on different paths, so they never
        overwrite one another.
        """
        if self.level is not None:
            rung = f"level{self.level}"
        elif self.twin_of is not None and self.twin_of.startswith("level "):
            rung = f"level{self.twin_of.split()[1]}twin"
        elif self.model == "hybridnet":
            rung = "_".join(f"{slot}-{layer}" for slot, layer in self.assignment.items())
        else:
            rung = "_".join(f"{slot}-{layer}" for slot, layer in self.assignment.items() if layer != ORIGINAL) \
                or "original"
        prefix = data_label(self.dataset)
        if self.model != "hybridnet":
            from qcreep.modelspec import model_label  # noqa: PLC0415

            prefix += f"_{model_label(self.model)}"
        return f"{prefix}_{rung}_{self.angles}_seed{self.seed}_{self.config_hash}"

    def replace(self, **changes) -> TrainConfig:
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes).validate()


def _absolute(path) -> str:
    """A data path as recorded: absolute, so that reports, evaluations and rebuilt runs find it from any folder."""
    return str(Path(path).expanduser().absolute()) if Path(path).expanduser().exists() else str(path)


def check_device(device: str) -> torch.device:
    """A torch device for ``device``; CUDA that is not there is a clear error."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' was requested but CUDA is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev
