"""Training with the paper's protocol, atomic checkpoints, resumable runs and JSON run records.

One run is one (dataset, level or assignment, angle mode, seed). :func:`fit` trains it and writes,
under the output directory,

- ``records/<run id>.json``: the run record (config, environment, parameter count, per-epoch
  metrics under the published files' keys ``train_losses``, ``test_losses``, ``train_accs``,
  ``test_accs`` with accuracies as fractions, timings, physicality diagnostics), rewritten
  atomically after every epoch with ``status`` ``"running"`` and finally ``"complete"``;
- ``checkpoints/<run id>.pt``: model, optimiser and metrics after the last finished epoch, written
  to a temporary file and moved into place, so a crash never leaves a half-written checkpoint.

The protocol defaults are the published PyTorch runs: Adam, learning rate 5e-4, batch 200,
cross-entropy, 50 epochs, 10 re-uploads. Shuffling draws a permutation from a generator seeded
by ``(seed, epoch)`` alone, so a resumed run sees the same batches as an uninterrupted one and
ends with the same metrics.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import qcreep
from qcreep.data import get_spec, load_dataset
from qcreep.errors import CheckpointError, ConfigError, QcreepError
from qcreep.layers._angles import ANGLE_MODES
from qcreep.models import SlotNetwork, assignment_label, build_model, hybridnet, level_assignment, parse_assignment

RECORD_VERSION = 1
CHECKPOINT_FORMAT = 1
DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPTIMIZERS = ("adam",)
# Config keys that change the numbers a run produces. A checkpoint or record written under other
# values of these keys does not belong to the run. ``epochs`` is not among them: a finished run
# can be resumed with more epochs.
FINGERPRINT_KEYS = ("dataset", "assignment", "seed", "batch_size", "lr", "optimizer", "n_reps", "n_qubits",
                    "angles", "max_train", "max_test", "dtype")


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the paper's protocol (PAPER.md)."""

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
    max_train: int | None = None
    max_test: int | None = None
    eval_batch_size: int = 1000
    dtype: str = "float32"
    device: str = "cpu"
    data_dir: str | None = None
    threads: int | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        """Check every value; fill ``assignment`` from ``level``. Returns ``self``."""
        spec = get_spec(self.dataset)
        self.dataset = spec.name
        for key, minimum in (("seed", 0), ("epochs", 1), ("batch_size", 1), ("n_reps", 1), ("eval_batch_size", 1)):
            _check_int(key, getattr(self, key), minimum)
        for key in ("max_train", "max_test", "n_qubits", "threads"):
            if getattr(self, key) is not None:
                _check_int(key, getattr(self, key), 1)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (0 < self.lr < math.inf):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        self.lr = float(self.lr)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("angles", self.angles, ANGLE_MODES)
        _check_choice("dtype", self.dtype, tuple(DTYPES))
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
        return {k: getattr(self, k) for k in FINGERPRINT_KEYS}

    @property
    def rung_label(self) -> str:
        return f"level {self.level}" if self.level is not None else assignment_label(self.assignment)

    @property
    def run_id(self) -> str:
        if self.level is not None:
            rung = f"level{self.level}"
        else:
            rung = "_".join(f"{slot}-{layer}" for slot, layer in self.assignment.items())
        return f"{self.dataset}_{rung}_{self.angles}_seed{self.seed}"


def _check_int(key, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _check_choice(key, value, choices):
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


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


# ------------------------------------------------------------------------------------------------
# files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def _atomic_torch_save(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def record_path(out_dir, config: TrainConfig) -> Path:
    return Path(out_dir) / "records" / f"{config.run_id}.json"


def checkpoint_path(out_dir, config: TrainConfig) -> Path:
    return Path(out_dir) / "checkpoints" / f"{config.run_id}.pt"


def read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise QcreepError(f"run record {path} cannot be read ({err}); move it away to rerun this run") from None


def environment(device: torch.device) -> dict:
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


def _fingerprint_diff(saved: dict, config: TrainConfig) -> str:
    now = config.fingerprint()
    diffs = [f"{k} {saved.get(k)!r} there vs {now[k]!r} now" for k in FINGERPRINT_KEYS if saved.get(k) != now[k]]
    return "; ".join(diffs)


# ------------------------------------------------------------------------------------------------
# training


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction) of ``model`` on ``(x, y)``."""
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            xb = x[start:start + batch_size].to(device=device, dtype=dtype)
            yb = y[start:start + batch_size].to(device)
            out = model(xb)
            total_loss += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    model.train()
    return total_loss / len(y), correct / len(y)


def physicality(model: SlotNetwork, x_sample: torch.Tensor) -> dict:
    """Unitarity of every quantum layer's gates and the norms of its states on ``x_sample``."""
    layers = {name: layer for name, layer in model.quantum_layers().items() if hasattr(layer, "physicality")}
    if not layers:
        return {}
    captured = {}
    hooks = [layer.register_forward_pre_hook(lambda mod, args, name=name: captured.__setitem__(name, args[0]))
             for name, layer in layers.items()]
    try:
        with torch.no_grad():
            model(x_sample)
    finally:
        for hook in hooks:
            hook.remove()
    per_layer = {}
    for name, layer in layers.items():
        per_layer[name] = layer.physicality(captured[name])
    summary = {"max_unitarity_error": max(v["max_unitarity_error"] for v in per_layer.values())}
    norms_min = [v["min_state_norm"] for v in per_layer.values() if "min_state_norm" in v]
    norms_max = [v["max_state_norm"] for v in per_layer.values() if "max_state_norm" in v]
    if norms_min:
        summary.update(min_state_norm=min(norms_min), max_state_norm=max(norms_max))
    summary["per_layer"] = per_layer
    return summary


