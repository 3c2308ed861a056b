"""Vectorised building blocks shared by the scenarios.

Scenarios describe guest behaviour as *episodes*: a fixed sequence of steps
(``timer_irq``, ``eoi``, ``idle_exit`` ...) repeated ``n`` times with per-episode
times held in numpy arrays. :class:`Episodes` lays them out as an ``(n, steps)``
grid flattened row-major, so each episode's events keep their order. Nothing
loops per event; loops run per vCPU or per step.

Every scenario part is generated window by window (``stream.py``): each call adds the
episodes that start before the window's end. An episode is complete when it is made
(its last step may lie in a later window) and is dropped whole when any of its steps
falls at or after the end of the trace. Also here: a single-server FIFO queue
(:func:`serve_fifo`) carried from window to window, and Poisson arrivals drawn by index.
"""

from __future__ import annotations

import numpy as np

from tracebench.scenarios import draws
from tracebench.schema import EventKind
from tracebench.trace import TRACE_NUMPY_DTYPES

# Linux x86 IDT vectors (arch/x86/include/asm/irq_vectors.h): what a guest trace shows.
LOCAL_TIMER_VECTOR = 0xEC
RESCHEDULE_VECTOR = 0xFD
CALL_FUNCTION_VECTOR = 0xFC
CALL_FUNCTION_SINGLE_VECTOR = 0xFB

# Local APIC register offsets (Intel SDM vol. 3, table 11-1), the ``arg`` of apic_read/write.
APIC_ID = 0x20
APIC_TPR = 0x80
APIC_ICR = 0x300
APIC_ICR2 = 0x310
APIC_LVTT = 0x320
APIC_TMICT = 0x380

#: gap between two consecutive events of one code path (a few dozen instructions), ns
STEP_NS = 50


class Out:
    """What one window of one scenario part adds: typed columns, each tagged with a stream.

    ``stream`` numbers order events that tie in time on one vCPU (lower first); within a
    stream, ties keep the order in which they were added. A part's streams are numbered
    from ``stream_base`` (parts of a blend get disjoint ranges).

    Parameters
    ----------
    duration_ns : events at or after this time are dropped, a whole episode at a time.
    """

    def __init__(self, n_cpus: int, duration_ns: int):
        self.n_cpus = int(n_cpus)
        self.duration_ns = int(duration_ns)
        self.stream_base = 0
        self.parts: list[tuple[int, dict[str, np.ndarray]]] = []

    def add(self, stream: int, ts, cpu, kind: EventKind, vector=-1, target=-1, arg=0,
            dur_ns=0) -> None:
        """Add point events (arrays broadcast to ``ts``); those at/after the end are dropped."""
        ts = np.asarray(ts, dtype=np.int64).ravel()
        keep = ts < self.duration_ns
        values = {"ts_ns": ts, "cpu": cpu, "kind": np.asarray(kind, np.int8),
                  "vector": vector, "target": target, "arg": arg, "dur_ns": dur_ns}
        part = {}
        for name, dtype in TRACE_NUMPY_DTYPES.items():
            col = np.broadcast_to(np.asarray(values[name]), ts.shape).astype(dtype)
            part[name] = col[keep]
        self.add_columns(stream, part)

    def add_columns(self, stream: int, part: dict[str, np.ndarray]) -> None:
        """Add ready-made columns (already typed, already cut at the end)."""
        if len(part["ts_ns"]):
            self.parts.append((self.stream_base + stream, part))


class Episodes:
    """``n`` repetitions of one sequence of steps; row = episode, column = step.

    Parameters
    ----------
    cpu : vCPU of each episode (scalar or array of ``n``); a step may override it.
    n : number of episodes.
    """

    def __init__(self, cpu, n: int):
        self.n = int(n)
        self.cpu = np.broadcast_to(np.asarray(cpu, dtype=np.int64), (self.n,))
        self._steps: list[tuple] = []

    def step(self, ts, kind, vector=-1, target=-1, arg=0, dur_ns=0, present=True,
             cpu=None) -> np.ndarray:
        """Append a step; returns its times (int64 array of ``n``) for later steps to use.

        ``present`` (bool array or scalar) leaves the step out of some episodes, e.g.
        the ``idle_exit`` of a wakeup that found the vCPU busy.
        """
        ts = np.broadcast_to(np.asarray(ts, dtype=np.int64), (self.n,))
        # kind may be an array: one step that is a timer_irq in some episodes and a
        # device_irq in others (whichever woke the vCPU).
        self._steps.append((ts, np.asarray(kind, dtype=np.int8), vector, target, arg, dur_ns,
                            present, self.cpu if cpu is None else cpu))
        return ts

    def emit(self, out: Out, stream: int, keep=None) -> np.ndarray:
        """Add the present steps of the kept episodes to ``out`` under ``stream``.

        An episode is dropped whole when any of its present steps falls at or after
        the end of the trace, so a handler never loses its ``eoi`` at the cut.
        Returns the bool mask of kept episodes (for episodes that depend on these).
        """
        n, k = self.n, len(self._steps)
        if n == 0 or k == 0:
            return np.zeros(n, dtype=bool)
        # Filled step-major, (k, n): each step is one contiguous row write. The output
        # is episode-major (row i of episode i's steps in order), picked by index.
        grid = {name: np.empty((k, n), dtype=dtype) for name, dtype in TRACE_NUMPY_DTYPES.items()}
        present = np.empty((k, n), dtype=bool)
        for j, (ts, kind, vector, target, arg, dur, pres, cpu) in enumerate(self._steps):
            row = {"ts_ns": ts, "cpu": cpu, "kind": kind, "vector": vector, "target": target,
                   "arg": arg, "dur_ns": dur}
            for name, col in grid.items():
                col[j] = row[name]
            present[j] = pres
        late = present & (grid["ts_ns"] >= out.duration_ns)
        kept = ~late.any(axis=0)
        if keep is not None:
            kept &= np.asarray(keep, dtype=bool)
        take = np.flatnonzero((present & kept[None, :]).T)  # episode-major positions i*k + j
        take = (take % k) * n + take // k  # the same cells in the step-major grid
        out.add_columns(stream, {name: col.ravel().take(take) for name, col in grid.items()})
        return kept


