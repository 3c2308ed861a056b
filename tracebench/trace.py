"""The canonical trace: one Parquet file, rows sorted by ``ts_ns``, metadata in the footer.

Writers hand in numpy columns and a :class:`TraceMeta`; readers get validated
numpy chunks (``kind`` already as its int8 code) so memory stays flat whatever
the trace length. Every check names the file, row and column it failed on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tracebench.atomic import atomic_path
from tracebench.errors import TraceError
from tracebench.schema import (
    METADATA_KEY,
    TARGET_MASK,
    TRACE_NUMPY_DTYPES,
    TRACE_SCHEMA,
    EventKind,
)
from tracebench.signals import uninterrupted
from tracebench.tracemeta import TraceMeta as TraceMeta

#: rows per Parquet row group; also the unit of streaming replay
DEFAULT_ROW_GROUP = 1 << 20
COLUMNS = tuple(TRACE_NUMPY_DTYPES)
#: How trace columns are stored. Replay decodes every row of every trace, so this is
#: tuned for reading (measured, 4 Mi synthetic rows: 34 -> 22 ns/row to decode, 150 -> 90
#: ns/row to write, 3% smaller): the sorted timestamps are delta-packed and not compressed
#: (dictionary + zstd made them 40% of the decode time), few-valued columns keep a
#: dictionary, everything else is zstd.
TRACE_WRITE_OPTIONS = dict(
    use_dictionary=["kind", "cpu", "vector", "target", "dur_ns"],
    column_encoding={"ts_ns": "DELTA_BINARY_PACKED", "arg": "DELTA_BINARY_PACKED"},
    compression={name: "none" if name == "ts_ns" else "zstd" for name in TRACE_NUMPY_DTYPES},
)


def empty_columns(n: int = 0) -> dict[str, np.ndarray]:
    """Columns of ``n`` rows with the neutral values (-1 vector/target, 0 arg/dur)."""
    cols = {name: np.zeros(n, dtype=dt) for name, dt in TRACE_NUMPY_DTYPES.items()}
    cols["vector"][:] = -1
    cols["target"][:] = -1
    return cols


def sort_columns(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stable sort by ``ts_ns``: ties keep their input order (never broken by chance)."""
    order = np.argsort(cols["ts_ns"], kind="stable")
    return {k: np.ascontiguousarray(v[order]) for k, v in cols.items()}


def _kind_array(codes: np.ndarray) -> pa.DictionaryArray:
    # The dictionary is always the full kind list in code order, so indices == codes.
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int8), pa.int8()), pa.array(EventKind.labels())
    )


def columns_to_table(cols: dict[str, np.ndarray], meta: TraceMeta | None = None) -> pa.Table:
    arrays = []
    for field in TRACE_SCHEMA:
        values = np.asarray(cols[field.name]).astype(TRACE_NUMPY_DTYPES[field.name], copy=False)
        arrays.append(_kind_array(values) if field.name == "kind" else pa.array(values))
    schema = TRACE_SCHEMA
    if meta is not None:
        schema = schema.with_metadata({METADATA_KEY: meta.to_json()})
    return pa.Table.from_arrays(arrays, schema=schema)


class TraceWriter:
    """Streams sorted chunks into a trace file, atomically (temporary name, then rename).

    Use as a context manager; ``meta`` may be updated (e.g. duration) until it closes.
    """

    def __init__(self, path: str | os.PathLike, meta: TraceMeta, force: bool = False,
                 row_group: int = DEFAULT_ROW_GROUP):
        self.path = Path(path)
        self.meta = meta
        self.force = force
        self.row_group = row_group
        self.rows = 0
        self._last_ts = None
        self._ctx = None
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> TraceWriter:
        self._ctx = atomic_path(self.path, force=self.force)
        self._tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, TRACE_SCHEMA, **TRACE_WRITE_OPTIONS)
        return self

    @property
    def last_ts_ns(self) -> int | None:
        """``ts_ns`` of the last row written so far (None before the first)."""
        return self._last_ts

    def write(self, cols: dict[str, np.ndarray]) -> None:
        n = len(cols["ts_ns"])
        if n == 0:
            return
        ts = cols["ts_ns"]
        if self._last_ts is not None and ts[0] < self._last_ts:
            raise TraceError(f"{self.path}: chunk starting at row {self.rows} goes back in time")
        self._last_ts = int(ts[-1])
        with uninterrupted():
            self._writer.write_table(columns_to_table(cols), row_group_size=self.row_group)
        self.rows += n

    def __exit__(self, exc_type, exc, tb):
        try:
            with uninterrupted():
                if exc_type is None:
                    # File-level key-value metadata can be added at close, once the
                    # duration and counts of a streamed trace are known.
                    self._writer.add_key_value_metadata({METADATA_KEY: self.meta.to_json()})
                self._writer.close()
        finally:
            self._ctx.__exit__(exc_type, exc, tb)
        return False


