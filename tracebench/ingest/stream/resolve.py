"""Relations between candidate rows: handler durations, duplicate IPIs, implied EOIs, exits.

Every relation looks at the neighbouring row *on the same CPU* among a few kinds
(what ``shift().over("cpu")`` on a filtered, sorted frame gives), so one compiled
pass keeps, per CPU, the last row seen of each kind group. The streaming driver
calls :func:`resolve` on a window of rows that overlaps the previous one (see
``window.py``), so relations that cross a chunk boundary are still found.
"""

from __future__ import annotations

import numpy as np

from tracebench.ingest.rules.base import (
    EOI_INFERRED,
    EOI_TRACED,
    H_EXIT,
    H_EXIT_HINT,
    H_IPI_HINT,
    H_KVM_ENTRY,
    H_KVM_EXIT,
)
from tracebench.jit import kernel
from tracebench.schema import EventKind as K

#: an ipi_send_cpu is the same IPI as the ICR write to the same target that follows it on
#: its CPU (the guest can be descheduled in between: 1.2 ms seen in fc-guest-mixed)
IPI_DUP_WINDOW_NS = 10_000_000
#: a traced EOI stands for the interrupt whose entry follows it within this time
EOI_BEFORE_ENTRY_NS = 50_000
#: a gap longer than this between two traced moments inside a hard-irq handler is the
#: recording vCPU preempted by its host (steal), not guest work. In fc-guest-mixed the
#: in-handler gaps not ending at an exit fall into guest work (98.6 % under 16 us) and
#: host preemption (64 us to 134 ms), with the fewest between 32 and 64 us.
STEAL_GAP_NS = 50_000

_TIMER_IRQ, _IPI_IRQ, _DEVICE_IRQ = int(K.TIMER_IRQ), int(K.IPI_IRQ), int(K.DEVICE_IRQ)
_IPI_SEND, _EOI = int(K.IPI_SEND), int(K.EOI)
_ARM, _CANCEL, _TPR, _APIC_WRITE = (
    int(K.TIMER_ARM), int(K.TIMER_CANCEL), int(K.TPR_WRITE), int(K.APIC_WRITE)
)  # fmt: skip
_IDLE_ENTER, _IDLE_EXIT = int(K.IDLE_ENTER), int(K.IDLE_EXIT)
# rows added after a candidate (sort key sub = 1)
X_NONE, X_EOI, X_HLT_IN, X_HLT_OUT = 0, 1, 2, 3


@kernel
def _is_irq(k):
    return k == _TIMER_IRQ or k == _IPI_IRQ or k == _DEVICE_IRQ  # noqa: SIM109 (numba)


@kernel
def _is_wrmsr(k, a):
    """A row a guest's WRMSR makes (under traced MSR writes: its tracepoint follows the write)."""
    return (
        k == _ARM or k == _CANCEL or k == _IPI_SEND or k == _TPR or k == _APIC_WRITE  # noqa: SIM109
        or (k == _EOI and a == EOI_TRACED)
    )  # fmt: skip