def serve_fifo(arrival_ns: np.ndarray, service_ns: np.ndarray, free_ns: int = 0) -> np.ndarray:
    """Start times of jobs on one non-preemptive FIFO server (one vCPU's interrupt path).

    ``start[i] = max(arrival[i], start[i-1] + service[i-1])`` (Lindley's recursion) with
    the server busy until ``free_ns`` before the first job, solved without a loop: with
    ``c[i]`` the service before job ``i``, ``start[i] - c[i] = max over k <= i of
    (arrival[k] - c[k])``. Integer arithmetic: the same whether the jobs come in one
    call or in several, each starting where the last one left the server.

    Parameters
    ----------
    arrival_ns : int64, sorted ascending, ns.
    service_ns : int64 >= 0, time each job holds the vCPU (handler through eoi and
        whatever must not be interleaved with the next one), ns.
    """
    arrival_ns = np.asarray(arrival_ns, dtype=np.int64)
    service_ns = np.asarray(service_ns, dtype=np.int64)
    before = np.cumsum(service_ns) - service_ns
    lead = arrival_ns - before
    if len(lead):
        lead[0] = max(lead[0], free_ns)
    return before + np.maximum.accumulate(lead)


def serve_per_cpu(cpu: np.ndarray, arrival_ns: np.ndarray, service_ns: np.ndarray,
                  free_ns: np.ndarray | None = None, order: np.ndarray | None = None
                  ) -> np.ndarray:
    """:func:`serve_fifo` on each vCPU separately; results in the input order.

    ``free_ns[c]`` (updated in place) is when vCPU ``c`` finishes the jobs of earlier
    calls. Jobs arriving at the same time on one vCPU are served in input order, or in
    the order ``order`` (a permutation sorting the jobs by vCPU, then service order).
    """
    cpu = np.asarray(cpu)
    arrival_ns = np.asarray(arrival_ns, dtype=np.int64)
    service_ns = np.broadcast_to(np.asarray(service_ns, dtype=np.int64), arrival_ns.shape)
    if order is None:
        order = np.lexsort((arrival_ns, cpu))  # stable: ties stay in input order
    cpu_sorted = cpu[order]
    bounds = np.flatnonzero(np.diff(cpu_sorted)) + 1
    start = np.empty_like(arrival_ns)
    for seg in np.split(order, bounds):
        if len(seg):
            c = int(cpu[seg[0]])
            s = serve_fifo(arrival_ns[seg], service_ns[seg], 0 if free_ns is None else free_ns[c])
            start[seg] = s
            if free_ns is not None:
                free_ns[c] = s[-1] + service_ns[seg[-1]]
    return start


def periodic_due(first_ns: np.ndarray, period_ns: int, count: int, next_k: np.ndarray,
                 until_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occurrences ``k`` of periodic events (``first_ns[i] + k * period_ns``, ``k < count``)
    at or after ``next_k[i]`` and before ``until_ns``, for every vCPU position ``i``.

    Returns ``(i, k, next)``: positions and indices, position-major, and the new ``next_k``.
    """
    hi = np.where(until_ns > first_ns, (until_ns - first_ns - 1) // period_ns + 1, 0)
    hi = np.maximum(np.minimum(hi, count), next_k)
    due = hi - next_k
    n = int(due.sum())
    i = np.repeat(np.arange(len(first_ns)), due)
    k = np.arange(n) - np.repeat(np.cumsum(due) - due, due) + next_k[i]
    return i, k, hi


class Poisson:
    """A Poisson process drawn by index: arrival ``j`` = arrival ``j-1`` + exponential gap ``j``.

    Gaps are whole ns (rounded, so the mean is kept) and summed as integers, so
    :meth:`until` gives the same arrivals whatever the windows it is called with.
    """

    def __init__(self, key: int, rate_per_s: float, start_ns: int = 0):
        self.key = key
        self.mean_ns = 1e9 / rate_per_s if rate_per_s > 0 else np.inf
        self.next = 0  # index of the first arrival not yet handed out
        self.last_ns = int(start_ns)  # time of arrival next - 1 (or the start)

    def until(self, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Arrivals before ``end_ns`` not handed out yet: ``(times, indices)``."""
        if not np.isfinite(self.mean_ns) or self.last_ns >= end_ns:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        times, idx = [], []
        while True:
            expect = (end_ns - self.last_ns) / self.mean_ns
            n = int(expect + 4 * np.sqrt(expect) + 16)
            j = np.arange(self.next, self.next + n, dtype=np.int64)
            t = self.last_ns + np.cumsum(draws.exponential_ns(self.key, j, self.mean_ns))
            k = int(np.searchsorted(t, end_ns))
            times.append(t[:k])
            idx.append(j[:k])
            self.next += k
            if k:
                self.last_ns = int(t[k - 1])
            if k < n:
                break
        return np.concatenate(times), np.concatenate(idx)
