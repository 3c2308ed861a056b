"""One-shot timer users: a tickless idle guest (``idle-nohz``) and nanosleep loops
(``timer-heavy``)."""

from __future__ import annotations

import numpy as np

from tracebench.errors import ParamError
from tracebench.scenarios.events import (
    LOCAL_TIMER_VECTOR,
    STEP_NS,
    Episodes,
    Events,
    uniform_around,
)
from tracebench.scenarios.spec import Param, Scenario
from tracebench.schema import ClockSource, EventKind

#: IRQ number of the device that wakes idle vCPUs (first virtio MSI-X IRQ on a q35 guest)
IDLE_DEVICE_IRQ = 24
HANDLER_SPREAD = 0.25  # handler times vary +-25 % around their mean
WORK_SPREAD = 0.5  # work between wakeups varies +-50 % around its mean
TSC = int(ClockSource.TSC)

IDLE_PARAMS = (
    Param(
        "timer_wakeups_per_s",
        50,
        "1/s",
        "timer wakeups per second per idle vCPU (an "
        "idle nohz Linux guest shows ~10-100 in powertop)",
        low=1,
        high=1_000_000,
    ),
    Param(
        "device_irq_per_s",
        10,
        "1/s",
        "device interrupts per second per vCPU while idle (background virtio traffic)",
        low=0,
        high=1_000_000,
    ),
    Param(
        "busy_ns",
        20_000,
        "ns",
        "mean run time after a wakeup before idling again "
        "(exponential): a kworker or timer callback",
        low=0,
    ),
    Param("timer_handler_ns", 2000, "ns", "local timer interrupt handler time", low=4 * STEP_NS),
    Param("device_handler_ns", 5000, "ns", "device interrupt handler time", low=4 * STEP_NS),
)


def _chain(rng: np.random.Generator, p: dict, duration_ns: int) -> dict[str, np.ndarray]:
    """Draw one vCPU's wakeup episodes until they pass the end of the trace.

    The idle time before episode ``k`` is ``min(S, E)``: ``S`` the programmed sleep,
    ``E`` the next device interrupt. Device arrivals are Poisson, hence memoryless,
    so the gap to the next one is exponential whenever the vCPU goes idle and the
    episodes are independent: their start times are a cumulative sum, no loop per
    wakeup. A device interrupt wins only if its handler and the timer cancel finish
    before the timer deadline, so a timer never fires unseen.
    """
    mean_sleep = 1e9 / p["timer_wakeups_per_s"]
    mean_dev = 1e9 / p["device_irq_per_s"] if p["device_irq_per_s"] else np.inf
    mean_len = 1 / (1 / mean_sleep + 1 / mean_dev) + p["busy_ns"] + p["device_handler_ns"]
    chunk = int(duration_ns / mean_len * 1.25) + 16
    parts: list[dict[str, np.ndarray]] = []
    while True:
        parts.append(
            {
                "sleep": rng.exponential(mean_sleep, chunk),
                "dev": rng.exponential(mean_dev, chunk)
                if np.isfinite(mean_dev)
                else np.full(chunk, np.inf),
                "busy": rng.exponential(p["busy_ns"], chunk) if p["busy_ns"] else np.zeros(chunk),
                "h_timer": uniform_around(rng, p["timer_handler_ns"], chunk, HANDLER_SPREAD),
                "h_dev": uniform_around(rng, p["device_handler_ns"], chunk, HANDLER_SPREAD),
            }
        )
        c = {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}
        out = _episodes(c, duration_ns)
        # Draw on until the last wakeup is past the end; the estimate above makes
        # a second round rare, and the draws stay a function of the seed alone.
        if out["wake"][-1] >= duration_ns:
            return out


