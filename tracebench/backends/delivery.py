"""Interrupt delivery in the replay loop (``kernel.py``), for a lane width fixed at build time.

An interrupt arrives (``arrive``: the deadline, its sender's ICR write, or its trace time)
and is delivered by one of four paths, chosen per lane in this order:

* **window** -- it became pending while the guest had interrupts off: at or before the
  vCPU's latest halting idle entry (the ``cli ... sti; hlt`` idiom: had interrupts been on,
  the guest would have taken it before idling). It is delivered when they are on again,
  no earlier than the end of the vCPU's latest action (its HLT, which returned at once),
  through ``IRQ_WINDOW``: under legacy injection an interrupt-window exit
  (``PENDING_INTERRUPT``; SVM's VINTR), elsewhere what delivery to a running vCPU costs.
* **in host** -- no kick where delivery would kick (``IRQ_RUN_EXITS`` > 0) but the vCPU is
  already out of guest mode: a self-IPI from an exiting ICR write (the sender is in the
  host, handling that write), or a target inside an exit when the host is ready. It is
  injected on the re-entry (``IRQ_INJECT``), without a host IPI or an exit of its own.
* **wake** -- the vCPU is halted: ``IRQ_WAKE`` (``IRQ_POLL_WAKE`` inside the host's
  halt-polling window; through the run path while the guest's haltpoll still polls); a
  matched timer ``IRQ_ADVANCE`` earlier (KVM's lapic_timer_advance), but no earlier than
  ``IRQ_ADVANCE_MIN`` after its deadline (kvm_wait_lapic_expire waits for it).
* **run** -- the kick or posted path into a running vCPU: ``IRQ_RUN``.

Under AVIC the hardware delivers an IPI to every running destination itself; a send that
finds a destination blocked (halted past any polling window: KVM clears the AVIC IsRunning
bit only when it blocks the vCPU thread) takes the sender's AVIC_INCOMPLETE_IPI exit, whose
handler wakes each blocked destination (``blocked_send``); those destinations' IPI arrives
when that exit ends, the others' when the hardware delivered it (``arrival``).

Then, whatever the path: if the vCPU would take the interrupt (its start on that path)
inside its latest interrupt handler with a known run time (``dur_ns``: Linux runs
hard-irq handlers with interrupts off until IRET), it is taken at that handler's return
through ``IRQ_WINDOW``, as above. The handler runs from its start to ``dur_ns`` later on
the vCPU's timeline (``start + dur``, or ``ts + dur + shift`` where the vCPU's guest work
lags further), and longer by the stalls of guest actions inside it (``kernel.py``): the
IRET is guest work like any other. ``dur_ns`` = 0 (unknown) opens no such window.

The plain-Python reference (``reference.py``) writes the same rules out on its own.
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

from tracebench.backends import layout as L
from tracebench.backends.lanewise import (
    add,
    both,
    either,
    eq,
    ge,
    gt,
    load,
    may,
    mul,
    ne,
    select,
    splat,
    store,
    sub,
    vmax,
)
from tracebench.jit import lowest_bit
from tracebench.schema import EventKind

TIMER_IRQ = int(EventKind.TIMER_IRQ)
IPI_IRQ = int(EventKind.IPI_IRQ)
NO_TIME = L.NO_TIME


def delivery(W: int):
    """``(deliver, pending_at, eoi_action, blocked_send, arrival)`` at lane width ``W``.
    ``deliver(...)``: one interrupt event (``dur``: its handler's run time, 0 if unknown),
    state updated in place; returns ``(start, latency, stall, exit_ns, terr, exits,
    reason)``. ``pending_at(state, cs, at)``: whether an IPI or the armed timer is pending
    on the vCPU at ``at`` (lane masks)."""

    @register_jitable(inline="always")
    def pending_at(state, cs, at):
        never = splat(np.int64(NO_TIME), W)
        sent = load(state, cs + L.S_IPI_ARRIVE * W, W)
        dl = load(state, cs + L.S_DEADLINE * W, W)
        return either(both(ne(sent, never), ge(at, sent)), both(ne(dl, never), ge(at, dl)))

    @register_jitable(inline="always")
    def deliver(state, kind_table, draws, cs, kt, kc, ic, k, tv, shift, dur):
        zero = splat(np.int64(0), W)
        never = splat(np.int64(NO_TIME), W)
        matched = splat(False, W)
        self_ipi = splat(False, W)
        if k == TIMER_IRQ:
            # The armed deadline explains this interrupt only if, in the trace, the
            # interrupt came at or after it; an earlier one was programmed by a write the
            # trace missed.
            dl = load(state, cs + L.S_DEADLINE * W, W)
            matched = both(ne(dl, never), ge(tv, load(state, cs + L.S_DEADLINE_TRACE * W, W)))
            arrive = select(matched, dl, add(tv, shift))
            store(state, cs + L.S_DEADLINE * W, select(matched, never, dl))
        elif k == IPI_IRQ:
            sent = load(state, cs + L.S_IPI_ARRIVE * W, W)
            arrive = select(eq(sent, never), tv, sent)
            self_ipi = both(ne(sent, never), ne(load(state, cs + L.S_IPI_SELF * W, W), zero))
            store(state, cs + L.S_IPI_ARRIVE * W, never)
        else:  # device interrupts keep their absolute time
            arrive = tv
        host = add(arrive, load(draws, kc + L.D_IRQ_HOST * W, W))
        idle = ne(load(state, cs + L.S_IDLE * W, W), zero)
        no = splat(False, W)
        off_at = load(state, cs + L.S_IRQ_OFF_AT * W, W)
        masked = both(ne(off_at, never), ge(off_at, arrive))
        kicks = gt(load(kind_table, kt + L.IRQ_RUN_EXITS * W, W), zero)
        host_end = load(state, cs + L.S_HOST_END * W, W)
        inside = both(ge(host, load(state, cs + L.S_HOST_START * W, W)), gt(host_end, host))
        in_host = both(both(kicks, eq(masked, no)), both(eq(idle, no), either(self_ipi, inside)))
        # a halted vCPU blocks from its HLT (after the guest's haltpoll window, if any);
        # the host polls for a while before it schedules the vCPU thread out
        wake = load(draws, kc + L.D_IRQ_WAKE * W, W)
        # straight selects, no branch: which path an interrupt takes varies from one to the
        # next, and a mispredicted branch costs more than these few loads
        hlt_at = load(state, cs + L.S_IDLE_SINCE * W, W)
        polled = both(idle, both(gt(load(draws, ic + L.D_IPI_GUEST_POLL * W, W), zero),
                                 gt(hlt_at, host)))
        asleep = both(idle, eq(polled, no))
        store(state, cs + L.S_HLT_PENDING * W, select(both(polled, eq(masked, no)), splat(
            np.int64(2), W), load(state, cs + L.S_HLT_PENDING * W, W)))
        wake = select(gt(add(hlt_at, load(draws, ic + L.D_IPI_HOST_POLL * W, W)), host),
                      load(draws, kc + L.D_IRQ_POLL_WAKE * W, W), wake)
        ready = select(asleep, add(host, wake), add(host, load(draws, kc + L.D_IRQ_RUN * W, W)))
        # lapic_timer_advance (matched timers only): woken early, the host waits for the
        # deadline
        early = both(both(asleep, matched), gt(load(kind_table, kt + L.IRQ_ADVANCE * W, W), zero))
        ready = select(early, vmax(sub(ready, load(kind_table, kt + L.IRQ_ADVANCE * W, W)),
                                   add(arrive, load(draws, kc + L.D_IRQ_ADVANCE_MIN * W, W))),
                       ready)
        stall = select(asleep, zero, load(draws, kc + L.D_IRQ_RUN_STALL * W, W))
        exits = select(asleep, zero, load(kind_table, kt + L.IRQ_RUN_EXITS * W, W))
        reason = select(asleep, zero, load(kind_table, kt + L.IRQ_RUN_REASON * W, W))
        inject = load(draws, kc + L.D_IRQ_INJECT * W, W)
        ready = select(in_host, add(select(self_ipi, host, host_end), inject), ready)
        stall = select(in_host, inject, stall)
        exits = select(in_host, zero, exits)
        ready = select(masked, add(vmax(host, load(state, cs + L.S_BUSY * W, W)),
                                   load(draws, kc + L.D_IRQ_WINDOW * W, W)), ready)
        stall = select(masked, load(draws, kc + L.D_IRQ_WINDOW_STALL * W, W), stall)
        exits = select(masked, load(kind_table, kt + L.IRQ_WINDOW_EXITS * W, W), exits)
        reason = select(masked, load(kind_table, kt + L.IRQ_WINDOW_REASON * W, W), reason)
        # Queue only behind the stall in progress when delivery is ready; an interrupt that
        # is ready before that stall began was taken before it.
        window_start = load(state, cs + L.S_STALL_START * W, W)
        window_end = load(state, cs + L.S_STALL_END * W, W)
        start = select(both(ge(ready, window_start), gt(window_end, ready)), window_end, ready)
        # due inside the latest handler (interrupts off): taken at its IRET, via the window
        on_at = load(state, cs + L.S_IRQ_ON_AT * W, W)
        held = both(ge(start, load(state, cs + L.S_HANDLER_AT * W, W)), gt(on_at, start))
        if may(held):
            ready = add(on_at, load(draws, kc + L.D_IRQ_WINDOW * W, W))
            stall = select(held, load(draws, kc + L.D_IRQ_WINDOW_STALL * W, W), stall)
            exits = select(held, load(kind_table, kt + L.IRQ_WINDOW_EXITS * W, W), exits)
            reason = select(held, load(kind_table, kt + L.IRQ_WINDOW_REASON * W, W), reason)
            start = select(held, select(both(ge(ready, window_start), gt(window_end, ready)),
                                        window_end, ready), start)
        latency = sub(start, arrive)
        if may(idle):
            store(state, cs + L.S_IDLE * W, zero)
            store(state, cs + L.S_WOKE_AT * W,
                  select(idle, start, load(state, cs + L.S_WOKE_AT * W, W)))
        store(state, cs + L.S_BUSY * W, vmax(load(state, cs + L.S_BUSY * W, W), start))
        # idling absorbed any lag: the timeline restarts at the handler; else the
        # interrupted work still has to be done, after the stall
        lag = sub(start, tv)
        shift = select(idle, lag, vmax(add(shift, stall), lag))
        store(state, cs + L.S_SHIFT * W, shift)
        if dur > 0:  # interrupts off from its start to dur later on the vCPU's timeline
            store(state, cs + L.S_HANDLER_AT * W, start)
            store(state, cs + L.S_IRQ_ON_AT * W, add(add(tv, splat(dur, W)), shift))
        exit_ns = select(gt(exits, zero), stall, zero)
        terr = select(matched, latency, never)
        return start, latency, stall, exit_ns, terr, exits, reason

    @register_jitable(inline="always")
    def eoi_action(state, ipi_table, draws, ic, cs, at, is_eoi, cost, exits, reason):
        """An EOI's (cost, exits, reason): KVM's PV EOI takes the EOI write's exit when
        another interrupt is pending (the host left the PV EOI bit clear to see it)."""
        asks = both(both(splat(is_eoi, W), gt(load(ipi_table, L.IPI_EOI_PENDING_EXITS * W, W),
                                              splat(np.int64(0), W))), pending_at(state, cs, at))
        return (select(asks, load(draws, ic + L.D_IPI_EOI_PENDING_COST * W, W), cost),
                select(asks, load(ipi_table, L.IPI_EOI_PENDING_EXITS * W, W), exits),
                select(asks, load(ipi_table, L.IPI_EOI_PENDING_REASON * W, W), reason))

    @register_jitable(inline="always")
    def blocked_at(state, draws, ic, rs, at):
        """Lane mask: the vCPU at state offset ``rs`` is blocked at ``at``: halted, its HLT
        executed (the guest's haltpoll is over) and the host's halt-polling over (KVM
        clears AVIC's IsRunning in kvm_arch_vcpu_blocking, once it stops polling)."""
        hlt_at = load(state, rs + L.S_IDLE_SINCE * W, W)
        return both(both(ne(load(state, rs + L.S_IDLE * W, W), splat(np.int64(0), W)),
                         ne(hlt_at, splat(np.int64(NO_TIME), W))),
                    ge(at, add(hlt_at, load(draws, ic + L.D_IPI_HOST_POLL * W, W))))

    @register_jitable(inline="always")
    def blocked_send(state, ipi_table, draws, ic, row_state, c, tg, mask, n_cpus, at, cost,
                     exits, reason):
        """A send's (cost, exits, reason) once its blocked destinations (``tg`` as in the
        trace, ``mask`` its destination mask; the sender itself runs) are counted: one
        BLOCKED exit per send that has any, plus BLOCKED_TARGET per blocked destination
        (arch/x86/kvm/svm/avic.c: avic_incomplete_ipi_interception, once per ICR write,
        kicks every destination: avic_kick_target_vcpus)."""
        zero = splat(np.int64(0), W)
        one = splat(np.int64(1), W)
        n = zero
        if tg >= 0:
            if tg != c:
                n = select(blocked_at(state, draws, ic, tg * row_state, at), one, zero)
        elif tg == -1:
            for d in range(n_cpus):
                if d != c:
                    n = add(n, select(blocked_at(state, draws, ic, d * row_state, at), one, zero))
        else:
            m = mask
            while m != 0:
                d = np.int64(lowest_bit(m))
                if d != c:
                    n = add(n, select(blocked_at(state, draws, ic, d * row_state, at), one, zero))
                m &= m - np.uint64(1)
        asleep = both(gt(n, zero), gt(load(ipi_table, L.IPI_BLOCKED_EXITS * W, W), zero))
        extra = add(load(draws, ic + L.D_IPI_BLOCKED_COST * W, W),
                    mul(n, load(draws, ic + L.D_IPI_BLOCKED_TARGET_COST * W, W)))
        return (add(cost, select(asleep, extra, zero)),
                add(exits, select(asleep, load(ipi_table, L.IPI_BLOCKED_EXITS * W, W), zero)),
                select(asleep, load(ipi_table, L.IPI_BLOCKED_REASON * W, W), reason))

    @register_jitable(inline="always")
    def arrival(state, draws, ic, rs, other, blocks, sent, done):
        """When a send reaches the destination at state offset ``rs``: ``sent`` (hardware
        delivery), or, blocked where a blocked destination makes the sender exit
        (``blocks``), ``done``, when that exit (the wake-up) ends."""
        if other and may(blocks):
            return select(both(blocks, blocked_at(state, draws, ic, rs, sent)), done, sent)
        return done

    return deliver, pending_at, eoi_action, blocked_send, arrival
