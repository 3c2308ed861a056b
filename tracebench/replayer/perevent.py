"""Per-event results: a compact layout joined to the trace by row number, and checkpoints.

Per-event rows cost more than the replay (Parquet encoding) and, for twelve backends,
many times the trace's size, so ``replay -o`` writes none by default. It writes, per
backend and trace, **checkpoints**: the replay state (every vCPU's) at the start of
each chunk. Replay is deterministic and its state is all a chunk depends on, so any
stretch of the trace can be replayed again exactly, from the checkpoint before it, in
the time of one chunk (``drill.py``; ``results.read_events``). On request (``--events``,
``--events-for``) per-event rows are written too, in the compact layout below.

Compact layout (``events/backend=NAME/params=HASH/trace=ID/part-0.parquet``): what the
trace already holds (``ts_ns``, ``cpu``, ``kind``) is not repeated; ``row`` is the row
number of the event in its trace file (0-based), to join on. Per backend ~5 B a row on a
mixed trace (the trace itself: ~4 B), ``start_ns`` being most of it.

========================  ===========  =================================================
column                    type         meaning
========================  ===========  =================================================
row                       int64        row of the event in the trace (delta-packed)
start_ns                  int64        when the event ran, stalls and queueing included
latency_ns                int64        delivery latency (interrupts) or own delay + cost
stall_ns                  int64        guest time lost to this event
exits                     uint16       VM exits it caused
exit_reason               dict<string> reason of those exits (``NONE`` without)
exit_ns                   int64        time in those exits (HLT: the idle time)
timer_error_ns            int64, null  handler start - deadline, matched timer interrupts
========================  ===========  =================================================

Checkpoints (``checkpoints/backend=NAME/params=HASH/trace=ID/part-0.parquet``): ``row``
(int64, first row of a chunk) and ``state`` (the kernel's per-vCPU state before that
row: ``n_cpus x n_state`` little-endian int64, ``backends/kernel.py`` layout, shape in
the file's metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tracebench.schema import METADATA_KEY, EventKind, ExitReason
from tracebench.signals import uninterrupted

REASON_TYPE = pa.dictionary(pa.int8(), pa.string())
_REASON_DICT = pa.array([r.name for r in ExitReason])
_KIND_DICT = pa.array(EventKind.labels())

# Only the timer error can be missing; declaring the other columns required spares the
# Parquet writer a definition level per value.
EVENT_SCHEMA = pa.schema([
    pa.field("row", pa.int64(), nullable=False),
    pa.field("start_ns", pa.int64(), nullable=False),
    pa.field("latency_ns", pa.int64(), nullable=False),
    pa.field("stall_ns", pa.int64(), nullable=False),
    pa.field("exits", pa.uint16(), nullable=False),
    pa.field("exit_reason", REASON_TYPE, nullable=False),
    pa.field("exit_ns", pa.int64(), nullable=False), ("timer_error_ns", pa.int64()),
])
#: trace columns the joined rows take from the trace, in front of the per-event ones
TRACE_COLUMNS = ("ts_ns", "cpu", "kind")
#: columns of a joined per-event frame (``read_events``, ``ReplayResult.events``)
JOINED_COLUMNS = ("backend", "params", "trace", "row", *TRACE_COLUMNS,
                  *(f.name for f in EVENT_SCHEMA if f.name != "row"))

#: How per-event columns are stored (measured per column on 2.6 M rows of a mixed-server
#: replay, bytes and ns a row): ``row`` and ``start_ns`` delta-packed, not compressed
#: (0.02 B / 6 ns; 3.45 B / 12 ns: zstd saves 7 % at twice the time); few-valued columns
#: dictionary + zstd (latency 0.41 B, stall 0.29, exits 0.14, reason 0.16, timer error
#: 0.03); ``exit_ns`` (idle times make it many-valued) plain + zstd, 0.45 B. Statistics
#: only on ``row``, which window reads filter on. No BYTE_STREAM_SPLIT on integers: DuckDB
#: reads it only since mid-2026.
_DELTA_COLUMNS = ("row", "start_ns")
EVENT_WRITE_OPTIONS = dict(
    use_dictionary=["exit_reason", "stall_ns", "latency_ns", "timer_error_ns", "exits"],
    column_encoding={c: "DELTA_BINARY_PACKED" for c in _DELTA_COLUMNS},
    compression={f.name: "none" if f.name in _DELTA_COLUMNS else "zstd" for f in EVENT_SCHEMA},
    write_statistics=["row"],
)


def events_table(first_row: int, out) -> pa.Table:
    """One chunk's compact rows: a kernel's typed output columns, numbered from
    ``first_row`` (the chunk's first row in the trace)."""
    n = len(out["start_ns"])
    terr = out["timer_error_ns"]
    arrays = [
        pa.array(np.arange(first_row, first_row + n, dtype=np.int64)),
        pa.array(out["start_ns"]), pa.array(out["latency_ns"]), pa.array(out["stall_ns"]),
        pa.array(out["exits"]),
        pa.DictionaryArray.from_arrays(pa.array(out["exit_reason"], pa.int8()), _REASON_DICT),
        pa.array(out["exit_ns"]), pa.array(terr, mask=terr < 0),
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def trace_table(cols) -> pa.Table:
    """The trace columns a joined frame shows, from validated numpy columns."""
    return pa.table({
        "ts_ns": pa.array(cols["ts_ns"]), "cpu": pa.array(cols["cpu"]),
        "kind": pa.DictionaryArray.from_arrays(pa.array(cols["kind"], pa.int8()), _KIND_DICT)})


def joined_table(cols, first_row: int, out) -> pa.Table:
    """One chunk's rows as a joined frame shows them (without backend, params, trace)."""
    ev = events_table(first_row, out)
    tr = trace_table(cols)
    return pa.Table.from_arrays([ev.column("row"), *tr.columns, *ev.columns[1:]],
                                names=["row", *tr.column_names, *ev.column_names[1:]])


class EventWriter:
    """Streams one (backend, trace)'s compact per-event chunks into ``part-0.parquet``."""

    def __init__(self, path: Path, meta: dict):
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = EVENT_SCHEMA.with_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True)})
        self.writer = pq.ParquetWriter(path, schema, **EVENT_WRITE_OPTIONS)

    def write(self, first_row: int, out) -> None:
        with uninterrupted():
            self.writer.write_table(events_table(first_row, out))

    def close(self) -> None:
        with uninterrupted():
            self.writer.close()


