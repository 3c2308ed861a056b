"""Where the replay loop (``kernel.py``) puts each row's outputs, picked at compile time:
one lane's typed columns (``layout.Out``), each lane's (a tuple of lanes), or the int64
block of ``(rows, N_OUT, W)`` that the loop overwrites when rows are not kept.
"""

from __future__ import annotations

from numba import config, types
from numba.extending import overload

from tracebench.backends import layout as L
from tracebench.backends.lanewise import lane, store


def store_outputs(out, r, w, start, latency, stall, exit_ns, terr, exits, reason):
    """Row ``r``'s outputs, in ``layout.Out`` order: into one lane's typed columns, each
    lane's (``out`` a tuple of lanes), or the int64 block (plain Python when the JIT is off;
    compiled, the overload below picks one form)."""
    values = (start, latency, stall, exit_ns, terr, exits, reason)
    if isinstance(out, tuple) and isinstance(out[0], tuple):
        for j, cols in enumerate(out):
            store_outputs(cols, r, 1, *(lane(v, j) for v in values))
    elif isinstance(out, tuple):
        for col, v in zip(out, values, strict=True):
            col[r] = v
    else:
        for col, v in enumerate(values):
            store(out, (r * L.N_OUT + col) * w, v)


def block_rows(out, n, w):
    """Rows per pass over ``out``: all ``n`` into columns, or as many as the block holds."""
    return max(n, 1) if isinstance(out, tuple) else out.shape[0] // (L.N_OUT * w)


if not config.DISABLE_JIT:

    @overload(store_outputs)
    def _store_outputs_nb(out, r, w, start, latency, stall, exit_ns, terr, exits, reason):
        if isinstance(out, types.BaseTuple) and isinstance(out[0], types.BaseTuple):
            def lanes(out, r, w, start, latency, stall, exit_ns, terr, exits, reason):
                # written out per lane, as lanewise.py's operations are: straight-line stores
                store_outputs(out[0], r, 1, start[0], latency[0], stall[0], exit_ns[0],
                              terr[0], exits[0], reason[0])
                store_outputs(out[1], r, 1, start[1], latency[1], stall[1], exit_ns[1],
                              terr[1], exits[1], reason[1])
                store_outputs(out[2], r, 1, start[2], latency[2], stall[2], exit_ns[2],
                              terr[2], exits[2], reason[2])
                store_outputs(out[3], r, 1, start[3], latency[3], stall[3], exit_ns[3],
                              terr[3], exits[3], reason[3])
            return lanes
        if isinstance(out, types.BaseTuple):
            def columns(out, r, w, start, latency, stall, exit_ns, terr, exits, reason):
                out[L.OUT_START_NS][r] = start
                out[L.OUT_LATENCY_NS][r] = latency
                out[L.OUT_STALL_NS][r] = stall
                out[L.OUT_EXIT_NS][r] = exit_ns
                out[L.OUT_TIMER_ERROR_NS][r] = terr
                out[L.OUT_EXITS][r] = exits
                out[L.OUT_EXIT_REASON][r] = reason
            return columns

        def block(out, r, w, start, latency, stall, exit_ns, terr, exits, reason):
            o = r * (L.N_OUT * w)
            store(out, o + L.OUT_START_NS * w, start)
            store(out, o + L.OUT_LATENCY_NS * w, latency)
            store(out, o + L.OUT_STALL_NS * w, stall)
            store(out, o + L.OUT_EXIT_NS * w, exit_ns)
            store(out, o + L.OUT_TIMER_ERROR_NS * w, terr)
            store(out, o + L.OUT_EXITS * w, exits)
            store(out, o + L.OUT_EXIT_REASON * w, reason)
        return block

    @overload(block_rows)
    def _block_rows_nb(out, n, w):
        if isinstance(out, types.BaseTuple):
            return lambda out, n, w: max(n, 1)
        return lambda out, n, w: out.shape[0] // (L.N_OUT * w)
