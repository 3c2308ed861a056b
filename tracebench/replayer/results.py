"""The results dataset (DESIGN.md section 5): per-event rows, exit reasons, summaries.

Layout under the output folder (Hive partitions, readable by polars, pyarrow, DuckDB)::

    checkpoints/backend=NAME/params=HASH/trace=ID/part-0.parquet   (perevent.py)
    events/backend=NAME/params=HASH/trace=ID/part-0.parquet        (on request; perevent.py)
    exits/backend=NAME/params=HASH/trace=ID/part-0.parquet
    summary/backend=NAME/params=HASH/trace=ID/part-0.parquet
    vcpus/backend=NAME/params=HASH/trace=ID/part-0.parquet
    configs/NAME-<params sha256[:12]>.json
    run.json

``HASH`` is the first 12 hex digits of the parameter set's SHA-256 (``params`` column in
the summary and exit tables): runs of one backend under different parameters (a sweep, or
two replays merged into one dataset) sit side by side, and no float is ever a path.

Every Parquet file carries, under the ``tracebench`` key, the trace metadata and
digest, the backend's mechanisms and its full parameter set with its hash.
"""

from __future__ import annotations

import dataclasses
import json
import re
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tracebench import hist
from tracebench._version import __version__
from tracebench.backends.layout import A_COUNT, E_COUNT, E_MAX, E_MIN, E_TOTAL
from tracebench.errors import TracebenchError
from tracebench.schema import (
    INTERRUPT_KINDS,
    METADATA_KEY,
    RESULTS_SCHEMA_VERSION,
    SCHEMA_VERSION,
    EventKind,
    ExitReason,
)
from tracebench.trace import TraceFile


