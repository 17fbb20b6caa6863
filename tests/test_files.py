"""Atomic writes and the one-writer lock of a results folder (qcreep.files).

The lock tests use real processes: a holder started with ``python -c`` keeps the lock until it is
told to stop (a line on its stdin) or is killed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from qcreep import files
from qcreep.errors import OutputError
from qcreep.files import (
    LOCK_NAME,
    atomic_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    ensure_dir,
    lock_holder,
    results_lock,
)

REPO = Path(__file__).resolve().parents[1]

HOLDER = textwrap.dedent("""
    import sys
    from qcreep.files import results_lock
    with results_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
""")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


class Holder:
    """A separate Python process holding the lock of ``folder`` until released or killed."""

    def __init__(self, folder: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        line = self.proc.stdout.readline()
        if line.strip() != "locked":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"holder did not take the lock: {line!r} {err}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        out, err = self.proc.communicate("\n", timeout=30)
        assert self.proc.returncode == 0, err
        assert "released" in out

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


@pytest.fixture
def holder_factory():
    started = []

    def start(folder):
        holder = Holder(folder)
        started.append(holder)
        return holder

    yield start
    for holder in started:
        holder.cleanup()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


# ----------------------------------------------------------------------------------- the lock

def test_second_process_is_refused_with_the_holder_named(tmp_path, holder_factory):
    out = tmp_path / "runs"
    holder = holder_factory(out)
    with pytest.raises(OutputError) as info:
        with results_lock(out):
            pass
    message = str(info.value)
    assert "\n" not in message
    assert f"results folder {out} is in use by another qcreep process" in message
    assert f"pid {holder.pid} on {socket.gethostname()}" in message
    assert "since 20" in message and "python -c" in message
    assert message.endswith("wait for it to finish or choose another --out")
    record = lock_holder(out)
    assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
    assert set(record) >= {"pid", "host", "started", "started_unix", "command"}
    holder.release()
    assert lock_holder(out) is None  # the record is emptied on release; the file may stay
    with results_lock(out):
        assert lock_holder(out)["pid"] == os.getpid()


def test_second_process_gets_one_line_error_in_its_own_process(tmp_path, holder_factory):
    out = tmp_path / "runs"
    holder = holder_factory(out)
    code = ("import sys\nfrom qcreep.files import results_lock\nfrom qcreep.errors import OutputError\n"
            "try:\n    with results_lock(sys.argv[1]): pass\n"
            "except OutputError as e:\n    print(e); sys.exit(2)\n")
    run = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=_env(),
                         timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and f"pid {holder.pid} " in lines[0]
    holder.release()


def test_wait_blocks_until_the_holder_releases(tmp_path, holder_factory):
    out = tmp_path / "runs"
    holder = holder_factory(out)
    got = threading.Event()
    errors = []

    def waiter():
        try:
            with results_lock(out, wait=True):
                got.set()
        except Exception as err:  # reported below
            errors.append(err)

    thread = threading.Thread(target=waiter)
    thread.start()
    try:
        assert not got.wait(0.6), "wait=True took a lock that another process holds"
        holder.release()
        assert got.wait(30), "wait=True did not take the lock after its release"
    finally:
        if holder.proc.poll() is None:
            holder.kill()
        thread.join(30)
    assert not errors


def test_lock_is_released_when_the_holder_is_killed(tmp_path, holder_factory):
    out = tmp_path / "runs"
    holder = holder_factory(out)
    with pytest.raises(OutputError):
        with results_lock(out):
            pass
    dead = holder.pid
    holder.kill()
    # The dead holder's record may stay in the file, but the operating system freed the lock.
    with results_lock(out) as folder:
        assert folder == out
        assert lock_holder(out)["pid"] == os.getpid() != dead
    assert (out / LOCK_NAME).exists()


def test_check_not_in_use_names_the_holder_and_writes_nothing(tmp_path, holder_factory):
    files.check_not_in_use(tmp_path / "missing")  # free, and nothing is created
    assert not (tmp_path / "missing").exists()
    out = tmp_path / "runs"
    holder = holder_factory(out)
    before = (out / LOCK_NAME).read_bytes()
    with pytest.raises(OutputError, match=rf"results folder {out} is in use by another qcreep process "
                                          rf"\(pid {holder.pid} on "):
        files.check_not_in_use(out)
    assert (out / LOCK_NAME).read_bytes() == before
    holder.release()
    files.check_not_in_use(out)
    with results_lock(out):
        files.check_not_in_use(out)  # this process holds it


def test_a_busy_folder_is_reported_before_advice_about_its_runs(tmp_path, holder_factory):
    """While another process holds OUT, its unfinished run must not be met with "resume it"."""
    from qcreep.config import TrainConfig
    from qcreep.train import fit

    out = tmp_path / "runs"
    config = TrainConfig(dataset="digits", level=0, epochs=2, max_train=60, max_test=20).validate()
    fit(config, out, progress=False, log=lambda m: None, stop_after=1)  # an unfinished run: 1 of 2 epochs
    holder = holder_factory(out)
    for resume in (False, True):
        with pytest.raises(OutputError, match=rf"in use by another qcreep process \(pid {holder.pid} "):
            fit(config, out, progress=False, log=lambda m: None, resume=resume)
    # the command line: one line naming the holder, exit 2
    argv = [sys.executable, "-m", "qcreep.cli", "run", "--levels", "0", "--seeds", "1", "--no-tune", "--no-twins",
            "--epochs", "2", "--max-train", "60", "--max-test", "20", "--threads", "1", "--no-progress",
            "--out", str(out)]
    run = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=300)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qcreep: error: results folder"), run.stderr
    assert f"pid {holder.pid} " in lines[0] and "resume" not in lines[0]
    holder.release()
    # once free, the same command gets the advice about the unfinished run
    run = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=300)
    assert run.returncode == 2 and "has an earlier checkpoint" in run.stderr, run.stderr


def test_nested_use_in_one_process_does_not_deadlock(tmp_path):
    out = tmp_path / "runs"
    with results_lock(out):
        with results_lock(out, wait=True):  # would block forever without the registry
            with results_lock(str(out) + "/"):
                pass
        # still held by the outer block: another process is refused
        run = subprocess.run([sys.executable, "-c", HOLDER, str(out)], input="\n", capture_output=True,
                             text=True, env=_env(), timeout=60)
        assert run.returncode != 0 and f"pid {os.getpid()} " in run.stderr
    run = subprocess.run([sys.executable, "-c", HOLDER, str(out)], input="\n", capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert run.returncode == 0, run.stderr


def test_nested_release_after_an_exception(tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(KeyError):
        with results_lock(out):
            with results_lock(out):
                raise KeyError("inner")
    assert files._HELD == {}
    with results_lock(out):
        pass


def test_threads_of_the_holding_process_share_the_lock(tmp_path):
    out = tmp_path / "runs"
    errors = []

    def worker():
        try:
            for _ in range(20):
                with results_lock(out):
                    atomic_write_text(out / "x.txt", "x")
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert files._HELD == {}


def test_different_folders_are_independent(tmp_path, holder_factory):
    holder = holder_factory(tmp_path / "a")
    with results_lock(tmp_path / "b"):
        pass
    holder.release()


def test_lock_on_an_existing_file_is_an_output_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("not a folder")
    with pytest.raises(OutputError, match="is an existing file, not a folder; choose another --out"):
        with results_lock(target):
            pass


# ----------------------------------------------------------------------------------- the folder

def test_out_is_an_existing_file(tmp_path):
    target = tmp_path / "out"
    target.write_text("x")
    with pytest.raises(OutputError) as info:
        ensure_dir(target)
    assert "\n" not in str(info.value) and str(target) in str(info.value)


def test_out_below_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="a part of the path is a file"):
        ensure_dir(tmp_path / "f" / "runs")
    with pytest.raises(OutputError):
        atomic_write_text(tmp_path / "f" / "runs" / "a.txt", "x")


def _chmod_stops_writes(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except PermissionError:
        return True
    probe.unlink()
    return False


def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    folder.chmod(0o500)
    try:
        if not _chmod_stops_writes(folder):
            pytest.skip("permission bits do not stop writes here (running as root)")
        with pytest.raises(OutputError, match="cannot be written to: permission denied"):
            ensure_dir(folder)
        with pytest.raises(OutputError):
            atomic_write_text(folder / "old.txt", "new")
        with pytest.raises(OutputError):
            with results_lock(folder):
                pass
        assert (folder / "old.txt").read_text() == "old"
    finally:
        folder.chmod(0o700)


def test_read_only_check_uses_access(tmp_path, monkeypatch):
    """The writability check itself, independent of who runs the tests."""
    monkeypatch.setattr(files.os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match=r"output folder .* cannot be written to: .*; choose another --out"):
        ensure_dir(tmp_path)


# ----------------------------------------------------------------------------------- atomic writes

@pytest.mark.parametrize("where", ["fsync", "replace", "write"])
@pytest.mark.parametrize("how", ["bytes", "json", "save"])
def test_full_disk_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, where, how):
    path = tmp_path / "record.json"
    atomic_write_json(path, {"version": 1})
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "fsync":
        monkeypatch.setattr(files.os, "fsync", full)
    elif where == "replace":
        monkeypatch.setattr(files.os, "replace", full)
    with pytest.raises(OutputError) as info:
        if how == "bytes":
            if where == "write":
                monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: _FullFile(fd))
            atomic_write_bytes(path, b'{"version": 2}\n')
        elif how == "json":
            if where == "write":
                monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: _FullFile(fd))
            atomic_write_json(path, {"version": 2})
        else:
            def writer(tmp):
                Path(tmp).write_text('{"version": 2}\n')
                if where == "write":
                    raise OSError(errno.ENOSPC, "No space left on device")
            atomic_save(path, writer)
    message = str(info.value)
    assert "the disk is full" in message and str(path) in message and "\n" not in message
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


class _FullFile:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def test_torch_style_runtime_error_is_an_output_error(tmp_path):
    path = tmp_path / "model.pt"

    def writer(tmp):
        raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")

    with pytest.raises(OutputError, match="cannot write"):
        atomic_save(path, writer)
    assert list(tmp_path.iterdir()) == []


def test_other_runtime_errors_pass_through(tmp_path):
    def writer(tmp):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        atomic_save(tmp_path / "x.pt", writer)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_writers_of_one_path(tmp_path):
    path = tmp_path / "table.md"
    versions = {k: (f"version {k}\n" * (2000 + 37 * k)).encode() for k in range(2)}
    errors = []

    def writer(k):
        try:
            for _ in range(60):
                atomic_write_bytes(path, versions[k])
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert path.read_bytes() in versions.values()
    assert _leftovers(tmp_path) == []


def test_written_files_get_ordinary_permissions(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~files._umask()
    path.chmod(0o640)
    atomic_write_text(path, "y")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    atomic_save(tmp_path / "b.bin", lambda tmp: Path(tmp).write_bytes(b"z"))
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o666 & ~files._umask()


# ------------------------------------------------------- real full and read-only file systems

def _in_private_tmpfs(tmp_path: Path, shell_setup: str, code: str) -> dict:
    """Run ``code`` in a private mount namespace with a 64 KiB tmpfs on ``tmp_path/mnt``.

    The mount is seen only by that process and disappears with it. Skips where mount namespaces
    are not available (no ``unshare``, or not permitted).
    """
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        pytest.skip("needs unshare (Linux) for a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f'mount -t tmpfs -o size=64k tmpfs "$1" || exit 77; {shell_setup} exec "$2" -c "$3" "$1"'
    for flags in (["-rm"], ["-m"]):
        try:
            run = subprocess.run([unshare, *flags, "sh", "-c", script, "sh", str(mnt), sys.executable, code],
                                 capture_output=True, text=True, env=_env(), timeout=120)
        except OSError:
            continue
        if run.returncode == 0 and run.stdout.strip():
            return json.loads(run.stdout.strip().splitlines()[-1])
        if run.returncode not in (1, 77) or "Traceback" in run.stderr:
            raise AssertionError(f"tmpfs test failed: rc={run.returncode}\n{run.stdout}\n{run.stderr}")
    pytest.skip("cannot mount a private tmpfs here")


def test_real_full_disk(tmp_path):
    code = textwrap.dedent("""
        import json, os, sys
        from pathlib import Path
        from qcreep.files import atomic_write_bytes, atomic_write_text
        from qcreep.errors import OutputError
        mnt = Path(sys.argv[1])
        atomic_write_text(mnt / "record.json", "old")
        try:
            atomic_write_bytes(mnt / "record.json", os.urandom(1 << 20))
            message = None
        except OutputError as err:
            message = str(err)
        print(json.dumps({"message": message, "content": (mnt / "record.json").read_text(),
                          "files": sorted(os.listdir(mnt))}))
    """)
    result = _in_private_tmpfs(tmp_path, "", code)
    assert result["message"] is not None and "the disk is full" in result["message"]
    assert result["content"] == "old"
    assert result["files"] == ["record.json"]


def test_real_read_only_file_system(tmp_path):
    code = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        from qcreep.files import atomic_write_text, ensure_dir, results_lock
        from qcreep.errors import OutputError
        mnt = Path(sys.argv[1])
        messages = []
        for attempt in (lambda: ensure_dir(mnt), lambda: atomic_write_text(mnt / "old.txt", "new"),
                        lambda: results_lock(mnt).__enter__()):
            try:
                attempt()
                messages.append(None)
            except OutputError as err:
                messages.append(str(err))
        print(json.dumps({"messages": messages, "content": (mnt / "old.txt").read_text()}))
    """)
    setup = 'echo old > "$1/old.txt" && mount -o remount,ro "$1" || exit 77;'
    result = _in_private_tmpfs(tmp_path, setup, code)
    assert all(m is not None and "read-only" in m for m in result["messages"]), result
    assert result["content"] == "old\n"
