"""Vectorised building blocks shared by the scenarios.

Scenarios describe guest behaviour as *episodes*: a fixed sequence of steps
(``timer_irq``, ``eoi``, ``idle_exit`` ...) repeated ``n`` times with per-episode
times held in numpy arrays. :class:`Episodes` lays them out as an ``(n, steps)``
grid flattened row-major, so each episode's events keep their order under the
final stable sort by time. Nothing loops per event; loops run per vCPU or per
step.

Also here: a single-server FIFO queue (:func:`serve_fifo`) that serialises
interrupt handlers on a vCPU without nesting, and Poisson arrival times.
"""

from __future__ import annotations

import numpy as np

from tracebench.schema import EventKind
from tracebench.trace import TRACE_NUMPY_DTYPES, empty_columns, sort_columns

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


class Events:
    """Accumulates event columns from the scenarios; :meth:`columns` sorts them once.

    Parameters
    ----------
    n_cpus : vCPUs of the whole trace (an all-but-self IPI reaches all of them).
    duration_ns : events at or after this time are dropped, a whole episode at a time.
    """

    def __init__(self, n_cpus: int, duration_ns: int):
        self.n_cpus = int(n_cpus)
        self.duration_ns = int(duration_ns)
        self._parts: list[dict[str, np.ndarray]] = []
        #: facts a builder chose that the parameters alone do not show (e.g. which
        #: vCPUs run which part of a blend); recorded in the trace's ``source``
        self.notes: dict = {}

    def add(self, ts, cpu, kind: EventKind, vector=-1, target=-1, arg=0, dur_ns=0) -> None:
        """Add point events (arrays broadcast to ``ts``); those at/after the end are dropped."""
        ts = np.asarray(ts, dtype=np.int64).ravel()
        keep = ts < self.duration_ns
        values = {
            "ts_ns": ts,
            "cpu": cpu,
            "kind": np.asarray(kind, np.int8),
            "vector": vector,
            "target": target,
            "arg": arg,
            "dur_ns": dur_ns,
        }
        part = {}
        for name, dtype in TRACE_NUMPY_DTYPES.items():
            col = np.broadcast_to(np.asarray(values[name]), ts.shape).astype(dtype)
            part[name] = col[keep]
        self._parts.append(part)

    def add_columns(self, part: dict[str, np.ndarray]) -> None:
        """Add ready-made columns (already typed, already cut at the end)."""
        self._parts.append(part)

    def columns(self) -> dict[str, np.ndarray]:
        """All events as canonical numpy columns, stably sorted by ``ts_ns``.

        Ties keep the order in which they were added (parts in call order, episodes
        row-major), never broken by chance.
        """
        if not self._parts:
            return empty_columns(0)
        cols = {name: np.concatenate([p[name] for p in self._parts]) for name in TRACE_NUMPY_DTYPES}
        return sort_columns(cols)


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

    def step(
        self, ts, kind, vector=-1, target=-1, arg=0, dur_ns=0, present=True, cpu=None
    ) -> np.ndarray:
        """Append a step; returns its times (int64 array of ``n``) for later steps to use.

        ``present`` (bool array or scalar) leaves the step out of some episodes, e.g.
        the ``idle_exit`` of a wakeup that found the vCPU busy.
        """
        ts = np.broadcast_to(np.asarray(ts, dtype=np.int64), (self.n,))
        # kind may be an array: one step that is a timer_irq in some episodes and a
        # device_irq in others (whichever woke the vCPU).
        self._steps.append(
            (
                ts,
                np.asarray(kind, dtype=np.int8),
                vector,
                target,
                arg,
                dur_ns,
                present,
                self.cpu if cpu is None else cpu,
            )
        )
        return ts

    def emit(self, events: Events, keep=None) -> np.ndarray:
        """Write the present steps of the kept episodes into ``events``.

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
            row = {
                "ts_ns": ts,
                "cpu": cpu,
                "kind": kind,
                "vector": vector,
                "target": target,
                "arg": arg,
                "dur_ns": dur,
            }
            for name, col in grid.items():
                col[j] = row[name]
            present[j] = pres
        late = present & (grid["ts_ns"] >= events.duration_ns)
        kept = ~late.any(axis=0)
        if keep is not None:
            kept &= np.asarray(keep, dtype=bool)
        take = np.flatnonzero((present & kept[None, :]).T)  # episode-major positions i*k + j
        take = (take % k) * n + take // k  # the same cells in the step-major grid
        events.add_columns({name: col.ravel().take(take) for name, col in grid.items()})
        return kept


def serve_fifo(arrival_ns: np.ndarray, service_ns: np.ndarray) -> np.ndarray:
    """Start times of jobs on one non-preemptive FIFO server (one vCPU's interrupt path).

    ``start[i] = max(arrival[i], start[i-1] + service[i-1])`` (Lindley's recursion),
    solved without a loop: with ``c[i]`` the service before job ``i``,
    ``start[i] - c[i] = max over k <= i of (arrival[k] - c[k])``.

    Parameters
    ----------
    arrival_ns : int64, sorted ascending, ns.
    service_ns : int64 >= 0, time each job holds the vCPU (handler through eoi and
        whatever must not be interleaved with the next one), ns.
    """
    arrival_ns = np.asarray(arrival_ns, dtype=np.int64)
    service_ns = np.asarray(service_ns, dtype=np.int64)
    before = np.cumsum(service_ns) - service_ns
    return before + np.maximum.accumulate(arrival_ns - before)


def serve_per_cpu(cpu: np.ndarray, arrival_ns: np.ndarray, service_ns: np.ndarray) -> np.ndarray:
    """:func:`serve_fifo` on each vCPU separately; results in the input order.

    Jobs arriving at the same time on one vCPU are served in input order.
    """
    cpu = np.asarray(cpu)
    arrival_ns = np.asarray(arrival_ns, dtype=np.int64)
    service_ns = np.broadcast_to(np.asarray(service_ns, dtype=np.int64), arrival_ns.shape)
    order = np.lexsort((arrival_ns, cpu))  # stable: ties stay in input order
    cpu_sorted = cpu[order]
    bounds = np.flatnonzero(np.diff(cpu_sorted)) + 1
    start = np.empty_like(arrival_ns)
    for seg in np.split(order, bounds):
        if len(seg):
            start[seg] = serve_fifo(arrival_ns[seg], service_ns[seg])
    return start


def poisson_times(
    rng: np.random.Generator, rate_per_s: float, end_ns: int, start_ns: int = 0
) -> np.ndarray:
    """Arrival times (int64 ns, sorted) of a Poisson process in ``[start_ns, end_ns)``.

    Exponential gaps are drawn in chunks sized from the expected count, so the
    number of draws (and hence the stream) depends only on the inputs.
    """
    span = end_ns - start_ns
    if rate_per_s <= 0 or span <= 0:
        return np.zeros(0, dtype=np.int64)
    mean_gap_ns = 1e9 / rate_per_s
    expect = span / mean_gap_ns
    chunk = int(expect + 6 * np.sqrt(expect) + 16)
    parts = []
    t = float(start_ns)
    while t < end_ns:
        times = t + np.cumsum(rng.exponential(mean_gap_ns, chunk))
        parts.append(times)
        t = float(times[-1])
    times = np.concatenate(parts)
    return np.floor(times[times < end_ns]).astype(np.int64)


def uniform_around(
    rng: np.random.Generator, mean_ns: int, n: int, spread: float = 0.5
) -> np.ndarray:
    """``n`` int64 times uniform in ``mean * [1 - spread, 1 + spread]`` (at least 1 ns).

    Handler and work times vary from one run to the next; a bounded spread keeps
    the mean exact and the worst case predictable for the parameter checks.
    """
    lo, hi = mean_ns * (1 - spread), mean_ns * (1 + spread)
    return np.maximum(1, np.rint(rng.uniform(lo, hi, n))).astype(np.int64)
