"""Issue 18, recording: SIGTERM and SIGHUP clean up (tracing off, instance and buffers
removed, the ``-- CMD`` child stopped); the first Ctrl-C stops and keeps the recording, a
second one aborts. Real tracefs recordings as root (short); skipped, saying why, otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import tracefs_unusable
from tests.reliability_helpers import cli_cmd, cli_env, temporaries

INSTANCES = Path("/sys/kernel/tracing/instances")



@pytest.fixture
def tracefs():
    why = tracefs_unusable()
    if why:
        print(f"skipping real recording: {why}")
        pytest.skip(why)
    return INSTANCES


def _start(tmp_path, *args) -> subprocess.Popen:
    return subprocess.Popen(cli_cmd("record", "-o", tmp_path / "rec.parquet", *args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
                            cwd=tmp_path)


def _wait_recording(proc: subprocess.Popen, pidfile: Path | None = None) -> None:
    """Until the instance exists and tracing is on (and the child wrote its pid)."""
    inst = INSTANCES / f"tracebench-{proc.pid}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        on = (inst / "tracing_on").exists() and (inst / "tracing_on").read_text().strip() == "1"
        if on and (pidfile is None or (pidfile.exists() and pidfile.read_text().strip())):
            time.sleep(0.3)  # a little recorded
            return
        time.sleep(0.05)
    raise AssertionError("recording did not start")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose; /proc says which
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def _aborted(r: subprocess.CompletedProcess, code: int, words: str) -> None:
    """Progress lines, then exactly one error line; no traceback."""
    err = r.stderr.decode(errors="replace")
    assert r.returncode == code and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("tracebench: error:")]
    assert len(errors) == 1 and words in errors[0] and err.rstrip().endswith(errors[0]), err


def _finish(proc) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


CHILD = ["--", "sh", "-c", "echo $$ > child.pid; exec sleep 60"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_abort_and_clean_up(tracefs, tmp_path, sig):
    proc = _start(tmp_path, *CHILD)
    _wait_recording(proc, tmp_path / "child.pid")
    child = int((tmp_path / "child.pid").read_text())
    proc.send_signal(sig)
    r = _finish(proc)
    _aborted(r, 128 + sig, f"aborted by {signal.Signals(sig).name}")
    assert not (tracefs / f"tracebench-{proc.pid}").exists()
    assert not _alive(child)
    assert not (tmp_path / "rec.parquet").exists() and not temporaries(tmp_path)


def test_ctrl_c_stops_keeps_and_ingests_the_recording(tracefs, tmp_path):
    # an instance left by a recorder that was SIGKILLed: removed by the next one
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tracefs / f"tracebench-{gone.pid}"
    stale.mkdir()
    proc = _start(tmp_path, *CHILD)
    _wait_recording(proc, tmp_path / "child.pid")
    child = int((tmp_path / "child.pid").read_text())
    assert not stale.exists()
    proc.send_signal(signal.SIGINT)
    r = _finish(proc)
    assert r.returncode == 0, r.stderr.decode()
    assert b"keeping what was recorded" in r.stderr and b"Traceback" not in r.stderr
    assert not _alive(child)
    assert not (tracefs / f"tracebench-{proc.pid}").exists()
    from tracebench.trace import TraceFile

    tf = TraceFile(tmp_path / "rec.parquet")
    assert tf.meta.method == "record" and tf.num_rows > 0
    assert tf.meta.source["recorded"]["command_rc"] is not None
    assert not temporaries(tmp_path)


def test_second_ctrl_c_aborts(tracefs, tmp_path):
    proc = _start(tmp_path, "--duration", "60s")
    _wait_recording(proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)  # the copy and the ingest (numba, polars imports) take far longer
    proc.send_signal(signal.SIGINT)
    r = _finish(proc)
    _aborted(r, 130, "aborted by SIGINT")
    assert not (tracefs / f"tracebench-{proc.pid}").exists()
    assert not (tmp_path / "rec.parquet").exists() and not temporaries(tmp_path)
