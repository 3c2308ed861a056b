"""The documented Python API; the CLI is a thin layer over these functions.

>>> import tracebench
>>> tracebench.synth("timer-heavy", "t.parquet", n_cpus=2, duration="1s", seed=1)
>>> res = tracebench.replay(["t.parquet"], backends=["full-virt", "pv-clock"])
>>> res.summary.filter(kind="timer_arm")     # polars DataFrame
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from tracebench._version import __version__
from tracebench.atomic import atomic_dir
from tracebench.backends import resolve_backends
from tracebench.backends.params import param_values_from_toml
from tracebench.errors import TracebenchError, UsageError
from tracebench.replayer.driver import BackendRun, configure, replay_file
from tracebench.replayer.results import (
    EXITS_SCHEMA,
    SUMMARY_SCHEMA,
    EventWriter,
    RunContext,
    events_table,
    exit_rows,
    params_hash,
    partition_dir,
    summary_rows,
    trace_id,
    write_aggregates,
)
from tracebench.trace import TraceFile

if TYPE_CHECKING:
    import polars as pl


class ReplayResult:
    """What one replay produced, as polars frames: ``summary``, ``exits`` and ``events``
    (``None`` without per-event rows; lazy over ``out`` when results were written).

    The frames are built on first access: importing polars costs ~0.2 s, which the CLI's
    comparison table, read from the Arrow tables, does not pay. ``events`` is given as
    the in-memory row tables, ``(backend, params hash, trace id, chunks)`` per run, or ``None`` when
    no rows were made; with ``out`` set the rows are read back from there instead.
    """

    def __init__(self, summary: pa.Table, exits: pa.Table,
                 events: list[tuple[str, str, str, list[pa.Table]]] | None, out: Path | None):
        self._summary, self._exits, self._events, self.out = summary, exits, events, out

    @functools.cached_property
    def summary(self) -> pl.DataFrame:
        import polars as pl

        return pl.from_arrow(self._summary)

    @functools.cached_property
    def exits(self) -> pl.DataFrame:
        import polars as pl

        return pl.from_arrow(self._exits)

    @functools.cached_property
    def events(self) -> pl.DataFrame | pl.LazyFrame | None:
        import polars as pl

        if self._events is None:
            return None
        if self.out is not None:
            return pl.scan_parquet(self.out / "events", hive_partitioning=True)
        frames = [pl.from_arrow(pa.concat_tables(tables))
                  .with_columns(backend=pl.lit(backend), params=pl.lit(phash),
                                trace=pl.lit(trace))
                  for backend, phash, trace, tables in self._events]
        return pl.concat(frames, how="vertical_relaxed") if frames else None

    def comparison(self) -> list[dict]:
        """Per (trace, backend): the headline figures of the comparison table."""
        summary: dict[tuple, dict] = {}  # (trace, backend) -> {(kind, metric): row}
        for r in self._summary.to_pylist():
            summary.setdefault((r["trace"], r["backend"]), {})[r["kind"], r["metric"]] = r
        reasons: dict[tuple, dict[str, int]] = {}
        for r in self._exits.select(["trace", "backend", "reason", "count"]).to_pylist():
            per = reasons.setdefault((r["trace"], r["backend"]), {})
            per[r["reason"]] = per.get(r["reason"], 0) + r["count"]
        rows = []
        for (trace, backend), part in summary.items():
            allrow = part["all", "latency_ns"]
            irq = part["interrupts", "latency_ns"]
            terr = next(r for (_, metric), r in part.items() if metric == "timer_error_ns")
            ex = sorted(reasons.get((trace, backend), {}).items(), key=lambda rc: (-rc[1], rc[0]))
            total = max(sum(c for _, c in ex), 1)
            top = ", ".join(f"{r} {100 * c / total:.0f}%" for r, c in ex[:3])
            rows.append({
                "trace": trace, "backend": backend, "exits": allrow["exits"],
                "exits_per_s": allrow["exits_per_s"], "top_exit_reasons": top or "-",
                "overhead_pct": allrow["overhead_pct"], "irq_p50_us": _us(irq["p50_ns"]),
                "irq_p99_us": _us(irq["p99_ns"]), "irq_p99_9_us": _us(irq["p99_9_ns"]),
                "timer_err_p99_us": _us(terr["p99_ns"]),
            })
        return rows


def _rows_for(events: bool | Sequence[str], names: list[str]) -> bool | frozenset[str]:
    """``events`` as True / False, or the set of selected backends that write rows."""
    if isinstance(events, bool):
        return events
    if isinstance(events, str):
        events = [events]
    wanted = frozenset(events)
    unknown = sorted(wanted - set(names))
    if unknown:
        raise UsageError(f"per-event rows asked for {unknown[0]!r}, which is not among "
                              f"the selected backends ({', '.join(names)})")
    return wanted or False


def _us(ns: int | None) -> float | None:
    return None if ns is None else ns / 1000.0


def replay(traces: Sequence[str | os.PathLike], backends: Sequence[str] | None = None, *,
           out: str | os.PathLike | None = None, force: bool = False,
           params: Mapping[str, float] | None = None,
           params_file: str | os.PathLike | None = None, profile: str | None = None,
           events: bool | Sequence[str] = True, chunk_rows: int | None = None,
           threads: int | None = None,
           progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replay traces through backends.

    Parameters
    ----------
    traces : canonical trace files (``.parquet``).
    backends : registered names or ``.toml`` backend files; ``None`` = every registered one.
    out : results folder to write atomically (refused if it exists unless ``force``);
        ``None`` keeps everything in memory.
    params, params_file : cost overrides (``name -> value``; a TOML file), applied to every
        selected backend that has the parameter; a name none has is an error.
    profile : CPU cost profile name (``skx-2020``, ``nhm-2010``, ``kvm-2012``, ``modern-2024``).
    events : also produce per-event rows (off: only summaries and exit tables); or the
        names of the backends to produce them for (the others: summaries and exit tables).
    chunk_rows : rows per streamed chunk (results do not depend on it).
    threads : worker threads for the backends (default: CPU count).
    """
    if not traces:
        raise TracebenchError("no trace given")
    for name, value, hi in (("chunk_rows", chunk_rows, 1 << 28), ("threads", threads, 1024)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= hi):
            raise UsageError(f"{name} must be a whole number in 1..{hi}, got {value!r}")
    files = [TraceFile(t) for t in traces]  # validate every input before writing anything
    chosen = resolve_backends(list(backends) if backends else None)
    overrides = dict(param_values_from_toml(params_file)) if params_file else {}
    overrides.update(params or {})
    configured = configure(chosen, overrides, profile,
                           where=str(params_file) if params_file and not params else "--param")
    events = _rows_for(events, [b.name for b, _, _ in configured])
    if out is None:
        return _replay_all(files, configured, None, profile, events, chunk_rows, threads, progress)
    inputs = [*traces, *([params_file] if params_file else []),
              *(b.origin for b, _, _ in configured if b.origin.endswith(".toml"))]
    with atomic_dir(out, "results", force=force, inputs=inputs) as tmp:
        result = _replay_all(files, configured, tmp, profile, events, chunk_rows, threads,
                             progress)
        (tmp / "run.json").write_text(json.dumps({
            "tracebench_version": __version__, "profile": profile,
            "traces": [str(f.path) for f in files],
            "backends": [b.name for b, _, _ in configured],
            "events": events if isinstance(events, bool) else sorted(events),
        }, indent=2) + "\n")
    return ReplayResult(result._summary, result._exits, [] if events else None, Path(out))


