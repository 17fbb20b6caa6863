"""Every file qcreep writes goes through here: unique temporary name, fsync, atomic rename.

A failed write (full disk, read-only folder, a killed process) leaves the previous version of the
file intact and no temporary file behind. Errors on the output path become one-line
:class:`~qcreep.errors.OutputError` messages that name the path and the cause.

A results folder has one writer at a time: :func:`results_lock` holds an operating-system file lock
on ``<folder>/.qcreep.lock`` while a run writes there. A second qcreep process that asks for the
same folder is told, in one line, which process holds it (pid, host, start time, command line).

Example:
    >>> import tempfile, pathlib
    >>> from qcreep.files import atomic_write_text, results_lock
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> with results_lock(out):
    ...     atomic_write_text(out / "table.md", "| rung | acc |\\n")
    >>> (out / "table.md").read_text()
    '| rung | acc |\\n'
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from qcreep.errors import OutputError

#: Name of the lock file inside a results folder.
LOCK_NAME = ".qcreep.lock"

_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file is in the way of a folder",
    errno.EISDIR: "the path is a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENOLCK: "the file system does not support file locks",
    errno.EOPNOTSUPP: "the file system does not support file locks",
}

_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def describe_os_error(err: OSError) -> str:
    """A short cause for ``err``: 'the disk is full', 'permission denied', ..."""
    return _CAUSES.get(err.errno, err.strerror or type(err).__name__)


def output_error(path, err: OSError, what: str = "write") -> OutputError:
    """The one-line error for an ``OSError`` met while writing ``path``."""
    advice = "free some space or choose another --out" if err.errno in _SPACE_ERRNOS else "choose another --out"
    return OutputError(f"cannot {what} {path}: {describe_os_error(err)}; {advice}")


def ensure_dir(path) -> Path:
    """Create folder ``path`` (and parents) and check that it can be written to.

    An existing file in the way, a file among the parents, a read-only folder or file system, or
    any other obstacle is a one-line :class:`OutputError` that names the folder and the cause.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output folder {path} is an existing file, not a folder; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(path, err, "create folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        cause = "permission denied"
        with contextlib.suppress(OSError):
            if os.statvfs(path).f_flag & os.ST_RDONLY:
                cause = "the file system is read-only"
        raise OutputError(f"output folder {path} cannot be written to: {cause}; choose another --out")
    return path


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _final_mode(path: Path) -> int:
    """Permissions for the new version of ``path``: those of the old one, else the umask default.

    ``tempfile.mkstemp`` creates files readable by their owner only; results are meant to be shared
    like any file the user writes.
    """
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return _FILE_MODE


def _chmod_quietly(fd: int, path: Path) -> None:
    """Give the temporary file the final permissions, where the file system has permissions."""
    with contextlib.suppress(OSError):
        os.fchmod(fd, _final_mode(path))


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (unique temporary file, fsync, rename)."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            _chmod_quietly(fh.fileno(), path)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise output_error(path, err) from None
    finally:
        if tmp is not None:
            _remove_quietly(tmp)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def atomic_save(path, writer) -> None:
    """Atomically write a file produced by ``writer(tmp_path)`` (``torch.save``, ``savefig``...)."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        _chmod_quietly(fd, path)
        os.close(fd)
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise output_error(path, err) from None
    except RuntimeError as err:  # torch.save reports a failed write as RuntimeError
        if "write" in str(err).lower() or "file" in str(err).lower():
            raise OutputError(f"cannot write {path}: {' '.join(str(err).split())[:200]}; "
                              "check the free space and choose another --out if needed") from None
        raise
    finally:
        if tmp is not None:
            _remove_quietly(tmp)


def _remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --------------------------------------------------------------------------- one writer per folder

class _Held:
    """A lock this process holds: the open lock file and how many nested users share it."""

    __slots__ = ("fd", "count", "pid")

    def __init__(self, fd: int, pid: int):
        self.fd = fd
        self.count = 1
        self.pid = pid


#: Locks held by this process, by the resolved path of their lock file.
_HELD: dict[str, _Held] = {}
_HELD_GUARD = threading.Lock()


def _command_line() -> str:
    """How this process was started, for the message another writer sees."""
    argv = list(sys.argv)
    if not argv or argv[0] in ("", "-c", "-m", "-"):
        argv = list(getattr(sys, "orig_argv", argv)) or ["python"]
    head = Path(argv[0]).name
    if head == "__main__.py":
        head = f"python -m {Path(argv[0]).parent.name}"
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


def _holder_record() -> dict:
    now = time.time()
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
        "started_unix": now,
        "command": _command_line(),
    }


def _read_holder(lock_path: Path) -> dict | None:
    try:
        text = lock_path.read_text()
        record = json.loads(text) if text.strip() else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def lock_holder(out_dir) -> dict | None:
    """The record of the process that holds (or last held) ``out_dir``'s lock, or ``None``.

    The record has ``pid``, ``host``, ``started`` (local time), ``started_unix`` and ``command``. It
    is emptied when the holder releases the lock; after a crash it may remain, but the lock itself
    is then free, since the operating system releases it when the process ends.
    """
    return _read_holder(Path(out_dir) / LOCK_NAME)


def _in_use_error(out_dir: Path, lock_path: Path) -> OutputError:
    # The holder writes its record right after taking the lock: give it a moment if it is not there.
    record = None
    for _ in range(20):
        record = _read_holder(lock_path)
        if record is not None:
            break
        time.sleep(0.025)
    if record is None:
        who = "another qcreep process"
    else:
        command = " ".join(str(record.get("command", "")).split())
        if len(command) > 160:
            command = command[:157] + "..."
        details = f"pid {record.get('pid', '?')} on {record.get('host', '?')}, since {record.get('started', '?')}"
        if command:
            details += f": {command}"
        who = f"another qcreep process ({details})"
    return OutputError(f"results folder {out_dir} is in use by {who}; "
                       "wait for it to finish or choose another --out")


def check_not_in_use(out_dir) -> None:
    """Raise the one-line :class:`OutputError` of :func:`results_lock` if another process holds
    ``out_dir``; write and create nothing (a missing folder or lock file is free).

    Checks that give advice about the folder's contents (an unfinished run to resume, a record of
    another config) call this first: while another process writes there, that advice is wrong.
    The lock is only tested (a shared lock, taken and dropped at once), not held, so the folder may
    still be taken between this check and :func:`results_lock`, which remains the guarantee.
    """
    out_dir = Path(out_dir)
    lock_path = out_dir / LOCK_NAME
    with _HELD_GUARD:
        held = _HELD.get(os.path.realpath(lock_path))
        if held is not None and held.pid == os.getpid():
            return  # this process holds it
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or none readable): nobody holds the folder through it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use_error(out_dir, lock_path) from None
    except OSError:
        pass  # a file system without locks: results_lock says so when it is taken
    finally:
        os.close(fd)  # also drops the shared lock


@contextlib.contextmanager
def results_lock(out_dir, *, wait: bool = False):
    """Hold the one-writer lock of results folder ``out_dir`` for the duration of a ``with`` block.

    The lock is an operating-system file lock (``flock``) on ``out_dir/.qcreep.lock``, so it is
    released when the block ends and also, by the operating system, if the process dies. While it is
    held the file records the holder's pid, host, start time and command line (JSON); the file
    itself stays after release.

    Nested use in one process (the same folder locked again by code called inside the block) passes
    straight through and does not deadlock; the lock is released when the outermost block ends. The
    lock belongs to the process, not to a thread: threads of the holding process share it.

    Args:
        out_dir: the results folder; created if missing (see :func:`ensure_dir`).
        wait: ``False`` (default): if another process holds the folder, raise at once.
            ``True``: block until that process releases it.

    Yields:
        The folder as a :class:`~pathlib.Path`.

    Raises:
        OutputError: (one line) the folder is held by another process (its pid, host, start time and
            command are named), or cannot be created, written or locked.
    """
    out_dir = ensure_dir(out_dir)
    lock_path = out_dir / LOCK_NAME
    key = os.path.realpath(lock_path)
    pid = os.getpid()
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held.pid != pid:
            held = None  # inherited through fork: the lock belongs to the parent process
        if held is not None:
            held.count += 1
        elif not wait:
            # Check and take under the guard, so that two threads of this process never see
            # each other as another writer.
            held = _HELD[key] = _Held(_acquire(out_dir, lock_path, wait=False), pid)
    if held is None:
        # Waiting happens outside the guard: the holder may be a thread of this process that
        # needs the guard to release.
        fd = _acquire(out_dir, lock_path, wait=True)
        with _HELD_GUARD:
            held = _HELD[key] = _Held(fd, pid)
    try:
        yield out_dir
    finally:
        with _HELD_GUARD:
            held.count -= 1
            if held.count == 0:
                _HELD.pop(key, None)
                with contextlib.suppress(OSError):
                    os.ftruncate(held.fd, 0)  # no stale holder record once released
                with contextlib.suppress(OSError):
                    fcntl.flock(held.fd, fcntl.LOCK_UN)
                os.close(held.fd)


def _acquire(out_dir: Path, lock_path: Path, *, wait: bool) -> int:
    """Open and lock ``lock_path``, write this process's record into it; return the descriptor."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
    except OSError as err:
        raise output_error(lock_path, err, "create the lock file") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use_error(out_dir, lock_path) from None
        except OSError as err:
            raise output_error(lock_path, err, "lock") from None
        try:
            data = (json.dumps(_holder_record()) + "\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError as err:
            raise output_error(lock_path, err) from None
    except BaseException:
        os.close(fd)  # closing the descriptor also releases a lock taken on it
        raise
    return fd