def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator)


def _default_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _want_progress(progress) -> bool:
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def fit(config: TrainConfig, out_dir, *, resume: bool = False, progress: bool | None = None,
        log=_default_log, data=None, stop_after: int | None = None) -> dict:
    """Train one run and return its record.

    Args:
        config: the run (validated here).
        out_dir: results directory; see the module docs for the files written.
        resume: continue from this run's checkpoint. Without it, a run with an unfinished record
            or checkpoint in ``out_dir`` is an error, so nothing written is overwritten.
        progress: show a progress bar (default: only when stderr is a terminal).
        data: ``(train, test)`` splits already loaded (a sweep loads each dataset once).
        stop_after: stop after this many epochs of this call (for tests of resuming).

    A run whose record is already complete for ``config.epochs`` epochs is not trained again;
    its record is returned.
    """
    config.validate()
    out_dir = Path(out_dir)
    rec_path, ckpt_path = record_path(out_dir, config), checkpoint_path(out_dir, config)
    tag = f"[{config.dataset} {config.rung_label} {config.angles} seed {config.seed}]"
    existing = preflight(config, out_dir, resume=resume)
    if existing is not None and existing.get("status") == "complete" and existing.get("epochs_completed", 0) >= config.epochs:
        log(f"{tag} already complete ({existing['epochs_completed']} epochs), skipped")
        return existing
    previous_threads = torch.get_num_threads()
    try:
        return _fit(config, out_dir, rec_path, ckpt_path, tag, existing, resume, progress, log, data, stop_after)
    finally:
        torch.set_num_threads(previous_threads)


def preflight(config: TrainConfig, out_dir, *, resume: bool = False) -> dict | None:
    """Check, before anything trains, that ``config`` may run in ``out_dir``; return its record if any.

    Errors: a record of the same run id written under another config, and an unfinished run
    (record or checkpoint) when ``resume`` is false. Nothing is written.
    """
    config.validate()
    out_dir = Path(out_dir)
    rec_path, ckpt_path = record_path(out_dir, config), checkpoint_path(out_dir, config)
    existing = read_record(rec_path) if rec_path.exists() else None
    if existing is not None:
        diff = _fingerprint_diff(existing.get("config", {}), config)
        if diff:
            raise CheckpointError(f"{rec_path} belongs to a run with another config ({diff}); "
                                  "use another --out or move the old results away")
        if existing.get("status") == "complete" and existing.get("epochs_completed", 0) >= config.epochs:
            return existing
    if not resume and (ckpt_path.exists() or existing is not None):
        done = existing.get("epochs_completed", "?") if existing else "?"
        raise QcreepError(f"run {config.run_id} in {out_dir} has an earlier checkpoint ({done} epochs); "
                          "pass --resume to continue it, or use another --out")
    return existing