def _replay_all(files, configured, root: Path | None, profile, events, chunk_rows, threads,
                progress) -> ReplayResult:
    summaries, exits, event_tables = [], [], []
    taken: set[str] = set()
    hasher = ThreadPoolExecutor(max_workers=1) if root is not None else None
    try:
        for tf in files:
            # results files carry the trace's digest: hashed beside the replay, not before
            digest = hasher.submit(tf.sha256) if hasher is not None else None
            ctx = RunContext(tf, trace_id(tf.path, taken), profile, digest)
            _replay_one(tf, ctx, configured, root, events, chunk_rows, threads, progress,
                        summaries, exits, event_tables)
    finally:
        if hasher is not None:
            hasher.shutdown(cancel_futures=True)
    return ReplayResult(pa.Table.from_pylist(summaries, schema=SUMMARY_SCHEMA),
                        pa.Table.from_pylist(exits, schema=EXITS_SCHEMA),
                        event_tables if events else None, root)


def _replay_one(tf, ctx, configured, root: Path | None, events, chunk_rows, threads, progress,
                summaries: list, exits: list, event_tables: list) -> None:
    """One trace through every backend; appends its summary, exit and event rows."""
    writers: dict[str, EventWriter] = {}
    mem: dict[str, list[pa.Table]] = {}

    def sink(run: BackendRun, cols, out):
        name = run.backend.name
        if root is not None:
            if name not in writers:  # first chunk: each backend has its own file
                part = partition_dir(root, "events", name, run.params.digest(), ctx.trace_id)
                writers[name] = EventWriter(part / "part-0.parquet",
                    ctx.metadata(run, "events"))
            writers[name].write(cols, out)
        else:
            mem.setdefault(name, []).append(events_table(cols, out))

    try:
        # Files: each chunk is written before the sink returns, so the kernels may
        # reuse their output arrays; in memory the frames keep them.
        runs = replay_file(tf, configured, sink if events else None, chunk_rows, threads,
                           progress, sink_copies=root is not None,
                           rows_for=None if events is True else events)
    finally:
        for w in writers.values():
            w.close()
    for run in runs:
        summaries += summary_rows(run, ctx)
        exits += exit_rows(run, ctx)
        if root is not None:
            write_aggregates(root, run, ctx)
        elif events and mem.get(run.backend.name):
            event_tables.append((run.backend.name, params_hash(run.params.digest()),
                                 ctx.trace_id, mem[run.backend.name]))


