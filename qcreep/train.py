"""Training one run: the epoch loop, evaluation, and the per-epoch bookkeeping shared by every loop.

:func:`fit` trains one :class:`~qcreep.config.TrainConfig` and writes its record and checkpoint
(:mod:`qcreep.records`) after every epoch. The bookkeeping of an epoch (validation and test
scores, physicality diagnostics, the checkpoint, the record) lives in :class:`RunTracker`, so the
seed-parallel loop of :mod:`qcreep.stacked`, which trains several seeds as one stacked model,
writes exactly the same files as a lone run.

Data: the training split is divided once into a fitting part and a fixed, stratified validation
part (:func:`qcreep.data.validation_split`). Every choice (the best epoch here, the tuned
settings in :mod:`qcreep.tuning`) is made on validation scores; the test split is only scored,
and only by final runs: a tuning trial (:func:`is_trial`) never evaluates it, and its record holds
no test metrics.

Shuffling draws a permutation from a generator seeded by ``(seed, epoch)`` alone, so a resumed
run sees the same batches as an uninterrupted one and ends with the same metrics.

Example:
    >>> from qcreep.config import TrainConfig
    >>> from qcreep.train import fit
    >>> record = fit(TrainConfig(dataset="digits", level=0, epochs=1, max_train=200), "runs/doc")  # doctest: +SKIP
    >>> record["status"], len(record["val_accs"])  # doctest: +SKIP
    ('complete', 1)
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import qcreep
from qcreep.config import DTYPES, TrainConfig, check_device
from qcreep.creep import quantum_layers
from qcreep.data import Split, validation_split
from qcreep.datasources import info_for, is_builtin, load_for, standardize
from qcreep.errors import CheckpointError, QcreepError
from qcreep.files import check_not_in_use, results_lock
from qcreep.layers import is_quantum_layer
from qcreep.models import fill, loss_and_accuracy, summary
from qcreep.records import (
    METRIC_KEYS,
    RECORD_VERSION,
    best_epoch,
    checkpoint_path,
    environment,
    fingerprint_diff,
    load_checkpoint,
    read_record,
    record_path,
    save_checkpoint,
    write_record,
)

# Re-exported for callers of earlier versions.
__all__ = ["RECORD_VERSION", "RunData", "RunTracker", "TrainConfig", "build_run_model", "checkpoint_path",
           "evaluate", "fit", "is_trial", "physicality", "prepare_data", "preflight", "record_path"]


@dataclass
class RunData:
    """The three parts a run sees: ``fit`` (trained on), ``val`` (chosen on; may be None), ``test`` (scored)."""

    fit: Split
    val: Split | None
    test: Split


def prepare_data(config: TrainConfig, data=None) -> RunData:
    """Load ``config``'s data (or take ``data = (train, test)``) and carve the validation split.

    Tabular data (one feature vector per example) is standardised with the mean and standard
    deviation of the fitted part, unless ``config.standardize`` is false
    (:func:`qcreep.datasources.standardize`): the validation and test parts never inform it.
    """
    if data is None:
        data = load_for(config)[:2]
    if isinstance(data, RunData):
        return data
    train, test = data
    fit_part, val = validation_split(train, config.val_fraction, config.split_seed)
    if config.standardize and not is_builtin(config.dataset) and train.x.dim() == 2:
        if val is None:
            fit_part, test = standardize(fit_part, test)
        else:
            fit_part, val, test = standardize(fit_part, val, test)
    return RunData(fit_part, val, test)


def build_run_model(config: TrainConfig) -> torch.nn.Module:
    """The model of ``config``, initialised from ``torch.manual_seed(config.seed)``.

    HybridNet's slots are all fresh registered layers, created in slot order from the seed (the
    paper's initialisation). Any other model is built from its spec after the seed, and its
    quantum layers are then created in forward order from the same random stream; the slots that
    stay ``original`` keep the modules (and initial weights) of that seeded model.
    """
    backbone = config.backbone()
    options = layer_options(config)
    torch.manual_seed(config.seed)
    source = None
    if backbone.keeps_original:
        from qcreep.modelspec import make_model  # noqa: PLC0415

        source = make_model(config.model, backbone.input_shape, backbone.output_shape[0])
        source = source.to(dtype=options["dtype"], device=options["device"])
    return fill(backbone, config.assignment, source=source, **options)


def layer_options(config: TrainConfig) -> dict:
    """The options every layer factory is offered (each takes those it names)."""
    return {"angles": config.angles, "n_reps": config.n_reps, "n_qubits": config.n_qubits,
            "output_scale": config.output_scale, "bias_init": config.bias_init, "solver": config.solver,
            "dtype": DTYPES[config.dtype], "device": check_device(config.device), **(config.structure or {})}


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction) of ``model`` on ``(x, y)``."""
    model.eval()
    try:
        return loss_and_accuracy(model, x, y, batch_size, device, dtype)
    finally:
        model.train()