CHECKPOINT_SCHEMA = pa.schema([pa.field("row", pa.int64(), nullable=False),
                               pa.field("state", pa.binary(), nullable=False)])

#: a checkpoint is kept only every this many state bytes' worth of rows (per backend:
#: at most 1/16 B of checkpoint per event, however many vCPUs), and at most one a chunk
ROWS_PER_STATE_BYTE = 16
#: checkpoints held before they are written out as a row group (memory stays flat)
CHECKPOINT_BUFFER_BYTES = 8 << 20


class Checkpoints:
    """The replay state of one backend at chunk starts, spaced so they stay small, written
    to ``path`` as they come (in row groups of about ``CHECKPOINT_BUFFER_BYTES``)."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = path, meta
        self.rows: list[int] = []
        self.states: list[bytes] = []
        self.last_row: int | None = None
        self._writer: pq.ParquetWriter | None = None

    def take(self, row: int, state: np.ndarray) -> None:
        """Keep ``state`` (the state before ``row``) unless the last one is too close."""
        if self.last_row is not None and row - self.last_row < state.nbytes * ROWS_PER_STATE_BYTE:
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            meta = {**self.meta, "state_shape": list(state.shape), "state_dtype": "<i8"}
            schema = CHECKPOINT_SCHEMA.with_metadata({METADATA_KEY: json.dumps(meta,
                                                                                sort_keys=True)})
            self._writer = pq.ParquetWriter(self.path, schema, compression="zstd")
        self.last_row = int(row)
        self.rows.append(int(row))
        self.states.append(np.ascontiguousarray(state, dtype="<i8").tobytes())
        if len(self.states) * state.nbytes >= CHECKPOINT_BUFFER_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            with uninterrupted():
                self._writer.write_table(pa.table({"row": pa.array(self.rows, pa.int64()),
                                                   "state": pa.array(self.states, pa.binary())},
                                                  schema=CHECKPOINT_SCHEMA))
        self.rows, self.states = [], []

    def close(self) -> None:
        if self._writer is not None:
            self._flush()
            with uninterrupted():
                self._writer.close()
