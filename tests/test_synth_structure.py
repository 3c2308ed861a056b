"""Structural invariants of every synthesized scenario: what a real guest trace guarantees.

Each checker is written from the trace's point of view (no knowledge of how the
generator works) and is itself tested on a hand-made bad trace, so a checker that
silently passes everything would fail here.
"""

from __future__ import annotations

import numpy as np
import pytest

from tracebench.scenarios import SCENARIOS, generate, synthesize_to_file
from tracebench.schema import INTERRUPT_KINDS, TARGET_ALL_BUT_SELF, TARGET_MASK, EventKind
from tracebench.trace import empty_columns, read_trace

K = EventKind
IRQ_CODES = np.array([int(k) for k in INTERRUPT_KINDS], dtype=np.int8)
SEC = 1_000_000_000
#: arms whose deadline falls this close to the end may lose their timer_irq with the
#: cut (the episode holding the irq is dropped whole when its eoi is past the end)
TAIL_NS = 2_000_000


def _per_cpu(cols):
    for c in np.unique(cols["cpu"]):
        yield c, np.flatnonzero(cols["cpu"] == c)


def check_interrupt_eoi(cols) -> int:
    """Per vCPU, handler starts and EOIs alternate (no nesting); each EOI closes its own
    interrupt: same vector, at handler start + ``dur_ns``. Returns the number of pairs."""
    pairs = 0
    kind = cols["kind"]
    for c, idx in _per_cpu(cols):
        sel = idx[np.isin(kind[idx], IRQ_CODES) | (kind[idx] == K.EOI)]
        is_irq = np.isin(kind[sel], IRQ_CODES)
        assert len(sel) % 2 == 0, f"cpu {c}: an interrupt without its eoi"
        starts, eois = sel[0::2], sel[1::2]
        assert is_irq[0::2].all(), f"cpu {c}: eoi with no interrupt in service"
        assert not is_irq[1::2].any(), f"cpu {c}: nested interrupt before the eoi"
        np.testing.assert_array_equal(cols["vector"][eois], cols["vector"][starts])
        np.testing.assert_array_equal(
            cols["ts_ns"][eois], cols["ts_ns"][starts] + cols["dur_ns"][starts]
        )
        assert (cols["dur_ns"][starts] > 0).all()
        pairs += len(starts)
    return pairs


def check_idle(cols) -> int:
    """idle_enter / idle_exit alternate per vCPU; while idle, nothing happens outside an
    interrupt handler (a handler may read the clock or re-arm the timer before the idle
    loop resumes); each idle period ends with interrupt, eoi, idle_exit. Returns wakeups."""
    kind = cols["kind"]
    wakeups = 0
    for c, idx in _per_cpu(cols):
        k = kind[idx]
        step = np.where(k == K.IDLE_ENTER, 1, np.where(k == K.IDLE_EXIT, -1, 0))
        depth = np.cumsum(step)
        assert depth.min() >= 0 and depth.max() <= 1, f"cpu {c}: idle enter/exit do not alternate"
        idle_now = (depth == 1) & (step == 0)
        is_irq = np.isin(k, IRQ_CODES)
        in_handler = np.cumsum(is_irq.astype(int) - (k == K.EOI)) > 0
        allowed = is_irq | (k == K.EOI) | in_handler
        assert allowed[idle_now].all(), f"cpu {c}: guest-originated event while idle"
        exits = np.flatnonzero(k == K.IDLE_EXIT)
        assert (exits > 0).all() and (k[exits - 1] == K.EOI).all(), (
            f"cpu {c}: idle_exit without an interrupt handled"
        )
        wakeups += len(exits)
    return wakeups


def check_timers(cols, duration_ns: int) -> int:
    """Every timer_irq is at the deadline of the arm just before it (no cancel or other
    arm between), and every arm fires unless cancelled/re-armed before its deadline or
    due after the end. Returns the number of armed timer_irq."""
    kind = cols["kind"]
    fired = 0
    for c, idx in _per_cpu(cols):
        sel = idx[np.isin(kind[idx], [K.TIMER_ARM, K.TIMER_CANCEL, K.TIMER_IRQ])]
        k, ts, arg = kind[sel], cols["ts_ns"][sel], cols["arg"][sel]
        if not (k == K.TIMER_ARM).any():
            continue  # LAPIC periodic mode: nothing armed (checked by its own test)
        irq = np.flatnonzero(k == K.TIMER_IRQ)
        assert (irq > 0).all(), f"cpu {c}: timer_irq before any arm"
        assert (k[irq - 1] == K.TIMER_ARM).all(), f"cpu {c}: timer_irq of a cancelled timer"
        np.testing.assert_array_equal(ts[irq], arg[irq - 1], f"cpu {c}: irq not at deadline")
        arms = np.flatnonzero(k == K.TIMER_ARM)
        assert (arg[arms] > ts[arms]).all(), f"cpu {c}: deadline not in the future"
        nxt = arms + 1
        last = nxt == len(k)
        assert (arg[arms[last]] >= duration_ns - TAIL_NS).all(), (
            f"cpu {c}: an arm before the end never fired"
        )
        mid = arms[~last]
        replaced = k[mid + 1] != K.TIMER_IRQ
        assert (ts[mid + 1][replaced] < arg[mid][replaced]).all(), (
            f"cpu {c}: timer re-armed/cancelled after its deadline passed without firing"
        )
        fired += len(irq)
    return fired


