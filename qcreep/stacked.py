"""Seed-parallel training: the K seeds of one rung trained together as one stacked model.

A GPU at batch 200 is mostly idle on one small model. Stacking the K models' parameters
(``torch.func.stack_module_state``) and mapping the network over them (``torch.func.vmap`` of
``functional_call``) runs K seeds' work in each step. Nothing about the runs is shared:

- each seed keeps its own initialisation (the lone run's ``torch.manual_seed(seed)`` model),
- its own data order (the lone run's permutation for ``(seed, epoch)``),
- its own optimiser state: Adam is elementwise, so one Adam over the stacked tensors is K
  independent Adams with the same learning rate and step count.

The loss is the sum of the K models' mean cross-entropies, whose gradient with respect to model
k's slice is model k's own gradient. So a stacked run takes the same steps as K lone runs, up to
floating-point rounding (batched kernels may sum in another order). After every epoch each slice
is copied back into a lone model and optimiser and written by the same
:class:`~qcreep.train.RunTracker` as a lone run, so records, checkpoints and ``--resume`` are the
same files as for lone runs; a resumed seed may continue stacked or alone.

Example:
    >>> from qcreep.config import TrainConfig
    >>> from qcreep.stacked import fit_stacked
    >>> configs = [TrainConfig(dataset="digits", level=0, seed=s, epochs=1).validate() for s in range(3)]
    >>> records = fit_stacked(configs, "runs/stacked")  # doctest: +SKIP
    >>> [r["seed"] for r in records]  # doctest: +SKIP
    [0, 1, 2]
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from qcreep.config import TrainConfig
from qcreep.errors import ConfigError
from qcreep.files import results_lock
from qcreep.train import (
    DivergedError,
    RunData,
    RunTracker,
    _default_log,
    diverged_or,
    epoch_permutation,
    is_complete,
    make_optimizer,
    preflight,
    prepare_data,
    run_tag,
    want_progress,
)


def check_stackable(configs: list[TrainConfig]) -> None:
    """Stacked runs must differ by seed alone."""
    if not configs:
        raise ConfigError("seed-parallel training needs at least one run")
    first = configs[0]
    for config in configs[1:]:
        if config.config_hash != first.config_hash or config.rung_label != first.rung_label:
            raise ConfigError(f"seed-parallel runs must differ only by seed; {config.run_id} and {first.run_id} "
                              "differ in other settings")
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seed-parallel runs need distinct seeds, got {seeds}")


def fit_stacked(configs: list[TrainConfig], out_dir, *, resume: bool = False, progress=None, log=_default_log,
                data=None, stop_after: int | None = None, on_epoch=None) -> list[dict]:
    """Train the runs ``configs`` (one rung, several seeds) as one stacked model; return their records.

    Complete runs are skipped. Runs resumed at different epochs are stacked in groups that share
    their epoch. Arguments as :func:`qcreep.train.fit` (``on_epoch(tracker)`` is called for each
    seed after each epoch's files are written).
    """
    for config in configs:
        config.validate()
    check_stackable(configs)
    out_dir = Path(out_dir)
    existing = [preflight(c, out_dir, resume=resume) for c in configs]
    records: dict[int, dict] = {}
    pending = []
    for config, rec in zip(configs, existing):
        if is_complete(rec, config):
            log(f"{run_tag(config)} already complete, skipped")
            records[config.seed] = rec
        else:
            pending.append((config, rec))
    if pending:
        previous_threads = torch.get_num_threads()
        try:
            if configs[0].threads:
                torch.set_num_threads(configs[0].threads)
            with results_lock(out_dir):
                run_data = prepare_data(configs[0], data)
                trackers = [RunTracker(c, out_dir, run_data, existing=e, resume=resume, log=log, on_epoch=on_epoch)
                            for c, e in pending]
                by_start: dict[int, list[RunTracker]] = {}
                for tracker in trackers:
                    by_start.setdefault(tracker.start_epoch, []).append(tracker)
                for group in by_start.values():
                    for tracker, rec in zip(group, train_stacked(group, run_data, progress, stop_after)):
                        records[tracker.config.seed] = rec
                        if rec.get("status") == "complete":
                            log(tracker.final_line())
        finally:
            torch.set_num_threads(previous_threads)
    return [records[c.seed] for c in configs]


class StackedModel:
    """K copies of one network as stacked parameter tensors, called through ``vmap``."""

    def __init__(self, models: list[torch.nn.Module]):
        self.names = [name for name, _ in models[0].named_parameters()]
        params, buffers = stack_module_state(models)
        self.params = {name: params[name] for name in self.names}
        self.buffers = buffers
        self.base = copy.deepcopy(models[0]).to("meta")

        def one(p, b, x):
            return functional_call(self.base, (p, b), (x,))

        self._forward = vmap(one)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(K, B, ...)`` -> outputs ``(K, B, classes)``."""
        return self._forward(self.params, self.buffers, x)

    def copy_into(self, k: int, model: torch.nn.Module) -> None:
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(self.params[name][k])
            for name, buf in model.named_buffers():
                buf.copy_(self.buffers[name][k])


def _stack_optimizer_state(stacked: StackedModel, optimizer: torch.optim.Optimizer, trackers: list[RunTracker]):
    """Start the stacked Adam from the lone optimisers' states (non-empty when resuming)."""
    lone = [dict(t.model.named_parameters()) for t in trackers]
    for name in stacked.names:
        states = [t.optimizer.state.get(params[name]) for t, params in zip(trackers, lone)]
        if any(s is None or not s for s in states):
            continue
        target = stacked.params[name]
        optimizer.state[target] = {
            "step": states[0]["step"].clone(),
            "exp_avg": torch.stack([s["exp_avg"] for s in states]).to(target.device),
            "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in states]).to(target.device),
        }


def _unstack_optimizer_state(stacked: StackedModel, optimizer: torch.optim.Optimizer, k: int,
                             tracker: RunTracker) -> None:
    """Write slice ``k`` of the stacked Adam state into the lone optimiser of ``tracker``."""
    for name, param in tracker.model.named_parameters():
        state = optimizer.state.get(stacked.params[name])
        if not state:
            continue
        tracker.optimizer.state[param] = {"step": state["step"].clone(),
                                          "exp_avg": state["exp_avg"][k].detach().clone(),
                                          "exp_avg_sq": state["exp_avg_sq"][k].detach().clone()}


def train_stacked(trackers: list[RunTracker], data: RunData, progress=None,
                  stop_after: int | None = None) -> list[dict]:
    """Train the trackers' runs (same rung and start epoch) together; return their records."""
    config = trackers[0].config
    device, dtype = trackers[0].device, trackers[0].dtype
    stacked = StackedModel([t.model for t in trackers])
    optimizer = make_optimizer(config, list(stacked.params.values()))
    _stack_optimizer_state(stacked, optimizer, trackers)
    seeds = [t.config.seed for t in trackers]
    fit_part = data.fit
    n = len(fit_part)
    bar = None
    epochs_left = config.epochs - trackers[0].start_epoch
    if want_progress(progress) and epochs_left > 0:
        from tqdm.auto import tqdm
        steps = math.ceil(n / config.batch_size)
        tag = f"[{config.dataset} {config.rung_label} {config.angles} seeds {','.join(map(str, seeds))}]"
        bar = tqdm(total=steps * epochs_left, desc=tag, unit="batch", leave=False)
    try:
        done = 0
        for epoch in range(trackers[0].start_epoch, config.epochs):
            if stop_after is not None and done >= stop_after:
                break
            t0 = time.perf_counter()
            perms = [epoch_permutation(n, seed, epoch) for seed in seeds]
            k_models = len(trackers)
            total_loss = torch.zeros(k_models, dtype=torch.float64)
            correct = torch.zeros(k_models, dtype=torch.long)
            for start in range(0, n, config.batch_size):
                idx = [p[start:start + config.batch_size] for p in perms]
                xb = torch.stack([fit_part.x[i] for i in idx]).to(device=device, dtype=dtype)
                yb = torch.stack([fit_part.y[i] for i in idx]).to(device)
                try:
                    out = stacked(xb)  # (K, B, classes)
                    losses = F.cross_entropy(out.flatten(0, 1), yb.flatten(),
                                             reduction="none").view(k_models, -1).mean(1)
                    optimizer.zero_grad(set_to_none=True)
                    losses.sum().backward()
                except torch.linalg.LinAlgError as err:
                    raise diverged_or(err, stacked.params.values(), epoch) from None
                optimizer.step()
                detached = losses.detach()
                if not torch.isfinite(detached).all():
                    bad = [seeds[k] for k in range(k_models) if not math.isfinite(float(detached[k]))]
                    raise DivergedError(f"training diverged: loss is not finite for seed(s) {bad} at epoch "
                                        f"{epoch + 1}; try a smaller --lr")
                total_loss += detached.double().cpu() * len(idx[0])
                correct += (out.detach().argmax(-1) == yb).sum(1).cpu()
                if bar is not None:
                    bar.update(1)
            seconds = (time.perf_counter() - t0) / k_models  # each run's share of the stacked epoch
            for k, tracker in enumerate(trackers):
                stacked.copy_into(k, tracker.model)
                _unstack_optimizer_state(stacked, optimizer, k, tracker)
                tracker.end_epoch(epoch, float(total_loss[k]) / n, int(correct[k]) / n, seconds)
            done += 1
    finally:
        if bar is not None:
            bar.close()
    return [t.finish() for t in trackers]
