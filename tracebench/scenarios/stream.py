"""Generate a scenario window by window and write it as it comes: memory bounded by the
window, not by the trace.

Every scenario is a *part* (a blend is several, on disjoint vCPUs) with one method,
``advance(out, until_ns)``: after it returns, every event of the trace before ``until_ns``
has been added (episodes that start earlier and end later are added whole). This driver
asks each part for the next window, sorts what is final (before the window's end) and
hands it to the writer, keeping the rest for the next window.

Order of the rows, the same whatever the window: by ``ts_ns``, then ``cpu``, then the
stream number of the part that made it (:class:`~tracebench.scenarios.events.Out`), then
the order in which the stream made it. All randomness is drawn by index
(``draws.py``), so the window length only decides how much is held in memory.

Row groups are cut at fixed row counts and the writer runs on its own thread (pyarrow
encodes without the GIL), so generation and encoding overlap on two cores.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tracebench.scenarios.events import Out
from tracebench.signals import quiet_thread, uninterrupted
from tracebench.trace import (
    COLUMNS,
    DEFAULT_ROW_GROUP,
    TraceMeta,
    TraceWriter,
    empty_columns,
    validate_columns,
)

#: events per window the driver aims at (memory: ~31 B a row, a few copies in flight)
DEFAULT_CHUNK_EVENTS = 1 << 19
#: chunks waiting for the writer thread at most (each about DEFAULT_CHUNK_EVENTS rows)
QUEUED_CHUNKS = 3
#: first window, ns; later ones are sized from the event rate seen so far
FIRST_WINDOW_NS = 1 << 20
#: bits of the sort key below the time: 16 for the vCPU, 8 for the stream
_KEY_SHIFT = 24


@dataclasses.dataclass
class TraceShape:
    """What every part of a synthesis shares: the whole guest and the trace's length.

    ``notes``: facts a part chose that the parameters alone do not show (e.g. which vCPUs
    run which part of a blend), recorded in the trace's ``source``.
    """

    n_cpus: int
    duration_ns: int
    notes: dict = dataclasses.field(default_factory=dict)


def windows(part, shape: TraceShape, chunk_events: int = DEFAULT_CHUNK_EVENTS
            ) -> Iterator[dict[str, np.ndarray]]:
    """Yield the trace's rows in order, one sorted chunk per window."""
    pending: list[tuple[int, dict[str, np.ndarray]]] = []
    lo, width = 0, FIRST_WINDOW_NS
    while lo < shape.duration_ns:
        hi = min(lo + width, shape.duration_ns)
        out = Out(shape.n_cpus, shape.duration_ns)
        part.advance(out, hi)
        pending += out.parts
        chunk, pending = _take_before(pending, hi, lo)
        made = len(chunk["ts_ns"])
        # next window: aim at chunk_events rows at the rate of this one (never below 1 us)
        rate = made / max(hi - lo, 1)
        width = int(min(max(chunk_events / rate if rate else width * 8, 1000), 1 << 40))
        lo = hi
        if made:
            yield chunk


def _take_before(pending, end_ns: int, lo_ns: int):
    """Split ``pending`` into the rows before ``end_ns`` (sorted) and the rest (kept in order)."""
    now, later = [], []
    for stream, cols in pending:
        ts = cols["ts_ns"]
        cut = ts < end_ns
        if cut.all():
            now.append((stream, cols))
        elif cut.any():
            now.append((stream, {k: v[cut] for k, v in cols.items()}))
            later.append((stream, {k: v[~cut] for k, v in cols.items()}))
        else:
            later.append((stream, cols))
    if not now:
        return empty_columns(0), later
    cols = {k: np.concatenate([c[k] for _, c in now]) for k in COLUMNS}
    stream = np.concatenate([np.full(len(c["ts_ns"]), s, np.uint64) for s, c in now])
    ts = cols["ts_ns"]
    span = int(ts.max()) - lo_ns if len(ts) else 0
    if 0 <= span < 1 << (64 - _KEY_SHIFT) and int(ts.min()) >= lo_ns:
        key = ((ts - lo_ns).astype(np.uint64) << np.uint64(_KEY_SHIFT)
               | cols["cpu"].astype(np.uint64) << np.uint64(8) | stream)
        # stable: rows equal in (time, vCPU, stream) keep the order their stream made them
        order = np.argsort(key, kind="stable")
    else:  # a window longer than 2**40 ns (18 min) with no events inside
        order = np.lexsort((stream, cols["cpu"], ts))
    return {k: v[order] for k, v in cols.items()}, later