def _fit(config, out_dir, rec_path, ckpt_path, tag, existing, resume, progress, log, data, stop_after):
    device = check_device(config.device)
    dtype = DTYPES[config.dtype]
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = get_spec(config.dataset)
    if data is None:
        data = load_dataset(config.dataset, config.data_dir, config.max_train, config.max_test)
    train, test = data

    torch.manual_seed(config.seed)
    model = build_model(spec.input_shape, assignment=config.assignment, num_classes=spec.num_classes,
                        angles=config.angles, n_reps=config.n_reps, n_qubits=config.n_qubits,
                        dtype=dtype, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n_params = model.summary()["total_params"]

    metrics = {k: [] for k in ("train_losses", "test_losses", "train_accs", "test_accs",
                               "epoch_times", "eval_times", "unitarity_errors")}
    start_epoch = 0
    if resume and ckpt_path.exists():
        start_epoch = _load_checkpoint(ckpt_path, config, model, optimizer, metrics)
        log(f"{tag} resuming after epoch {start_epoch}")
    elif resume and existing is not None and existing.get("epochs_completed", 0) > 0:
        raise CheckpointError(f"{rec_path} records {existing['epochs_completed']} epochs but its checkpoint "
                              f"{ckpt_path} is missing; move the record away to start the run again")

    record = {
        "record_version": RECORD_VERSION, "qcreep_version": qcreep.__version__,
        "dataset": config.dataset, "level": config.level, "assignment": dict(config.assignment),
        "label": config.rung_label, "angles": config.angles, "seed": config.seed,
        "run_id": config.run_id, "status": "running", "n_params": n_params,
        "summary": model.summary()["slots"], "config": config.to_dict(), "environment": environment(device),
    }
    x_probe = test.x[: min(len(test.y), 200)].to(device=device, dtype=dtype)
    if start_epoch:
        record.update(metrics, epochs_completed=start_epoch)
    bar = None
    if _want_progress(progress):
        from tqdm.auto import tqdm
        steps = math.ceil(len(train.y) / config.batch_size)
        bar = tqdm(total=steps * (config.epochs - start_epoch), desc=tag, unit="batch", leave=False)
    try:
        epochs_this_call = 0
        for epoch in range(start_epoch, config.epochs):
            if stop_after is not None and epochs_this_call >= stop_after:
                break
            t0 = time.perf_counter()
            loss, acc = _train_epoch(model, optimizer, train, config, epoch, device, dtype, bar)
            t1 = time.perf_counter()
            test_loss, test_acc = evaluate(model, test.x, test.y, config.eval_batch_size, device, dtype)
            t2 = time.perf_counter()
            phys = physicality(model, x_probe)
            for key, value in (("train_losses", loss), ("train_accs", acc), ("test_losses", test_loss),
                               ("test_accs", test_acc), ("epoch_times", t1 - t0), ("eval_times", t2 - t1),
                               ("unitarity_errors", phys.get("max_unitarity_error"))):
                metrics[key].append(value)
            record.update(metrics, epochs_completed=epoch + 1, unitarity=phys or None)
            _save_checkpoint(ckpt_path, config, model, optimizer, metrics, epoch + 1)
            if epoch + 1 == config.epochs:
                record["status"] = "complete"
            atomic_write_json(rec_path, record)
            epochs_this_call += 1
            message = (f"{tag} epoch {epoch + 1}/{config.epochs}: train loss {loss:.4f} acc {100 * acc:.2f}% | "
                       f"test loss {test_loss:.4f} acc {100 * test_acc:.2f}% | {t1 - t0:.1f}s")
            if bar is not None:
                bar.write(message)
            else:
                log(message)
    finally:
        if bar is not None:
            bar.close()
    if record.get("epochs_completed", 0) >= config.epochs and record["status"] != "complete":
        # the checkpoint already held every epoch (a crash between checkpoint and record)
        record.update(status="complete", unitarity=physicality(model, x_probe) or None)
        atomic_write_json(rec_path, record)
    return record


def _train_epoch(model, optimizer, train, config, epoch, device, dtype, bar):
    model.train()
    perm = _epoch_permutation(len(train.y), config.seed, epoch)
    total_loss, correct = 0.0, 0
    for start in range(0, len(perm), config.batch_size):
        idx = perm[start:start + config.batch_size]
        xb = train.x[idx].to(device=device, dtype=dtype)
        yb = train.y[idx].to(device)
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not torch.isfinite(loss.detach()):
            raise QcreepError(f"training diverged: loss is {float(loss)} at epoch {epoch + 1}; "
                              "try a smaller --lr")
        total_loss += float(loss.detach()) * len(idx)
        correct += int((out.argmax(1) == yb).sum())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.3f}", refresh=False)
    return total_loss / len(perm), correct / len(perm)


def _save_checkpoint(path, config, model, optimizer, metrics, epochs_completed):
    _atomic_torch_save(path, {
        "format": CHECKPOINT_FORMAT, "qcreep_version": qcreep.__version__,
        "fingerprint": json.dumps(config.fingerprint(), sort_keys=True),
        "epochs_completed": epochs_completed, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "metrics": json.dumps(metrics),
    })


def _load_checkpoint(path, config, model, optimizer, metrics) -> int:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is the same problem for the user
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}); "
                              "delete it to restart the run from epoch 0") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a qcreep checkpoint of format {CHECKPOINT_FORMAT}; "
                              "delete it to restart the run")
    if ckpt.get("qcreep_version") != qcreep.__version__:
        raise CheckpointError(f"checkpoint {path} was written by qcreep {ckpt.get('qcreep_version')}, "
                              f"this is {qcreep.__version__}; resume with that version or use another --out")
    saved = json.loads(ckpt["fingerprint"])
    diff = _fingerprint_diff(saved, config)
    if diff:
        raise CheckpointError(f"checkpoint {path} was written for another config ({diff}); "
                              "use another --out or drop --resume")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    metrics.update(json.loads(ckpt["metrics"]))
    return int(ckpt["epochs_completed"])


