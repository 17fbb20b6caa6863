"""Every file qcreep writes goes through here: unique temporary name, fsync, atomic rename.

A failed write (full disk, read-only folder, a killed process) leaves the previous version of the
file intact and no temporary file behind. Errors on the output path become one-line
:class:`~qcreep.errors.OutputError` messages that name the path and the cause.

Example:
    >>> import tempfile, pathlib
    >>> from qcreep.files import atomic_write_text
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "table.md"
    >>> atomic_write_text(path, "| rung | acc |\\n")
    >>> path.read_text()
    '| rung | acc |\\n'
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from qcreep.errors import OutputError

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
}


def describe_os_error(err: OSError) -> str:
    """A short cause for ``err``: 'the disk is full', 'permission denied', ..."""
    return _CAUSES.get(err.errno, err.strerror or type(err).__name__)


def output_error(path, err: OSError, what: str = "write") -> OutputError:
    """The one-line error for an ``OSError`` met while writing ``path``."""
    return OutputError(f"cannot {what} {path}: {describe_os_error(err)}; choose another --out or free the space")


def ensure_dir(path) -> Path:
    """Create folder ``path`` (and parents); an obstacle is a one-line :class:`OutputError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output folder {path} is an existing file, not a folder; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(path, err, "create folder") from None
    return path


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (unique temporary file, fsync, rename)."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
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
