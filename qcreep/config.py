"""What defines one run: :class:`TrainConfig`, its checks, its fingerprint and its run id.

One run is one (dataset, rung, angle mode, seed) under one protocol. A rung is a replacement
level (0, 1, 2) or an explicit assignment of layers to slots; a *twin* rung is the same network
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
from dataclasses import dataclass, field

import torch

from qcreep.checks import check_choice, check_int, check_number
from qcreep.data import get_spec
from qcreep.errors import ConfigError
from qcreep.layers._angles import ANGLE_MODES
from qcreep.layers.reupload import BIAS_INITS, OUTPUT_SCALES
from qcreep.models import assignment_label, hybridnet, level_assignment, parse_assignment

DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPTIMIZERS = ("adam",)
SOLVERS = ("auto", "eigh", "expm")
# Config keys that change the numbers a run produces. A checkpoint or record written under other
# values of these keys does not belong to the run. ``epochs`` is not among them: a finished run
# can be resumed with more epochs. ``solver`` and ``device`` change results only by rounding.
FINGERPRINT_KEYS = ("dataset", "assignment", "seed", "batch_size", "lr", "optimizer", "n_reps", "n_qubits",
                    "angles", "output_scale", "bias_init", "max_train", "max_test", "val_fraction", "split_seed",
                    "dtype")


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults: the paper's protocol plus a 10% validation split."""

    dataset: str = "digits"
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
    twin_of: str | None = None
    label: str | None = None
    tuning: dict | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Check every value; fill ``assignment`` from ``level``. Returns ``self``."""
        spec = get_spec(self.dataset)
        self.dataset = spec.name
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
        backbone = hybridnet(spec.input_shape, spec.num_classes)
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> dict:
        """The values of :data:`FINGERPRINT_KEYS` (after validation, so equal runs give equal values)."""
        if self.assignment is None or not isinstance(self.assignment, dict):
            self.validate()
        return {k: getattr(self, k) for k in FINGERPRINT_KEYS}

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
        else:
            rung = "_".join(f"{slot}-{layer}" for slot, layer in self.assignment.items())
        return f"{self.dataset}_{rung}_{self.angles}_seed{self.seed}_{self.config_hash}"

    def replace(self, **changes) -> TrainConfig:
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes).validate()


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