def physicality(model: torch.nn.Module, x_sample: torch.Tensor) -> dict:
    """Unitarity of every quantum layer's gates and the norms of its states on ``x_sample``."""
    layers = {name: layer for name, layer in quantum_layers(model).items() if is_quantum_layer(layer)}
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
    per_layer = {name: layer.physicality(captured[name]) for name, layer in layers.items()}
    summary = {"max_unitarity_error": max(v["max_unitarity_error"] for v in per_layer.values())}
    norms_min = [v["min_state_norm"] for v in per_layer.values() if "min_state_norm" in v]
    norms_max = [v["max_state_norm"] for v in per_layer.values() if "max_state_norm" in v]
    if norms_min:
        summary.update(min_state_norm=min(norms_min), max_state_norm=max(norms_max))
    summary["per_layer"] = per_layer
    return summary


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training examples in ``epoch`` of run ``seed`` (independent of everything else)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator)


def is_trial(config: TrainConfig) -> bool:
    """Whether ``config`` is a tuning trial (:func:`qcreep.tuning.trial_configs` marks them in ``extra``)."""
    return bool((config.extra or {}).get("trial"))


def run_tag(config: TrainConfig) -> str:
    """How log lines name a run: ``[digits level 2 real seed 0]``, or the trial's settings when tuning."""
    if is_trial(config):
        settings = " ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in config.extra["trial"].items())
        return f"[tuning {config.dataset} {config.rung_label} {config.angles}: {settings}, seed {config.seed}]"
    return f"[{config.dataset} {config.rung_label} {config.angles} seed {config.seed}]"


def _default_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def want_progress(progress) -> bool:
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=config.lr)


def solver_used(model: torch.nn.Module) -> str | None:
    """The solver the quantum layers resolved to on their device (None without a quantum layer)."""
    for layer in quantum_layers(model).values():
        resolved = getattr(layer, "resolved_solver", None)
        if callable(resolved):
            param = next(layer.parameters(), None)
            return resolved(param.device if param is not None else torch.device("cpu"))
        if isinstance(resolved, str):
            return resolved
    return None


# ------------------------------------------------------------------------------------------------
# checks before anything is written


def preflight(config: TrainConfig, out_dir, *, resume: bool = False) -> dict | None:
    """Check, before anything trains, that ``config`` may run in ``out_dir``; return its record if any.

    Errors: ``out_dir`` in use by another process (first: while another writer is there, advice
    about the folder's files would be wrong), a record of the same run id written under another
    config, and an unfinished run (record or checkpoint) when ``resume`` is false. Nothing is written.
    """
    config.validate()
    out_dir = Path(out_dir)
    check_not_in_use(out_dir)
    rec_path, ckpt_path = record_path(out_dir, config), checkpoint_path(out_dir, config)
    existing = read_record(rec_path) if rec_path.exists() else None
    if existing is not None:
        diff = fingerprint_diff(existing.get("config", {}), config)
        if diff:
            raise CheckpointError(f"{rec_path} belongs to a run with another config ({diff}); "
                                  "use another --out or move the old results away")
        if is_complete(existing, config):
            return existing
    if not resume and (ckpt_path.exists() or existing is not None):
        done = existing.get("epochs_completed", "?") if existing else "?"
        raise QcreepError(f"run {config.run_id} in {out_dir} has an earlier checkpoint ({done} epochs); "
                          "resume it (--resume on the command line, resume=True in Python), or use another --out")
    return existing