def _send_targets(cols, n_cpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(send row, target vCPU) pairs for every ipi_send, expanding masks and broadcasts."""
    rows = np.flatnonzero(cols["kind"] == K.IPI_SEND)
    target, src, arg = cols["target"][rows], cols["cpu"][rows].astype(np.int64), cols["arg"][rows]
    out_rows, out_dst = [rows[target >= 0]], [target[target >= 0].astype(np.int64)]
    for c in range(min(n_cpus, 64)):
        m = (target == TARGET_MASK) & (((arg >> np.int64(c)) & 1) == 1)
        out_rows.append(rows[m])
        out_dst.append(np.full(m.sum(), c))
    for c in range(n_cpus):
        m = (target == TARGET_ALL_BUT_SELF) & (src != c)
        out_rows.append(rows[m])
        out_dst.append(np.full(m.sum(), c))
    r, d = np.concatenate(out_rows), np.concatenate(out_dst)
    return r, d, cols["ts_ns"][r]


def check_ipis(cols, n_cpus: int, duration_ns: int) -> int:
    """Every ipi_irq can be matched to its own earlier ipi_send to that vCPU with that
    vector (Hall's condition on the sorted times); only sends near the end may go
    undelivered. Returns the number of ipi_irq."""
    rows, dst, sent = _send_targets(cols, n_cpus)
    vec = cols["vector"][rows]
    kind = cols["kind"]
    total = 0
    for c in range(n_cpus):
        for v in np.unique(cols["vector"][kind == K.IPI_IRQ]):
            s = np.sort(sent[(dst == c) & (vec == v)])
            r = cols["ts_ns"][(kind == K.IPI_IRQ) & (cols["cpu"] == c) & (cols["vector"] == v)]
            assert len(r) <= len(s), f"cpu {c} vector {v}: more ipi_irq than sends to it"
            assert (r > s[: len(r)]).all(), f"cpu {c} vector {v}: an ipi_irq before its send"
            assert len(s) - len(r) <= (s >= duration_ns - TAIL_NS).sum(), (
                f"cpu {c} vector {v}: sends never delivered"
            )
            total += len(r)
    assert total == (kind == K.IPI_IRQ).sum(), "ipi_irq with a vector no send used"
    return total


def check_all(cols, meta) -> dict[str, int]:
    assert (np.diff(cols["ts_ns"]) >= 0).all()
    return {
        "pairs": check_interrupt_eoi(cols),
        "wakeups": check_idle(cols),
        "timer": check_timers(cols, meta.duration_ns),
        "ipi": check_ipis(cols, meta.n_cpus, meta.duration_ns),
    }


# --------------------------------------------------------------------------- the checkers fail


def _rows(rows):
    cols = empty_columns(len(rows))
    for i, (ts, cpu, kind, vector, target, arg, dur) in enumerate(rows):
        for name, v in zip(
            ("ts_ns", "cpu", "kind", "vector", "target", "arg", "dur_ns"),
            (ts, cpu, int(kind), vector, target, arg, dur),
            strict=True,
        ):
            cols[name][i] = v
    return cols


def test_checkers_reject_broken_traces():
    good = [
        (0, 0, K.TIMER_ARM, -1, -1, 100, 0),
        (5, 0, K.IDLE_ENTER, -1, -1, 0, 0),
        (100, 0, K.TIMER_IRQ, 236, -1, 0, 10),
        (110, 0, K.EOI, 236, -1, 0, 0),
        (120, 0, K.IDLE_EXIT, -1, -1, 0, 0),
        (130, 0, K.IPI_SEND, 253, 1, 0, 0),
        (140, 1, K.IPI_IRQ, 253, -1, 0, 5),
        (145, 1, K.EOI, 253, -1, 0, 0),
    ]
    cols = _rows(good)
    check_interrupt_eoi(cols)
    check_idle(cols)
    check_timers(cols, 10**9)
    check_ipis(cols, 2, 10**9)
    bad_eoi = _rows(good[:3] + good[4:])  # timer_irq never EOI'd
    with pytest.raises(AssertionError):
        check_interrupt_eoi(bad_eoi)
    late = _rows(
        [good[0]] + [(101, 0, K.TIMER_IRQ, 236, -1, 0, 10), (111, 0, K.EOI, 236, -1, 0, 0)]
    )
    with pytest.raises(AssertionError):
        check_timers(late, 10**9)
    busy_idle = _rows(good[:2] + [(50, 0, K.CLOCK_READ, -1, -1, 1, 0)] + good[2:])
    with pytest.raises(AssertionError):
        check_idle(busy_idle)
    early = _rows(
        good[:5]
        + [
            (139, 1, K.IPI_IRQ, 253, -1, 0, 5),
            (144, 1, K.EOI, 253, -1, 0, 0),
            (140, 0, K.IPI_SEND, 253, 1, 0, 0),
        ]
    )
    early = {k: v[np.argsort(early["ts_ns"], kind="stable")] for k, v in early.items()}
    with pytest.raises(AssertionError):
        check_ipis(early, 2, 10**9)


# --------------------------------------------------------------------------- every scenario


CASES = [
    ("idle-nohz", 3, {}),
    ("idle-nohz", 2, {"device_irq_per_s": 2000, "timer_wakeups_per_s": 500}),
    ("hz-tick", 3, {}),
    ("hz-tick", 2, {"mode": "periodic", "idle": True, "hz": 250}),
    ("hz-tick", 4, {"skew_tick": True, "idle": True}),
    ("timer-heavy", 2, {}),
    ("timer-heavy", 3, {"cancel_fraction": 1.0, "loop_hz": 50_000, "work_ns": 2000}),
    ("ipi-storm", 2, {}),
    ("ipi-storm", 5, {"apic_mode": "x2apic", "shootdown_targets": 1}),
    ("ipi-storm", 4, {"broadcast_fraction": 1.0, "shootdown_per_s": 20_000}),
    ("net-rr", 1, {}),
    ("net-rr", 2, {"tpr_raise": False, "mask_irq": False}),
    ("net-rr", 6, {"irq_cpus": 2, "requests_per_s": 200_000}),
    ("clock-heavy", 2, {"clocksource": "acpi_pm"}),
    ("mixed-server", 10, {}),
    ("mixed-server", 3, {}),
]


@pytest.mark.parametrize(
    ("name", "n_cpus", "params"),
    CASES,
    ids=[f"{n}-{c}cpu-{i}" for i, (n, c, _) in enumerate(CASES)],
)
def test_scenario_trace_is_valid_and_realistic(tmp_path, name, n_cpus, params):
    path, meta, n = synthesize_to_file(tmp_path / "t.parquet", name, n_cpus, SEC // 2, 7, params)
    cols, meta = read_trace(path)  # validates schema, order, cpu and target ranges
    assert len(cols["ts_ns"]) == n > 0
    assert cols["ts_ns"].max() < meta.duration_ns
    stats = check_all(cols, meta)
    assert stats["pairs"] > 0


def test_every_event_kind_appears_with_defaults_or_an_option():
    # IO-APIC masking is net-rr's level-triggered option (MSI-X by default); other APIC
    # register writes come from hz-tick's periodic-mode setup (ICR2 is part of ipi_send)
    runs = [(name, {}) for name in SCENARIOS]
    runs += [("net-rr", {"mask_irq": True}), ("hz-tick", {"mode": "periodic"})]
    seen = set()
    for name, params in runs:
        cols, _ = generate(name, 4, SEC // 4, 3, params)
        seen |= {EventKind(k) for k in np.unique(cols["kind"])}
    # intercepted MSRs and port I/O lie outside the interrupt/timer scenarios: only real
    # traces carry them (ingest), so no scenario needs to generate them
    outside = {EventKind.MSR_READ, EventKind.MSR_WRITE, EventKind.PORT_IO}
    assert seen == set(EventKind) - outside, f"never generated: {set(EventKind) - seen}"


def test_large_trace_keeps_invariants():
    """The scale path (several chunks of draws, ~1 M events) on a size a test can afford."""
    cols, meta = generate("mixed-server", 12, 2 * SEC, 11, {"timer_heavy_weight": 3})
    assert len(cols["ts_ns"]) > 1_000_000
    stats = check_all(cols, meta)
    assert stats["timer"] > 50_000 and stats["ipi"] > 50_000


def test_ties_keep_generation_order():
    """Aligned ticks put events of every vCPU at the same ns: they stay in vCPU order."""
    cols, _ = generate("hz-tick", 4, SEC // 10, 0, {"handler_ns": 1000})
    ts, cpu = cols["ts_ns"], cols["cpu"].astype(int)
    same = ts[1:] == ts[:-1]
    assert same.sum() > 100
    assert (cpu[1:][same] > cpu[:-1][same]).all()
