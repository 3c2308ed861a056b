"""The compiled replay loop shared by every composed backend (``reference.py`` is its twin).

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
* After an interrupt, a running vCPU's timeline is no earlier than the handler and
  still owes the stall (``shift = max(shift + stall, start - ts)``); a halted vCPU's
  idle time absorbed any lag, so its timeline restarts at the handler
  (``shift = start - ts``). A vCPU's own events never go back in time.
* A timer interrupt is matched to the armed deadline only if it came at or after
  that deadline in the trace; an unmatched one (no arm seen, or one that fired
  before the armed deadline: programmed by a write the trace missed) arrives at
  ``ts + shift`` and has no timer error. An unmatched IPI arrives at its trace
  time; the latest IPI sent to a vCPU wins.

The kernel is pure: arrays in, preallocated arrays out, no allocation per event.

Calling convention (the contract for plug-in kernels too): every array argument is
one-dimensional and C-contiguous; tables, state and aggregates are the row-major
flattening of their 2-D forms (``BackendRun`` keeps the 2-D views). ``out`` receives the
per-event outputs: a tuple of the seven typed columns named in ``OUT_NAMES`` (what a
plug-in kernel is given), or, for the built-in kernel when the rows are discarded, one
cache-sized block of ``N_OUT`` int64 columns per row (``store_outputs`` picks the layout
at compile time). Numba hands a 2-D array's strides to the loop as run-time values and
each array as its own set of arguments: flat arrays ran the loop 1-2 % faster, and one
output block instead of seven arrays where rows are not kept 8-10 % (BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
from numba import config, types
from numba.extending import overload

from tracebench.backends.model import (
    ACT_COST,
    ACT_EXITS,
    ACT_REASON,
    HALTS,
    IPI_CALL_COST,
    IPI_CALL_EXITS,
    IPI_REASON,
    IPI_SHORT_COST,
    IPI_SHORT_EXITS,
    IPI_SHORT_REASON,
    IPI_TARGET_COST,
    IPI_TARGET_EXITS,
    IPI_USES_SHORT,
    IRQ_HOST,
    IRQ_RUN,
    IRQ_RUN_EXITS,
    IRQ_RUN_REASON,
    IRQ_RUN_STALL,
    IRQ_WAKE,
    N_KIND_COLS,
)
from tracebench.jit import bit_length, kernel, lowest_bit, popcount
from tracebench.schema import N_REASONS, EventKind, ExitReason

# Plain ints: numba freezes module globals at compile time.
TIMER_ARM = int(EventKind.TIMER_ARM)
TIMER_CANCEL = int(EventKind.TIMER_CANCEL)
TIMER_IRQ = int(EventKind.TIMER_IRQ)
DEVICE_IRQ = int(EventKind.DEVICE_IRQ)
IPI_SEND = int(EventKind.IPI_SEND)
IPI_IRQ = int(EventKind.IPI_IRQ)
IDLE_ENTER = int(EventKind.IDLE_ENTER)
IDLE_EXIT = int(EventKind.IDLE_EXIT)
HLT = int(ExitReason.HLT)
#: kinds whose time is set outside the vCPU, as a bit set (one test instead of three)
IRQ_BITS = (1 << TIMER_IRQ) | (1 << DEVICE_IRQ) | (1 << IPI_IRQ)
IDLE_BITS = (1 << IDLE_ENTER) | (1 << IDLE_EXIT)

#: a destination mask (``target == -2``) names vCPUs 0..63; bits past ``n_cpus`` are ignored
MASK_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
#: per-vCPU state columns
(S_SHIFT, S_BUSY, S_DEADLINE, S_IPI_ARRIVE, S_IDLE, S_IDLE_SINCE, S_WOKE_AT,
 S_DEADLINE_TRACE, S_STALL_START, S_STALL_END) = range(10)
N_STATE = 10
#: "no time" in state and in the timer-error output
NO_TIME = -1
#: per-event outputs, in this order; in the discarded-rows block one int64 row of N_OUT per
#: event (column 7 is padding: a row is one 64-byte cache line)
(OUT_START, OUT_LATENCY, OUT_STALL, OUT_EXIT_NS, OUT_TERR, OUT_EXITS, OUT_REASON) = range(7)
N_OUT = 8
OUT_NAMES = ("start_ns", "latency_ns", "stall_ns", "exit_ns", "timer_error_ns", "exits",
             "exit_reason")
#: aggregate columns: per kind, and per (vCPU, reason)
A_COUNT, A_EXITS, A_STALL = range(3)
A_COLS = 3
E_COUNT, E_TOTAL, E_MIN, E_MAX = range(4)
E_COLS = 4
#: HdrHistogram geometry passed to the kernel (see hist.py)
H_UNIT_MAG, H_HALF_MAG, H_SUB_MASK, H_HALF_COUNT, H_COUNTS_LEN, H_HIGHEST = range(6)


def new_state(n_cpus: int) -> np.ndarray:
    """Per-vCPU state, ``(n_cpus, N_STATE)``; kernels take it flattened."""
    state = np.zeros((n_cpus, N_STATE), dtype=np.int64)
    state[:, S_DEADLINE] = NO_TIME
    state[:, S_DEADLINE_TRACE] = NO_TIME
    state[:, S_IPI_ARRIVE] = NO_TIME
    state[:, S_IDLE_SINCE] = NO_TIME
    state[:, S_WOKE_AT] = NO_TIME
    return state


def store_outputs(out, i, start, latency, stall, exit_ns, terr, exits, reason):
    """Row ``i``'s outputs into ``out``: a tuple of typed columns, or row-major int64 rows
    (plain Python when the JIT is off; compiled, the overload below picks one layout)."""
    if isinstance(out, tuple):
        out[0][i], out[1][i], out[2][i], out[3][i] = start, latency, stall, exit_ns
        out[4][i], out[5][i], out[6][i] = terr, exits, reason
    else:
        o = i * N_OUT
        out[o:o + 7] = start, latency, stall, exit_ns, terr, exits, reason


if not config.DISABLE_JIT:

    @overload(store_outputs)
    def _store_outputs_nb(out, i, start, latency, stall, exit_ns, terr, exits, reason):
        if isinstance(out, types.BaseTuple):
            def columns(out, i, start, latency, stall, exit_ns, terr, exits, reason):
                out[0][i] = start
                out[1][i] = latency
                out[2][i] = stall
                out[3][i] = exit_ns
                out[4][i] = terr
                out[5][i] = exits
                out[6][i] = reason
            return columns

        def rows(out, i, start, latency, stall, exit_ns, terr, exits, reason):
            o = i * N_OUT
            out[o + OUT_START] = start
            out[o + OUT_LATENCY] = latency
            out[o + OUT_STALL] = stall
            out[o + OUT_EXIT_NS] = exit_ns
            out[o + OUT_TERR] = terr
            out[o + OUT_EXITS] = exits
            out[o + OUT_REASON] = reason
        return rows


@kernel
def _slot(v, unit_mag, half_mag, sub_mask, half_count, highest):
    """HdrHistogram's counts index of ``v`` (clamped to [0, highest]), geometry unpacked."""
    v = min(max(v, 0), highest)
    bucket = bit_length(v | sub_mask) - unit_mag - (half_mag + 1)
    return ((bucket + 1) << half_mag) + (v >> (bucket + unit_mag)) - half_count