def is_complete(record: dict | None, config: TrainConfig) -> bool:
    return (record is not None and record.get("status") == "complete"
            and record.get("epochs_completed", 0) >= config.epochs)


# ------------------------------------------------------------------------------------------------
# the bookkeeping of one run


class RunTracker:
    """The files and metrics of one run: resume, end-of-epoch scores, checkpoint and record.

    A loop trains ``tracker.model`` (or a stacked copy whose values it copies back before
    :meth:`end_epoch`) and calls :meth:`end_epoch` after each epoch. ``on_epoch(tracker)``, if
    given, is called after each epoch's checkpoint and record are written (an executor uses it to
    ship them elsewhere). A resumed run lists the epochs it was resumed after in its record's
    ``resumed_after``.
    """

    def __init__(self, config: TrainConfig, out_dir, data: RunData, *, existing: dict | None = None,
                 resume: bool = False, log=_default_log, on_epoch=None):
        self.config = config
        self.out_dir = Path(out_dir)
        self.data = data
        self.log = log
        self.on_epoch = on_epoch
        self.device = check_device(config.device)
        self.dtype = DTYPES[config.dtype]
        self.rec_path = record_path(out_dir, config)
        self.ckpt_path = checkpoint_path(out_dir, config)
        self.tag = run_tag(config)
        # a tuning trial chooses on validation alone: it never scores (nor probes) the test split
        self.scores_test = not is_trial(config)
        self.model = build_run_model(config)
        self.optimizer = make_optimizer(config, self.model.parameters())
        self.metrics = {k: [] for k in METRIC_KEYS}
        self.start_epoch = 0
        if resume and self.ckpt_path.exists():
            ckpt = load_checkpoint(self.ckpt_path, config)
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.metrics.update(ckpt["metrics"])
            self.start_epoch = int(ckpt["epochs_completed"])
            log(f"{self.tag} resuming after epoch {self.start_epoch}")
        elif resume and existing is not None and existing.get("epochs_completed", 0) > 0:
            raise CheckpointError(f"{self.rec_path} records {existing['epochs_completed']} epochs but its checkpoint "
                                  f"{self.ckpt_path} is missing; move the record away to start the run again")
        slot_summary = summary(self.model)
        self.record = {
            "record_version": RECORD_VERSION, "qcreep_version": qcreep.__version__,
            "dataset": config.dataset, "level": config.level, "assignment": dict(config.assignment),
            "label": config.rung_label, "twin_of": config.twin_of, "angles": config.angles, "seed": config.seed,
            "run_id": config.run_id, "config_hash": config.config_hash, "status": "running",
            "n_params": slot_summary["total_params"], "summary": slot_summary["slots"],
            "readout": {"output_scale": config.output_scale, "bias_init": config.bias_init},
            "solver": solver_used(self.model), "tuning": config.tuning,
            "split": {"fit": len(data.fit), "validation": len(data.val) if data.val is not None else 0,
                      "test": len(data.test), "val_fraction": config.val_fraction, "split_seed": config.split_seed},
            "model": config.model, "data": info_for(config).to_dict(),
            "config": config.to_dict(), "environment": environment(self.device),
        }
        if self.start_epoch:
            earlier = (existing or {}).get("resumed_after") or []
            self.record["resumed_after"] = [*earlier, self.start_epoch]
            self._update_record(self.start_epoch)
        probe = data.test if self.scores_test else (data.val if data.val is not None else data.fit)
        self.x_probe = probe.x[: min(len(probe), 200)].to(device=self.device, dtype=self.dtype)

    @property
    def epochs_left(self) -> int:
        return self.config.epochs - self.start_epoch

    def _update_record(self, epochs_completed: int, phys: dict | None = None) -> None:
        best = best_epoch(self.metrics["val_accs"], self.metrics["val_losses"])
        tests = self.metrics["test_accs"]
        self.record.update(self.metrics, epochs_completed=epochs_completed, best_epoch=best,
                           best_val_acc=self.metrics["val_accs"][best - 1] if best else None,
                           test_acc_at_best=tests[best - 1] if best and len(tests) >= best else None)
        if phys is not None:
            self.record["unitarity"] = phys or None

    def end_epoch(self, epoch: int, train_loss: float, train_acc: float, seconds: float) -> str:
        """Score, checkpoint and record epoch ``epoch`` (0-based); returns the one-line summary."""
        config, data = self.config, self.data
        t0 = time.perf_counter()
        if data.val is not None:
            val_loss, val_acc = evaluate(self.model, data.val.x, data.val.y, config.eval_batch_size,
                                         self.device, self.dtype)
        else:
            val_loss, val_acc = None, None
        if self.scores_test:
            test_loss, test_acc = evaluate(self.model, data.test.x, data.test.y, config.eval_batch_size,
                                           self.device, self.dtype)
            self.metrics["test_losses"].append(test_loss)
            self.metrics["test_accs"].append(test_acc)
        t1 = time.perf_counter()
        phys = physicality(self.model, self.x_probe)
        for key, value in (("train_losses", train_loss), ("train_accs", train_acc), ("epoch_times", seconds),
                           ("eval_times", t1 - t0), ("unitarity_errors", phys.get("max_unitarity_error"))):
            self.metrics[key].append(value)
        if val_acc is not None:
            self.metrics["val_losses"].append(val_loss)
            self.metrics["val_accs"].append(val_acc)
        self._update_record(epoch + 1, phys)
        save_checkpoint(self.ckpt_path, config, self.model.state_dict(), self.optimizer.state_dict(),
                        self.metrics, epoch + 1)
        if epoch + 1 == config.epochs:
            self.record["status"] = "complete"
        write_record(self.rec_path, self.record)
        if self.on_epoch is not None:
            self.on_epoch(self)
        scores = [f"val acc {100 * val_acc:.2f}%"] if val_acc is not None else []
        if self.scores_test:
            scores.append(f"test acc {100 * test_acc:.2f}%")
        return (f"{self.tag} epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f} "
                f"acc {100 * train_acc:.2f}% | {' | '.join(scores + [f'{seconds:.1f}s'])}")

    def finish(self) -> dict:
        """Mark a run complete whose checkpoint already held every epoch; return the record."""
        if self.record.get("epochs_completed", 0) >= self.config.epochs and self.record["status"] != "complete":
            self.record["status"] = "complete"
            self._update_record(self.record["epochs_completed"], physicality(self.model, self.x_probe))
            write_record(self.rec_path, self.record)
        return self.record

    def final_line(self) -> str:
        rec = self.record
        best = rec.get("best_epoch")
        if not self.scores_test:  # a trial: what the choice is made on
            val = f"best val acc {100 * rec['best_val_acc']:.2f}% at epoch {best}" if best else "no validation score"
            return f"{self.tag} done: {val} of {rec.get('epochs_completed', 0)}"
        test = rec["test_accs"][-1] if rec.get("test_accs") else float("nan")
        at_best = f", best val epoch {best} (test {100 * rec['test_acc_at_best']:.2f}%)" if best else ""
        return f"{self.tag} done: test acc {100 * test:.2f}% after {rec.get('epochs_completed', 0)} epochs{at_best}"


