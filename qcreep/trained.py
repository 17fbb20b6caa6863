"""Trained models back from disk: rebuild a finished run's network from its checkpoint.

A checkpoint (:mod:`qcreep.records`) stores the model's weights beside the fingerprint of the
config that trained it (dataset, rung, readout, re-uploads, qubits, dtype, ...). That is enough
to rebuild the network and load the weights, without the results folder or the command that
made it. The hardware tools (:mod:`qcreep.evaluation`, ``qcreep export``) start here.

Example:
    >>> from qcreep.trained import load_trained
    >>> run = load_trained("qcreep-results/checkpoints/digits_level2_real_seed0_1a2b3c4d.pt")  # doctest: +SKIP
    >>> run.config.rung_label, run.epochs_completed  # doctest: +SKIP
    ('level 2', 50)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from qcreep.config import FINGERPRINT_KEYS, TrainConfig
from qcreep.errors import CheckpointError, ConfigError, QcreepError
from qcreep.models import level_of
from qcreep.records import load_checkpoint, read_record
from qcreep.train import build_run_model


@dataclass
class TrainedRun:
    """A finished (or checkpointed) run: its config, its network with the trained weights, and how far it got."""

    config: TrainConfig
    model: nn.Module
    epochs_completed: int
    checkpoint: Path


def config_from_fingerprint(fingerprint: dict) -> TrainConfig:
    """The :class:`~qcreep.config.TrainConfig` that a checkpoint's fingerprint describes.

    The rung is given as a level when its assignment is one of the backbone's levels.
    """
    missing = [k for k in FINGERPRINT_KEYS if k not in fingerprint]
    if missing:
        raise CheckpointError(f"checkpoint fingerprint lacks {', '.join(missing)}; it was not written by this "
                              "version of qcreep")
    values = {k: fingerprint[k] for k in FINGERPRINT_KEYS}
    try:
        config = TrainConfig(level=None, **values).validate()
        level = level_of(config.backbone(), config.assignment)
        return config if level is None else config.replace(level=level, assignment=None)
    except ConfigError as err:
        raise CheckpointError(f"checkpoint fingerprint does not describe a valid run: {err}") from None


def config_from_record(record: dict) -> TrainConfig:
    """The config a run record was written for (its level, twin and label included)."""
    values = {k: v for k, v in record["config"].items() if k in TrainConfig.__dataclass_fields__}
    try:
        return TrainConfig(**values).validate()
    except (ConfigError, TypeError) as err:
        raise QcreepError(f"run record {record.get('run_id')} holds a config this version cannot read: {err}") \
            from None


def load_trained(path, *, device: str = "cpu") -> TrainedRun:
    """Rebuild the network of the checkpoint at ``path`` and load its weights.

    ``path`` is a checkpoint (``OUT/checkpoints/RUN.pt``) or a run record (``OUT/records/RUN.json``,
    whose checkpoint is looked up beside it). The checkpoint's format, qcreep version and
    fingerprint are checked as on ``--resume``. The config comes from the run's record where
    there is one beside the checkpoint, else from the checkpoint's fingerprint.
    """
    path = Path(path)
    record = None
    if path.suffix == ".json":
        record = read_record(path)
        if "config" not in record or "run_id" not in record:
            raise QcreepError(f"{path} is not a qcreep run record (no config); give a checkpoint OUT/checkpoints/"
                              "RUN.pt or a record OUT/records/RUN.json")
        path = path.parent.parent / "checkpoints" / f"{record['run_id']}.pt"
    elif (path.parent.parent / "records" / f"{path.stem}.json").is_file():
        record = read_record(path.parent.parent / "records" / f"{path.stem}.json")
    if not path.is_file():
        raise QcreepError(f"no checkpoint at {path}; give a checkpoint OUT/checkpoints/RUN.pt or a record "
                          "OUT/records/RUN.json whose run kept its checkpoint")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        fingerprint = json.loads(raw["fingerprint"])
    except Exception as err:  # any unreadable file is the same problem for the user
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}); give a checkpoint "
                              "written by qcreep run") from None
    config = config_from_record(record) if record is not None and "config" in record \
        else config_from_fingerprint(fingerprint)
    config = config.replace(device=device)
    ckpt = load_checkpoint(path, config)
    model = build_run_model(config)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return TrainedRun(config, model, int(ckpt["epochs_completed"]), path)


def trained_runs(out_dir, *, quantum_only: bool = True) -> list[Path]:
    """Checkpoints of the complete runs recorded in ``out_dir/records`` (tuning trials are not included)."""
    from qcreep.layers import layer_entries

    quantum = {entry.name for entry in layer_entries() if entry.quantum}
    paths = []
    for record_file in sorted((Path(out_dir) / "records").glob("*.json")):
        record = read_record(record_file)
        if record.get("status") != "complete" or "config" not in record:
            continue
        if quantum_only and not quantum.intersection(record["assignment"].values()):
            continue
        ckpt = Path(out_dir) / "checkpoints" / f"{record['run_id']}.pt"
        if ckpt.is_file():
            paths.append(ckpt)
    return paths
