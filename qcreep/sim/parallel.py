"""Spread per-matrix work over the CPU cores.

torch runs a batched ``torch.linalg.eigh`` on CPU one matrix after another, and its intra-op
threads barely help at the sizes of the quantum layers (128 x 128): on two cores, one batched
eigh of 200 such matrices takes about as long with two threads as with one. Here the batch is
cut into contiguous chunks, and each chunk runs in a worker thread with one intra-op thread of
its own. torch releases the GIL inside its operators, so the chunks run side by side: on this
project's 2-core machine the 200 decompositions took 0.44 to 0.65 of the batched call's time,
side by side (``benchmarks/bench_layers.py``, item 2). The re-uploading circuit runs its whole
per-sample work this way, forward and backward (:mod:`qcreep.sim.circuits`), and
:func:`submit_chunks` starts chunks that the calling thread collects later, doing other work
meanwhile under :func:`inline`.

Every row of a batch is computed by the same operators as in one batched call, so the results
are those of the single call to rounding: a chunk runs on one thread and on part of the batch,
and the maths library (MKL) may choose another kernel for another thread count or batch size,
as it does on some CPUs. The same thread count and the same batch give the same bits.

Nothing runs in threads on a GPU (its operators are asynchronous already), inside a torch.func
transform (vmap, grad: their state is per thread), inside a worker (no nesting), or when torch is
set to one thread: then the work runs in the calling thread as one call. The number of workers
follows ``torch.get_num_threads()`` of the caller, so ``torch.set_num_threads`` controls it.

Example:
    >>> import torch
    >>> from qcreep.sim.parallel import eigh
    >>> a = torch.randn(8, 16, 16, dtype=torch.float64)
    >>> lam, vecs = eigh(a + a.mT)
    >>> bool(torch.allclose(lam, torch.linalg.eigh(a + a.mT)[0], rtol=0, atol=1e-12))
    True
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

# Below this many rows per chunk the thread hand-off costs more than it saves.
MIN_ROWS_PER_CHUNK = 2

_LOCK = threading.Lock()
_LOCAL = threading.local()
_POOL: ThreadPoolExecutor | None = None
_POOL_PID: int | None = None


def _one_thread() -> bool:
    """One intra-op thread in this worker; whether it had to be set.

    torch's thread count is not reliably per thread (setting it in one thread can change what
    another reads, and it is the default of threads started later), so it is checked before every
    chunk, and the caller's count is restored after any chunk that set it.
    """
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
        return True
    return False


def _init_worker() -> None:
    _LOCAL.worker = True


def _pool() -> ThreadPoolExecutor:
    """The shared pool, created on first use (and again in a forked child, whose threads are gone)."""
    global _POOL, _POOL_PID
    with _LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            torch.get_num_threads()  # settle the caller's thread count before the workers set theirs
            _POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="qcreep-sim",
                                       initializer=_init_worker)
            _POOL_PID = os.getpid()
        return _POOL


def transforms_active() -> bool:
    """Whether a torch.func transform (vmap, grad, jvp, ...) is running in this thread."""
    return bool(torch._C._are_functorch_transforms_active())


@contextlib.contextmanager
def one_thread():
    """This thread's own operators on one intra-op thread, while the workers run chunks.

    With the workers busy, more intra-op threads only contend for the same cores (and on a loaded
    machine OpenMP threads that wait for each other can take far longer than the work). The
    thread's count is restored on exit.
    """
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@contextlib.contextmanager
def inline():
    """Within this context the calling thread runs its chunks itself, on one intra-op thread,
    while the workers are busy with chunks it has handed them (:func:`submit_chunks`)."""
    before = getattr(_LOCAL, "inline", False)
    _LOCAL.inline = True
    try:
        with one_thread():
            yield
    finally:
        _LOCAL.inline = before


def threads_allowed() -> bool:
    """Whether this thread may hand chunks to the workers (not inside a worker, under :func:`inline`
    or a torch.func transform)."""
    return not (getattr(_LOCAL, "worker", False) or getattr(_LOCAL, "inline", False) or transforms_active())


def workers_for(tensor: torch.Tensor, rows: int) -> int:
    """How many chunks to cut ``rows`` independent rows into (1: run in the calling thread)."""
    if tensor.device.type != "cpu" or not threads_allowed():
        return 1
    cores = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cores, rows // MIN_ROWS_PER_CHUNK))


def chunk_bounds(rows: int, chunks: int) -> list[tuple[int, int]]:
    """``chunks`` contiguous ``(start, stop)`` ranges covering ``range(rows)``, sizes differing by at most 1."""
    base, extra = divmod(rows, chunks)
    bounds, start = [], 0
    for k in range(chunks):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def run_chunks(fn: Callable[[int, int], object], rows: int, chunks: int) -> list:
    """``[fn(start, stop) for each chunk]``, the chunks in worker threads when ``chunks > 1``.

    The results come back in chunk order. An exception in any chunk is raised here. Inside a
    worker or a torch.func transform the chunks run one after another in the calling thread.
    """
    bounds = chunk_bounds(rows, chunks)
    if chunks <= 1 or not threads_allowed():
        return [fn(start, stop) for start, stop in bounds]
    handle = submit_chunks(fn, bounds)
    try:
        return [handle.result(k) for k in range(len(bounds))]
    finally:
        handle.finish()


class Chunks:
    """Chunks started in the workers (:func:`submit_chunks`)."""

    def __init__(self, bounds, futures, threads, changed):
        self.bounds, self.futures, self.threads, self.changed = bounds, futures, threads, changed

    def result(self, k: int):
        """The result of chunk ``k`` (waits for it; raises its exception)."""
        return self.futures[k].result()

    def finish(self) -> None:
        """In the thread that submitted the chunks, after their results are taken: restore its
        thread count, which a worker's setting may have changed."""
        if self.changed or torch.get_num_threads() != self.threads:
            self.changed.clear()
            torch.set_num_threads(self.threads)  # the caller's count, also the default of new threads


