"""Four backends in one pass: ``kernel.py``'s replay model with each value a 4-lane vector.

Every built-in backend runs the same loop over the same events; only the cost tables and
the per-vCPU state differ. So four of them can share one pass, with each quantity of the
model held as a tuple of four int64 (one per backend, a "lane") and every choice the
model makes per backend written as a lane-wise select. The kind dispatch, the IPI
destinations and the timer-arm argument depend on the event alone and stay branches.
LLVM's SLP vectorizer turns the tuple arithmetic into AVX2 operations (``jit.py`` enables
it); the histogram slots and the per-(vCPU, reason) exit records stay per lane.

The outputs go either to one cache-sized block of ``N_OUT`` x ``LANES`` int64 per row,
written as vectors, where rows are not kept; or, where they are, to each lane's seven typed
columns (``out`` a tuple of ``LANES`` tuples in ``OUT_NAMES`` order, as ``kernel.py``
takes one): 28 scalar stores per event, which run at memory speed only if no two of the
28 columns start at the same offset in a page (``runner.output_columns``; BENCHMARKS.md).
``store_lanes`` picks the layout at compile time.

Layouts (flat, C order): ``kind_tables`` (N_KINDS, N_KIND_COLS, LANES), ``ipi_tables``
(N_IPI_COLS, LANES), ``state`` (n_cpus, N_STATE, LANES), the block ``out`` (rows, N_OUT,
LANES), ``kind_agg`` (N_KINDS, A_COLS, LANES); lane-major where a lane's part is handed back to its
backend as one contiguous array: ``exit_agg`` (LANES, n_cpus, N_REASONS, E_COLS),
``lat_counts`` (LANES, N_KINDS, counts length), ``terr_counts`` (LANES, counts length).
The semantics are ``kernel.py``'s (and ``reference.py``'s), event for event; the tests
compare all three.
"""

from __future__ import annotations

import numpy as np
from numba import config, types
from numba.extending import overload

from tracebench.backends.kernel import (
    A_COLS,
    A_COUNT,
    A_EXITS,
    A_STALL,
    H_COUNTS_LEN,
    H_HALF_COUNT,
    H_HALF_MAG,
    H_HIGHEST,
    H_SUB_MASK,
    H_UNIT_MAG,
    HLT,
    IDLE_ENTER,
    IDLE_EXIT,
    IPI_IRQ,
    IPI_SEND,
    IRQ_BITS,
    MASK_ALL,
    N_OUT,
    N_STATE,
    NO_TIME,
    OUT_EXIT_NS,
    OUT_EXITS,
    OUT_LATENCY,
    OUT_REASON,
    OUT_STALL,
    OUT_START,
    OUT_TERR,
    S_BUSY,
    S_DEADLINE,
    S_DEADLINE_TRACE,
    S_IDLE,
    S_IDLE_SINCE,
    S_IPI_ARRIVE,
    S_SHIFT,
    S_STALL_END,
    S_STALL_START,
    S_WOKE_AT,
    TIMER_ARM,
    TIMER_CANCEL,
    TIMER_IRQ,
    _slot,
    record_exits,
    store_outputs,
)
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
from tracebench.jit import kernel, lowest_bit, popcount
from tracebench.schema import N_KINDS

#: backends per pass: four int64 fill one AVX2 register
LANES = 4

# Lane-wise operations on 4-tuples. Written out per lane (no loop over a tuple index),
# so each is straight-line code the SLP vectorizer packs into one vector instruction.


@kernel
def load(a, o):
    return (a[o], a[o + 1], a[o + 2], a[o + 3])


@kernel
def store(a, o, v):
    a[o] = v[0]
    a[o + 1] = v[1]
    a[o + 2] = v[2]
    a[o + 3] = v[3]


@kernel
def splat(x):
    return (x, x, x, x)


@kernel
def add(a, b):
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


@kernel
def sub(a, b):
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3])


@kernel
def mul(a, b):
    return (a[0] * b[0], a[1] * b[1], a[2] * b[2], a[3] * b[3])