class RowGroups:
    """Cut a stream of chunks into row groups of exactly ``rows`` rows (the last shorter),
    so the file's bytes do not depend on the chunks' sizes."""

    def __init__(self, rows: int = DEFAULT_ROW_GROUP):
        self.rows = rows
        self._held: list[dict[str, np.ndarray]] = []
        self._n = 0

    def push(self, chunk: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        self._held.append(chunk)
        self._n += len(chunk["ts_ns"])
        while self._n >= self.rows:
            cols = {k: np.concatenate([c[k] for c in self._held]) for k in COLUMNS}
            yield {k: v[:self.rows] for k, v in cols.items()}
            rest = {k: v[self.rows:] for k, v in cols.items()}
            self._held, self._n = [rest], len(rest["ts_ns"])

    def flush(self) -> Iterator[dict[str, np.ndarray]]:
        if self._n:
            yield {k: np.concatenate([c[k] for c in self._held]) for k in COLUMNS}
        self._held, self._n = [], 0


#: glibc's M_MMAP_THRESHOLD, and the value synthesis fixes it at: see :func:`fix_mmap_threshold`
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 << 20


def fix_mmap_threshold() -> None:
    """Fix glibc's mmap threshold at 4 MiB for this process (no-op elsewhere).

    glibc raises the threshold after each large free (up to 32 MiB), after which the
    window-sized column arrays come from the heap, whose fragmentation (two threads
    allocating and freeing) grew a synthesis's RSS with the trace's length: 503 MB at
    25.7 M events, 592 MB at 100 M, 1,059 MB at 1 B. Fixed at 1 MiB it stayed flat at
    +35 % CPU (page faults of fresh maps); at 4 MiB +4 % RSS from 12.8 M to 77 M events
    against +20 % unfixed, for ~+10 % CPU (BENCHMARKS.md).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except OSError:
        pass


def write_stream(path: Path, chunks: Iterator[dict[str, np.ndarray]], meta: TraceMeta,
                 force: bool = False, row_group: int = DEFAULT_ROW_GROUP,
                 before_close: Callable[[], None] | None = None) -> int:
    """Validate and write ``chunks`` (sorted, in order) to ``path`` atomically; rows written.

    Cutting into row groups and encoding run on a writer thread while the next chunks are
    generated; at most :data:`QUEUED_CHUNKS` chunks wait between them. ``before_close``
    runs after the last chunk, before the metadata is written (a generator's notes are
    complete then).
    """
    fix_mmap_threshold()
    groups = RowGroups(row_group)
    todo: queue.Queue = queue.Queue(maxsize=QUEUED_CHUNKS)
    failure: list[BaseException] = []
    done = object()
    with TraceWriter(path, meta, force=force, row_group=row_group) as writer:

        def encode():
            quiet_thread()
            while (chunk := todo.get()) is not done:
                if failure:
                    continue  # drain: the producer must never block on a dead writer
                try:
                    for cols in groups.push(chunk):
                        writer.write(cols)
                except BaseException as exc:
                    failure.append(exc)
            try:
                if not failure:
                    for cols in groups.flush():
                        writer.write(cols)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=encode, name="tracebench-synth-writer", daemon=True)
        thread.start()
        rows, last_ts = 0, None
        try:
            for chunk in chunks:
                validate_columns(chunk, meta.n_cpus, str(path), rows, last_ts)
                rows += len(chunk["ts_ns"])
                last_ts = int(chunk["ts_ns"][-1])
                todo.put(chunk)
                if failure:
                    break
        except BaseException as exc:
            failure.append(exc)  # the writer stops writing: this file will not be kept
            raise
        finally:
            # The file closes only once its writer thread is done with it (closing under a
            # running writer left columns of two lengths): a signal waits for the join.
            with uninterrupted():
                todo.put(done)
                thread.join()
        if failure:
            raise failure[0]
        if before_close is not None:
            before_close()
    return rows