def synth(scenario: str, out: str | os.PathLike, *, n_cpus: int, duration: str | int,
          seed: int, params: Mapping | None = None, force: bool = False) -> Path:
    """Synthesize ``scenario`` into the trace file ``out``.

    ``duration`` is ns (int) or a string such as ``"10s"`` / ``"250ms"``; ``params``
    override the scenario's parameters (``tracebench synth --list`` shows them).
    Also reachable as ``tracebench.synth(...)``.
    """
    from tracebench.scenarios import synthesize_to_file
    from tracebench.units import parse_duration_ns

    duration_ns = duration if isinstance(duration, int) else parse_duration_ns(duration)
    check_synth_size(scenario, out, n_cpus, duration_ns, seed, params)
    synthesize_to_file(out, scenario, n_cpus, duration_ns, seed, params, force=force)
    return Path(out)


#: how much of a synth request is generated to estimate its size
_PROBE_NS = 20_000_000
_PROBE_CPUS = 4
#: fewer bytes per event than any synthetic trace takes on disk (measured 2 to 8)
_MIN_BYTES_PER_EVENT = 1


def check_synth_size(scenario: str, out: str | os.PathLike, n_cpus: int, duration_ns: int,
                     seed: int, params: Mapping | None) -> int:
    """Refuse, before any work, a synth request that cannot fit: a duration or vCPU count out
    of range, more events than a trace holds, or a trace larger than the free space where
    it goes. Returns the estimated event count (from 20 ms on up to 4 vCPUs, scaled)."""
    import shutil

    from tracebench.limits import check_cpus, check_duration_ns, check_event_budget
    from tracebench.scenarios import generate, get_scenario

    check_duration_ns(duration_ns)
    check_cpus(n_cpus)
    spec = get_scenario(scenario)
    probe_cpus = min(n_cpus, max(_PROBE_CPUS, spec.min_cpus))
    probe_ns = min(duration_ns, _PROBE_NS)
    cols, _ = generate(scenario, probe_cpus, probe_ns, seed, params)
    rate_per_s = len(cols["ts_ns"]) / probe_cpus / (probe_ns / 1e9)
    check_event_budget(n_cpus, duration_ns, rate_per_s, f"synth {scenario}")
    events = int(rate_per_s * n_cpus * duration_ns / 1e9)
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if events * _MIN_BYTES_PER_EVENT > free:
        raise TracebenchError(f"{out}: synth {scenario} would write ~{events:,} events "
                              f"(at least {events * _MIN_BYTES_PER_EVENT / 1e9:.3g} GB), "
                              f"{free / 1e9:.3g} GB free on that filesystem")
    return events
