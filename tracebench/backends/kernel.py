"""The replay model, written once: one compiled loop for one backend or four to a pass.

Replay semantics (per vCPU state, carried across chunks in ``state``):

* Events are taken in trace order. A guest-originated event on vCPU ``c`` happens
  at ``ts + shift[c]`` (it moves with the stall accumulated on its vCPU), never
  before ``busy[c]`` (the end of the vCPU's previous action, or its latest handler
  start), and stalls the vCPU for its cost; ``latency`` = wait + cost.
* Interrupts arrive at a physical time: a timer at its programmed deadline (as
  shifted when armed), an IPI when its sender's ICR write completed, a device
  interrupt at its absolute trace time. Delivery adds host-side handling plus the
  path into a running vCPU (kick / posted) or a halted one (wakeup). If delivery is
  ready while the vCPU is inside a stall window (back-to-back guest-action stalls),
  the handler waits for the window's end; otherwise it starts when ready, even if
  that is before guest events the trace order processed earlier.
  ``latency`` = handler start - arrival; timer error = handler start - deadline.
* A handler runs with interrupts off for its ``dur`` (0: unknown, no effect): an interrupt
  due between the start and the return of the vCPU's latest handler waits for that return
  and is then delivered through the interrupt window (``delivery.py``). The return is
  ``dur`` after the handler's start on the vCPU's timeline, later by the stalls of guest
  actions inside it (the IRET is guest work too). Handlers do not occupy the vCPU
  otherwise: the trace's own events inside a handler carry its time.
* After an interrupt, a running vCPU's timeline is no earlier than the handler and
  still owes the stall (``shift = max(shift + stall, start - ts)``); a halted vCPU's
  idle time absorbed any lag, so its timeline restarts at the handler
  (``shift = start - ts``). A vCPU's own events never go back in time.
* A timer interrupt is matched to the armed deadline only if it came at or after
  that deadline in the trace; an unmatched one (no arm seen, or one that fired
  before the armed deadline: programmed by a write the trace missed) arrives at
  ``ts + shift`` and has no timer error. An unmatched IPI arrives at its trace
  time; the latest IPI sent to a vCPU wins.

One source, two widths. :func:`replay_kernel` builds the loop for a lane width ``W``: 1
(one backend: :data:`replay_chunk_nb`, the built-in backends' kernel) or
``layout.LANES`` (four backends in one pass: :data:`replay_lanes_nb`). Every quantity is a
lane value of ``lanewise.py``, a plain int64 at width 1 and a tuple of four at width 4, and
every choice the model makes per backend is a lane-wise ``select``; the kind dispatch, the
IPI destinations and the timer-arm argument depend on the event alone and stay branches.
Numba compiles one specialization per width; the histogram slots and per-(vCPU, reason)
exit records stay per lane (scatters have no AVX2 form). Where one backend's loop is
faster with a branch, the block of selects sits under ``if may(mask):`` (a branch at width
1, always taken at 4), or under a test of ``W`` itself, which numba folds.

Calling convention (the contract for plug-in kernels too): ``kernel(ts, cpu, kind, target,
arg, dur, kind_table, ipi_table, n_cpus, hdr, state, out, kind_agg, exit_agg, lat_counts,
terr_counts)``, returning the rows processed. ``ts`` ... ``dur`` are the trace's columns
``ts_ns``, ``cpu``, ``kind`` (int8 code), ``target``, ``arg`` and ``dur_ns`` (int64: an
interrupt handler's run time, 0 where unknown). The model tables are the median tables,
the cost draws after the kind table (``layout.py``); a kernel reads an event's costs from
its draw rows at the level ``spread.cost_level(seed, ts, cpu, kind, levels)`` picks (the
seed in ``IPI_COST_SEED``), the rest from the median tables.
Every array is one-dimensional and C-contiguous: tables, state and aggregates are the
row-major flattening of the shapes in ``layout.py`` (``BackendRun`` keeps the N-D views),
with the lane axis of a lane group where ``layout.LANE_AXIS`` puts it. ``out`` receives the
per-event outputs: a tuple of the typed columns of ``layout.Out`` (what a plug-in kernel is
given), at width 4 a tuple of four such tuples; or, where rows are not kept, one
cache-sized int64 block of ``(rows, N_OUT, W)`` that the loop overwrites block by block
(``store_outputs`` picks the form at compile time). Flat arrays ran the loop 1-2 % faster
than 2-D ones (numba passes strides as run-time values), and one block instead of seven
columns 8-10 % where rows are not kept (BENCHMARKS.md).

Where a change goes (and nothing else needs one):

* new per-vCPU state: a :class:`layout.State` member (with its initial value), its use
  in the loop below, a field of ``reference.VcpuState``;
* a new mechanism the model distinguishes (e.g. an interrupt window): its cost columns
  as :class:`layout.KindCol` / :class:`layout.IpiCol` members, filled in
  ``mechanisms.py``; its rule in the loop below and in ``reference.py``;
* a new per-event output: a :class:`layout.Out` member (name, dtype), computed below and
  passed to ``store_outputs``, and in ``reference.ReferenceResult``; the results writer
  (``replayer/results.py``) lists the columns it writes.

The compiled loop is cached on disk. Numba checks only this file's time stamp, so the
kernel closes over a digest of the other sources compiled into it (:data:`SOURCES`):
editing the layout recompiles it rather than load a stale cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numba.extending import register_jitable

from tracebench import jit, schema
from tracebench.backends import aggregates, lanewise, outputs, spread
from tracebench.backends import delivery as D
from tracebench.backends import layout as L
from tracebench.backends.aggregates import hdr_index, hdr_slot, record_exits
from tracebench.backends.delivery import delivery
from tracebench.backends.lanewise import (
    add,
    both,
    either,
    eq,
    ge,
    gt,
    lane,
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
from tracebench.backends.outputs import block_rows, store_outputs
from tracebench.backends.spread import seed_hash, seeded_level
from tracebench.jit import kernel, lowest_bit, popcount
from tracebench.schema import N_KINDS, EventKind, ExitReason

# Plain ints: numba freezes module globals at compile time.
TIMER_ARM = int(EventKind.TIMER_ARM)
TIMER_CANCEL = int(EventKind.TIMER_CANCEL)
IPI_SEND = int(EventKind.IPI_SEND)
IDLE_ENTER = int(EventKind.IDLE_ENTER)
EOI = int(EventKind.EOI)
HLT = int(ExitReason.HLT)
#: kinds whose time is set outside the vCPU, as a bit set (one test instead of three)
IRQ_BITS = sum(1 << int(k) for k in schema.INTERRUPT_KINDS)
IDLE_BITS = (1 << IDLE_ENTER) | (1 << int(EventKind.IDLE_EXIT))
TIMER_BITS = (1 << TIMER_ARM) | (1 << TIMER_CANCEL)
#: a destination mask (``target == -2``) names vCPUs 0..63; bits past ``n_cpus`` are ignored
MASK_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
NO_TIME = L.NO_TIME

#: digest of the sources compiled into the kernel besides this file (see the docstring)
SOURCES = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (
    L, lanewise, aggregates, D, outputs, spread, jit, schema))).hexdigest()
__all__ = ["hdr_index", "record_exits", "replay_chunk_nb", "replay_kernel", "replay_lanes_nb"]


@register_jitable
def _tally(j, c, k, latency, terr, exits, reason, exit_ns, n_cpus, exit_agg, lat_counts,
           terr_counts, unit_mag, half_mag, sub_mask, half_count, highest, counts_len):
    """Lane ``j``'s exit record and histogram counts (lane-major aggregates)."""
    record_exits(exit_agg, j * n_cpus + c, reason, exits, exit_ns)
    slot = np.uint64(hdr_slot(latency, unit_mag, half_mag, sub_mask, half_count, highest))
    lat_counts[(np.uint64(j * N_KINDS) + np.uint64(k)) * counts_len + slot] += 1
    if terr != NO_TIME:  # a matched timer: same histogram slot as its latency
        terr_counts[np.uint64(j) * counts_len + slot] += 1