@kernel
def _relate_nb(ts, cidx, n_cpu, kind, target, arg, aux, dur, infer_eoi, msr_traced, drop,
               extra, lo, cut, x_ts, x_cpu, x_reason, x_ns, cpu, exits_traced,
               open_reason, host_time, h_exit, h_steal):  # fmt: skip
    """Mark drops, durations (in ``dur``) and added rows; collect exits in [lo, cut).

    Returns (exits, timed exits): ``x_*[:exits]`` are exits (``x_ns`` = -1), the
    next ``timed`` entries are exit -> entry times (ts of the entry).

    A handler's ``dur`` is the guest's own time in it: entry to exit less the time its
    host had it (``h_exit``, ``h_steal`` per entry). The gaps between the rows on its CPU
    inside it (time marks included) are guest work but for two kinds: a gap that ends
    at a WRMSR's row holds that WRMSR's exit on the recording host (a replay charges
    each backend's own exit there), and a gap over :data:`STEAL_GAP_NS` is the vCPU
    preempted. Both are left out whole, the little guest code before the WRMSR or
    around the preemption with them.

    Without ``kvm_exit`` in the trace (``exits_traced`` false) every exit hint (a
    handler tracepoint: kvm_msr, kvm_pio, ...) is one exit. With it, a ``kvm_entry``
    that no exit precedes on its vCPU closes an exit open since before the trace began:
    it is counted too, with the reason of the hint before it (else ``open_reason``).
    """
    n = len(ts)
    last_h = np.full(n_cpu, -1, np.int64)
    last_i = np.full(n_cpu, -1, np.int64)
    last_e = np.full(n_cpu, -1, np.int64)
    last_k = np.full(n_cpu, -1, np.int64)
    last_x = np.full(n_cpu, -1, np.int64)
    last_t = np.full(n_cpu, -1, np.int64)  # the latest row on the CPU, any kind
    wrmsr = np.zeros(n_cpu, np.int64)  # time of the open handler spent in its host
    steal = np.zeros(n_cpu, np.int64)
    n_exit = 0
    for j in range(n):
        c = cidx[j]
        k = kind[j]
        drop[j] = False
        extra[j] = X_NONE
        h_exit[j] = 0
        h_steal[j] = 0
        p = last_h[c]
        if host_time and p >= 0 and _is_irq(kind[p]):  # inside a handler
            gap = ts[j] - last_t[c]
            if gap > STEAL_GAP_NS:
                steal[c] += gap
            elif msr_traced and _is_wrmsr(k, arg[j]):
                wrmsr[c] += gap
        last_t[c] = ts[j]
        if k == H_EXIT_HINT:
            last_x[c] = j
            if not exits_traced and lo <= ts[j] < cut:
                x_ts[n_exit] = ts[j]
                x_cpu[n_exit] = cpu[j]
                x_reason[n_exit] = aux[j]
                x_ns[n_exit] = -1
                n_exit += 1
            continue
        if _is_irq(k) or k == H_EXIT:
            # handler durations: entry followed on its CPU by the exit of the same family/vector
            p = last_h[c]
            if p >= 0 and _is_irq(kind[p]) and k == H_EXIT and aux[j] == aux[p]:
                dur[p] = ts[j] - ts[p] - wrmsr[c] - steal[c]
                h_exit[p] = wrmsr[c]
                h_steal[p] = steal[c]
            wrmsr[c] = 0
            steal[c] = 0
            last_h[c] = j
        if k == H_IPI_HINT or k == _IPI_SEND:  # noqa: SIM109 (numba: plain compares)
            # ipi_send_cpu: an ipi_send of its own unless an ICR write to its target follows
            p = last_i[c]
            if (
                msr_traced
                and p >= 0
                and kind[p] == H_IPI_HINT
                and k == _IPI_SEND
                and ts[j] - ts[p] <= IPI_DUP_WINDOW_NS
                and (target[p] < 0 or target[j] == target[p])
            ):
                drop[p] = True
            last_i[c] = j
        if infer_eoi and (_is_irq(k) or k == _EOI):
            # one EOI per interrupt that no traced EOI just before it accounts for
            p = last_e[c]
            covered = (
                p >= 0
                and kind[p] == _EOI
                and arg[p] == EOI_TRACED
                and ts[j] - ts[p] <= EOI_BEFORE_ENTRY_NS
            )
            if _is_irq(k) and not covered:
                extra[j] = X_EOI
            last_e[c] = j
        if k == H_KVM_EXIT or k == H_KVM_ENTRY:  # noqa: SIM109 (numba: plain compares)
            # VM exits: the entry after an exit closes it; HLT exits are idle periods
            p = last_k[c]
            if k == H_KVM_EXIT:
                if lo <= ts[j] < cut:
                    x_ts[n_exit] = ts[j]
                    x_cpu[n_exit] = cpu[j]
                    x_reason[n_exit] = aux[j]
                    x_ns[n_exit] = -1
                    n_exit += 1
                if arg[j] == 1:
                    extra[j] = X_HLT_IN
            elif p < 0 and lo <= ts[j] < cut:
                x_ts[n_exit] = ts[j]
                x_cpu[n_exit] = cpu[j]
                x_reason[n_exit] = aux[last_x[c]] if last_x[c] >= 0 else open_reason
                x_ns[n_exit] = -1
                n_exit += 1
            elif p >= 0 and kind[p] == H_KVM_EXIT:
                if lo <= ts[j] < cut:
                    x_ts[n_exit] = ts[j]
                    x_cpu[n_exit] = cpu[j]
                    x_reason[n_exit] = aux[p]
                    x_ns[n_exit] = ts[j] - ts[p]
                    n_exit += 1
                if arg[p] == 1:
                    extra[j] = X_HLT_OUT
            last_k[c] = j
    return n_exit


@kernel
def _emit_nb(ts, seq, cpu, kind, vector, target, arg, argt, dur, drop, extra, lo, cut,
             o_ts, o_cpu, o_kind, o_vector, o_target, o_arg, o_argt, o_dur):  # fmt: skip
    """Canonical rows with ts in [lo, cut), in (ts, seq, sub) order; return their count."""
    n = len(ts)
    m = 0
    j = 0
    while j < n:
        g = j + 1
        while g < n and ts[g] == ts[j] and seq[g] == seq[j]:
            g += 1
        if lo <= ts[j] < cut:
            for r in range(j, g):  # sub 0: the candidates themselves
                k = _IPI_SEND if kind[r] == H_IPI_HINT else kind[r]
                if k < 0 or drop[r]:
                    continue
                o_ts[m] = ts[r]
                o_cpu[m] = cpu[r]
                o_kind[m] = k
                o_vector[m] = vector[r]
                o_target[m] = target[r]
                o_arg[m] = arg[r]
                o_argt[m] = argt[r]
                o_dur[m] = dur[r]
                m += 1
            for r in range(j, g):  # sub 1: rows implied by them
                x = extra[r]
                if x == X_NONE:
                    continue
                o_ts[m] = ts[r]
                o_cpu[m] = cpu[r]
                o_vector[m] = vector[r]
                if x == X_EOI:
                    o_kind[m] = _EOI
                    o_target[m] = -1
                    o_arg[m] = EOI_INFERRED
                    o_argt[m] = False
                    o_dur[m] = 0
                else:
                    o_kind[m] = _IDLE_ENTER if x == X_HLT_IN else _IDLE_EXIT
                    o_target[m] = target[r]
                    o_arg[m] = 0
                    o_argt[m] = argt[r]
                    o_dur[m] = dur[r]
                m += 1
        j = g
    return m