def write_trace(path: str | os.PathLike, cols: dict[str, np.ndarray], meta: TraceMeta,
                force: bool = False, row_group: int = DEFAULT_ROW_GROUP) -> Path:
    """Validate and write a whole in-memory trace (columns need not be sorted yet)."""
    cols = sort_columns(cols)
    validate_columns(cols, meta.n_cpus, where=str(path))
    with atomic_path(path, force=force) as tmp:
        pq.write_table(columns_to_table(cols, meta), tmp, row_group_size=row_group,
                       **TRACE_WRITE_OPTIONS)
    return Path(path)


# --------------------------------------------------------------------------- reading


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TraceFile:
    """An opened, schema-checked trace: metadata now, validated chunks on demand."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        where = str(self.path)
        if not self.path.exists():
            raise TraceError(f"{where}: no such file")
        if self.path.is_dir():
            raise TraceError(f"{where}: is a folder, expected a trace .parquet file")
        try:
            # pre_buffer=False: with Arrow's read cache every row group read by iter_batches
            # stays allocated until the file is closed (RSS grew by the compressed file size;
            # apache/arrow#39808 is the dataset-API form of it). Without it memory is flat
            # and local reads are no slower (measured: 31 -> 26 ns/row).
            self._pf = pq.ParquetFile(self.path, pre_buffer=False)
        except (pa.ArrowException, OSError) as exc:
            raise TraceError(f"{where}: not a readable Parquet file ({_one_line(exc)})") from None
        schema = self._pf.schema_arrow
        raw = (self._pf.metadata.metadata or {}).get(METADATA_KEY)
        if raw is None:
            raise TraceError(f"{where}: no tracebench metadata (not a canonical trace; "
                             "use `tracebench ingest` for text traces)")
        self.meta = TraceMeta.from_json(raw, where)
        _check_schema(schema, where)
        self.num_rows = self._pf.metadata.num_rows
        last_ts = self._last_ts_from_footer()
        if last_ts is not None and last_ts > self.meta.duration_ns:
            # summaries divide by the duration: a short one makes absurd rates and overheads
            raise TraceError(f"{where}: metadata duration_ns={self.meta.duration_ns} is shorter "
                             f"than the last event's ts_ns {last_ts}")

    def _last_ts_from_footer(self) -> int | None:
        """The last row group's largest ``ts_ns`` from the footer statistics, if written."""
        md = self._pf.metadata
        if md.num_row_groups == 0:
            return None
        try:
            col = self._pf.schema_arrow.get_field_index("ts_ns")
            stats = md.row_group(md.num_row_groups - 1).column(col).statistics
        except (IndexError, pa.ArrowException):
            return None
        if stats is None or not stats.has_min_max or not isinstance(stats.max, int):
            return None
        return stats.max

    def chunks(self, rows: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield validated numpy column chunks in file order (kind as int8 code)."""
        where = str(self.path)
        first_row = 0
        last_ts = None
        try:
            batches = self._pf.iter_batches(batch_size=rows or DEFAULT_ROW_GROUP)
            for batch in batches:
                cols = _batch_to_numpy(batch, where, first_row)
                validate_columns(cols, self.meta.n_cpus, where, first_row, last_ts)
                if len(cols["ts_ns"]):
                    last_ts = int(cols["ts_ns"][-1])
                first_row += len(cols["ts_ns"])
                yield cols
        except (pa.ArrowException, OSError) as exc:
            raise TraceError(f"{where}: corrupt or truncated Parquet data near row {first_row} "
                             f"({_one_line(exc)})") from None

    def read_all(self) -> dict[str, np.ndarray]:
        parts = list(self.chunks())
        if not parts:
            return empty_columns(0)
        return {k: np.concatenate([p[k] for p in parts]) for k in COLUMNS}

    def sha256(self) -> str:
        return file_sha256(self.path)

    # Random access (per-event drill-down, ``replayer/drill.py``): only the row groups that
    # hold the rows asked for are decoded.

    def _group_starts(self) -> np.ndarray:
        md = self._pf.metadata
        sizes = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
        return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])

    def read_rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Validated columns of rows ``start`` (inclusive) to ``stop`` (exclusive)."""
        where = str(self.path)
        start, stop = max(0, int(start)), min(int(stop), self.num_rows)
        if stop <= start:
            return empty_columns(0)
        bounds = self._group_starts()
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        last = int(np.searchsorted(bounds, stop, side="left"))
        try:
            table = self._pf.read_row_groups(list(range(first, last)), columns=list(COLUMNS))
        except (pa.ArrowException, OSError) as exc:
            raise TraceError(f"{where}: corrupt or truncated Parquet data near row {start} "
                             f"({_one_line(exc)})") from None
        batch = table.slice(start - int(bounds[first]), stop - start).combine_chunks()
        cols = _batch_to_numpy(batch.to_batches()[0] if batch.num_rows else
                               pa.RecordBatch.from_pylist([], schema=batch.schema), where, start)
        validate_columns(cols, self.meta.n_cpus, where, start)
        return cols

    def rows_between(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """The row range ``[first, stop)`` of the events with ``start_ns <= ts_ns < end_ns``.

        Row-group statistics pick the groups to decode; rows are sorted by ``ts_ns``.
        """
        bounds = self._group_starts()
        md = self._pf.metadata
        col = self._pf.schema_arrow.get_field_index("ts_ns")

        def row_at(t: int) -> int:  # first row with ts_ns >= t
            for g in range(md.num_row_groups):
                stats = md.row_group(g).column(col).statistics
                if stats is not None and stats.has_min_max and stats.max < t:
                    continue
                ts = self._pf.read_row_group(g, columns=["ts_ns"]).column(0).to_numpy()
                k = int(np.searchsorted(ts, t, side="left"))
                if k < len(ts):
                    return int(bounds[g]) + k
            return self.num_rows

        first = row_at(int(start_ns))
        return first, max(first, row_at(int(end_ns)))


def read_trace(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], TraceMeta]:
    """Read and validate a whole trace into memory."""
    tf = TraceFile(path)
    return tf.read_all(), tf.meta


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _check_schema(schema: pa.Schema, where: str) -> None:
    names = set(schema.names)
    for field in TRACE_SCHEMA:
        if field.name not in names:
            raise TraceError(f"{where}: missing column {field.name!r}")
        got = schema.field(field.name).type
        want = field.type
        if field.name == "kind":
            ok = pa.types.is_dictionary(got) and pa.types.is_string(got.value_type) or \
                pa.types.is_string(got) or pa.types.is_large_string(got)
        else:
            ok = got == want
        if not ok:
            raise TraceError(f"{where}: column {field.name!r} has type {got}, expected {want}")


_KIND_CODE = {label: code for code, label in enumerate(EventKind.labels())}


def _kind_codes(arr: pa.Array, where: str, first_row: int) -> np.ndarray:
    if pa.types.is_dictionary(arr.type):
        dictionary = arr.dictionary.to_pylist()
        indices = arr.indices.to_numpy(zero_copy_only=False)
    else:
        enc = arr.dictionary_encode()
        dictionary = enc.dictionary.to_pylist()
        indices = enc.indices.to_numpy(zero_copy_only=False)
    lut = np.full(len(dictionary), -1, dtype=np.int8)
    for i, label in enumerate(dictionary):
        lut[i] = _KIND_CODE.get(label, -1)
    if arr.null_count:
        row = first_row + int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise TraceError(f"{where}: row {row}, column 'kind': missing value")
    codes = lut[indices] if len(indices) else np.zeros(0, np.int8)
    bad = np.flatnonzero(codes < 0)
    if len(bad):
        row = int(bad[0])
        raise TraceError(f"{where}: row {first_row + row}, column 'kind': unknown event kind "
                         f"{dictionary[indices[row]]!r} (known: {', '.join(EventKind.labels())})")
    return codes


def _batch_to_numpy(batch: pa.RecordBatch, where: str, first_row: int) -> dict[str, np.ndarray]:
    cols = {}
    for name, dtype in TRACE_NUMPY_DTYPES.items():
        arr = batch.column(name)
        if name == "kind":
            cols[name] = _kind_codes(arr, where, first_row)
            continue
        if arr.null_count:
            row = first_row + int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise TraceError(f"{where}: row {row}, column {name!r}: missing value")
        cols[name] = arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return cols


def validate_columns(cols: dict[str, np.ndarray], n_cpus: int, where: str,
                     first_row: int = 0, last_ts: int | None = None) -> None:
    """Check one chunk of numpy columns; raise :class:`TraceError` naming the first bad row."""

    def fail(mask: np.ndarray, column: str, what: str) -> None:
        idx = np.flatnonzero(mask)
        if len(idx):
            row = int(idx[0])
            value = cols[column][row]
            raise TraceError(f"{where}: row {first_row + row}, column {column!r}: {what} "
                             f"(value {value})")

    ts = cols["ts_ns"]
    if len(ts) == 0:
        return
    fail(ts < 0, "ts_ns", "negative timestamp")
    if last_ts is not None and ts[0] < last_ts:
        fail(np.arange(len(ts)) == 0, "ts_ns", f"timestamps not sorted (previous row {last_ts})")
    fail(np.concatenate([[False], ts[1:] < ts[:-1]]), "ts_ns", "timestamps not sorted")
    kind = cols["kind"]
    fail((kind < 0) | (kind >= len(EventKind)), "kind", "unknown event kind code")
    fail(cols["cpu"].astype(np.int64) >= n_cpus, "cpu", f"cpu >= declared n_cpus {n_cpus}")
    fail(cols["dur_ns"] < 0, "dur_ns", "negative duration")
    is_ipi = kind == EventKind.IPI_SEND
    target = cols["target"]
    fail(is_ipi & ((target < TARGET_MASK) | (target >= n_cpus)), "target",
         f"IPI target out of range (-2..{n_cpus - 1})")
    masked = is_ipi & (target == TARGET_MASK)
    if masked.any():
        if n_cpus < 64:
            fail(masked & ((cols["arg"] >> np.int64(n_cpus)) != 0), "arg",
                 f"IPI mask names a vCPU >= n_cpus {n_cpus}")
        fail(masked & (cols["arg"] == 0), "arg", "IPI mask is empty")