def replay_kernel(lanes: int, sources: str = SOURCES):
    """The replay loop for ``lanes`` backends per pass (1 or ``layout.LANES``); ``sources``
    is read by it so that numba's cache key (a hash of the closure) follows those sources."""
    W = lanes
    deliver, pending_at, eoi_action, blocked_send, arrival = delivery(W)

    @kernel
    def replay(ts, cpu, kind, target, arg, dur, kind_table, ipi_table, n_cpus, hdr, state,
               out, kind_agg, exit_agg, lat_counts, terr_counts):
        """Replay one chunk for ``W`` backends; all outputs are written in place."""
        sources  # noqa: B018 (see replay_kernel)
        # the costs an event reads are in its draw rows at its cost level (layout.py), a
        # pure function of the event (spread.cost_level), one for all lanes (a lane group
        # shares the seed); the rest of the model is in the median tables
        dr = N_KINDS * L.N_KIND_COLS * W
        draws = kind_table[dr + L.N_DIR:].view(L.DRAW_DTYPE)
        levels = kind_table[dr + L.DIR_LEVELS]
        seed = ipi_table[L.IPI_COST_SEED * W]
        ipi_row, ipi_step = kind_table[dr + L.DIR_IPI], kind_table[dr + L.DIR_IPI + 1]
        h0 = seed_hash(seed)  # the seed's round of the hash, once
        # Loop invariants in locals: the histogram geometry, and kind codes read as
        # unsigned so that no index needs a negative-wraparound check.
        unit_mag = hdr[L.H_UNIT_MAG]
        half_mag = hdr[L.H_HALF_MAG]
        sub_mask = hdr[L.H_SUB_MASK]
        half_count = hdr[L.H_HALF_COUNT]
        highest = hdr[L.H_HIGHEST]
        counts_len = np.uint64(hdr[L.H_COUNTS_LEN])
        cpu_mask = MASK_ALL if n_cpus >= 64 else (np.uint64(1) << np.uint64(n_cpus)) - np.uint64(1)
        kinds = kind.view(np.uint8)
        zero = splat(np.int64(0), W)
        one = splat(np.int64(1), W)
        never = splat(np.int64(NO_TIME), W)
        hlt = splat(np.int64(HLT), W)
        halts = ne(load(ipi_table, L.IPI_HALTS * W, W), zero)
        row_state = L.N_STATE * W
        n = ts.shape[0]
        block = block_rows(out, n, W)
        for lo in range(0, n, block):
            # each block's rows from 0: LLVM then knows that no index is negative
            hi = min(lo + block, n)
            ts_b, cpu_b, kind_b = ts[lo:hi], cpu[lo:hi], kinds[lo:hi]
            target_b, arg_b, dur_b = target[lo:hi], arg[lo:hi], dur[lo:hi]
            for i in range(hi - lo):
                c = np.int64(cpu_b[i])
                k = np.int64(kind_b[i])
                cs = c * row_state
                kt = k * (L.N_KIND_COLS * W)
                t = ts_b[i]
                kc = kind_table[dr + L.DIR_KIND + 2 * k]  # the event's draw rows
                ic = ipi_row
                if levels > 1:
                    lv = seeded_level(h0, t, c, k, levels)
                    kc += lv * kind_table[dr + L.DIR_KIND + 2 * k + 1]
                    ic += lv * ipi_step
                tv = splat(t, W)
                shift = load(state, cs + L.S_SHIFT * W, W)
                if (IRQ_BITS >> k) & 1:
                    start, latency, stall, exit_ns, terr, exits, reason = deliver(
                        state, kind_table, draws, cs, kt, kc, ic, k, tv, shift, dur_b[i])
                else:
                    want = add(tv, shift)
                    start = vmax(want, load(state, cs + L.S_BUSY * W, W))
                    exit_ns = zero
                    if k == IPI_SEND:
                        tg = target_b[i]
                        if tg >= 0:
                            nt = 1
                        elif tg == -1:
                            nt = n_cpus - 1
                        else:
                            nt = popcount(np.uint64(arg_b[i]) & cpu_mask)
                        fan = splat(np.int64(nt), W)
                        short = both(splat(tg == -1, W),
                                     ne(load(ipi_table, L.IPI_USES_SHORTHAND * W, W), zero))
                        cost = select(short, load(draws, ic + L.D_IPI_SHORT_COST * W, W),
                                      add(load(draws, ic + L.D_IPI_CALL_COST * W, W), mul(
                                          fan, load(draws, ic + L.D_IPI_TARGET_COST * W, W))))
                        exits = select(short, load(ipi_table, L.IPI_SHORT_EXITS * W, W),
                                       add(load(ipi_table, L.IPI_CALL_EXITS * W, W),
                                           mul(fan, load(ipi_table, L.IPI_TARGET_EXITS * W, W))))
                        reason = select(short, load(ipi_table, L.IPI_SHORT_REASON * W, W),
                                        load(ipi_table, L.IPI_REASON * W, W))
                        sent = add(start, cost)
                        # AVIC: a destination found blocked makes the sender exit to wake it
                        blocks = gt(load(ipi_table, L.IPI_BLOCKED_EXITS * W, W), zero)
                        if may(blocks):
                            cost, exits, reason = blocked_send(
                                state, ipi_table, draws, ic, row_state, c, tg,
                                np.uint64(arg_b[i]) & cpu_mask, n_cpus, sent, cost, exits, reason)
                        done = add(start, cost)
                        # a self-IPI whose ICR write exited is injected on that re-entry
                        own = select(gt(exits, zero), one, zero)
                        if tg >= 0:
                            rs = tg * row_state
                            store(state, rs + L.S_IPI_ARRIVE * W,
                                  arrival(state, draws, ic, rs, tg != c, blocks, sent, done))
                            store(state, rs + L.S_IPI_SELF * W, own if tg == c else zero)
                        elif tg == -1:
                            for d in range(n_cpus):
                                if d != c:
                                    store(state, d * row_state + L.S_IPI_ARRIVE * W, arrival(
                                        state, draws, ic, d * row_state, True, blocks, sent, done))
                                    store(state, d * row_state + L.S_IPI_SELF * W, zero)
                        else:  # the set bits of the destination mask
                            m = np.uint64(arg_b[i]) & cpu_mask
                            while m != 0:
                                d = np.int64(lowest_bit(m))
                                store(state, d * row_state + L.S_IPI_ARRIVE * W, arrival(
                                    state, draws, ic, d * row_state, d != c, blocks, sent, done))
                                store(state, d * row_state + L.S_IPI_SELF * W,
                                      own if d == c else zero)
                                m &= m - np.uint64(1)
                    else:
                        cost = load(draws, kc + L.D_ACT_COST * W, W)
                        exits = load(kind_table, kt + L.ACT_EXITS * W, W)
                        reason = load(kind_table, kt + L.ACT_REASON * W, W)
                        if W == 1 or k == EOI:  # one backend: selects, not a mispredicted test
                            cost, exits, reason = eoi_action(state, ipi_table, draws, ic, cs, start,
                                                             k == EOI, cost, exits, reason)
                    # Timer programming as selects, idle kinds behind one bit test: with the
                    # kinds interleaved, the jump table a chain of kind tests compiles to
                    # was mispredicted on most events (measured: ~8% faster this way). Four
                    # lanes' selects cost more than the bit test that skips them.
                    if W == 1 or (TIMER_BITS >> k) & 1:
                        a = arg_b[i]
                        armed = add(splat(a, W), sub(start, tv)) if a >= 0 else never
                        dl = load(state, cs + L.S_DEADLINE * W, W)
                        dl = armed if k == TIMER_ARM else dl
                        store(state, cs + L.S_DEADLINE * W, never if k == TIMER_CANCEL else dl)
                        dlt = load(state, cs + L.S_DEADLINE_TRACE * W, W)
                        dlt = splat(a, W) if k == TIMER_ARM else dlt
                        store(state, cs + L.S_DEADLINE_TRACE * W, dlt)
                    if (IDLE_BITS >> k) & 1:
                        if k == IDLE_ENTER:
                            if may(halts):
                                # sti; hlt with an IPI or the timer already pending: HLT
                                # returns at once (kvm_vcpu_check_block), no blocking
                                pending = pending_at(state, cs, start)
                                blocks = both(halts, eq(pending, splat(False, W)))
                                store(state, cs + L.S_IDLE * W,
                                      select(blocks, one, load(state, cs + L.S_IDLE * W, W)))
                                store(state, cs + L.S_HLT_PENDING * W, select(
                                    halts, select(pending, one, zero),
                                    load(state, cs + L.S_HLT_PENDING * W, W)))
                                store(state, cs + L.S_IRQ_OFF_AT * W, select(
                                    halts, start, load(state, cs + L.S_IRQ_OFF_AT * W, W)))
                                store(state, cs + L.S_IDLE_SINCE * W, select(halts, add(
                                    start, load(draws, ic + L.D_IPI_GUEST_POLL * W, W)),
                                    load(state, cs + L.S_IDLE_SINCE * W, W)))
                                store(state, cs + L.S_WOKE_AT * W, select(
                                    halts, never, load(state, cs + L.S_WOKE_AT * W, W)))
                        else:  # IDLE_EXIT
                            left = ne(load(state, cs + L.S_IDLE * W, W), zero)
                            if may(left):  # left idle without an interrupt
                                store(state, cs + L.S_IDLE * W, zero)
                                store(state, cs + L.S_WOKE_AT * W, select(
                                    left, start, load(state, cs + L.S_WOKE_AT * W, W)))
                            halted = both(gt(exits, zero), eq(reason, hlt))
                            if may(halted):  # the HLT exit's time is the time blocked
                                since = load(state, cs + L.S_IDLE_SINCE * W, W)
                                woke = load(state, cs + L.S_WOKE_AT * W, W)
                                known = both(both(halted, ne(since, never)),
                                             both(ne(woke, never), ge(woke, since)))
                                exit_ns = select(known, sub(woke, since), exit_ns)
                                # left or interrupted while the guest still polled: no HLT
                                pend = load(state, cs + L.S_HLT_PENDING * W, W)
                                polled = both(halted, either(eq(pend, splat(np.int64(2), W)), both(
                                    both(ne(since, never), ne(woke, never)), gt(since, woke))))
                                exits = select(polled, zero, exits)
                                exit_ns = select(polled, zero, exit_ns)
                                store(state, cs + L.S_IDLE_SINCE * W,
                                      select(halted, never, since))
                                # or, with an interrupt pending, an exit that did not block
                                # (none at all under AMD's idle-HLT intercept)
                                quick = both(halted, eq(pend, one))
                                cost = select(quick, load(
                                    draws, ic + L.D_IPI_HLT_RETURN_COST * W, W), cost)
                                exits = select(quick, load(
                                    ipi_table, L.IPI_HLT_RETURN_EXITS * W, W), exits)
                                exit_ns = select(quick, cost, exit_ns)
                                store(state, cs + L.S_HLT_PENDING * W, select(
                                    halted, zero, load(state, cs + L.S_HLT_PENDING * W, W)))
                    exit_ns = select(both(gt(exits, zero), ne(reason, hlt)), cost, exit_ns)
                    end = add(start, cost)
                    store(state, cs + L.S_BUSY * W, end)
                    out_of_guest = both(gt(exits, zero), gt(cost, zero))
                    if may(out_of_guest):  # the vCPU's latest exit: an interrupt waits for it
                        store(state, cs + L.S_HOST_START * W, select(
                            out_of_guest, start, load(state, cs + L.S_HOST_START * W, W)))
                        store(state, cs + L.S_HOST_END * W, select(
                            out_of_guest, end, load(state, cs + L.S_HOST_END * W, W)))
                    stalls = gt(cost, zero)
                    if may(stalls):  # back-to-back stalls form one window
                        window_end = load(state, cs + L.S_STALL_END * W, W)
                        store(state, cs + L.S_STALL_START * W,
                              select(both(stalls, gt(start, window_end)), start,
                                     load(state, cs + L.S_STALL_START * W, W)))
                        store(state, cs + L.S_STALL_END * W, select(stalls, end, window_end))
                        # a stall inside an interrupt handler delays its return (IRET) as it
                        # delays the rest of the guest's work: by the shift it adds
                        on_at = load(state, cs + L.S_IRQ_ON_AT * W, W)
                        inside = both(ge(want, load(state, cs + L.S_HANDLER_AT * W, W)),
                                      gt(on_at, want))
                        store(state, cs + L.S_IRQ_ON_AT * W, select(
                            both(stalls, inside), add(on_at, sub(end, want)), on_at))
                    store(state, cs + L.S_SHIFT * W, sub(end, tv))
                    latency = add(sub(start, want), cost)
                    stall = cost
                    terr = never
                reason = select(ne(exits, zero), reason, zero)
                store_outputs(out, i, W, start, latency, stall, exit_ns, terr, exits,
                              reason)
                ka = k * (L.A_COLS * W)
                store(kind_agg, ka + L.A_COUNT * W, add(load(kind_agg, ka + L.A_COUNT * W, W), one))
                store(kind_agg, ka + L.A_EXITS * W,
                      add(load(kind_agg, ka + L.A_EXITS * W, W), exits))
                store(kind_agg, ka + L.A_STALL * W,
                      add(load(kind_agg, ka + L.A_STALL * W, W), stall))
                for j in range(W):
                    _tally(j, c, k, lane(latency, j), lane(terr, j), lane(exits, j),
                           lane(reason, j), lane(exit_ns, j), n_cpus, exit_agg, lat_counts,
                           terr_counts, unit_mag, half_mag, sub_mask, half_count, highest,
                           counts_len)
        return n

    return replay


#: one backend per pass: the built-in backends' kernel, and the plug-in contract's model
replay_chunk_nb = replay_kernel(1)
#: ``layout.LANES`` built-in backends per pass (``replayer.driver.LaneGroup``)
replay_lanes_nb = replay_kernel(L.LANES)