# ------------------------------------------------------------------------------------------------
# the lone loop


def fit(config: TrainConfig, out_dir, *, resume: bool = False, progress: bool | None = None,
        log=_default_log, data=None, stop_after: int | None = None, verbose: bool = False,
        on_epoch=None) -> dict:
    """Train one run and return its record.

    Args:
        config: the run (validated here).
        out_dir: results directory; see :mod:`qcreep.records` for the files written. It is locked
            for this process while the run trains (:func:`qcreep.files.results_lock`).
        resume: continue from this run's checkpoint. Without it, a run with an unfinished record
            or checkpoint in ``out_dir`` is an error, so nothing written is overwritten.
        progress: show a progress bar (default: only when stderr is a terminal).
        data: ``(train, test)`` splits already loaded (a sweep loads each dataset once), or a
            :class:`RunData`.
        stop_after: stop after this many epochs of this call (for tests of resuming).
        verbose: log a line per epoch (default: one line when the run finishes).
        on_epoch: called as ``on_epoch(tracker)`` (a :class:`RunTracker`) after each epoch's
            checkpoint and record are written.

    A run whose record is already complete for ``config.epochs`` epochs is not trained again;
    its record is returned.
    """
    config.validate()
    out_dir = Path(out_dir)
    existing = preflight(config, out_dir, resume=resume)
    tag = run_tag(config)
    if is_complete(existing, config):
        log(f"{tag} already complete ({existing['epochs_completed']} epochs), skipped")
        return existing
    previous_threads = torch.get_num_threads()
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        with results_lock(out_dir):
            run_data = prepare_data(config, data)
            tracker = RunTracker(config, out_dir, run_data, existing=existing, resume=resume, log=log,
                                 on_epoch=on_epoch)
            return _train(tracker, progress, log, stop_after, verbose)
    finally:
        torch.set_num_threads(previous_threads)


