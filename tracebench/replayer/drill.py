"""Per-event drill-down into a results folder: stored rows joined to the trace, or the same
rows made again from a checkpoint (``perevent.py`` describes both layouts).

Replay is deterministic and a chunk's rows depend only on the replay state at its start
and on its own events, so replaying rows ``[r0, r1)`` from the last checkpoint at or
before ``r0`` gives exactly the rows a full replay gives there (tests compare them). The
backend is rebuilt from the folder's ``configs/`` file with its full parameter set, and
refused if the rebuilt parameters do not hash to the recorded digest.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tracebench import hist
from tracebench.errors import TracebenchError
from tracebench.replayer.perevent import JOINED_COLUMNS, joined_table, trace_table
from tracebench.schema import METADATA_KEY, RESULTS_SCHEMA_VERSION
from tracebench.signals import quiet_thread
from tracebench.trace import DEFAULT_ROW_GROUP, TraceFile


def _partitions(root: Path, backend: str | None, trace: str | None, params: str | None = None,
                missing_ok: bool = False) -> list[tuple[str, ...]]:
    """(backend, params hash, trace id) of every replay in ``root`` that matches."""
    if not (root / "summary").is_dir():
        raise TracebenchError(f"{root}: not a results folder (no summary/)")
    found = []
    for d in sorted((root / "summary").glob("backend=*/params=*/trace=*")):
        key = tuple(part.split("=", 1)[1] for part in d.parts[-3:])
        if ((backend is None or key[0] == backend) and (params is None or key[1] == params)
                and (trace is None or key[2] == trace)):
            found.append(key)
    if not found and not missing_ok:
        what = ", ".join(f"{k}={v}" for k, v in (("backend", backend), ("trace", trace)) if v)
        raise TracebenchError(f"{root}: no results for {what or 'any backend'}")
    return found


def _meta(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])


def _open_trace(meta: dict, root: Path, trace_file) -> TraceFile:
    """The trace a result was made from: where it was given, where it was, or beside root."""
    candidates = ([Path(trace_file)] if trace_file is not None else
                  [Path(meta.get("trace_path", "")), Path(meta["trace_file"]),
                   root.parent / Path(meta["trace_file"]).name])
    for path in candidates:
        if path.is_file():
            tf = TraceFile(path)
            if (tf.num_rows, path.stat().st_size) != (meta.get("trace_rows", tf.num_rows),
                                                      meta.get("trace_bytes",
                                                               path.stat().st_size)):
                raise TracebenchError(f"{path}: not the trace these results were made from "
                                      f"(rows or size differ; sha256 {meta['trace_sha256']})")
            return tf
    raise TracebenchError(f"{root}: trace {meta['trace_file']!r} not found "
                          "(pass trace_file= where it is now)")


def _stored(path: Path, tf: TraceFile, first: int, stop: int) -> pa.Table:
    """Stored compact rows ``[first, stop)`` joined to the trace's rows."""
    # rows are stored in trace order from row 0: row r is the file's r-th row
    pf = pq.ParquetFile(path, pre_buffer=False)
    md = pf.metadata
    bounds = np.concatenate([[0], np.cumsum([md.row_group(g).num_rows
                                             for g in range(md.num_row_groups)])])
    groups = [g for g in range(md.num_row_groups) if bounds[g] < stop and bounds[g + 1] > first]
    table = pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table()
    lo = int(bounds[groups[0]]) if groups else first
    table = table.slice(max(0, first - lo), max(0, stop - first))
    if "row" not in table.column_names:  # results version 3: the trace's columns inside
        row = pa.array(np.arange(first, first + table.num_rows, dtype=np.int64))
        if table.num_rows != stop - first:
            raise TracebenchError(f"{path}: per-event rows {first}..{stop - 1} are incomplete")
        return table.select(list(JOINED_COLUMNS[4:])).add_column(0, "row", row)
    rows = table.column("row").to_numpy()
    if not np.array_equal(rows, np.arange(first, stop)):
        raise TracebenchError(f"{path}: per-event rows {first}..{stop - 1} are incomplete")
    tr = trace_table(tf.read_rows(first, stop))
    return pa.Table.from_arrays([table.column("row"), *tr.columns, *table.columns[1:]],
                                names=["row", *tr.column_names, *table.column_names[1:]])


