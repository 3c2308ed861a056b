"""The periodic scheduler tick (``hz-tick``) and a clock-reading database on top of it
(``clock-heavy``)."""

from __future__ import annotations

import numpy as np

from tracebench.errors import ParamError
from tracebench.scenarios.events import (
    APIC_LVTT,
    APIC_TMICT,
    LOCAL_TIMER_VECTOR,
    STEP_NS,
    Episodes,
    Events,
    poisson_times,
    uniform_around,
)
from tracebench.scenarios.spec import Param, Scenario
from tracebench.schema import ClockSource, EventKind

#: relative spread of tick handler times around ``handler_ns`` (uniform)
HANDLER_SPREAD = 0.25

HZ_PARAMS = (
    Param(
        "hz",
        1000,
        "Hz",
        "tick rate, CONFIG_HZ: 1000 on RHEL/Fedora kernels, 250 on Debian/Ubuntu",
        low=1,
        high=100_000,
    ),
    Param(
        "mode",
        "oneshot",
        "choice",
        "oneshot: the tick re-arms a one-shot (TSC-deadline) "
        "timer every period, as Linux highres does; periodic: LAPIC periodic mode, no arms",
        choices=("oneshot", "periodic"),
    ),
    Param(
        "handler_ns",
        1500,
        "ns",
        "tick handler time (hrtimer_interrupt + "
        "update_process_times + scheduler_tick), about 1-2 us untraced",
        low=200,
    ),
    Param(
        "clock_reads_per_tick",
        1,
        "count",
        "clock reads in the handler (ktime_get in hrtimer_interrupt)",
        low=0,
        high=16,
    ),
    Param(
        "skew_tick",
        False,
        "bool",
        "stagger the vCPUs' ticks across the period like the "
        "skew_tick=1 boot option (default: aligned, as Linux does)",
    ),
    Param(
        "idle",
        False,
        "bool",
        "vCPUs idle between ticks (a nohz=off idle guest: every "
        "tick wakes the vCPU from HLT); default: CPU-bound vCPUs",
    ),
)


def _period_ns(hz: int) -> int:
    return round(1e9 / hz)


def check_tick(p: dict, n_cpus: int, where: str) -> None:
    period = _period_ns(p["hz"])
    busiest = p["handler_ns"] * (1 + HANDLER_SPREAD) + (p["idle"] + 2) * STEP_NS
    if busiest >= period / 2:
        raise ParamError(
            f"{where}: handler_ns={p['handler_ns']} does not fit in half a tick "
            f"period ({period} ns at hz={p['hz']}); lower handler_ns or hz"
        )
    if p["clock_reads_per_tick"] + 2 > p["handler_ns"] * (1 - HANDLER_SPREAD) / STEP_NS:
        raise ParamError(
            f"{where}: {p['clock_reads_per_tick']} clock reads do not fit in "
            f"handler_ns={p['handler_ns']}; raise handler_ns"
        )


