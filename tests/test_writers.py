"""Two real ``qcreep`` processes on one results folder: the second is refused while the first
writes, with a one-line error that names the holder, and nothing of the first is touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

QCREEP = [str(Path(sys.executable).parent / "qcreep")] if (Path(sys.executable).parent / "qcreep").is_file() \
    else ([shutil.which("qcreep")] if shutil.which("qcreep") else [sys.executable, "-m", "qcreep.cli"])


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")


@pytest.mark.slow
def test_second_writer_is_refused_and_names_the_holder(tmp_path):
    out = tmp_path / "out"
    long_run = [*QCREEP, "run", "--levels", "0", "--seeds", "1", "--epochs", "200", "--batch-size", "10",
                "--no-tune", "--threads", "1", "--no-progress", "--out", str(out)]
    log = tmp_path / "holder.log"
    with open(log, "w") as fh:
        holder = subprocess.Popen(long_run, env=_env(), stdout=subprocess.DEVNULL, stderr=fh)
    try:
        deadline = time.monotonic() + 120
        records = out / "records"
        while time.monotonic() < deadline and not (records.exists() and list(records.glob("*.json"))):
            assert holder.poll() is None, log.read_text()
            time.sleep(0.05)
        assert list(records.glob("*.json")), "the first run never wrote a record"
        first = {p: p.read_bytes() for p in (out / "config.yaml",)}
        other = subprocess.run([*QCREEP, "run", "--levels", "0", "--seeds", "1", "--epochs", "1", "--lr", "0.02",
                                "--no-tune", "--threads", "1", "--no-progress", "--out", str(out)],
                               env=_env(), capture_output=True, text=True, timeout=120)
        report = subprocess.run([*QCREEP, "report", str(out)], env=_env(), capture_output=True, text=True,
                                timeout=120)
        assert holder.poll() is None, "the first run ended before the second writer tried"
    finally:
        holder.kill()
        holder.wait(timeout=60)
    for result in (other, report):
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert f"is in use by another qcreep process (pid {holder.pid}" in lines[0]
        assert "qcreep run" in lines[0]
    # the refused writer wrote nothing: one config, one run's record
    assert sorted(p.name for p in out.glob("config*.yaml")) == ["config.yaml"]
    assert all(p.read_bytes() == data for p, data in first.items())
    recs = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(recs) == 1 and recs[0]["config"]["lr"] == 5e-4
    assert not list(out.rglob("*.tmp"))