def submit_chunks(fn: Callable[[int, int], object], bounds: list[tuple[int, int]]) -> Chunks:
    """Start ``fn(start, stop)`` for every chunk in the workers and return at once."""
    grad_mode, inference_mode = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    threads = torch.get_num_threads()

    changed = []

    def call(start: int, stop: int):
        if _one_thread():
            changed.append(True)
        # grad and inference mode are per thread: run as the caller would
        with torch.inference_mode(inference_mode), torch.set_grad_enabled(grad_mode):
            return fn(start, stop)

    return Chunks(bounds, [_pool().submit(call, start, stop) for start, stop in bounds], threads, changed)


def map_rows(fn: Callable[..., Sequence[torch.Tensor]], tensors: Sequence[torch.Tensor], dim: int = 0,
             chunks: int | None = None) -> tuple[torch.Tensor, ...]:
    """Apply ``fn`` to chunks of ``tensors`` along ``dim`` and concatenate its outputs along ``dim``.

    ``fn`` must treat the rows along ``dim`` independently and return a tuple of tensors that keep
    that dim. With one chunk ``fn`` runs once on the whole tensors.
    """
    rows = tensors[0].shape[dim]
    if chunks is None:
        chunks = workers_for(tensors[0], rows)
    if chunks <= 1:
        return tuple(fn(*tensors))
    parts = run_chunks(lambda a, b: tuple(fn(*(t.narrow(dim, a, b - a) for t in tensors))), rows, chunks)
    return tuple(torch.cat(outs, dim) for outs in zip(*parts))


def eigh(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` of a batch ``(..., N, N)``, the matrices spread over the CPU cores.

    The same eigenvalues and eigenvectors as one batched call (only the lower triangle is read).
    """
    if h.dim() < 3:
        return torch.linalg.eigh(h)
    lead = h.shape[:-2]
    flat = h.reshape(-1, *h.shape[-2:])
    lam, vecs = map_rows(torch.linalg.eigh, (flat,))
    return lam.reshape(*lead, -1), vecs.reshape(*lead, *vecs.shape[-2:])
