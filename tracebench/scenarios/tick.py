"""The periodic scheduler tick (``hz-tick``) and a clock-reading database on top of it
(``clock-heavy``)."""

from __future__ import annotations

import numpy as np

from tracebench.errors import ParamError
from tracebench.scenarios import draws
from tracebench.scenarios.events import (
    APIC_LVTT,
    APIC_TMICT,
    LOCAL_TIMER_VECTOR,
    STEP_NS,
    Episodes,
    Out,
    Poisson,
    periodic_due,
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


# random streams of a tick generator (draws.stream_key(part key, vCPU position, stream))
_HANDLER, _READS = 1, 2


class Ticks:
    """The tick of ``p`` (the :data:`HZ_PARAMS` set) on ``cpus``, window by window.

    Tick ``k`` of the vCPU at position ``i`` is at ``first[i] + k * period`` with handler
    time ``handler_ns(i, k)``, a function of ``(i, k)`` alone, so callers can keep their
    own events out of any handler (:meth:`inside`).
    """

    def __init__(self, key: int, cpus: np.ndarray, p: dict, shape, clock=ClockSource.TSC):
        self.cpus, self.p, self.clock = cpus, p, clock
        self.period = _period_ns(p["hz"])
        m = len(cpus)
        self.n_ticks = max(0, shape.duration_ns // self.period + 1)
        offset = ((np.arange(m) * self.period) // m if p["skew_tick"]
                  else np.zeros(m, dtype=np.int64))
        self.first = offset + self.period
        self.keys = np.array([draws.stream_key(key, i, _HANDLER) for i in range(m)], np.uint64)
        self.next_k = np.zeros(m, dtype=np.int64)
        self.started = False

    def handler_ns(self, i: np.ndarray, k: np.ndarray) -> np.ndarray:
        return draws.uniform_around(self.keys[i], k, self.p["handler_ns"], HANDLER_SPREAD)

    def inside(self, i: int, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For times ``t`` on the vCPU at position ``i``: which fall in a tick handler
        (tick start to its ``eoi``), and that handler's ``eoi`` time."""
        k = (t - self.first[i]) // self.period  # the last tick at or before t
        inside = (k >= 0) & (k < self.n_ticks)
        kk = np.clip(k, 0, max(self.n_ticks - 1, 0))
        eoi = self.first[i] + kk * self.period + self.handler_ns(np.full(len(t), i), kk)
        return inside & (t <= eoi), eoi

    def advance(self, out: Out, until_ns: int) -> None:
        p, cpus, period = self.p, self.cpus, self.period
        if not self.started:
            # Setup: LVT timer mode, then either the first deadline (one-shot) or the
            # initial count that starts the periodic countdown. A trace starts with the
            # clockevent programmed, so each timer_irq has a visible cause.
            self.started = True
            setup_t = np.full(len(cpus), STEP_NS, dtype=np.int64)
            steps = [(EventKind.APIC_WRITE, APIC_LVTT),
                     (EventKind.TIMER_ARM, self.first) if p["mode"] == "oneshot"
                     else (EventKind.APIC_WRITE, APIC_TMICT)]
            if p["idle"]:
                steps.append((EventKind.IDLE_ENTER, 0))
            ep = Episodes(cpus, len(cpus))
            for j, (kind, arg) in enumerate(steps):
                ep.step(setup_t + j * STEP_NS, kind, arg=arg)
            ep.emit(out, 0)
        i, k, self.next_k = periodic_due(self.first, period, self.n_ticks, self.next_k,
                                         until_ns)
        n = len(k)
        if n == 0:
            return
        t = self.first[i] + k * period
        h = self.handler_ns(i, k)
        ep = Episodes(cpus[i], n)
        ep.step(t, EventKind.TIMER_IRQ, vector=LOCAL_TIMER_VECTOR, dur_ns=h)
        for j in range(p["clock_reads_per_tick"]):
            ep.step(t + (j + 1) * STEP_NS, EventKind.CLOCK_READ, arg=int(self.clock))
        if p["mode"] == "oneshot":
            # Re-programmed at the end of hrtimer_interrupt, before the handler returns.
            ep.step(t + h - STEP_NS, EventKind.TIMER_ARM, arg=t + period)
        eoi = ep.step(t + h, EventKind.EOI, vector=LOCAL_TIMER_VECTOR)
        if p["idle"]:
            ep.step(eoi + STEP_NS, EventKind.IDLE_EXIT)
            ep.step(eoi + 2 * STEP_NS, EventKind.IDLE_ENTER)
        ep.emit(out, 1)


class HzTick(Ticks):
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

    Random streams: handler time of tick ``k`` on the vCPU at position ``i`` is draw
    ``k`` of stream ``(i, 1)``; tick times are fixed.
    """


HZ_TICK = Scenario(
    name="hz-tick",
    summary="periodic tick at HZ on every vCPU (one-shot re-arm or LAPIC periodic mode)",
    params=HZ_PARAMS,
    part=HzTick,
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


class ClockHeavy:
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

    Random streams: the tick's (see ``hz-tick``); the gap before read ``j`` of the vCPU
    at position ``i`` is draw ``j`` of stream ``(i, 2)``.
    """

    def __init__(self, key: int, cpus: np.ndarray, p: dict, shape):
        self.clock = ClockSource.from_label(p["clocksource"])
        self.cpus = cpus
        self.ticks = Ticks(key, cpus, _tick_params(p), shape, self.clock)
        self.reads = [Poisson(draws.stream_key(key, i, _READS), p["reads_per_s"])
                      for i in range(len(cpus))]

    def advance(self, out: Out, until_ns: int) -> None:
        self.ticks.advance(out, until_ns)
        for i, cpu in enumerate(self.cpus):
            reads, _ = self.reads[i].until(until_ns)
            if len(reads) and self.ticks.n_ticks:
                inside, eoi = self.ticks.inside(i, reads)
                reads = np.where(inside, eoi + 1, reads)
            out.add(2, reads, cpu, EventKind.CLOCK_READ, arg=int(self.clock))


CLOCK_HEAVY = Scenario(
    name="clock-heavy",
    summary="clock reads at a high rate (a database) on busy vCPUs, plus the tick",
    params=CLOCK_PARAMS,
    part=ClockHeavy,
    check=check_clock,
)