def add_ticks(
    events: Events,
    rng: np.random.Generator,
    cpus: np.ndarray,
    p: dict,
    clock: ClockSource = ClockSource.TSC,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Add the tick of ``p`` (the :data:`HZ_PARAMS` set) on ``cpus``.

    Returns ``(first_tick_ns, handler_ns, period_ns)``: per vCPU (rows, in ``cpus``
    order) the first tick time, and an ``(n_cpus, n_ticks)`` grid of handler times,
    so that callers can keep their own events out of the handlers.
    """
    period = _period_ns(p["hz"])
    m = len(cpus)
    n_ticks = max(0, events.duration_ns // period + 1)
    offset = (np.arange(m) * period) // m if p["skew_tick"] else np.zeros(m, dtype=np.int64)
    first = offset + period
    # Setup: LVT timer mode, then either the first deadline (one-shot) or the initial
    # count that starts the periodic countdown. A trace starts with the clockevent
    # programmed, so each timer_irq has a visible cause.
    setup_t = np.full(m, STEP_NS, dtype=np.int64)
    events.add(setup_t, cpus, EventKind.APIC_WRITE, arg=APIC_LVTT)
    if p["mode"] == "oneshot":
        events.add(setup_t + STEP_NS, cpus, EventKind.TIMER_ARM, arg=first)
    else:
        events.add(setup_t + STEP_NS, cpus, EventKind.APIC_WRITE, arg=APIC_TMICT)
    if p["idle"]:
        events.add(setup_t + 2 * STEP_NS, cpus, EventKind.IDLE_ENTER)

    t = (first[:, None] + np.arange(n_ticks, dtype=np.int64)[None, :] * period).ravel()
    h = uniform_around(rng, p["handler_ns"], m * n_ticks, HANDLER_SPREAD)
    ep = Episodes(np.repeat(cpus, n_ticks), m * n_ticks)
    ep.step(t, EventKind.TIMER_IRQ, vector=LOCAL_TIMER_VECTOR, dur_ns=h)
    for j in range(p["clock_reads_per_tick"]):
        ep.step(t + (j + 1) * STEP_NS, EventKind.CLOCK_READ, arg=int(clock))
    if p["mode"] == "oneshot":
        # Re-programmed at the end of hrtimer_interrupt, before the handler returns.
        ep.step(t + h - STEP_NS, EventKind.TIMER_ARM, arg=t + period)
    eoi = ep.step(t + h, EventKind.EOI, vector=LOCAL_TIMER_VECTOR)
    if p["idle"]:
        ep.step(eoi + STEP_NS, EventKind.IDLE_EXIT)
        ep.step(eoi + 2 * STEP_NS, EventKind.IDLE_ENTER)
    ep.emit(events)
    return first, h.reshape(m, n_ticks), period


def build_hz_tick(events: Events, rng: np.random.Generator, cpus: np.ndarray, p: dict) -> None:
    """Periodic scheduler tick on every vCPU: the timer path at a fixed, known rate.

    Each tick is ``timer_irq`` (vector 0xec, ``dur_ns`` = handler time) then
    ``clock_reads_per_tick`` clock reads, the one-shot re-arm for the next tick
    (``mode=oneshot``: ``timer_arm`` with ``arg`` = next deadline, one tick period
    later, exactly when the next ``timer_irq`` happens) and the ``eoi``. In
    ``mode=periodic`` the LAPIC reloads itself and there are no arms. The trace
    starts with an ``apic_write`` of the LVT timer register and the first arm
    (or an initial-count write in periodic mode).

    Expected per vCPU: about ``hz * duration`` ``timer_irq`` and ``eoi`` (the first
    tick is one period in), as many ``timer_arm`` (+1 setup) in one-shot mode.
    With ``idle=true`` each tick is also an ``idle_exit`` / ``idle_enter`` pair:
    the classic idle guest that a 1000 Hz tick keeps waking 1000 times a second.
    """
    add_ticks(events, rng, cpus, p)


HZ_TICK = Scenario(
    name="hz-tick",
    summary="periodic tick at HZ on every vCPU (one-shot re-arm or LAPIC periodic mode)",
    params=HZ_PARAMS,
    build=build_hz_tick,
    check=check_tick,
)


# --------------------------------------------------------------------------- clock-heavy

_CLOCKS = tuple(c.label for c in ClockSource if c is not ClockSource.UNKNOWN)

CLOCK_PARAMS = (
    Param(
        "reads_per_s",
        200_000,
        "1/s",
        "clock reads per second per vCPU: an OLTP database "
        "timing every query and I/O (clock_gettime ~1e5-1e6/s per core)",
        low=0,
        high=50_000_000,
    ),
    Param(
        "clocksource",
        "tsc",
        "choice",
        "clock source the guest reads (arg of clock_read): "
        "tsc and pvclock never trap on KVM; acpi_pm, hpet and pit are emulated",
        choices=_CLOCKS,
    ),
) + tuple(p for p in HZ_PARAMS if p.name in ("hz", "mode", "handler_ns"))


def _tick_params(p: dict) -> dict:
    return {
        "hz": p["hz"],
        "mode": p["mode"],
        "handler_ns": p["handler_ns"],
        "clock_reads_per_tick": 1,
        "skew_tick": False,
        "idle": False,
    }


def check_clock(p: dict, n_cpus: int, where: str) -> None:
    check_tick(_tick_params(p), n_cpus, where)


def build_clock_heavy(events: Events, rng: np.random.Generator, cpus: np.ndarray, p: dict) -> None:
    """A database that reads the clock at a high rate on busy vCPUs, plus the normal tick.

    Each vCPU reads the clock (``clock_read``, ``arg`` = the ``clocksource`` code)
    as a Poisson process of ``reads_per_s``; the tick of ``hz-tick`` (with one
    clock read per tick, of the same clock source) runs under it. A read that
    would land inside a tick handler happens right after the handler's ``eoi``
    instead, because the interrupted thread cannot run meanwhile.

    Expected per vCPU: about ``reads_per_s * duration`` + ``hz * duration`` clock
    reads, ``hz * duration`` ``timer_irq``. This is the workload where the
    clocksource choice matters most: an emulated ACPI PM timer costs one trap per
    read (~25k cycles), a TSC or pvclock read none.
    """
    clock = ClockSource.from_label(p["clocksource"])
    first, handler, period = add_ticks(events, rng, cpus, _tick_params(p), clock)
    n_ticks = handler.shape[1]
    for i, cpu in enumerate(cpus):
        reads = poisson_times(rng, p["reads_per_s"], events.duration_ns)
        k = (reads - first[i]) // period  # index of the last tick at or before the read
        inside = k >= 0
        kk = np.clip(k, 0, max(n_ticks - 1, 0))
        if n_ticks:
            eoi = first[i] + kk * period + handler[i, kk]
            inside &= reads <= eoi
            reads = np.where(inside, eoi + 1, reads)
        events.add(reads, cpu, EventKind.CLOCK_READ, arg=int(clock))


CLOCK_HEAVY = Scenario(
    name="clock-heavy",
    summary="clock reads at a high rate (a database) on busy vCPUs, plus the tick",
    params=CLOCK_PARAMS,
    build=build_clock_heavy,
    check=check_clock,
)