def trace_id(path: Path, taken: set[str]) -> str:
    """A partition-safe, unique id from the file name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name.removesuffix(".parquet")) or "trace"
    tid, n = base, 2
    while tid in taken:
        tid, n = f"{base}-{n}", n + 1
    taken.add(tid)
    return tid


@dataclasses.dataclass(frozen=True)
class BackendIdentity:
    """Which backend, under which parameters: what every result file says of its maker."""

    name: str
    origin: str
    mechanisms: dict[str, str]
    params: dict[str, float]
    params_sha256: str
    model_ns: dict

    @property
    def params_hash(self) -> str:
        return params_hash(self.params_sha256)


@dataclasses.dataclass(frozen=True)
class BackendTotals:
    """One backend's replay of one trace summed up: plain arrays, laid out as the kernels
    accumulate them (``backends/kernel.py``)."""

    identity: BackendIdentity
    kind_agg: np.ndarray  # [kind, (count, exits, stall_ns)]
    exit_agg: np.ndarray  # [cpu, reason, (count, total_ns, min_ns, max_ns)]
    lat_counts: np.ndarray  # [kind, hdr counts]
    terr_counts: np.ndarray  # [hdr counts] timer error of matched timer interrupts
    final_lag_ns: np.ndarray  # [cpu] how far each vCPU's timeline ended behind the trace


@dataclasses.dataclass
class RunContext:
    """What every result file of one (trace, backend) says about where it came from.

    ``digest``: the trace's SHA-256 being computed on another thread (``hashlib`` releases
    the GIL; a 1 B-event trace takes ~3 s to hash), or ``None`` to hash when first asked.
    """

    trace: TraceFile
    trace_id: str
    profile: str | None
    digest: Future | None = None

    @property
    def trace_sha256(self) -> str:
        if self.digest is None:
            return self.trace.sha256()
        return self.digest.result()

    def metadata(self, who: BackendIdentity, table: str) -> dict:
        return {
            "table": table, "schema_version": SCHEMA_VERSION, "tracebench_version": __version__,
            "results_schema_version": RESULTS_SCHEMA_VERSION,
            "trace_id": self.trace_id, "trace_file": str(self.trace.path),
            # where per-event drill-down finds the trace again, and how it checks it
            "trace_path": str(self.trace.path.resolve()), "trace_rows": self.trace.num_rows,
            "trace_bytes": self.trace.path.stat().st_size,
            "trace_sha256": self.trace_sha256, "trace": dataclasses.asdict(self.trace.meta),
            "backend": who.name, "backend_origin": who.origin,
            "mechanisms": dict(who.mechanisms), "profile": self.profile,
            "params": who.params, "params_sha256": who.params_sha256,
            "model_ns": who.model_ns,
        }


def _pct_row(counts: np.ndarray) -> dict:
    p50, p90, p99, p999, pmax = hist.percentiles(counts)
    return {"p50_ns": p50, "p90_ns": p90, "p99_ns": p99, "p99_9_ns": p999, "max_ns": pmax,
            "hdr": hist.encode(counts)}


def summary_rows(run: BackendTotals, ctx: RunContext) -> list[dict]:
    """One row per event kind present, plus ``interrupts`` and ``all``; timer error rows."""
    meta = ctx.trace.meta
    secs = max(meta.duration_ns, 1) / 1e9
    capacity_ns = max(meta.duration_ns, 1) * meta.n_cpus

    def row(kind: str, metric: str, count, exits, stall, counts) -> dict:
        return {"backend": run.identity.name, "params": run.identity.params_hash,
                "trace": ctx.trace_id, "kind": kind,
                "metric": metric, "count": int(count), "exits": int(exits),
                "exits_per_s": exits / secs, "stall_ns": int(stall),
                "overhead_pct": 100.0 * stall / capacity_ns, **_pct_row(counts)}

    rows = []
    agg = run.kind_agg
    for k in EventKind:
        if agg[k, A_COUNT]:
            rows.append(row(k.label, "latency_ns", *agg[k], run.lat_counts[k]))
    irq = list(INTERRUPT_KINDS)
    rows.append(row("interrupts", "latency_ns", *agg[irq].sum(axis=0),
                    run.lat_counts[irq].sum(axis=0)))
    rows.append(row("all", "latency_ns", *agg.sum(axis=0), run.lat_counts.sum(axis=0)))
    rows[-1]["max_lag_ns"] = int(run.final_lag_ns.max(initial=0))
    rows[-1]["saturated_vcpus"] = int(saturated(run.final_lag_ns, meta.duration_ns).sum())
    t = EventKind.TIMER_IRQ
    rows.append(row(t.label, "timer_error_ns", run.terr_counts.sum(), 0, 0, run.terr_counts))
    return rows


def exit_rows(run: BackendTotals, ctx: RunContext) -> list[dict]:
    """Per vCPU x exit reason, the columns ``perf kvm stat report`` users know."""
    agg = run.exit_agg
    total_n = int(agg[:, 1:, E_COUNT].sum())
    total_t = int(agg[:, 1:, E_TOTAL].sum())
    who = run.identity
    rows = []
    for cpu in range(agg.shape[0]):
        for r in ExitReason:
            n = int(agg[cpu, r, E_COUNT])
            if r is ExitReason.NONE or n == 0:
                continue
            t = int(agg[cpu, r, E_TOTAL])
            rows.append({"backend": who.name, "params": who.params_hash, "trace": ctx.trace_id,
                         "cpu": cpu,
                         "reason": r.name, "count": n, "samples_pct": 100.0 * n / total_n,
                         "time_pct": 100.0 * t / total_t if total_t else 0.0,
                         "total_ns": t, "min_ns": int(agg[cpu, r, E_MIN]),
                         "max_ns": int(agg[cpu, r, E_MAX]), "mean_ns": t / n})
    return rows


#: A vCPU whose timeline ends this far behind the trace (as a fraction of the trace's
#: duration) could not keep up: the replay is open-loop (the trace's events keep their
#: times), so its later events and interrupts queue behind work the model says it still owes.
SATURATION_LAG_FRACTION = 0.10


def saturated(final_lag_ns: np.ndarray, duration_ns: int) -> np.ndarray:
    """Which vCPUs ended more than ``SATURATION_LAG_FRACTION`` of the trace behind it."""
    return final_lag_ns > SATURATION_LAG_FRACTION * max(duration_ns, 1)


def vcpu_rows(run: BackendTotals, ctx: RunContext) -> list[dict]:
    """Per vCPU: exits and their time (HLT's blocked time left out: it is idle, not
    overhead), the lag at its last event, and whether it could keep up."""
    who, dur = run.identity, max(ctx.trace.meta.duration_ns, 1)
    agg = run.exit_agg
    busy = [r for r in ExitReason if r not in (ExitReason.NONE, ExitReason.HLT)]
    sat = saturated(run.final_lag_ns, dur)
    rows = []
    for cpu in range(agg.shape[0]):
        exit_ns = int(agg[cpu, busy, E_TOTAL].sum())
        lag = int(run.final_lag_ns[cpu])
        rows.append({"backend": who.name, "params": who.params_hash, "trace": ctx.trace_id,
                     "cpu": cpu, "exits": int(agg[cpu, 1:, E_COUNT].sum()), "exit_ns": exit_ns,
                     "overhead_pct": 100.0 * exit_ns / dur, "final_lag_ns": lag,
                     "lag_pct": 100.0 * lag / dur, "saturated": bool(sat[cpu])})
    return rows


SUMMARY_SCHEMA = pa.schema([
    ("backend", pa.string()), ("params", pa.string()), ("trace", pa.string()),
    ("kind", pa.string()),
    ("metric", pa.string()), ("count", pa.int64()), ("exits", pa.int64()),
    ("exits_per_s", pa.float64()), ("stall_ns", pa.int64()), ("overhead_pct", pa.float64()),
    ("p50_ns", pa.int64()), ("p90_ns", pa.int64()), ("p99_ns", pa.int64()),
    ("p99_9_ns", pa.int64()), ("max_ns", pa.int64()), ("hdr", pa.string()),
    ("max_lag_ns", pa.int64()), ("saturated_vcpus", pa.int64()),
])
VCPUS_SCHEMA = pa.schema([
    ("backend", pa.string()), ("params", pa.string()), ("trace", pa.string()),
    ("cpu", pa.uint16()), ("exits", pa.int64()), ("exit_ns", pa.int64()),
    ("overhead_pct", pa.float64()), ("final_lag_ns", pa.int64()), ("lag_pct", pa.float64()),
    ("saturated", pa.bool_()),
])
EXITS_SCHEMA = pa.schema([
    ("backend", pa.string()), ("params", pa.string()), ("trace", pa.string()),
    ("cpu", pa.uint16()),
    ("reason", pa.string()), ("count", pa.int64()), ("samples_pct", pa.float64()),
    ("time_pct", pa.float64()), ("total_ns", pa.int64()), ("min_ns", pa.int64()),
    ("max_ns", pa.int64()), ("mean_ns", pa.float64()),
])


def rows_table(rows: list[dict], schema: pa.Schema, meta: dict | None = None) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=schema)
    if meta is not None:
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return table


#: hex digits of the parameter-set SHA-256 that name its partition
PARAMS_HASH_LEN = 12


def params_hash(digest: str) -> str:
    """The partition name of a parameter set from its full SHA-256."""
    return digest[:PARAMS_HASH_LEN]


#: what a partition value may be: it becomes one path component, so no separator, no
#: leading dot (``..``, hidden files), nothing a shell or Hive reader would misread
SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


def safe_component(value: str, what: str) -> str:
    """``value`` if it is safe as one path component, else a :class:`TracebenchError`."""
    if not isinstance(value, str) or not SAFE_COMPONENT.fullmatch(value):
        raise TracebenchError(f"{what} {value!r} cannot name a results partition (letters, "
                              "digits, _ . + - only, not starting with '.' or '-')")
    return value


def partition_dir(root: Path, table: str, backend: str, params_digest: str, tid: str) -> Path:
    # Every value is checked again here, whatever validated it before: this is the one
    # place names from files become paths.
    return (root / safe_component(table, "table") / f"backend={safe_component(backend, 'backend')}"
            / f"params={safe_component(params_hash(params_digest), 'parameter hash')}"
            / f"trace={safe_component(tid, 'trace id')}")


def write_aggregates(root: Path, run: BackendTotals, ctx: RunContext) -> None:
    who = run.identity
    for name, rows, schema in (("summary", summary_rows(run, ctx), SUMMARY_SCHEMA),
                               ("exits", exit_rows(run, ctx), EXITS_SCHEMA),
                               ("vcpus", vcpu_rows(run, ctx), VCPUS_SCHEMA)):
        d = partition_dir(root, name, who.name, who.params_sha256, ctx.trace_id)
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows_table(rows, schema, ctx.metadata(who, name)), d / "part-0.parquet")
    cfg = root / "configs" / f"{safe_component(who.name, 'backend')}-{who.params_hash}.json"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(json.dumps({"backend": who.name, "origin": who.origin,
                               "mechanisms": dict(who.mechanisms), "params": who.params,
                               "params_sha256": who.params_sha256}, indent=2, sort_keys=True)
                   + "\n")


def read_events(root, backend: str | None = None, trace: str | None = None,
                window: tuple[int, int] | None = None, trace_file=None, *,
                params: str | None = None, made_again: bool = True, missing_ok: bool = False):
    """Per-event rows of a results folder, joined to their trace: a polars DataFrame.

    The one reader of per-event results (reports, exports and the API go through it).
    Rows written with ``--events`` / ``--events-for`` are read back; for any other
    backend the rows are made again by replaying the stretch asked for from the
    checkpoint before it: exactly the rows a full replay writes, in the time of a chunk.

    Parameters
    ----------
    root : results folder (``replay -o``).
    backend, trace : a backend name and a trace id (partition values); ``None``: all.
    window : ``(start_ns, end_ns)``: only events with ``start_ns <= ts_ns < end_ns``.
    trace_file : where the trace is now, if it moved since the replay (checked by size
        and row count against what the results recorded).
    params : a parameter-set hash (``params=`` partition); ``None``: all.
    made_again : replay from checkpoints where no rows are stored (``False``: stored rows
        only; what a whole-folder summary such as ``stat`` wants on a long trace).
    missing_ok : no replay matching the selection gives ``None`` instead of an error.

    Returns
    -------
    One row per (backend, params, trace, event), columns
    :data:`~tracebench.replayer.perevent.JOINED_COLUMNS` (``row``: the event's row in
    its trace), in partition order then row order; ``None`` if ``made_again`` is off and
    no rows are stored for the selection, or nothing matches and ``missing_ok``.
    """
    from tracebench.replayer.drill import read_events as read

    return read(Path(root), backend, trace, window, trace_file, params, made_again, missing_ok)
