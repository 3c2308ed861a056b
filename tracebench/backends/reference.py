"""Plain-Python reference of the replay model: slow, obvious, and the kernel's judge.

It implements the semantics documented in ``kernel.py`` with Python ints and
per-vCPU records instead of arrays, and returns whole-trace results, so tests
can check the compiled kernel (one backend and four lanes, and chunking) row by row
with exact equality. It shares nothing with the kernel but the model tables' column
names (``layout.py``) and the cost levels' generator (``spread.cost_level``, Python ints): a
field of :class:`VcpuState` per ``layout.State`` member, a list
of :class:`ReferenceResult` per output column (``layout.Out``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracebench.backends import layout as L
from tracebench.backends.model import CompiledModel
from tracebench.backends.spread import cost_level
from tracebench.schema import EventKind as K
from tracebench.schema import ExitReason as R

INTERRUPTS = (K.TIMER_IRQ, K.DEVICE_IRQ, K.IPI_IRQ)


@dataclasses.dataclass
class VcpuState:
    shift: int = 0  # how far this vCPU's guest timeline lags the trace, ns
    busy: int = 0  # no guest-originated event starts before this (replay clock), ns
    stall_window: tuple[int, int] = (0, 0)  # [start, end) of its latest guest-action stall, ns
    deadline: int | None = None  # programmed timer deadline (replay clock), ns
    deadline_trace: int | None = None  # the same deadline on the trace clock, ns
    ipi_arrive: int | None = None  # when the latest IPI sent to it left the sender, ns
    idle: bool = False
    idle_since: int | None = None
    woke_at: int | None = None
    ipi_self: bool = False  # the pending IPI came from its own exiting ICR write
    host: tuple[int, int] = (0, 0)  # [start, end) of its latest exit (out of guest mode)
    irq_off_at: int | None = None  # its latest halting idle entry (sti; hlt)
    hlt_pending: int = 0  # 1: that HLT found an interrupt pending (no blocking); 2: an
    # interrupt came while the guest polled before HLT (no HLT)
    handler: tuple[int, int] = (0, 0)  # [start, IRET) of its latest handler with a run time


@dataclasses.dataclass
class ReferenceResult:
    start_ns: list
    latency_ns: list
    stall_ns: list
    exit_ns: list
    timer_error_ns: list  # None where not a matched timer interrupt
    exits: list
    reason: list


def replay_reference(cols: dict[str, np.ndarray], model: CompiledModel,
                     n_cpus: int) -> ReferenceResult:
    """Replay a whole trace (numpy columns) through ``model``; one output per row."""
    kind_levels = model.kind_levels.tolist()
    ipi_levels = model.ipi_levels.tolist()
    seed = int(model.ipi_table[L.IPI_COST_SEED])
    halts = ipi_levels[0][L.IPI_HALTS] != 0
    vcpus = [VcpuState() for _ in range(n_cpus)]
    res = ReferenceResult([], [], [], [], [], [], [])
    rows = zip(cols["ts_ns"].tolist(), cols["cpu"].tolist(), cols["kind"].tolist(),
               cols["target"].tolist(), cols["arg"].tolist(), cols["dur_ns"].tolist(),
               strict=True)
    for t, c, k, tg, arg, dur in rows:
        v = vcpus[c]
        # the event's cost level (one, or a quantile level drawn from the event itself)
        lv = cost_level(seed, t, c, k, model.levels) if model.levels > 1 else 0
        row, ipi = kind_levels[lv][k], ipi_levels[lv]
        terr = None
        exit_ns = 0
        if k in INTERRUPTS:
            matched, self_ipi = False, False
            if k == K.TIMER_IRQ and v.deadline is not None and v.deadline_trace <= t:
                arrive, v.deadline, matched = v.deadline, None, True
            elif k == K.TIMER_IRQ:
                arrive = t + v.shift
            elif k == K.IPI_IRQ and v.ipi_arrive is not None:
                arrive, v.ipi_arrive, self_ipi = v.ipi_arrive, None, v.ipi_self
            else:
                arrive = t  # device interrupts (and unmatched IPIs) keep absolute time
            woke = v.idle
            host = arrive + row[L.IRQ_HOST]
            # pending since before the guest's sti; hlt: it had interrupts off
            masked = v.irq_off_at is not None and arrive <= v.irq_off_at
            in_host = (not masked and not woke and row[L.IRQ_RUN_EXITS] > 0
                       and (self_ipi or v.host[0] <= host < v.host[1]))
            if masked:  # an interrupt window, once interrupts are on and its HLT is done
                ready = max(host, v.busy) + row[L.IRQ_WINDOW]
                stall, exits = row[L.IRQ_WINDOW_STALL], row[L.IRQ_WINDOW_EXITS]
                reason = row[L.IRQ_WINDOW_REASON]
            elif in_host:  # injected on the re-entry: no kick
                ready = (host if self_ipi else v.host[1]) + row[L.IRQ_INJECT]
                stall, exits, reason = row[L.IRQ_INJECT], 0, 0
            elif woke and ipi[L.IPI_GUEST_POLL] > 0 and host < v.idle_since:
                v.hlt_pending = 2  # the guest still polled: it takes it running, no HLT
                ready = host + row[L.IRQ_RUN]
                stall, exits = row[L.IRQ_RUN_STALL], row[L.IRQ_RUN_EXITS]
                reason = row[L.IRQ_RUN_REASON]
            elif woke:
                # blocked since its HLT; inside the host's halt-polling window no schedule
                polling = host < v.idle_since + ipi[L.IPI_HOST_POLL]
                ready = host + (row[L.IRQ_POLL_WAKE] if polling else row[L.IRQ_WAKE])
                if matched and row[L.IRQ_ADVANCE] > 0:  # fired early, waits for the deadline
                    ready = max(ready - row[L.IRQ_ADVANCE], arrive + row[L.IRQ_ADVANCE_MIN])
                stall, exits, reason = 0, 0, 0
            else:
                ready = host + row[L.IRQ_RUN]
                stall, exits = row[L.IRQ_RUN_STALL], row[L.IRQ_RUN_EXITS]
                reason = row[L.IRQ_RUN_REASON]
            v.idle = False
            start = v.stall_window[1] if v.stall_window[0] <= ready < v.stall_window[1] else ready
            if v.handler[0] <= start < v.handler[1]:  # due inside a handler: at its IRET
                ready = v.handler[1] + row[L.IRQ_WINDOW]
                stall, exits = row[L.IRQ_WINDOW_STALL], row[L.IRQ_WINDOW_EXITS]
                reason = row[L.IRQ_WINDOW_REASON]
                start = (v.stall_window[1] if v.stall_window[0] <= ready < v.stall_window[1]
                         else ready)
            if woke:
                v.woke_at = start
            v.busy = max(v.busy, start)
            v.shift = start - t if woke else max(v.shift + stall, start - t)
            if dur > 0:  # interrupts off until dur later on the timeline its work is on
                v.handler = (start, t + dur + v.shift)
            latency = start - arrive
            if matched:
                terr = start - arrive
            if exits:
                exit_ns = stall
        else:
            want = t + v.shift
            start = max(want, v.busy)
            if k == K.IPI_SEND:
                cost, exits, reason = _ipi_cost(ipi, tg, arg, n_cpus)
                sent = start + cost
                targets = _ipi_targets(tg, arg, c, n_cpus)
                # AVIC: destinations blocked in the host (not polling) make the sender exit
                # once (AVIC_INCOMPLETE_IPI); its handler wakes each of them
                blocked = {d for d in targets if d != c and _blocked(vcpus[d], ipi, sent)}
                if blocked and ipi[L.IPI_BLOCKED_EXITS] > 0:
                    cost += ipi[L.IPI_BLOCKED_COST] + len(blocked) * ipi[
                        L.IPI_BLOCKED_TARGET_COST]
                    exits += ipi[L.IPI_BLOCKED_EXITS]
                    reason = ipi[L.IPI_BLOCKED_REASON]
                else:
                    blocked = set()
                for d in targets:
                    # the hardware delivered to the others; the blocked ones (and the
                    # sender itself) take it when the sender's exit is over
                    vcpus[d].ipi_arrive = sent if d != c and d not in blocked else start + cost
                    vcpus[d].ipi_self = d == c and exits > 0
            else:
                cost, exits, reason = row[L.ACT_COST], row[L.ACT_EXITS], row[L.ACT_REASON]
            pending = (v.ipi_arrive is not None and v.ipi_arrive <= start) or \
                (v.deadline is not None and v.deadline <= start)
            if k == K.EOI and ipi[L.IPI_EOI_PENDING_EXITS] > 0 and pending:
                # PV EOI: the host left the bit clear to see this EOI: the write exits
                cost, exits = ipi[L.IPI_EOI_PENDING_COST], ipi[L.IPI_EOI_PENDING_EXITS]
                reason = ipi[L.IPI_EOI_PENDING_REASON]
            if k == K.TIMER_ARM:
                v.deadline = arg + (start - t) if arg >= 0 else None
                v.deadline_trace = arg
            elif k == K.TIMER_CANCEL:
                v.deadline = None
            elif k == K.IDLE_ENTER and halts:
                v.idle = v.idle or not pending  # a pending interrupt: HLT returns at once
                v.hlt_pending, v.irq_off_at = int(pending), start
                v.idle_since, v.woke_at = start + ipi[L.IPI_GUEST_POLL], None
            elif k == K.IDLE_EXIT:
                if v.idle:
                    v.idle, v.woke_at = False, start
                if exits and reason == R.HLT:
                    if v.idle_since is not None and v.woke_at is not None \
                            and v.woke_at >= v.idle_since:
                        exit_ns = v.woke_at - v.idle_since
                    if v.hlt_pending == 2 or (v.idle_since is not None and v.woke_at
                                              is not None and v.woke_at < v.idle_since):
                        exits = exit_ns = 0  # left while the guest still polled: no HLT
                    v.idle_since = None
                    if v.hlt_pending == 1:  # no exit at all under the idle-HLT intercept
                        cost = exit_ns = ipi[L.IPI_HLT_RETURN_COST]
                        exits = ipi[L.IPI_HLT_RETURN_EXITS]
                    v.hlt_pending = 0
            stall = cost
            if exits and reason != R.HLT:
                exit_ns = cost
            v.busy = start + cost
            if exits and cost > 0:
                v.host = (start, start + cost)
            if cost > 0:  # back-to-back stalls form one window
                lo = v.stall_window[0] if start <= v.stall_window[1] else start
                v.stall_window = (lo, start + cost)
                if v.handler[0] <= want < v.handler[1]:  # inside a handler: delays its IRET
                    v.handler = (v.handler[0], v.handler[1] + start + cost - want)
            v.shift = start + cost - t
            latency = start - want + cost
        res.start_ns.append(start)
        res.latency_ns.append(latency)
        res.stall_ns.append(stall)
        res.exit_ns.append(exit_ns)
        res.timer_error_ns.append(terr)
        res.exits.append(exits)
        res.reason.append(reason if exits else 0)
    return res


def _blocked(v: VcpuState, ipi: list[int], at: int) -> bool:
    """Halted, its HLT executed, and past the host's halt-polling window at ``at``."""
    return v.idle and v.idle_since is not None and at >= v.idle_since + ipi[L.IPI_HOST_POLL]


