"""Issue 18, pipes and FIFOs: ``ingest <(cmd)``, ``ingest FIFO`` and ``ingest -`` read the
data (the same trace as from the file), never hang, leave no copy behind; anything that
cannot be read says so in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.reliability_helpers import ROOT, cli, cli_cmd, cli_env, one_line_error, temporaries
from tracebench.trace import read_trace

SRC = ROOT / "tests" / "data" / "local-dual" / "ftrace.txt"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.parquet"
    r = cli("ingest", SRC, "-o", out)
    assert r.exit_code == 0, r.output
    cols, meta = read_trace(out)
    return cols, meta


def same_trace(path: Path, reference) -> None:
    cols, meta = read_trace(path)
    ref_cols, ref_meta = reference
    assert len(cols["ts_ns"]) == len(ref_cols["ts_ns"]) > 100
    for k in cols:
        assert (cols[k] == ref_cols[k]).all(), k
    assert meta.source["files"][0]["sha256"] == ref_meta.source["files"][0]["sha256"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for <(cmd)")
def test_process_substitution(tmp_path, reference):
    out = tmp_path / "p.parquet"
    cmd = " ".join(map(str, cli_cmd("ingest", "<(cat " + str(SRC) + ")", "-o", out)))
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, env=cli_env(), timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    same_trace(out, reference)
    assert not temporaries(tmp_path)


def test_fifo_is_read_as_a_stream(tmp_path, reference):
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)

    def writer():  # a slow writer: the reader must wait for the end, not stop at a lull
        with open(fifo, "wb") as fh:
            data = SRC.read_bytes()
            half = data.index(b"\n", len(data) // 2) + 1
            fh.write(data[:half])
            fh.flush()
            threading.Event().wait(0.3)
            fh.write(data[half:])

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    out = tmp_path / "f.parquet"
    r = subprocess.run(cli_cmd("ingest", fifo, "-o", out), capture_output=True,
                       env=cli_env(), timeout=120)
    t.join(timeout=10)
    assert r.returncode == 0, r.stderr.decode()
    same_trace(out, reference)
    assert not temporaries(tmp_path)


def test_stdin_dash(tmp_path, reference):
    out = tmp_path / "s.parquet"
    r = subprocess.run(cli_cmd("ingest", "-", "-o", out), input=SRC.read_bytes(),
                       capture_output=True, env=cli_env(), timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    same_trace(out, reference)


@pytest.mark.parametrize(("path", "words"), [("/dev/zero", "is a device"),
                                             ("/dev/null", "is a device")])
def test_devices_are_refused(tmp_path, path, words):
    if not Path(path).exists():
        pytest.skip(f"no {path}")
    one_line_error(cli("ingest", path, "-o", tmp_path / "o.parquet"), 1, words)
    assert not list(tmp_path.iterdir())


def test_binary_pipe_is_refused_early(tmp_path):
    r = subprocess.run(cli_cmd("ingest", "-", "-o", tmp_path / "o.parquet"),
                       input=b"\0\1\2" * 10000, capture_output=True, env=cli_env(), timeout=60)
    one_line_error(r, 1, "binary data")
    assert not list(tmp_path.iterdir())


def test_unreadable_file_says_so(tmp_path, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_bytes(SRC.read_bytes())
    real_open = open

    def deny(file, *a, **k):  # root reads anything: fail the one call that would fail
        if str(file) == str(src):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    import builtins

    monkeypatch.setattr(builtins, "open", deny)
    one_line_error(cli("ingest", src, "-o", tmp_path / "o.parquet"), 1, "in.txt",
                   "Permission denied")
