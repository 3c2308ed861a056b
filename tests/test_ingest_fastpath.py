"""The compiled shortcuts of ingest give what the polars rules give, record for record.

The hot guest events (``write_msr``, handler entries/exits, ``cpu_idle``,
``ipi_send_cpu``, ``hrtimer_start`` under MSR writes) are read by numba kernels
(``text/fields.py``, ``rules/fastmap.py``); the polars rules in ``rules/guest.py`` stay the
reference. These tests ingest the same text twice, once with every event sent to
its polars rule, and compare traces and metadata, on the real recordings and on
generated traces full of unusual payloads.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.ingest_helpers import DATA
from tracebench.ingest import ingest
from tracebench.ingest.stream import routes as E
from tracebench.ingest.text import fields as F
from tracebench.schema import METADATA_KEY

REAL = [
    DATA / "fc-guest-mixed/trace-head.txt",
    DATA / "fc-guest-perf/perf-script-head.txt",
    DATA / "local-dual/ftrace.txt",
    DATA / "local-dual/perf-script.txt",
    DATA / "local-dual/perf-script-F-ns.txt",
    DATA / "realtraces/guest-nohz-local-timer-sysjitter/trace_excerpt.txt",
]


def _all_slow(monkeypatch):
    """Route every wanted event to its polars rule (the reference)."""
    route_of = E.route_of

    def slow(family, short, msr_traced):
        route, kind, fam = route_of(family, short, msr_traced)
        return (F.R_SLOW if route >= F.R_MSR else route), kind, fam

    monkeypatch.setattr(E, "route_of", slow)


def _ingest_both(path, tmp_path, monkeypatch, **kw):
    out = {}
    for mode in ("fast", "slow"):
        with monkeypatch.context() as m:
            if mode == "slow":
                _all_slow(m)
            dst = tmp_path / f"{mode}.parquet"
            res = ingest([path], dst, force=True, **kw)
            # read raw: generated ICR destinations make vCPU counts a trace may not hold
            pf = pq.ParquetFile(dst)
            table = pf.read()
            cols = {k: table.column(k).to_numpy() for k in table.column_names}
            meta = json.loads(pf.metadata.metadata[METADATA_KEY])
            out[mode] = (cols, meta, res.rows)
    return out["fast"], out["slow"]


def _assert_same(a, b):
    (ca, ma, ra), (cb, mb, rb) = a, b
    assert ra == rb
    for k in ca:
        assert np.array_equal(ca[k], cb[k]), k
    assert ma == mb


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.parent.name + "/" + p.name)
def test_real_traces_fast_equals_rules(path, tmp_path, monkeypatch):
    _assert_same(*_ingest_both(path, tmp_path, monkeypatch))


# --------------------------------------------------------------------------- generated


def _payloads(rng: random.Random, tsc_of):
    """(event, payload) makers: the usual shapes and the unusual ones the rules accept."""
    hexd = "0123456789abcdef"

    def msr_write():
        r = rng.random()
        if r < 0.35:
            return "write_msr", f"6e0, value {tsc_of():x}"
        if r < 0.4:
            return "write_msr", "6e0, value 0"
        if r < 0.55:
            short, logical = rng.choice([0, 0, 1, 2, 3]), rng.random() < 0.3
            dest = rng.choice([0, 1, rng.randrange(1 << 20), rng.randrange(1 << 31)])
            val = rng.randrange(256) | (logical << 11) | (short << 18) | (dest << 32)
            return "write_msr", f"830, value {val:x}"
        choices = [
            f"83f, value {rng.randrange(256):x}",
            "80b, value 0",
            f"808, value {rng.randrange(16):x}",
            f"838, value {rng.choice([0, rng.randrange(1 << 30)]):x}",
            f"8{rng.choice(hexd)}{rng.choice(hexd)}, value {rng.randrange(1 << 32):x}",
            f"{rng.randrange(1 << 40):x}, value {rng.randrange(1 << 64):x}",
            f"6E0, value {tsc_of():X}",  # upper case
            f"0x6e0, value 0x{tsc_of():x}",  # 0x prefixes: polars strips them
            "6e0, value " + "f" * 17,  # too long for UInt64: null, dropped
            "6e0 value 12",  # no match: dropped
            f"6e0, value {tsc_of():x}x",  # 'x' inside the hex run
            f"48, value {rng.randrange(1 << 64):016x} extra words",
            # MSRs KVM intercepts (intercepts.INTERCEPTED_MSRS) -> msr_write; 0x49 is not
            f"{rng.choice(['3b', '1b', '1a0', '11', '12', '4b564d04', '4b564dff'])}, value "
            f"{rng.randrange(1 << 64):x}",
            f"{rng.choice(['49', '4b564cff', '4b564e00', '1a'])}, value 1",
            "6e0, value ",
        ]
        return "write_msr", rng.choice(choices)

    def handler():
        entry = rng.choice(list(E.HANDLERS))
        name = entry if rng.random() < 0.5 else entry.removesuffix("_entry") + "_exit"
        vec = rng.choice([236, 253, 251, 252, 246, 41, 0, 32767])
        choices = [
            f"vector={vec}",
            f"irq={vec} name=virtio3-rx",
            f"irq={vec} ret=handled",
            f"vector= irq={vec}",
            f"name=x,irq={vec}",
            f"xirq=1 irq={vec}",
            f"vector=000{vec}",
            "irq=99999999999999999999",
            "",
            f"irq={vec}\tname=tab",
        ]
        return name, rng.choice(choices)

    def idle():
        state = rng.choice([0, 1, 2, 4294967295])
        cpu = rng.randrange(4)
        choices = [
            f"state={state} cpu_id={cpu}",
            f"state={state} cpu_id={cpu}",
            f"cpu_id={cpu} state={state}",
            f"state={state}",
            f"state= cpu_id={cpu}",
            f"state=99999999999999999999 cpu_id={cpu}",
            f"foo state={state},cpu_id={cpu}",
            f"xstate=7 state={state} cpu_id=0{cpu}",
        ]
        return "cpu_idle", rng.choice(choices)

    def ipi():
        cb = rng.choice(
            [
                "0x0",
                "(nil)",
                "generic_smp_call_function_single_interrupt+0x0",
                "generic_smp_call_function_interrupt+0x0",
                "nohz_csd_func+0x0",
                "0",
            ]
        )
        choices = [
            f"cpu={rng.randrange(4)} callsite=wakeup_preempt+0x92/0xa0 callback={cb}",
            f"cpu={rng.randrange(4)} callsite=x callback= callback={cb}",
            f"cpu={rng.randrange(4)} callsite=x",
            f"callsite=x callback={cb}",
        ]
        if rng.random() < 0.1:
            return "ipi_send_cpumask", f"cpumask=0-{rng.randrange(4)} callsite=x callback={cb}"
        return "ipi_send_cpu", rng.choice(choices)

    def hrtimer():
        func = rng.choice(["tick_nohz_handler", "tick_sched_timer", "dl_task_timer"])
        exp = rng.randrange(10**12)
        return "hrtimer_start", f"hrtimer=00000000deadbeef function={func} expires={exp} mode=ABS"

    def other():
        return rng.choice(
            [
                ("tick_stop", "success=1 dependency=NONE"),
                ("hrtimer_cancel", "hrtimer=00000000deadbeef"),
                ("read_msr", f"10, value {rng.randrange(1 << 40):x}"),
                ("irq_handler_entry", "irq=5 name=virtïo"),  # non-ASCII: the rule reads it
            ]
        )

    return [msr_write, handler, idle, ipi, hrtimer, other]


def _generate(path, seed: int, n: int, msr: bool, perf: bool) -> None:
    """A guest trace with calibratable TSC deadlines and every payload shape above."""
    rng = random.Random(seed)
    ns = 5_000_000_000
    tsc_per_ns, tsc0 = 2.4 + rng.random(), rng.randrange(1 << 40)
    makers = _payloads(rng, lambda: int(tsc0 + tsc_per_ns * (ns + rng.randrange(4_000_000))))
    if not msr:
        makers = makers[1:]
    lines = []
    for _ in range(n):
        r = rng.random()
        ns += rng.choice([0, 1_000, rng.randrange(60_000)])
        t = ns
        if r < 0.002:
            t -= 300_000_000  # more than the 100 ms window out of order: reported late
        elif r < 0.01:
            t -= rng.randrange(50_000)  # out of order within the window: sorted
        cpu = rng.randrange(2)
        stamp = f"{t // 10**9}.{(t % 10**9) // 1000:06d}"
        if msr and r < 0.12:
            # an hrtimer handed to the clockevent and its TSC deadline: calibration pairs
            exp = ns + rng.randrange(1_000_000, 4_000_000)
            lines.append(
                f"  bash-1  [{cpu:03d}] d.h2. {stamp}: hrtimer_expire_entry: "
                f"hrtimer=00000000deadbeef function=tick_nohz_handler now={ns - 7_000}"
            )
            lines.append(
                f"  bash-1  [{cpu:03d}] d.h2. {stamp}: hrtimer_start: hrtimer=00000000deadbeef "
                f"function=tick_nohz_handler expires={exp - 7_000} mode=ABS"
            )
            ev, payload = "write_msr", f"6e0, value {int(tsc0 + tsc_per_ns * exp):x}"
        else:
            ev, payload = rng.choice(makers)()
        if r > 0.995:
            lines.append(rng.choice(["", "# comment", "CPU:1 [LOST 12 EVENTS]", "garbage"]))
        if perf:
            group = {"write_msr": "msr", "cpu_idle": "power"}.get(ev, "irq_vectors")
            lines.append(f"  bash  1 [{cpu:03d}] {stamp}:  {group}:{ev}: {payload}")
        elif r > 0.99:
            lines.append(f"  {stamp}: {ev}: {payload}")  # no task, no CPU
        else:
            lines.append(f"  bash-1  [{cpu:03d}] d.h2. {stamp}: {ev}: {payload}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("seed", "msr", "perf", "chunk"),
    [
        (1, True, False, None),
        (2, False, False, None),
        (3, True, True, None),
        (4, True, False, 1 << 14),
    ],
)
def test_generated_traces_fast_equals_rules(seed, msr, perf, chunk, tmp_path, monkeypatch):
    src = tmp_path / "gen.txt"
    _generate(src, seed, 12_000, msr, perf)
    kw = {"chunk_bytes": chunk} if chunk else {}
    fast, slow = _ingest_both(src, tmp_path, monkeypatch, **kw)
    _assert_same(fast, slow)
    meta = fast[1]["source"]
    # malformed: the garbage lines, the late ones, and the 20-digit irq= / state= fields
    # (numbers no column holds: skipped and counted, never a silent -1)
    assert fast[2] > 5_000 and 0 < meta["malformed_lines"] < 1000
    assert perf or meta["events_without_cpu"] > 0
    if msr:
        assert meta["calibration"]["method"] == "hrtimer"