@kernel
def vmax(a, b):
    return (max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@kernel
def select(m, a, b):
    """``a`` where the mask ``m`` is true, else ``b``, lane by lane."""
    return (a[0] if m[0] else b[0], a[1] if m[1] else b[1], a[2] if m[2] else b[2],
            a[3] if m[3] else b[3])


@kernel
def eq(a, b):
    return (a[0] == b[0], a[1] == b[1], a[2] == b[2], a[3] == b[3])


@kernel
def ne(a, b):
    return (a[0] != b[0], a[1] != b[1], a[2] != b[2], a[3] != b[3])


@kernel
def gt(a, b):
    return (a[0] > b[0], a[1] > b[1], a[2] > b[2], a[3] > b[3])


@kernel
def ge(a, b):
    return (a[0] >= b[0], a[1] >= b[1], a[2] >= b[2], a[3] >= b[3])


@kernel
def both(a, b):
    return (a[0] & b[0], a[1] & b[1], a[2] & b[2], a[3] & b[3])


def store_lanes(out, i, start, latency, stall, exit_ns, terr, exits, reason):
    """Row ``i``'s outputs for every lane: into each lane's typed columns (``out`` a tuple
    of lanes), or as vectors into the row block (plain Python when the JIT is off; compiled,
    the overload below picks one layout)."""
    if isinstance(out, tuple):
        for lane in range(LANES):
            store_outputs(out[lane], i, start[lane], latency[lane], stall[lane],
                          exit_ns[lane], terr[lane], exits[lane], reason[lane])
    else:
        _store_block(out, i, start, latency, stall, exit_ns, terr, exits, reason)


@kernel
def _store_block(out, i, start, latency, stall, exit_ns, terr, exits, reason):
    o = i * (N_OUT * LANES)
    store(out, o + OUT_START * LANES, start)
    store(out, o + OUT_LATENCY * LANES, latency)
    store(out, o + OUT_STALL * LANES, stall)
    store(out, o + OUT_EXIT_NS * LANES, exit_ns)
    store(out, o + OUT_TERR * LANES, terr)
    store(out, o + OUT_EXITS * LANES, exits)
    store(out, o + OUT_REASON * LANES, reason)


if not config.DISABLE_JIT:

    @overload(store_lanes)
    def _store_lanes_nb(out, i, start, latency, stall, exit_ns, terr, exits, reason):
        if isinstance(out, types.BaseTuple):
            def columns(out, i, start, latency, stall, exit_ns, terr, exits, reason):
                # written out per lane, as the tuple helpers are: straight-line stores
                store_outputs(out[0], i, start[0], latency[0], stall[0], exit_ns[0], terr[0],
                              exits[0], reason[0])
                store_outputs(out[1], i, start[1], latency[1], stall[1], exit_ns[1], terr[1],
                              exits[1], reason[1])
                store_outputs(out[2], i, start[2], latency[2], stall[2], exit_ns[2], terr[2],
                              exits[2], reason[2])
                store_outputs(out[3], i, start[3], latency[3], stall[3], exit_ns[3], terr[3],
                              exits[3], reason[3])
            return columns

        def block(out, i, start, latency, stall, exit_ns, terr, exits, reason):
            _store_block(out, i, start, latency, stall, exit_ns, terr, exits, reason)
        return block


@kernel
def lane_tail(lane, c, k, latency, terr, exits, reason, exit_ns, n_cpus, exit_agg, lat_counts,
              terr_counts, unit_mag, half_mag, sub_mask, half_count, highest, counts_len):
    """Lane ``lane``'s exit record and histogram counts (scatters: no vector form in AVX2)."""
    record_exits(exit_agg, lane * n_cpus + c, reason, exits, exit_ns)
    slot = np.uint64(_slot(latency, unit_mag, half_mag, sub_mask, half_count, highest))
    lat_counts[(np.uint64(lane * N_KINDS) + np.uint64(k)) * counts_len + slot] += 1
    if terr != NO_TIME:
        terr_counts[np.uint64(lane) * counts_len + slot] += 1


@kernel
def replay_lanes_nb(ts, cpu, kind, target, arg, kind_tables, ipi_tables, n_cpus, hdr, state,
                    out, kind_agg, exit_agg, lat_counts, terr_counts):
    """Replay events for four backends; layouts in the module docstring.

    ``out`` (a row block, or each lane's typed columns) holds at least ``len(ts)`` rows.
    Returns the rows processed."""
    unit_mag = hdr[H_UNIT_MAG]
    half_mag = hdr[H_HALF_MAG]
    sub_mask = hdr[H_SUB_MASK]
    half_count = hdr[H_HALF_COUNT]
    highest = hdr[H_HIGHEST]
    counts_len = np.uint64(hdr[H_COUNTS_LEN])
    cpu_mask = MASK_ALL if n_cpus >= 64 else (np.uint64(1) << np.uint64(n_cpus)) - np.uint64(1)
    kinds = kind.view(np.uint8)
    zero = splat(0)
    never = splat(NO_TIME)
    hlt = splat(HLT)
    halts = ne(load(ipi_tables, HALTS * LANES), zero)
    n = ts.shape[0]
    row_state = N_STATE * LANES
    for i in range(n):
        c = np.int64(cpu[i])
        k = np.int64(kinds[i])
        cs = c * row_state
        kt = k * (N_KIND_COLS * LANES)
        t = ts[i]
        tv = splat(t)
        shift = load(state, cs + S_SHIFT * LANES)
        if (IRQ_BITS >> k) & 1:
            matched = (False, False, False, False)
            if k == TIMER_IRQ:
                # matched: the armed deadline explains this interrupt (kernel.py)
                dl = load(state, cs + S_DEADLINE * LANES)
                matched = both(ne(dl, never), ge(tv, load(state, cs + S_DEADLINE_TRACE * LANES)))
                arrive = select(matched, dl, add(tv, shift))
                store(state, cs + S_DEADLINE * LANES, select(matched, never, dl))
            elif k == IPI_IRQ:
                sent = load(state, cs + S_IPI_ARRIVE * LANES)
                arrive = select(eq(sent, never), tv, sent)
                store(state, cs + S_IPI_ARRIVE * LANES, never)
            else:
                arrive = tv
            idle = ne(load(state, cs + S_IDLE * LANES), zero)
            ready = add(add(arrive, load(kind_tables, kt + IRQ_HOST * LANES)),
                        select(idle, load(kind_tables, kt + IRQ_WAKE * LANES),
                               load(kind_tables, kt + IRQ_RUN * LANES)))
            stall = select(idle, zero, load(kind_tables, kt + IRQ_RUN_STALL * LANES))
            exits = select(idle, zero, load(kind_tables, kt + IRQ_RUN_EXITS * LANES))
            reason = select(idle, zero, load(kind_tables, kt + IRQ_RUN_REASON * LANES))
            window_start = load(state, cs + S_STALL_START * LANES)
            window_end = load(state, cs + S_STALL_END * LANES)
            start = select(both(ge(ready, window_start), gt(window_end, ready)), window_end,
                           ready)
            latency = sub(start, arrive)
            store(state, cs + S_IDLE * LANES, zero)
            store(state, cs + S_WOKE_AT * LANES,
                  select(idle, start, load(state, cs + S_WOKE_AT * LANES)))
            store(state, cs + S_BUSY * LANES, vmax(load(state, cs + S_BUSY * LANES), start))
            lag = sub(start, tv)
            store(state, cs + S_SHIFT * LANES, select(idle, lag, vmax(add(shift, stall), lag)))
            exit_ns = select(gt(exits, zero), stall, zero)
            terr = select(matched, latency, never)
        else:
            want = add(tv, shift)
            start = vmax(want, load(state, cs + S_BUSY * LANES))
            exit_ns = zero
            if k == IPI_SEND:
                tg = target[i]
                if tg >= 0:
                    nt = 1
                elif tg == -1:
                    nt = n_cpus - 1
                else:
                    nt = popcount(np.uint64(arg[i]) & cpu_mask)
                fan = splat(nt)
                short = both(splat(tg == -1), ne(load(ipi_tables, IPI_USES_SHORT * LANES), zero))
                cost = select(short, load(ipi_tables, IPI_SHORT_COST * LANES),
                              add(load(ipi_tables, IPI_CALL_COST * LANES),
                                  mul(fan, load(ipi_tables, IPI_TARGET_COST * LANES))))
                exits = select(short, load(ipi_tables, IPI_SHORT_EXITS * LANES),
                               add(load(ipi_tables, IPI_CALL_EXITS * LANES),
                                   mul(fan, load(ipi_tables, IPI_TARGET_EXITS * LANES))))
                reason = select(short, load(ipi_tables, IPI_SHORT_REASON * LANES),
                                load(ipi_tables, IPI_REASON * LANES))
                sent = add(start, cost)
                if tg >= 0:
                    store(state, tg * row_state + S_IPI_ARRIVE * LANES, sent)
                elif tg == -1:
                    for d in range(n_cpus):
                        if d != c:
                            store(state, d * row_state + S_IPI_ARRIVE * LANES,
                                  sent)
                else:  # the set bits of the destination mask
                    m = np.uint64(arg[i]) & cpu_mask
                    while m != 0:
                        store(state, np.int64(lowest_bit(m)) * row_state + S_IPI_ARRIVE * LANES,
                              sent)
                        m &= m - np.uint64(1)
            else:
                cost = load(kind_tables, kt + ACT_COST * LANES)
                exits = load(kind_tables, kt + ACT_EXITS * LANES)
                reason = load(kind_tables, kt + ACT_REASON * LANES)
                if k == TIMER_ARM:
                    a = arg[i]
                    armed = add(splat(a), sub(start, tv)) if a >= 0 else never
                    store(state, cs + S_DEADLINE * LANES, armed)
                    store(state, cs + S_DEADLINE_TRACE * LANES, splat(a))
                elif k == TIMER_CANCEL:
                    store(state, cs + S_DEADLINE * LANES, never)
                elif k == IDLE_ENTER:
                    store(state, cs + S_IDLE * LANES,
                          select(halts, splat(1), load(state, cs + S_IDLE * LANES)))
                    store(state, cs + S_IDLE_SINCE * LANES,
                          select(halts, start, load(state, cs + S_IDLE_SINCE * LANES)))
                    store(state, cs + S_WOKE_AT * LANES,
                          select(halts, never, load(state, cs + S_WOKE_AT * LANES)))
                elif k == IDLE_EXIT:
                    left = ne(load(state, cs + S_IDLE * LANES), zero)  # without an interrupt
                    woke = select(left, start, load(state, cs + S_WOKE_AT * LANES))
                    since = load(state, cs + S_IDLE_SINCE * LANES)
                    halted = both(gt(exits, zero), eq(reason, hlt))
                    known = both(both(halted, ne(since, never)),
                                 both(ne(woke, never), ge(woke, since)))
                    exit_ns = select(known, sub(woke, since), zero)
                    store(state, cs + S_IDLE * LANES, zero)
                    store(state, cs + S_WOKE_AT * LANES, woke)
                    store(state, cs + S_IDLE_SINCE * LANES, select(halted, never, since))
            exit_ns = select(both(gt(exits, zero), ne(reason, hlt)), cost, exit_ns)
            end = add(start, cost)
            window_end = load(state, cs + S_STALL_END * LANES)
            stalls = gt(cost, zero)  # back-to-back stalls form one window
            store(state, cs + S_BUSY * LANES, end)
            store(state, cs + S_STALL_START * LANES,
                  select(both(stalls, gt(start, window_end)), start,
                         load(state, cs + S_STALL_START * LANES)))
            store(state, cs + S_STALL_END * LANES, select(stalls, end, window_end))
            store(state, cs + S_SHIFT * LANES, sub(end, tv))
            latency = add(sub(start, want), cost)
            stall = cost
            terr = never
        reason = select(ne(exits, zero), reason, zero)
        store_lanes(out, i, start, latency, stall, exit_ns, terr, exits, reason)
        ka = k * (A_COLS * LANES)
        store(kind_agg, ka + A_COUNT * LANES, add(load(kind_agg, ka + A_COUNT * LANES), splat(1)))
        store(kind_agg, ka + A_EXITS * LANES, add(load(kind_agg, ka + A_EXITS * LANES), exits))
        store(kind_agg, ka + A_STALL * LANES, add(load(kind_agg, ka + A_STALL * LANES), stall))
        for lane in range(LANES):
            lane_tail(lane, c, k, latency[lane], terr[lane], exits[lane], reason[lane],
                      exit_ns[lane], n_cpus, exit_agg, lat_counts, terr_counts, unit_mag,
                      half_mag, sub_mask, half_count, highest, counts_len)
    return n


@kernel
def replay_lanes_discarding_nb(ts, cpu, kind, target, arg, kind_tables, ipi_tables, n_cpus,
                               hdr, state, out_block, kind_agg, exit_agg, lat_counts,
                               terr_counts):
    """``replay_lanes_nb`` over a chunk in blocks of ``len(out_block) // (N_OUT * LANES)``
    rows that overwrite one cache-sized output block."""
    block = out_block.shape[0] // (N_OUT * LANES)
    n = ts.shape[0]
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        replay_lanes_nb(ts[lo:hi], cpu[lo:hi], kind[lo:hi], target[lo:hi], arg[lo:hi],
                        kind_tables, ipi_tables, n_cpus, hdr, state, out_block, kind_agg,
                        exit_agg, lat_counts, terr_counts)
    return n
