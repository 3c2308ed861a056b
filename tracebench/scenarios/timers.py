"""One-shot timer users: a tickless idle guest (``idle-nohz``) and nanosleep loops
(``timer-heavy``)."""

from __future__ import annotations

import numpy as np

from tracebench.errors import ParamError
from tracebench.scenarios import draws
from tracebench.scenarios.events import (
    LOCAL_TIMER_VECTOR,
    STEP_NS,
    Episodes,
    Out,
    periodic_due,
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


# random streams (draws.stream_key(part key, vCPU position, stream))
_SLEEP, _DEV, _BUSY, _H_TIMER, _H_DEV = 1, 2, 3, 4, 5
_PHASE, _WORK, _CANCEL = 6, 7, 8


class IdleNohz:
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

    The idle time before episode ``k`` is ``min(S, E)``: ``S`` the programmed sleep,
    ``E`` the next device interrupt. Device arrivals are Poisson, hence memoryless,
    so the gap to the next one is exponential whenever the vCPU goes idle and the
    episodes are independent: their start times are an integer cumulative sum. A
    device interrupt wins only if its handler and the timer cancel finish before the
    timer deadline, so a timer never fires unseen. Random streams: episode ``k`` of the
    vCPU at position ``i`` takes draw ``k`` of its streams ``(i, 1..5)``: sleep, device
    gap, busy time, timer and device handler times.
    """

    def __init__(self, key: int, cpus: np.ndarray, p: dict, shape):
        self.cpus, self.p, self.duration_ns = cpus, p, shape.duration_ns
        self.key = key
        self.mean_sleep = 1e9 / p["timer_wakeups_per_s"]
        self.mean_dev = 1e9 / p["device_irq_per_s"] if p["device_irq_per_s"] else np.inf
        self.mean_len = 1 / (1 / self.mean_sleep + 1 / self.mean_dev) + p["busy_ns"] + \
            p["device_handler_ns"]
        m = len(cpus)
        self.next_k = np.zeros(m, dtype=np.int64)  # first episode not made yet
        self.wake = np.full(m, STEP_NS, dtype=np.int64)  # its wake time

    def _draw(self, i: int, k: np.ndarray) -> dict[str, np.ndarray]:
        p, key = self.p, self.key
        sleep = draws.exponential_ns(draws.stream_key(key, i, _SLEEP), k, self.mean_sleep)
        sleep += STEP_NS  # a deadline is never "now"
        if np.isfinite(self.mean_dev):
            dev = draws.exponential_ns(draws.stream_key(key, i, _DEV), k,
                                       self.mean_dev).clip(max=4 * self.duration_ns)
        else:
            dev = None
        busy = (draws.exponential_ns(draws.stream_key(key, i, _BUSY), k, p["busy_ns"])
                if p["busy_ns"] else np.zeros(len(k), np.int64)) + STEP_NS
        h_timer = draws.uniform_around(draws.stream_key(key, i, _H_TIMER), k,
                                       p["timer_handler_ns"], HANDLER_SPREAD)
        h_dev = draws.uniform_around(draws.stream_key(key, i, _H_DEV), k,
                                     p["device_handler_ns"], HANDLER_SPREAD)
        by_timer = np.ones(len(k), bool) if dev is None else sleep <= dev + h_dev + 4 * STEP_NS
        by_timer |= k == 0  # episode 0 starts busy; its "wake" fields are unused
        h = np.where(by_timer, h_timer, h_dev)
        idle = np.where(by_timer, sleep, 0 if dev is None else dev)  # idle before episode k
        pre = np.where(k == 0, 0, h + 4 * STEP_NS)  # irq ... eoi, idle_exit, clock_read, cancel
        return {"sleep": sleep, "by_timer": by_timer, "h": h, "idle": idle, "pre": pre,
                "busy": busy}

    def advance(self, out: Out, until_ns: int) -> None:
        blocks = []
        for i in range(len(self.cpus)):
            while self.wake[i] < until_ns:
                n = int((until_ns - self.wake[i]) / self.mean_len * 1.25) + 16
                k = self.next_k[i] + np.arange(n + 1, dtype=np.int64)
                c = self._draw(i, k)  # episode n's draws: the sleep that ends episode n-1
                # wake[k+1] = wake[k] + pre[k] + busy[k] + STEP (idle_enter) + idle[k+1]
                wake = self.wake[i] + np.concatenate(
                    [[0], np.cumsum(c["pre"][:-1] + c["busy"][:-1] + STEP_NS + c["idle"][1:])])
                take = min(int(np.searchsorted(wake, until_ns)), n)
                arm = wake[:take] + c["pre"][:take] + c["busy"][:take]
                blocks.append({"cpu": np.full(take, self.cpus[i]), "wake": wake[:take],
                               "by_timer": c["by_timer"][:take], "h": c["h"][:take],
                               "woke": k[:take] != 0, "arm": arm,
                               "deadline": arm + STEP_NS + c["sleep"][1:take + 1]})
                self.next_k[i] += take
                self.wake[i] = wake[take]
        if not blocks:
            return
        c = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
        by_timer, w, h, woke = c["by_timer"], c["wake"], c["h"], c["woke"]
        ep = Episodes(c["cpu"], len(w))
        kind = np.where(by_timer, EventKind.TIMER_IRQ, EventKind.DEVICE_IRQ)
        vector = np.where(by_timer, LOCAL_TIMER_VECTOR, IDLE_DEVICE_IRQ)
        ep.step(w, kind, vector=vector, dur_ns=h, present=woke)
        ep.step(w + h, EventKind.EOI, vector=vector, present=woke)
        ep.step(w + h + STEP_NS, EventKind.IDLE_EXIT, present=woke)
        ep.step(w + h + 2 * STEP_NS, EventKind.CLOCK_READ, arg=TSC, present=woke)
        ep.step(w + h + 3 * STEP_NS, EventKind.TIMER_CANCEL, present=woke & ~by_timer)
        ep.step(c["arm"], EventKind.TIMER_ARM, arg=c["deadline"])
        ep.step(c["arm"] + STEP_NS, EventKind.IDLE_ENTER)
        ep.emit(out, 0)


IDLE_NOHZ = Scenario(
    name="idle-nohz",
    summary="tickless idle vCPUs: sparse one-shot timers, occasional device wakeups",
    params=IDLE_PARAMS,
    part=IdleNohz,
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


class TimerHeavy:
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

    Random streams: the phase of the vCPU at position ``i`` is draw 0 of stream
    ``(i, 6)``; iteration ``k``'s handler time, work time and cancel draw are draw
    ``k`` of ``(i, 4)``, ``(i, 7)`` and ``(i, 8)``.
    """

    def __init__(self, key: int, cpus: np.ndarray, p: dict, shape):
        self.cpus, self.p = cpus, p
        self.period = round(1e9 / p["loop_hz"])
        m = len(cpus)
        self.n_iter = shape.duration_ns // self.period + 1
        self.keys = {q: np.array([draws.stream_key(key, i, q) for i in range(m)], np.uint64)
                     for q in (_H_TIMER, _WORK, _CANCEL, _PHASE)}
        self.phase = draws.integers(self.keys[_PHASE], 0, 0, self.period)
        self.next_k = np.zeros(m, dtype=np.int64)
        self.started = False

    def advance(self, out: Out, until_ns: int) -> None:
        p, cpus, period = self.p, self.cpus, self.period
        if not self.started:  # the loop starts by arming its first deadline and sleeping
            self.started = True
            ep = Episodes(cpus, len(cpus))
            ep.step(STEP_NS, EventKind.TIMER_ARM, arg=self.phase + period)
            ep.step(2 * STEP_NS, EventKind.IDLE_ENTER)
            ep.emit(out, 0)
        # deadline of iteration k: phase + (k + 1) * period; those before until_ns
        first = self.phase + period
        i, k, self.next_k = periodic_due(first, period, self.n_iter, self.next_k, until_ns)
        n = len(k)
        if n == 0:
            return
        d = first[i] + k * period
        h = draws.uniform_around(self.keys[_H_TIMER][i], k, p["handler_ns"], HANDLER_SPREAD)
        # >= 1 ns even for work_ns=0
        work = draws.uniform_around(self.keys[_WORK][i], k, p["work_ns"], WORK_SPREAD)
        cancel = draws.u01(self.keys[_CANCEL][i], k) < p["cancel_fraction"]
        ep = Episodes(cpus[i], n)
        ep.step(d, EventKind.TIMER_IRQ, vector=LOCAL_TIMER_VECTOR, dur_ns=h)
        e = ep.step(d + h, EventKind.EOI, vector=LOCAL_TIMER_VECTOR)
        ep.step(e + STEP_NS, EventKind.IDLE_EXIT)
        ep.step(e + 2 * STEP_NS, EventKind.CLOCK_READ, arg=TSC)
        t0 = e + 3 * STEP_NS
        ep.step(t0, EventKind.TIMER_ARM, arg=t0 + p["timeout_ns"], present=cancel)
        ep.step(t0 + work // 2, EventKind.TIMER_CANCEL, present=cancel)
        ep.step(t0 + work, EventKind.TIMER_ARM, arg=d + period)
        ep.step(t0 + work + STEP_NS, EventKind.IDLE_ENTER)
        ep.emit(out, 1)


TIMER_HEAVY = Scenario(
    name="timer-heavy",
    summary="nanosleep/hrtimer loops re-arming the one-shot timer at a high rate, some cancels",
    params=TIMER_PARAMS,
    part=TimerHeavy,
    check=check_timer_heavy,
)
