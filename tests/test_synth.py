"""Synthesized scenarios: parameter specs, determinism, metadata and event counts.

Counts are compared with what the parameters imply, computed here independently
of the generator (Poisson counts within 6 standard deviations; fixed-rate ones
within one event).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracebench.errors import ParamError, TracebenchError
from tracebench.scenarios import (
    SCENARIOS,
    describe_scenarios,
    generate,
    get_scenario,
    parse_assignments,
    synthesize_to_file,
)
from tracebench.scenarios.events import Out, Poisson, serve_fifo, serve_per_cpu
from tracebench.scenarios.mixed import allocate
from tracebench.scenarios.stream import _take_before
from tracebench.schema import TARGET_ALL_BUT_SELF, TARGET_MASK, ClockSource, EventKind
from tracebench.trace import read_trace

K = EventKind
SEC = 1_000_000_000


def counts(cols, cpu=None) -> dict[EventKind, int]:
    sel = slice(None) if cpu is None else cols["cpu"] == cpu
    c = np.bincount(cols["kind"][sel], minlength=len(EventKind))
    return {k: int(c[k]) for k in EventKind}


def near(got: float, expect: float, sd: float, k: float = 6.0) -> bool:
    return abs(got - expect) <= k * sd + 1


# --------------------------------------------------------------------------- specs


def test_every_scenario_is_registered_and_documented():
    assert set(SCENARIOS) >= {
        "idle-nohz",
        "hz-tick",
        "timer-heavy",
        "ipi-storm",
        "net-rr",
        "clock-heavy",
        "mixed-server",
    }
    for d in describe_scenarios():
        assert d["summary"] and len(d["doc"]) > 200, d["name"]
        assert "Expected" in d["doc"], f"{d['name']}: doc does not state its expected counts"
        for p in d["params"]:
            assert p["unit"] and p["doc"], (d["name"], p["name"])


def test_resolve_fills_defaults_and_parses_cli_strings():
    spec = get_scenario("hz-tick")
    p = spec.resolve({"hz": "250", "handler_ns": "2us", "skew-tick": "yes", "mode": "Periodic"})
    assert p == {
        **spec.defaults(),
        "hz": 250,
        "handler_ns": 2000,
        "skew_tick": True,
        "mode": "periodic",
    }
    assert get_scenario("ipi-storm").resolve({"resched_per_s": "20k"})["resched_per_s"] == 20_000
    assert get_scenario("timer-heavy").resolve({"cancel_fraction": "0.5"})["cancel_fraction"] == 0.5


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("hz-tick", {"hzz": 1}, "unknown parameter 'hzz' (valid: hz, mode, handler_ns"),
        ("hz-tick", {"hz": "fast"}, "hz='fast'"),
        ("hz-tick", {"hz": 0}, "below 1"),
        ("hz-tick", {"hz": 1.5}, "whole number"),
        ("hz-tick", {"mode": "burst"}, "not one of oneshot, periodic"),
        ("hz-tick", {"idle": "maybe"}, "true/false"),
        ("timer-heavy", {"cancel_fraction": 1.5}, "above 1"),
        ("clock-heavy", {"clocksource": "sundial"}, "not one of tsc, pvclock"),
    ],
)
def test_bad_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(ParamError, match="^scenario " + name) as exc:
        get_scenario(name).resolve(params)
    assert message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("name", "n_cpus", "params", "message"),
    [
        ("hz-tick", 1, {"hz": 10_000, "handler_ns": 60_000}, "half a tick"),
        ("timer-heavy", 1, {"loop_hz": 100_000, "work_ns": 9000}, "loop period"),
        ("timer-heavy", 1, {"timeout_ns": 1000}, "timeout_ns"),
        ("ipi-storm", 2, {"resched_per_s": 2_000_000}, "busy"),
        ("net-rr", 2, {"requests_per_s": 1_000_000}, "busy"),
        ("ipi-storm", 1, {}, "needs 2..65535 vCPUs"),
    ],
)
def test_parameter_combinations_that_cannot_work_are_rejected(name, n_cpus, params, message):
    with pytest.raises(ParamError, match=message):
        generate(name, n_cpus, SEC // 100, 0, params)


def test_bad_run_arguments():
    with pytest.raises(ParamError, match="unknown scenario 'nope' .known: idle-nohz"):
        generate("nope", 1, SEC, 0)
    with pytest.raises(ParamError, match="duration"):
        generate("hz-tick", 1, 0, 0)
    with pytest.raises(ParamError, match="seed"):
        generate("hz-tick", 1, SEC, -1)
    with pytest.raises(ParamError, match="n_cpus"):
        generate("hz-tick", 1.5, SEC, 0)
    assert parse_assignments(["hz=250", " mode = periodic "]) == {"hz": "250", "mode": "periodic"}
    with pytest.raises(ParamError, match="name=value"):
        parse_assignments(["hz"])


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, name):
    n = 4
    a = synthesize_to_file(tmp_path / "a.parquet", name, n, SEC // 5, 42)[0]
    b = synthesize_to_file(tmp_path / "b.parquet", name, n, SEC // 5, 42)[0]
    c = synthesize_to_file(tmp_path / "c.parquet", name, n, SEC // 5, 43)[0]
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_metadata_records_how_to_make_the_trace_again(tmp_path):
    path = synthesize_to_file(
        tmp_path / "t.parquet", "net-rr", 3, SEC // 4, 5, {"requests_per_s": "20k"}
    )[0]
    cols, meta = read_trace(path)
    assert (meta.method, meta.clock, meta.environment) == (
        "synth",
        "synthetic",
        {"platform": "synthetic"},
    )
    assert meta.n_cpus == 3 and meta.duration_ns == SEC // 4
    src = meta.source
    assert src["scenario"] == "net-rr" and src["seed"] == 5
    assert src["params"] == {**get_scenario("net-rr").defaults(), "requests_per_s": 20_000}
    again, _ = generate(src["scenario"], meta.n_cpus, meta.duration_ns, src["seed"], src["params"])
    for name in cols:
        np.testing.assert_array_equal(cols[name], again[name])
    with pytest.raises(TracebenchError, match="already exists"):
        synthesize_to_file(path, "net-rr", 3, SEC // 4, 5)
    synthesize_to_file(path, "hz-tick", 1, SEC // 4, 5, force=True)
    assert read_trace(path)[1].source["scenario"] == "hz-tick"


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("mode", ["oneshot", "periodic"])
def test_hz_tick_counts(mode):
    hz, dur_s, n = 250, 2, 2
    cols, _ = generate("hz-tick", n, dur_s * SEC, 1, {"hz": hz, "mode": mode})
    for cpu in range(n):
        c = counts(cols, cpu)
        # ticks at k/hz for k >= 1 up to the end: hz * duration of them, the last
        # one possibly cut with its handler
        assert hz * dur_s - 1 <= c[K.TIMER_IRQ] <= hz * dur_s, c
        assert c[K.EOI] == c[K.TIMER_IRQ] == c[K.CLOCK_READ]
        assert c[K.TIMER_ARM] == (c[K.TIMER_IRQ] + 1 if mode == "oneshot" else 0)
        assert c[K.APIC_WRITE] == (1 if mode == "oneshot" else 2)
    irq = cols["ts_ns"][(cols["kind"] == K.TIMER_IRQ) & (cols["cpu"] == 0)]
    assert (np.diff(irq) == SEC // hz).all() and irq[0] == SEC // hz


def test_hz_tick_skew_and_idle():
    cols, _ = generate("hz-tick", 4, SEC // 10, 1, {"skew_tick": True, "idle": True})
    first = [cols["ts_ns"][(cols["kind"] == K.TIMER_IRQ) & (cols["cpu"] == c)][0] for c in range(4)]
    assert np.diff(first).tolist() == [250_000] * 3  # a quarter of the 1 ms period apart
    c = counts(cols)
    assert c[K.IDLE_EXIT] == c[K.TIMER_IRQ] and c[K.IDLE_ENTER] == c[K.TIMER_IRQ] + 4


def test_timer_heavy_counts():
    loop_hz, frac, dur_s, n = 20_000, 0.3, 1, 3
    cols, _ = generate("timer-heavy", n, dur_s * SEC, 2, {"cancel_fraction": frac})
    for cpu in range(n):
        c = counts(cols, cpu)
        assert loop_hz * dur_s - 2 <= c[K.TIMER_IRQ] <= loop_hz * dur_s
        iters = c[K.TIMER_IRQ]
        assert near(c[K.TIMER_CANCEL], frac * iters, math.sqrt(iters * frac * (1 - frac)))
        # one arm at the start, one per iteration, one per cancelled timeout
        assert c[K.TIMER_ARM] == 1 + iters + c[K.TIMER_CANCEL]
        assert c[K.CLOCK_READ] == c[K.IDLE_EXIT] == iters


def test_idle_nohz_counts():
    rt, rd, busy, dur_s, n = 40, 20, 20_000, 20, 4
    cols, _ = generate(
        "idle-nohz",
        n,
        dur_s * SEC,
        3,
        {"timer_wakeups_per_s": rt, "device_irq_per_s": rd, "busy_ns": busy},
    )
    c = counts(cols)
    wakeups = c[K.TIMER_IRQ] + c[K.DEVICE_IRQ]
    # renewal: each cycle is an idle time (exponential, rate rt + rd) plus a few us
    cycle_s = 1 / (rt + rd) + (busy + 5_000) / SEC
    expect = n * dur_s / cycle_s
    assert near(wakeups, expect, math.sqrt(expect)), (wakeups, expect)
    # a device interrupt wins the race unless it comes within its handler of the deadline
    assert near(c[K.DEVICE_IRQ], wakeups * rd / (rt + rd), math.sqrt(wakeups / 4))
    assert c[K.TIMER_CANCEL] == c[K.DEVICE_IRQ]
    assert c[K.TIMER_ARM] == c[K.IDLE_ENTER] == wakeups + n
    assert c[K.IDLE_EXIT] == c[K.CLOCK_READ] == wakeups


def test_clock_heavy_counts_and_clock_source():
    rate, dur_s, n, hz = 300_000, 1, 2, 250
    cols, _ = generate(
        "clock-heavy", n, dur_s * SEC, 4, {"reads_per_s": rate, "clocksource": "hpet", "hz": hz}
    )
    reads = cols["kind"] == K.CLOCK_READ
    assert (cols["arg"][reads] == ClockSource.HPET).all()
    for cpu in range(n):
        c = counts(cols, cpu)
        assert hz * dur_s - 1 <= c[K.TIMER_IRQ] <= hz * dur_s
        expect = rate * dur_s + c[K.TIMER_IRQ]  # the tick reads the clock once
        assert near(c[K.CLOCK_READ], expect, math.sqrt(rate * dur_s))


def test_ipi_storm_counts_and_target_kinds():
    resched, shoot, dur_s, n, k, bf = 5_000, 2_000, 1, 6, 3, 0.25
    cols, _ = generate(
        "ipi-storm",
        n,
        dur_s * SEC,
        5,
        {
            "resched_per_s": resched,
            "shootdown_per_s": shoot,
            "shootdown_targets": k,
            "broadcast_fraction": bf,
        },
    )
    c = counts(cols)
    sends = cols["kind"] == K.IPI_SEND
    expect = n * dur_s * (resched + shoot)
    assert near(c[K.IPI_SEND], expect, math.sqrt(expect))
    target, arg = cols["target"][sends], cols["arg"][sends]
    n_bcast = int((target == TARGET_ALL_BUT_SELF).sum())
    n_mask = int((target == TARGET_MASK).sum())
    assert near(n_bcast, n * dur_s * shoot * bf, math.sqrt(n * dur_s * shoot))
    assert near(n_bcast + n_mask, n * dur_s * shoot, math.sqrt(n * dur_s * shoot))
    masks = arg[target == TARGET_MASK]
    assert (np.array([bin(int(m)).count("1") for m in masks]) == k).all()
    assert not (masks & (1 << cols["cpu"][sends][target == TARGET_MASK].astype(np.int64))).any()
    # every destination gets its handler, except sends cut off at the end
    fanout = (target >= 0).sum() + k * n_mask + (n - 1) * n_bcast
    assert fanout - 3 * n * (n - 1) <= c[K.IPI_IRQ] <= fanout
    # xAPIC: ICR read before every send; the ICR2 write is part of the ipi_send
    assert c[K.APIC_READ] == c[K.IPI_SEND] and c[K.APIC_WRITE] == 0


def test_ipi_storm_without_mask_room_sends_one_ipi_per_target():
    cols, _ = generate(
        "ipi-storm", 70, SEC // 20, 6, {"broadcast_fraction": 0.0, "resched_per_s": 0}
    )
    assert not (cols["target"] == TARGET_MASK).any()
    sends, irqs = (cols["kind"] == K.IPI_SEND).sum(), (cols["kind"] == K.IPI_IRQ).sum()
    assert sends - 3 * 70 <= irqs <= sends  # one unicast per target; the last may be cut
    # the 3 targets of a shootdown are sent back to back from one vCPU
    assert near(sends, 70 * 1000 / 20 * 3, math.sqrt(70 * 1000 / 20) * 3)


def test_net_rr_counts():
    rate, dur_s, n, burst = 40_000, 1, 4, 4
    cols, _ = generate("net-rr", n, dur_s * SEC, 7,
                       {"requests_per_s": rate, "burst_mean": burst, "mask_irq": True})
    c = counts(cols)
    # compound Poisson: bursts at rate/burst, geometric sizes of mean `burst`
    sd = math.sqrt(rate * dur_s / burst * burst * (2 * burst - 1))
    assert near(c[K.DEVICE_IRQ], rate * dur_s, sd)
    assert c[K.DEVICE_IRQ] == c[K.IPI_SEND] == c[K.IRQ_MASK] == c[K.IRQ_UNMASK]
    assert c[K.TPR_WRITE] == 2 * c[K.DEVICE_IRQ]
    assert c[K.DEVICE_IRQ] - 3 <= c[K.IPI_IRQ] <= c[K.DEVICE_IRQ]
    assert c[K.CLOCK_READ] == 3 * c[K.IPI_IRQ]
    irq_cpu = cols["cpu"][cols["kind"] == K.DEVICE_IRQ]
    assert (irq_cpu == 0).all()  # one IRQ vCPU by default, the others run the app
    assert set(cols["target"][cols["kind"] == K.IPI_SEND]) == {1, 2, 3}
    # by default the NIC interrupts are MSI-X: nothing is masked at the IO-APIC
    msi, _ = generate("net-rr", n, dur_s * SEC // 10, 7, {"requests_per_s": rate})
    assert counts(msi)[K.IRQ_MASK] == counts(msi)[K.IRQ_UNMASK] == 0 < counts(msi)[K.DEVICE_IRQ]


# --------------------------------------------------------------------------- mixed-server


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 10, 64])
def test_mixed_server_allocation_covers_every_vcpu(n):
    p = get_scenario("mixed-server").defaults()
    alloc = allocate(p, n)
    assert sum(alloc.values()) == n
    assert all(v == 0 or v >= SCENARIOS[name].min_cpus for name, v in alloc.items())
    if n == 10:
        assert list(alloc.values()) == [3, 2, 1, 2, 2]


def test_mixed_server_groups_run_their_own_scenario():
    cols, meta = generate("mixed-server", 10, SEC // 5, 8)
    layout = meta.source["layout"]
    assert layout == {
        "net-rr": [0, 2],
        "clock-heavy": [3, 4],
        "timer-heavy": [5, 5],
        "ipi-storm": [6, 7],
        "idle-nohz": [8, 9],
    }
    per = {c: counts(cols, c) for c in range(10)}
    assert per[0][K.DEVICE_IRQ] > 1000 and per[1][K.IPI_IRQ] > 500
    assert per[3][K.CLOCK_READ] > 20_000 and per[5][K.TIMER_IRQ] > 3000
    assert per[6][K.IPI_SEND] > 1000 and per[8][K.TIMER_IRQ] < 50
    ipi_groups = {int(c) for c in cols["cpu"][np.isin(cols["kind"], [K.IPI_SEND, K.IPI_IRQ])]}
    assert ipi_groups <= {0, 1, 2, 6, 7}
    assert not (cols["target"][cols["kind"] == K.IPI_SEND] == TARGET_ALL_BUT_SELF).any()


# --------------------------------------------------------------------------- building blocks


def _serve_naive(arrival, service):
    start, free = [], -(10**18)
    for a, s in zip(arrival, service, strict=True):
        t = max(a, free)
        start.append(t)
        free = t + s
    return start


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 500)), max_size=60))
def test_serve_fifo_matches_the_recursion(jobs):
    jobs.sort(key=lambda j: j[0])
    arrival = np.array([a for a, _ in jobs], dtype=np.int64)
    service = np.array([s for _, s in jobs], dtype=np.int64)
    assert serve_fifo(arrival, service).tolist() == _serve_naive(arrival, service)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2000), st.integers(0, 300)), max_size=40)
)
def test_serve_per_cpu_is_fifo_per_cpu_in_input_order(jobs):
    cpu = np.array([c for c, _, _ in jobs], dtype=np.int64)
    arrival = np.array([a for _, a, _ in jobs], dtype=np.int64)
    service = np.array([s for _, _, s in jobs], dtype=np.int64)
    got = serve_per_cpu(cpu, arrival, service)
    for c in range(4):
        idx = sorted(np.flatnonzero(cpu == c), key=lambda i: (arrival[i], i))
        assert got[idx].tolist() == _serve_naive(arrival[idx], service[idx])


def test_window_rows_sort_by_time_cpu_stream_and_are_cut_at_the_end():
    out = Out(2, 100)
    out.add(1, [5, 5, 100], 1, K.CLOCK_READ, arg=[1, 2, 3])
    out.add(0, [5, 4], 1, K.CLOCK_READ, arg=[4, 5])
    out.add(0, [5, 60], 0, K.CLOCK_READ, arg=[6, 7])
    cols, later = _take_before(out.parts, 50, 0)
    assert cols["ts_ns"].tolist() == [4, 5, 5, 5, 5]
    # time, then vCPU, then stream; within a stream the order it was added in
    assert cols["arg"].tolist() == [5, 6, 4, 1, 2]
    assert [c["arg"].tolist() for _, c in later] == [[7]]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 500)), max_size=60),
       st.integers(0, 60), st.integers(0, 5000))
def test_serve_fifo_in_two_calls_equals_one(jobs, cut, free):
    jobs.sort(key=lambda j: j[0])
    arrival = np.array([a for a, _ in jobs], dtype=np.int64)
    service = np.array([s for _, s in jobs], dtype=np.int64)
    whole = serve_fifo(arrival, service, free)
    first = serve_fifo(arrival[:cut], service[:cut], free)
    rest_free = first[-1] + service[len(first) - 1] if len(first) else free
    second = serve_fifo(arrival[cut:], service[cut:], int(rest_free))
    assert np.concatenate([first, second]).tolist() == whole.tolist()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 3_000_000), min_size=1, max_size=6), st.integers(0, 2**40))
def test_poisson_arrivals_do_not_depend_on_the_windows(ends, key):
    ends = sorted(ends)
    whole = Poisson(key, 2_000_000).until(ends[-1])
    p = Poisson(key, 2_000_000)
    parts = [p.until(e) for e in ends]
    for a, b in zip((np.concatenate([t for t, _ in parts]), np.concatenate([i for _, i in parts])),
                    whole, strict=True):
        assert a.tolist() == b.tolist()
    assert (np.diff(whole[0]) >= 0).all()
    assert len(whole[0]) == 0 or whole[0][-1] < ends[-1]


@pytest.mark.parametrize(
    ("name", "n_cpus", "params", "smallest"),
    [*((name, 5, None, 40) for name in SCENARIOS),
     # no masks above vCPU 62: one send per target
     ("ipi-storm", 66, {"resched_per_s": 2000, "shootdown_per_s": 500}, 2000),
     ("net-rr", 1, None, 40),  # one vCPU does both jobs
     ("hz-tick", 3, {"skew_tick": "true", "idle": "true", "mode": "periodic"}, 40)],
)
def test_bytes_do_not_depend_on_the_window_size(tmp_path, name, n_cpus, params, smallest):
    """Streaming: windows of a few dozen events, ~5000 and the default give the same file."""
    files = [synthesize_to_file(tmp_path / f"{chunk}.parquet", name, n_cpus, SEC // 20, 7,
                                params, chunk_events=chunk)[0]
             for chunk in (smallest, 5000, 1 << 19)]
    assert files[0].read_bytes() == files[1].read_bytes() == files[2].read_bytes()
    assert read_trace(files[0])[0]["ts_ns"].size > 50