def _episodes(c: dict[str, np.ndarray], duration_ns: int) -> dict[str, np.ndarray]:
    """Episode times from the drawn sleeps, device gaps, busy and handler times."""
    n = len(c["sleep"])
    sleep = np.rint(c["sleep"]).astype(np.int64) + STEP_NS  # a deadline is never "now"
    h_dev = c["h_dev"]
    dev = np.where(np.isfinite(c["dev"]), np.minimum(c["dev"], 4.0 * duration_ns), 0)
    dev = np.rint(dev).astype(np.int64)
    by_timer = ~np.isfinite(c["dev"]) | (sleep <= dev + h_dev + 4 * STEP_NS)
    by_timer[0] = True  # episode 0 starts busy; its "wake" fields are unused
    h = np.where(by_timer, c["h_timer"], h_dev)
    idle = np.where(by_timer, sleep, dev)  # idle time before episode k
    pre = h + 4 * STEP_NS  # irq ... eoi, idle_exit, clock_read, cancel
    pre[0] = 0
    busy = np.rint(c["busy"]).astype(np.int64) + STEP_NS
    wake = np.empty(n, dtype=np.int64)
    wake[0] = STEP_NS
    # wake[k+1] = wake[k] + pre[k] + busy[k] + STEP (idle_enter) + idle[k+1]
    wake[1:] = STEP_NS + np.cumsum(pre[:-1] + busy[:-1] + STEP_NS + idle[1:])
    arm = wake + pre + busy
    deadline = np.empty(n, dtype=np.int64)
    deadline[:-1] = arm[:-1] + STEP_NS + sleep[1:]
    deadline[-1] = arm[-1] + STEP_NS + sleep[-1]  # never reached: past the end
    return {"wake": wake, "by_timer": by_timer, "h": h, "arm": arm, "deadline": deadline}


def build_idle_nohz(events: Events, rng: np.random.Generator, cpus: np.ndarray, p: dict) -> None:
    """Tickless idle: vCPUs sleep in HLT with one sparse one-shot timer armed.

    Each vCPU repeats: ``timer_arm`` (``arg`` = deadline) and ``idle_enter``; then
    either the timer fires (``timer_irq`` exactly at the deadline) or a device
    interrupt wakes it first (``device_irq``, IRQ 24); ``eoi``; ``idle_exit``; a
    clock read (tick_nohz_idle_exit updates jiffies); after a device wakeup the
    stale timer is cancelled (``timer_cancel``); a short busy period
    (``busy_ns``, exponential), and around again.

    Expected per vCPU and second: wakeups ~ 1 / (1 / (``timer_wakeups_per_s`` +
    ``device_irq_per_s``) + busy time); each is a timer wakeup with probability
    ``timer_wakeups_per_s`` /
    (``timer_wakeups_per_s`` + ``device_irq_per_s``) (slightly more: a device
    interrupt just before the deadline is absorbed by the timer's). One
    ``timer_arm`` per episode, one ``timer_cancel`` per device wakeup. This is the
    workload where idle costs (HLT exits, wakeup IPIs from the host) dominate.
    """
    blocks = [(cpu, _chain(rng, p, events.duration_ns)) for cpu in cpus]
    cpu = np.concatenate([np.full(len(c["wake"]), cpu) for cpu, c in blocks])
    c = {k: np.concatenate([b[k] for _, b in blocks]) for k in blocks[0][1]}
    first = np.concatenate([np.arange(len(b["wake"])) == 0 for _, b in blocks])
    woke = ~first
    by_timer = c["by_timer"]
    w, h = c["wake"], c["h"]
    ep = Episodes(cpu, len(w))
    kind = np.where(by_timer, EventKind.TIMER_IRQ, EventKind.DEVICE_IRQ)
    vector = np.where(by_timer, LOCAL_TIMER_VECTOR, IDLE_DEVICE_IRQ)
    ep.step(w, kind, vector=vector, dur_ns=h, present=woke)
    ep.step(w + h, EventKind.EOI, vector=vector, present=woke)
    ep.step(w + h + STEP_NS, EventKind.IDLE_EXIT, present=woke)
    ep.step(w + h + 2 * STEP_NS, EventKind.CLOCK_READ, arg=TSC, present=woke)
    ep.step(w + h + 3 * STEP_NS, EventKind.TIMER_CANCEL, present=woke & ~by_timer)
    ep.step(c["arm"], EventKind.TIMER_ARM, arg=c["deadline"])
    ep.step(c["arm"] + STEP_NS, EventKind.IDLE_ENTER)
    ep.emit(events)


IDLE_NOHZ = Scenario(
    name="idle-nohz",
    summary="tickless idle vCPUs: sparse one-shot timers, occasional device wakeups",
    params=IDLE_PARAMS,
    build=build_idle_nohz,
)


# --------------------------------------------------------------------------- timer-heavy

TIMER_PARAMS = (
    Param(
        "loop_hz",
        20_000,
        "Hz",
        "wakeups per second per vCPU of a clock_nanosleep("
        "TIMER_ABSTIME) loop, like cyclictest -i 50",
        low=1,
        high=1_000_000,
    ),
    Param("work_ns", 5000, "ns", "mean work per iteration (uniform +-50 %)", low=0),
    Param("handler_ns", 1000, "ns", "hrtimer interrupt handler time (+-25 %)", low=4 * STEP_NS),
    Param(
        "cancel_fraction",
        0.2,
        "fraction",
        "iterations that also arm a timeout (poll, futex) and cancel it before it fires",
        low=0.0,
        high=1.0,
    ),
    Param("timeout_ns", 1_000_000, "ns", "timeout of those cancelled timers", low=1),
)


