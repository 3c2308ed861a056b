"""A real recording through tracefs (root only): record while a workload runs, ingest, replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import tracefs_unusable
from tracebench.errors import TracebenchError
from tracebench.schema import EventKind as K
from tracebench.trace import read_trace


def test_record_workload_ingest_replay(tmp_path):
    why = tracefs_unusable()
    if why:
        print(f"skipping real recording: {why}")
        pytest.skip(why)
    from tracebench.api import replay
    from tracebench.ingest.record import record

    out = tmp_path / "rec.parquet"
    work = (
        "for i in $(seq 100); do sleep 0.004; done; head -c 2000000 /dev/urandom | gzip >/dev/null"
    )
    res = record(out, events="guest", command=["sh", "-c", work], log=lambda m: None)
    cols, meta = read_trace(out)
    assert meta.method == "record" and meta.clock == "mono"
    assert 0.3e9 < meta.duration_ns < 10e9
    assert (cols["kind"] == K.TIMER_IRQ).sum() > 10  # 100 sleeps of 4 ms need the timer
    assert not any(
        p.name.startswith("tracebench-") for p in Path("/sys/kernel/tracing/instances").iterdir()
    )
    r = replay([out])
    assert r.summary.height > 0 and res.rows == len(cols["ts_ns"])


def test_record_rejects_unknown_event(tmp_path):
    why = tracefs_unusable()
    if why:
        pytest.skip(why)
    from tracebench.ingest.record import record

    with pytest.raises(TracebenchError, match="event nosuch:event does not exist"):
        record(tmp_path / "x.parquet", events="nosuch:event", duration_ns=10**8)
    assert not (tmp_path / "x.parquet").exists()
