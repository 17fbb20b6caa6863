"""Sweep-wide progress, shared by every executor: epochs done, runs done, running and left, an ETA.

:class:`SweepProgress` shows one bar for a whole call of an executor's ``run``. It counts epochs,
so its ETA moves with every finished epoch, not only with every finished run, and its postfix
names the runs done, running and left (``runs done 3/80, running 1, left 76``). Runs already
complete when the sweep starts count as done. Executors tell it what happened
(:meth:`~SweepProgress.started`, :meth:`~SweepProgress.epoch`, :meth:`~SweepProgress.finished`)
and send their log lines through :meth:`~SweepProgress.write`, which keeps the bar intact.

:func:`skip_complete` sorts a sweep's configs into the runs already done (checked with the user's
``resume`` rule) and those left, and :func:`skipped_line` says in one line how many were skipped.

Example:
    >>> from qcreep.config import TrainConfig
    >>> configs = [TrainConfig(dataset="digits", seed=s, epochs=2).validate() for s in range(3)]
    >>> progress = SweepProgress(configs, done={configs[0].run_id: 2}, progress=False)
    >>> progress.started(configs[1].run_id); progress.epoch(configs[1].run_id, 1)
    >>> progress.status()
    'runs done 1/3, running 1, left 1'
    >>> progress.epochs_done, progress.total_epochs
    (3, 6)
    >>> skipped_line(83, 0, "runs")
    '83 runs already complete, skipped'
"""

from __future__ import annotations

import sys

from qcreep.config import TrainConfig
from qcreep.train import is_complete, preflight, want_progress
from qcreep.tuning import is_diverged


class SweepProgress:
    """One progress bar over ``configs`` (shown when :func:`~qcreep.train.want_progress` says so).

    Args:
        configs: every run of this call, done or not.
        done: epochs already finished per run id (a complete run: its ``epochs``).
        progress: True, False or None (only on a terminal), as ``--progress`` / ``--no-progress``.
        what: what the runs are called in the bar (``"runs"``, ``"tuning trials"``).
        log: where :meth:`write` sends log lines (None: nowhere).
    """

    def __init__(self, configs: list[TrainConfig], *, done: dict[str, int] | None = None, progress=None,
                 what: str = "runs", log=None):
        done = done or {}
        self._total = {c.run_id: c.epochs for c in configs}
        self._epochs = {rid: min(int(done.get(rid, 0)), n) for rid, n in self._total.items()}
        self._finished = {rid for rid, n in self._total.items() if self._epochs[rid] >= n}
        self._running: set[str] = set()
        self._log = log
        self._shown = None
        self.bar = None
        if want_progress(progress):
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total_epochs, initial=self.epochs_done, desc=what, unit="epoch",
                            dynamic_ncols=True, file=sys.stderr)
            self._refresh()

    @property
    def total_epochs(self) -> int:
        return sum(self._total.values())

    @property
    def epochs_done(self) -> int:
        return sum(self._epochs.values())

    def status(self) -> str:
        """``runs done D/N, running R, left L``."""
        running = len(self._running - self._finished)
        done = len(self._finished)
        return f"runs done {done}/{len(self._total)}, running {running}, left {len(self._total) - done - running}"

    def started(self, run_id: str) -> None:
        if run_id in self._total:
            self._running.add(run_id)
            self._refresh()

    def epoch(self, run_id: str, epochs: int) -> None:
        """Run ``run_id`` has finished ``epochs`` epochs in all (late or repeated reports are harmless)."""
        if run_id in self._total:
            self._epochs[run_id] = max(self._epochs[run_id], min(int(epochs), self._total[run_id]))
            self._refresh()

    def finished(self, run_id: str) -> None:
        """Run ``run_id`` returned (complete, or a diverged trial: either way nothing is left of it)."""
        if run_id in self._total:
            self._running.discard(run_id)
            self._finished.add(run_id)
            self._epochs[run_id] = self._total[run_id]
            self._refresh()

    def write(self, line: str) -> None:
        """Send a log line without breaking the bar."""
        if self._log is None:
            return
        if self.bar is None:
            self._log(line)
            return
        with self.bar.external_write_mode(file=sys.stderr):
            self._log(line)

    def _refresh(self) -> None:
        if self.bar is None:
            return
        self.bar.update(self.epochs_done - self.bar.n)
        status = self.status()
        if status != self._shown:
            self.bar.set_postfix_str(status, refresh=True)
            self._shown = status

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def skip_complete(configs: list[TrainConfig], out_dir, *, resume: bool,
                  tolerate_divergence: bool = False) -> tuple[dict[str, dict | None], list[TrainConfig]]:
    """``(done, todo)``: the records of the runs already complete in ``out_dir`` (None for a tuning
    trial kept as diverged), by run id, and the configs left to train.

    Every config is checked against the folder first (:func:`~qcreep.train.preflight`, with the
    user's ``resume`` rule), so an unfinished run without ``resume`` fails before anything trains.
    """
    done: dict[str, dict | None] = {}
    todo = []
    for config in configs:
        existing = preflight(config, out_dir, resume=resume)
        if is_complete(existing, config):
            done[config.run_id] = existing
        elif tolerate_divergence and is_diverged(config, out_dir):
            done[config.run_id] = None
        else:
            todo.append(config)
    return done, todo


def skipped_line(n_complete: int, n_diverged: int, what: str) -> str | None:
    """``'83 runs already complete, skipped'`` (None when nothing was skipped)."""
    if not n_complete and not n_diverged:
        return None
    one = what[:-1] if what.endswith("s") else what
    parts = []
    if n_complete:
        parts.append(f"{n_complete} {what if n_complete != 1 else one} already complete")
    if n_diverged:
        parts.append(f"{n_diverged} kept as diverged")
    return ", ".join(parts) + ", skipped"


def log_skipped(done: dict[str, dict | None], log, what: str) -> None:
    """Log :func:`skipped_line` for the ``done`` part of :func:`skip_complete`."""
    line = skipped_line(sum(r is not None for r in done.values()), sum(r is None for r in done.values()), what)
    if line is not None and log is not None:
        log(line)


__all__ = ["SweepProgress", "log_skipped", "skip_complete", "skipped_line"]