def _ipi_cost(ipi: list[int], tg: int, arg: int, n_cpus: int) -> tuple[int, int, int]:
    if tg == -1 and ipi[L.IPI_USES_SHORTHAND]:
        return ipi[L.IPI_SHORT_COST], ipi[L.IPI_SHORT_EXITS], ipi[L.IPI_SHORT_REASON]
    if tg >= 0:
        n = 1
    elif tg == -1:
        n = n_cpus - 1
    else:
        n = len(_mask_cpus(arg, n_cpus))
    return (ipi[L.IPI_CALL_COST] + n * ipi[L.IPI_TARGET_COST],
            ipi[L.IPI_CALL_EXITS] + n * ipi[L.IPI_TARGET_EXITS], ipi[L.IPI_REASON])


def _ipi_targets(tg: int, arg: int, sender: int, n_cpus: int) -> list[int]:
    if tg >= 0:
        return [tg]
    if tg == -1:
        return [d for d in range(n_cpus) if d != sender]
    return _mask_cpus(arg, n_cpus)


def _mask_cpus(mask: int, n_cpus: int) -> list[int]:
    """The vCPUs a destination mask names: its set bits below min(n_cpus, 64)."""
    return [d for d in range(min(n_cpus, 64)) if (mask >> d) & 1]