@kernel
def hdr_index(value, hdr):
    """Counts-array index of ``value`` (clamped to [0, highest]); HdrHistogram's formula."""
    return _slot(value, hdr[H_UNIT_MAG], hdr[H_HALF_MAG], hdr[H_SUB_MASK], hdr[H_HALF_COUNT],
                 hdr[H_HIGHEST])


@kernel
def record_exits(exit_agg, c, reason, n, exit_ns):
    """Add ``n`` exits of ``exit_ns`` in all to the flat ``exit_agg`` row of (vCPU, reason)."""
    if n > 0:
        per = exit_ns if n == 1 else exit_ns // n  # one exit is the common case: no division
        b = (c * N_REASONS + reason) * E_COLS
        exit_agg[b + E_COUNT] += n
        exit_agg[b + E_TOTAL] += exit_ns
        exit_agg[b + E_MIN] = min(exit_agg[b + E_MIN], per)
        exit_agg[b + E_MAX] = max(exit_agg[b + E_MAX], per)


@kernel
def replay_chunk_nb(ts, cpu, kind, target, arg, kind_table, ipi_table, n_cpus, hdr, state, out,
                    kind_agg, exit_agg, lat_counts, terr_counts):
    """Replay one chunk; all outputs are written in place. Returns the rows processed.

    Flat arrays (see the module docstring): ``kind_table`` (N_KINDS x N_KIND_COLS),
    ``state`` (n_cpus x N_STATE), ``out`` (the OUT_NAMES columns as a tuple, or rows x N_OUT
    int64), ``kind_agg`` (N_KINDS x A_COLS),
    ``exit_agg`` (n_cpus x N_REASONS x E_COLS), ``lat_counts`` (N_KINDS x counts length).
    """
    halts = ipi_table[HALTS] != 0
    # Loop invariants in locals: the histogram geometry, and kind codes read as unsigned
    # so that no index needs a negative-wraparound check.
    unit_mag = hdr[H_UNIT_MAG]
    half_mag = hdr[H_HALF_MAG]
    sub_mask = hdr[H_SUB_MASK]
    half_count = hdr[H_HALF_COUNT]
    highest = hdr[H_HIGHEST]
    counts_len = np.uint64(hdr[H_COUNTS_LEN])
    cpu_mask = MASK_ALL if n_cpus >= 64 else (np.uint64(1) << np.uint64(n_cpus)) - np.uint64(1)
    kinds = kind.view(np.uint8)
    n = ts.shape[0]
    for i in range(n):
        c = np.int64(cpu[i])
        k = np.int64(kinds[i])
        cs = c * N_STATE
        kt = k * N_KIND_COLS
        t = ts[i]
        terr = NO_TIME
        exit_ns = 0
        if (IRQ_BITS >> k) & 1:
            if k == TIMER_IRQ:
                # The armed deadline explains this interrupt only if, in the trace, the
                # interrupt came at or after it; an earlier one was programmed untraced.
                matched = state[cs + S_DEADLINE] != NO_TIME and state[cs + S_DEADLINE_TRACE] <= t
                if matched:
                    arrive = state[cs + S_DEADLINE]
                    state[cs + S_DEADLINE] = NO_TIME
                else:
                    arrive = t + state[cs + S_SHIFT]
            elif k == IPI_IRQ:
                arrive = state[cs + S_IPI_ARRIVE]
                if arrive == NO_TIME:
                    arrive = t
                else:
                    state[cs + S_IPI_ARRIVE] = NO_TIME
            else:
                arrive = t
            if state[cs + S_IDLE] != 0:
                ready = arrive + kind_table[kt + IRQ_HOST] + kind_table[kt + IRQ_WAKE]
                stall = 0
                exits = 0
                reason = 0
                state[cs + S_IDLE] = 0
                woke = True
            else:
                ready = arrive + kind_table[kt + IRQ_HOST] + kind_table[kt + IRQ_RUN]
                stall = kind_table[kt + IRQ_RUN_STALL]
                exits = kind_table[kt + IRQ_RUN_EXITS]
                reason = kind_table[kt + IRQ_RUN_REASON]
                woke = False
            # Queue only behind the stall in progress when delivery is ready; an
            # interrupt that is ready before that stall began was taken before it.
            if state[cs + S_STALL_START] <= ready < state[cs + S_STALL_END]:
                start = state[cs + S_STALL_END]
            else:
                start = ready
            if woke:
                state[cs + S_WOKE_AT] = start
            state[cs + S_BUSY] = max(state[cs + S_BUSY], start)
            if woke:  # idling absorbed any lag: the timeline restarts at the handler
                state[cs + S_SHIFT] = start - t
            else:  # the interrupted work still has to be done, after the stall
                state[cs + S_SHIFT] = max(state[cs + S_SHIFT] + stall, start - t)
            latency = start - arrive
            if k == TIMER_IRQ and matched:
                terr = latency  # counted below: same histogram slot as the latency
            if exits > 0:
                exit_ns = stall
        else:
            want = t + state[cs + S_SHIFT]
            start = max(want, state[cs + S_BUSY])
            if k == IPI_SEND:
                tg = target[i]
                if tg == -1 and ipi_table[IPI_USES_SHORT] != 0:
                    cost = ipi_table[IPI_SHORT_COST]
                    exits = ipi_table[IPI_SHORT_EXITS]
                    reason = ipi_table[IPI_SHORT_REASON]
                else:
                    if tg >= 0:
                        nt = 1
                    elif tg == -1:
                        nt = n_cpus - 1
                    else:
                        nt = popcount(np.uint64(arg[i]) & cpu_mask)
                    cost = ipi_table[IPI_CALL_COST] + nt * ipi_table[IPI_TARGET_COST]
                    exits = ipi_table[IPI_CALL_EXITS] + nt * ipi_table[IPI_TARGET_EXITS]
                    reason = ipi_table[IPI_REASON]
                sent = start + cost
                if tg >= 0:
                    state[tg * N_STATE + S_IPI_ARRIVE] = sent
                elif tg == -1:
                    for d in range(n_cpus):
                        if d != c:
                            state[d * N_STATE + S_IPI_ARRIVE] = sent
                else:  # the set bits of the destination mask
                    m = np.uint64(arg[i]) & cpu_mask
                    while m != 0:
                        state[np.int64(lowest_bit(m)) * N_STATE + S_IPI_ARRIVE] = sent
                        m &= m - np.uint64(1)
            else:
                cost = kind_table[kt + ACT_COST]
                exits = kind_table[kt + ACT_EXITS]
                reason = kind_table[kt + ACT_REASON]
            # Timer programming as selects, idle kinds behind one bit test: with the kinds
            # interleaved, the jump table a chain of kind tests compiles to was mispredicted
            # on most events (measured: ~8% faster this way).
            a = arg[i]
            dl = state[cs + S_DEADLINE]
            armed = a + (start - t) if a >= 0 else NO_TIME
            dl = armed if k == TIMER_ARM else dl
            state[cs + S_DEADLINE] = NO_TIME if k == TIMER_CANCEL else dl
            dlt = state[cs + S_DEADLINE_TRACE]
            state[cs + S_DEADLINE_TRACE] = a if k == TIMER_ARM else dlt
            if (IDLE_BITS >> k) & 1:
                if k == IDLE_ENTER:
                    if halts:
                        state[cs + S_IDLE] = 1
                        state[cs + S_IDLE_SINCE] = start
                        state[cs + S_WOKE_AT] = NO_TIME
                else:  # IDLE_EXIT
                    if state[cs + S_IDLE] != 0:  # left idle without an interrupt
                        state[cs + S_IDLE] = 0
                        state[cs + S_WOKE_AT] = start
                    if exits > 0 and reason == HLT:
                        since = state[cs + S_IDLE_SINCE]
                        woke_at = state[cs + S_WOKE_AT]
                        if since != NO_TIME and woke_at != NO_TIME and woke_at >= since:
                            exit_ns = woke_at - since
                        state[cs + S_IDLE_SINCE] = NO_TIME
            stall = cost
            if exits > 0 and reason != HLT:
                exit_ns = cost
            state[cs + S_BUSY] = start + cost
            if cost > 0:  # back-to-back stalls form one window
                if start > state[cs + S_STALL_END]:
                    state[cs + S_STALL_START] = start
                state[cs + S_STALL_END] = start + cost
            state[cs + S_SHIFT] = start + cost - t
            latency = start - want + cost
        if exits == 0:
            reason = 0
        store_outputs(out, i, start, latency, stall, exit_ns, terr, exits, reason)
        ka = k * A_COLS
        kind_agg[ka + A_COUNT] += 1
        kind_agg[ka + A_EXITS] += exits
        kind_agg[ka + A_STALL] += stall
        record_exits(exit_agg, c, reason, exits, exit_ns)
        slot = np.uint64(_slot(latency, unit_mag, half_mag, sub_mask, half_count, highest))
        lat_counts[np.uint64(k) * counts_len + slot] += 1
        if terr != NO_TIME:
            terr_counts[slot] += 1
    return n


@kernel
def replay_discarding_nb(ts, cpu, kind, target, arg, kind_table, ipi_table, n_cpus, hdr, state,
                         out_block, kind_agg, exit_agg, lat_counts, terr_counts):
    """``replay_chunk_nb`` for the aggregates only: blocks of ``len(out_block) // N_OUT`` rows
    overwrite one cache-sized output block, with no Python call per block."""
    block = out_block.shape[0] // N_OUT
    n = ts.shape[0]
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        replay_chunk_nb(ts[lo:hi], cpu[lo:hi], kind[lo:hi], target[lo:hi], arg[lo:hi],
                        kind_table, ipi_table, n_cpus, hdr, state, out_block, kind_agg,
                        exit_agg, lat_counts, terr_counts)
    return n
