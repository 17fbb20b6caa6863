"""Run records and checkpoints on disk: their paths, formats and checks.

Under a results folder ``out``:

- ``out/records/<run id>.json``: the run record (config, environment, parameter count, per-epoch
  metrics under the published files' keys ``train_losses``, ``test_losses``, ``train_accs``,
  ``test_accs`` with accuracies as fractions, the validation curve ``val_losses``/``val_accs``,
  the best-validation epoch, timings, physicality diagnostics, and the ``tuning`` block).
- ``out/checkpoints/<run id>.pt``: model, optimiser and metrics after the last finished epoch.

Both are written atomically (:mod:`qcreep.files`): a crash or a full disk leaves the previous
version in place and no temporary file behind.

Example:
    >>> from qcreep.config import TrainConfig
    >>> from qcreep.records import record_path
    >>> record_path("runs", TrainConfig(level=1).validate()).parent.name
    'records'
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

import qcreep
from qcreep.config import FINGERPRINT_KEYS, TrainConfig
from qcreep.errors import CheckpointError, QcreepError
from qcreep.files import atomic_save, atomic_write_json

RECORD_VERSION = 2
CHECKPOINT_FORMAT = 2
METRIC_KEYS = ("train_losses", "train_accs", "val_losses", "val_accs", "test_losses", "test_accs",
               "epoch_times", "eval_times", "unitarity_errors")


def record_path(out_dir, config: TrainConfig) -> Path:
    return Path(out_dir) / "records" / f"{config.run_id}.json"


def checkpoint_path(out_dir, config: TrainConfig) -> Path:
    return Path(out_dir) / "checkpoints" / f"{config.run_id}.pt"


def read_record(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise QcreepError(f"run record {path} cannot be read ({err}); move it away to rerun this run") from None


def write_record(path: Path, record: dict) -> None:
    atomic_write_json(path, record)


def environment(device: torch.device) -> dict:
    """Versions, machine and device of this process, for the record."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {"qcreep": qcreep.__version__, "torch": torch.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
           "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def fingerprint_diff(saved: dict, config: TrainConfig) -> str:
    now = config.fingerprint()
    diffs = [f"{k} {saved.get(k)!r} there vs {now[k]!r} now" for k in FINGERPRINT_KEYS if saved.get(k) != now[k]]
    return "; ".join(diffs)


def best_epoch(val_accs, val_losses) -> int | None:
    """1-based epoch with the highest validation accuracy (lower validation loss breaks ties, then earlier)."""
    if not val_accs:
        return None
    order = sorted(range(len(val_accs)), key=lambda i: (-val_accs[i], val_losses[i] if val_losses else 0.0, i))
    return order[0] + 1


def save_checkpoint(path, config: TrainConfig, model_state: dict, optimizer_state: dict, metrics: dict,
                    epochs_completed: int) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT, "qcreep_version": qcreep.__version__,
        "fingerprint": json.dumps(config.fingerprint(), sort_keys=True),
        "epochs_completed": epochs_completed, "model": model_state,
        "optimizer": optimizer_state, "metrics": json.dumps(metrics),
    }
    atomic_save(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path, config: TrainConfig) -> dict:
    """The checkpoint of ``config``'s run, checked against its format, version and fingerprint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is the same problem for the user
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}); "
                              "delete it to restart the run from epoch 0") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else None
        raise CheckpointError(f"checkpoint {path} is not a qcreep checkpoint of format {CHECKPOINT_FORMAT} "
                              f"(found {found!r}); resume it with the qcreep version that wrote it, "
                              "or delete it to restart the run")
    if ckpt.get("qcreep_version") != qcreep.__version__:
        raise CheckpointError(f"checkpoint {path} was written by qcreep {ckpt.get('qcreep_version')}, "
                              f"this is {qcreep.__version__}; resume with that version or use another --out")
    diff = fingerprint_diff(json.loads(ckpt["fingerprint"]), config)
    if diff:
        raise CheckpointError(f"checkpoint {path} was written for another config ({diff}); "
                              "use another --out or drop --resume")
    ckpt["metrics"] = json.loads(ckpt["metrics"])
    ckpt["model"] = upgrade_state_dict(ckpt["model"])
    return ckpt


def upgrade_state_dict(state: dict) -> dict:
    """Model weights under today's names: HybridNet kept its slots under ``steps.`` until it became an
    ordinary module (``steps.conv1.weight`` is now ``conv1.weight``), so earlier checkpoints still load."""
    if state and all(key.startswith("steps.") for key in state):
        return {key.removeprefix("steps."): value for key, value in state.items()}
    return state