def rebuild_backend(root: Path, name: str, phash: str):
    """The backend, parameter set and model a result was made with (from ``configs/``)."""
    from tracebench.backends import resolve_backends

    cfg_path = root / "configs" / f"{name}-{phash}.json"
    if not cfg_path.is_file():
        raise TracebenchError(f"{cfg_path}: missing; cannot replay {name} again")
    cfg = json.loads(cfg_path.read_text())
    origin = cfg.get("origin", "built-in")
    backend = resolve_backends([origin if origin.endswith(".toml") else name])[0]
    params = backend.params(overrides=cfg["params"], where=str(cfg_path))
    if params.digest() != cfg["params_sha256"]:
        raise TracebenchError(f"{cfg_path}: backend {name} now gives other parameters than "
                              "the recorded ones; its per-event rows cannot be made again")
    return backend, params, backend.compile(params)


def replay_rows(root: Path, key: tuple[str, ...], tf: TraceFile, first: int, stop: int
                ) -> pa.Table:
    """Rows ``[first, stop)`` of one backend made again from the checkpoint before them."""
    from tracebench.replayer.driver import BackendRun, output_columns

    name, phash, tid = key
    path = root / "checkpoints" / f"backend={name}" / f"params={phash}" / f"trace={tid}" \
        / "part-0.parquet"
    if not path.is_file():
        raise TracebenchError(f"{root}: no per-event rows or checkpoints for {name} on {tid} "
                              "(replayed with --no-events)")
    meta = _meta(path)
    ck = pq.read_table(path)
    rows = ck.column("row").to_numpy()
    at = int(np.searchsorted(rows, first, side="right")) - 1
    backend, params, model = rebuild_backend(root, name, phash)
    run = BackendRun(backend, params, model, tf.meta.n_cpus)
    shape = tuple(meta.get("state_shape") or ())
    if shape != run.state.shape:
        raise TracebenchError(
            f"{path}: checkpoints of results version {meta.get('results_schema_version')} hold "
            f"a replay state of shape {shape}, this tracebench's model keeps {run.state.shape} "
            f"(results version {RESULTS_SCHEMA_VERSION}, docs/schema.md): replay the trace "
            "again to drill into it")
    state = np.frombuffer(ck.column("state")[at].as_py(), dtype="<i8")
    run.state[...] = state.reshape(shape)
    hdr = hist.geometry()
    parts, row = [], int(rows[at])
    while row < stop:
        cols = tf.read_rows(row, min(stop, row + DEFAULT_ROW_GROUP))
        out = run.run_chunk(cols, hdr)
        keep = max(0, first - row)
        if keep < len(cols["ts_ns"]):
            parts.append(joined_table({k: v[keep:] for k, v in cols.items()}, row + keep,
                                      {k: v[keep:] for k, v in out.items()}))
        row += len(cols["ts_ns"])
    if not parts:  # an empty window
        return joined_table(tf.read_rows(0, 0), first, output_columns(0)[0])
    return pa.concat_tables(parts)


def read_events(root: Path, backend: str | None, trace: str | None,
                window: tuple[int, int] | None, trace_file, params: str | None = None,
                made_again: bool = True, missing_ok: bool = False):
    """``results.read_events``: see there. Partitions are read or replayed on a pool of
    threads (Parquet decoding and the kernels release the GIL). ``None`` when nothing
    matches and ``missing_ok``, or no partition has stored rows and not ``made_again``."""
    import polars as pl

    jobs = []
    traces: dict[str, TraceFile] = {}
    for key in _partitions(root, backend, trace, params, missing_ok):
        name, phash, tid = key
        part = Path(f"backend={name}", f"params={phash}", f"trace={tid}", "part-0.parquet")
        stored = root / "events" / part
        if not stored.is_file() and not made_again:
            continue
        meta_from = stored if stored.is_file() else root / "summary" / part
        if tid not in traces:
            traces[tid] = _open_trace(_meta(meta_from), root, trace_file)
        jobs.append((key, stored, traces[tid]))
    bounds = {tid: (0, tf.num_rows) if window is None else tf.rows_between(*window)
              for tid, tf in traces.items()}

    def one(job) -> pl.DataFrame:
        key, stored, tf = job
        tf = TraceFile(tf.path)  # a reader of its own: one Parquet reader per thread
        first, stop = bounds[key[2]]
        table = (_stored(stored, tf, first, stop) if stored.is_file()
                 else replay_rows(root, key, tf, first, stop))
        return pl.from_arrow(table).with_columns(
            backend=pl.lit(key[0]), params=pl.lit(key[1]), trace=pl.lit(key[2])
        ).select(JOINED_COLUMNS)

    if not jobs:
        return None
    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1),
                            initializer=quiet_thread) as pool:
        frames = list(pool.map(one, jobs))
    return pl.concat(frames, how="vertical_relaxed")


__all__ = ["read_events", "rebuild_backend", "replay_rows"]