@kernel
def _carry_nb(ts, cidx, n_cpu, kind, hold_from, keep):
    """Rows kept for the next window: ts >= hold_from, and the last older row per (CPU, kind)."""
    n = len(ts)
    last = np.full(n_cpu * 256, -1, np.int64)
    for j in range(n):
        keep[j] = ts[j] >= hold_from
        if not keep[j]:
            last[cidx[j] * 256 + kind[j] + 128] = j
    for v in last:
        if v >= 0:
            keep[v] = True


def cpu_index(cpu: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense per-CPU indices (the CPU itself when it is small and non-negative)."""
    if len(cpu) == 0:
        return cpu.astype(np.int64), 1
    lo, hi = int(cpu.min()), int(cpu.max())
    if lo >= 0 and hi < 1 << 16:
        return cpu.astype(np.int64), hi + 1
    uniq, inv = np.unique(cpu, return_inverse=True)
    return inv.astype(np.int64), len(uniq)


def resolve(cand: dict, infer_eoi: bool, msr_traced: bool, lo: int, cut: int, hold_from: int,
            exits_traced: bool = True, open_reason: int = -1, host_time: bool = True):
    """Apply the relations to candidate rows sorted by (ts, seq); cut the window.

    Parameters
    ----------
    cand : candidate rows (``rules/base.ROW_DTYPES`` columns as numpy), sorted.
    infer_eoi : add one EOI (arg = ``EOI_INFERRED``) per interrupt that no traced
        EOI accounts for (guest traces: x2APIC EOIs are written with an untraced
        WRMSR, and PV EOI is a memory write).
    msr_traced : the trace has MSR writes, so an ``ipi_send_cpu`` is a duplicate of the
        ICR write that follows it.
    lo, cut : the window written now, ``lo <= ts < cut`` (ns).
    hold_from : rows from here on are kept for the next window.
    exits_traced : the trace has ``kvm_exit``; else exit hints count as the exits.
    open_reason : reason id of an exit open at the trace's start with no hint before it.
    host_time : leave the recording host's exits and preemption out of handler times
        (false for a bare-metal recording).

    Returns
    -------
    rows : canonical rows in the window (kinds >= 0), sorted by (ts, seq, sub).
    exits : ts, cpu, reason, ns (-1 for the exit itself, else exit -> entry time) in the window.
    keep : mask of the candidate rows that the next window needs.
    host : handler time left out, over the handlers written now (``exit_ns``,
        ``steal_ns``, ``preempted``: handlers with a gap over STEAL_GAP_NS).
    """
    n = len(cand["ts"])
    cidx, n_cpu = cpu_index(cand["cpu"])
    dur = cand["dur_ns"].copy()
    drop = np.empty(n, np.bool_)
    extra = np.empty(n, np.int8)
    x = {
        "ts": np.empty(n, np.int64),
        "cpu": np.empty(n, np.int32),
        "reason": np.empty(n, np.int64),
        "ns": np.empty(n, np.int64),
    }
    c = cand
    h_exit = np.empty(n, np.int64)
    h_steal = np.empty(n, np.int64)
    nx = _relate_nb(
        c["ts"], cidx, n_cpu, c["kind"], c["target"], c["arg"], c["aux"], dur, infer_eoi,
        msr_traced, drop, extra, lo, cut, *x.values(), c["cpu"], exits_traced, open_reason,
        host_time, h_exit, h_steal,
    )  # fmt: skip
    written = (c["ts"] >= lo) & (c["ts"] < cut)
    host = {
        "exit_ns": int(h_exit[written].sum()),
        "steal_ns": int(h_steal[written].sum()),
        "preempted": int(np.count_nonzero(h_steal[written])),
    }
    m = n + int(np.count_nonzero(extra))
    out = {
        "ts": np.empty(m, np.int64),
        "cpu": np.empty(m, np.int32),
        "kind": np.empty(m, np.int8),
        "vector": np.empty(m, np.int16),
        "target": np.empty(m, np.int32),
        "arg": np.empty(m, np.int64),
        "argt": np.empty(m, np.bool_),
        "dur_ns": np.empty(m, np.int64),
    }
    m = _emit_nb(
        c["ts"], c["seq"], c["cpu"], c["kind"], c["vector"], c["target"], c["arg"], c["argt"],
        dur, drop, extra, lo, cut, *out.values(),
    )  # fmt: skip
    keep = np.empty(n, np.bool_)
    _carry_nb(c["ts"], cidx, n_cpu, c["kind"], hold_from, keep)
    return (
        {k: v[:m] for k, v in out.items()},
        {k: v[:nx] for k, v in x.items()},
        keep,
        host,
    )