def check_timer_heavy(p: dict, n_cpus: int, where: str) -> None:
    period = round(1e9 / p["loop_hz"])
    busiest = (
        p["handler_ns"] * (1 + HANDLER_SPREAD) + p["work_ns"] * (1 + WORK_SPREAD) + 6 * STEP_NS
    )
    if busiest >= period:
        raise ParamError(
            f"{where}: handler_ns + work_ns (up to {busiest:.0f} ns) do not fit "
            f"in one loop period ({period} ns at loop_hz={p['loop_hz']})"
        )
    if p["timeout_ns"] <= p["work_ns"] * (1 + WORK_SPREAD):
        raise ParamError(
            f"{where}: timeout_ns={p['timeout_ns']} must exceed the work time "
            f"(up to {p['work_ns'] * (1 + WORK_SPREAD):.0f} ns) so that the "
            "timeout is cancelled before it fires"
        )


def build_timer_heavy(events: Events, rng: np.random.Generator, cpus: np.ndarray, p: dict) -> None:
    """High-rate hrtimer users: each vCPU runs a periodic clock_nanosleep loop.

    Iteration ``k`` on a vCPU (deadlines ``phase + k / loop_hz``, random phase per
    vCPU): ``timer_irq`` at the deadline, ``eoi``, ``idle_exit``, a clock read (the
    loop measures its wakeup latency, as cyclictest does); with probability
    ``cancel_fraction`` a timeout is armed (``timer_arm``) and cancelled
    (``timer_cancel``) half-way through the work; after ``work_ns`` the next
    deadline is armed (``timer_arm``) and the vCPU idles (``idle_enter``).

    Expected per vCPU: ``loop_hz * duration`` ``timer_irq`` (+-1), as many sleep
    arms (+1 at the start) plus one arm per cancel, ``cancel_fraction`` cancels
    per iteration. The one-shot timer is re-programmed tens of thousands of times
    a second: the case for TSC-deadline emulation fast paths and PV timers.
    """
    period = round(1e9 / p["loop_hz"])
    m = len(cpus)
    n_iter = events.duration_ns // period + 1
    phase = rng.integers(0, period, m)
    d = (phase[:, None] + period * np.arange(1, n_iter + 1, dtype=np.int64)[None, :]).ravel()
    n = m * n_iter
    h = uniform_around(rng, p["handler_ns"], n, HANDLER_SPREAD)
    work = uniform_around(rng, p["work_ns"], n, WORK_SPREAD)  # >= 1 ns even for work_ns=0
    cancel = rng.random(n) < p["cancel_fraction"]
    # The loop starts by arming its first deadline and going to sleep.
    events.add(np.full(m, STEP_NS), cpus, EventKind.TIMER_ARM, arg=phase + period)
    events.add(np.full(m, 2 * STEP_NS), cpus, EventKind.IDLE_ENTER)
    ep = Episodes(np.repeat(cpus, n_iter), n)
    ep.step(d, EventKind.TIMER_IRQ, vector=LOCAL_TIMER_VECTOR, dur_ns=h)
    e = ep.step(d + h, EventKind.EOI, vector=LOCAL_TIMER_VECTOR)
    ep.step(e + STEP_NS, EventKind.IDLE_EXIT)
    ep.step(e + 2 * STEP_NS, EventKind.CLOCK_READ, arg=TSC)
    t0 = e + 3 * STEP_NS
    ep.step(t0, EventKind.TIMER_ARM, arg=t0 + p["timeout_ns"], present=cancel)
    ep.step(t0 + work // 2, EventKind.TIMER_CANCEL, present=cancel)
    ep.step(t0 + work, EventKind.TIMER_ARM, arg=d + period)
    ep.step(t0 + work + STEP_NS, EventKind.IDLE_ENTER)
    ep.emit(events)


TIMER_HEAVY = Scenario(
    name="timer-heavy",
    summary="nanosleep/hrtimer loops re-arming the one-shot timer at a high rate, some cancels",
    params=TIMER_PARAMS,
    build=build_timer_heavy,
    check=check_timer_heavy,
)
