"""A handler's dur_ns is the guest's own time in it (stream/resolve.py): the recording
host's exits (gaps ending at a WRMSR) and its preemption (gaps over STEAL_GAP_NS) are
left out, on hand-made ftrace text at the boundary, and on the shipped real trace."""

from __future__ import annotations

import polars as pl
import pytest

from tests.ingest_helpers import DATA
from tracebench.ingest import ingest
from tracebench.ingest.stream.resolve import STEAL_GAP_NS
from tracebench.schema import EventKind as K
from tracebench.trace import read_trace

STEAL_US = STEAL_GAP_NS // 1000


def _line(us: int, event: str, payload: str, cpu: int = 0) -> str:
    return f"  bash-1  [{cpu:03d}] d.h2. {us // 10**6}.{us % 10**6:06d}: {event}: {payload}"


def _timer_handler(t: int, gap_us: int, exit_us: int = 12) -> tuple[list[str], int]:
    """A local timer handler at ``t`` us whose callback returns ``gap_us`` before the next
    hrtimer_start and whose TPR write exits for ``exit_us``; returns (lines, end)."""
    lines = [_line(t, "local_timer_entry", "vector=236")]
    t += 1
    lines.append(_line(t, "hrtimer_expire_entry", "hrtimer=00000000deadbeef "
                       "function=tick_nohz_handler now=1"))
    t += 2
    lines.append(_line(t, "hrtimer_expire_exit", "hrtimer=00000000deadbeef"))
    t += gap_us
    lines.append(_line(t, "hrtimer_start", "hrtimer=00000000deadbeef function=dl_task_timer "
                       "expires=5 softexpires=5 mode=ABS"))
    t += exit_us
    lines.append(_line(t, "write_msr", "808, value 0"))  # TPR: a WRMSR, an exit when recorded
    t += 1
    lines.append(_line(t, "local_timer_exit", "vector=236"))
    return lines, t


def _durations(tmp_path, lines: list[str], platform: str | None = None):
    path = tmp_path / "trace.txt"
    path.write_text("\n".join(lines) + "\n")
    env = {"platform": platform} if platform else None
    ingest([path], tmp_path / "t.parquet", force=True, environment=env)
    cols, meta = read_trace(tmp_path / "t.parquet")
    df = pl.DataFrame(cols).filter(pl.col("kind").is_in([int(K.TIMER_IRQ), int(K.DEVICE_IRQ)]))
    return df["dur_ns"].to_list(), meta.source["handler_time"]


@pytest.mark.parametrize("gap_us", [STEAL_US - 1, STEAL_US, STEAL_US + 1])
def test_steal_gap_boundary_and_the_recordings_exit(tmp_path, gap_us):
    lines, _ = _timer_handler(1_000_000, gap_us)
    durs, host = _durations(tmp_path, lines)
    # 1 + 2 + gap + 12 (the TPR write's exit) + 1 us; the exit is never guest time, the
    # gap is once it is longer than STEAL_GAP_NS
    stolen = gap_us * 1000 if gap_us * 1000 > STEAL_GAP_NS else 0
    assert durs == [(1 + 2 + gap_us + 1) * 1000 - stolen]
    assert host["exit_ns"] == 12_000
    assert host["steal_ns"] == stolen
    assert host["preempted"] == (1 if stolen else 0)


def test_only_gaps_inside_a_handler_count(tmp_path):
    """A long gap before the entry or after the exit, or on the other CPU, is not the
    handler's; a device handler preempted whole keeps no time."""
    a, end = _timer_handler(2_000_000, 3)
    lines = [_line(1_000_000, "hrtimer_expire_entry", "hrtimer=1 function=x now=1"), *a]
    lines.append(_line(end + 2, "irq_handler_entry", "irq=41 name=virtio3-rx", cpu=1))
    lines.append(_line(end + 500, "hrtimer_cancel", "hrtimer=1"))  # CPU 0, after its exit
    lines.append(_line(end + 70_000, "irq_handler_exit", "irq=41 ret=handled", cpu=1))
    durs, host = _durations(tmp_path, lines)
    assert durs == [(1 + 2 + 3 + 1) * 1000, 0]
    assert host == {**host, "exit_ns": 12_000, "steal_ns": 69_998_000, "preempted": 1}


def test_bare_metal_handlers_keep_their_traced_time(tmp_path):
    lines, _ = _timer_handler(1_000_000, STEAL_US + 1)
    durs, host = _durations(tmp_path, lines, platform="bare-metal")
    assert durs == [(1 + 2 + STEAL_US + 1 + 12 + 1) * 1000]
    assert host == {}


def test_untraced_msr_writes_leave_exit_gaps_in(tmp_path):
    """Without write_msr in the trace, no row is a WRMSR: only preemption is taken out."""
    lines = [
        _line(1_000_000, "local_timer_entry", "vector=236"),
        _line(1_000_004, "hrtimer_expire_entry", "hrtimer=1 function=x now=1"),
        _line(1_000_010, "local_timer_exit", "vector=236"),
    ]
    durs, host = _durations(tmp_path, lines)
    assert durs == [10_000]
    assert (host["exit_ns"], host["steal_ns"]) == (0, 0)


def test_shipped_trace_handlers_hold_no_steal():
    """fc-guest-mixed: 286 of its 1,333 timer handlers ran over 100 us as traced, up to
    184 ms (its host preempted the vCPU); what is left is timer-handler-sized."""
    cols, meta = read_trace(DATA.parent.parent / "traces" / "fc-guest-mixed.parquet")
    df = pl.DataFrame(cols)
    timer = df.filter(pl.col("kind") == int(K.TIMER_IRQ))["dur_ns"]
    assert timer.len() == 1333
    assert timer.quantile(0.5) <= 5_000
    assert timer.max() < 200_000
    host = meta.source["handler_time"]
    assert host["preempted"] > 250 and host["steal_ns"] > 1e9


def test_a_handler_preempted_past_the_window_does_not_depend_on_chunks(tmp_path):
    """A handler whose host kept it 150 ms (longer than the 100 ms HOLD_NS window) while
    the other CPU kept tracing: the window waits for its exit at any chunk size."""
    lines = [_line(1_000_000, "local_timer_entry", "vector=236")]
    lines += [_line(1_000_000 + 500 * i, "hrtimer_cancel", "hrtimer=1", cpu=1)
              for i in range(1, 400)]
    lines += [_line(1_150_003, "hrtimer_expire_entry", "hrtimer=1 function=x now=1"),
              _line(1_150_005, "local_timer_exit", "vector=236")]
    lines += [_line(1_200_000 + 500 * i, "hrtimer_cancel", "hrtimer=1", cpu=1)
              for i in range(400)]
    path = tmp_path / "trace.txt"
    path.write_text("\n".join(lines) + "\n")
    for chunk in (4096, 1 << 20):
        ingest([path], tmp_path / "t.parquet", force=True, chunk_bytes=chunk)
        cols, meta = read_trace(tmp_path / "t.parquet")
        assert cols["dur_ns"][cols["kind"] == int(K.TIMER_IRQ)].tolist() == [2_000], chunk
        assert meta.source["handler_time"]["steal_ns"] == 150_003_000