def _train(tracker: RunTracker, progress, log, stop_after, verbose) -> dict:
    config = tracker.config
    bar = None
    if want_progress(progress) and tracker.epochs_left > 0:
        from tqdm.auto import tqdm
        steps = math.ceil(len(tracker.data.fit) / config.batch_size)
        bar = tqdm(total=steps * tracker.epochs_left, desc=tracker.tag, unit="batch", leave=False)
    try:
        done = 0
        for epoch in range(tracker.start_epoch, config.epochs):
            if stop_after is not None and done >= stop_after:
                break
            t0 = time.perf_counter()
            try:
                loss, acc = train_epoch(tracker.model, tracker.optimizer, tracker.data.fit, config, epoch,
                                        tracker.device, tracker.dtype, bar)
                line = tracker.end_epoch(epoch, loss, acc, time.perf_counter() - t0)
            except torch.linalg.LinAlgError as err:
                raise diverged_or(err, tracker.model.parameters(), epoch) from None
            done += 1
            if verbose:
                (bar.write if bar is not None else log)(line)
    finally:
        if bar is not None:
            bar.close()
    record = tracker.finish()
    if record.get("status") == "complete":
        log(tracker.final_line())
    return record


def train_epoch(model, optimizer, train: Split, config: TrainConfig, epoch: int, device, dtype, bar=None):
    """One pass over ``train`` in the run's order for ``epoch``; returns mean loss and accuracy."""
    model.train()
    perm = epoch_permutation(len(train), config.seed, epoch)
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
        check_finite(loss, epoch)
        total_loss += float(loss.detach()) * len(idx)
        correct += int((out.argmax(1) == yb).sum())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.3f}", refresh=False)
    return total_loss / len(perm), correct / len(perm)


def check_finite(loss: torch.Tensor, epoch: int) -> None:
    if not torch.isfinite(loss.detach()).all():
        raise DivergedError(f"training diverged: loss is {loss.detach().tolist()} at epoch {epoch + 1}; "
                            "try a smaller --lr")


def diverged_or(err: Exception, params, epoch: int) -> Exception:
    """A :class:`DivergedError` when ``err`` (a failed decomposition) comes from non-finite ``params``, else ``err``.

    A quantum layer that diverges meets its first NaN inside an eigendecomposition, which raises
    before any loss is computed; such a run has diverged like one whose loss is not finite.
    """
    bad = any(not torch.isfinite(p.detach()).all() for p in params)
    if bad:
        return DivergedError(f"training diverged: parameters are not finite at epoch {epoch + 1} (a matrix "
                             "decomposition failed on them); try a smaller --lr")
    return err


class DivergedError(QcreepError):
    """The loss became infinite or NaN (the learning rate is too large for this rung)."""
