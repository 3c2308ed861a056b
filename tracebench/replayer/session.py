"""One replay session: traces through configured backends, into memory or a results folder.

The driver (``driver.py``) runs kernels and hands out per-event rows; this module wires its
sink to the results writer (``results.py``), keeps each backend's aggregates as plain
``BackendTotals``, and records the run (``run.json``). ``tracebench.api.replay`` and sweeps
call it; it knows no CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

from tracebench._version import __version__
from tracebench.backends.configure import Configured
from tracebench.backends.layout import S_SHIFT
from tracebench.errors import UsageError
from tracebench.replayer.driver import BackendRun, replay_file
from tracebench.replayer.frames import ReplayResult
from tracebench.replayer.perevent import Checkpoints, EventWriter, joined_table
from tracebench.replayer.results import (
    EXITS_SCHEMA,
    SUMMARY_SCHEMA,
    VCPUS_SCHEMA,
    BackendIdentity,
    BackendTotals,
    RunContext,
    exit_rows,
    partition_dir,
    summary_rows,
    trace_id,
    vcpu_rows,
    write_aggregates,
)
from tracebench.signals import quiet_thread
from tracebench.trace import TraceFile


def identity_of(run: BackendRun) -> BackendIdentity:
    """The writer's view of who made a run's results."""
    return BackendIdentity(run.backend.name, run.backend.origin, dict(run.backend.mechanisms),
                           run.params.as_dict(), run.params.digest(), run.model.describe())


def totals_of(run: BackendRun) -> BackendTotals:
    """A finished run's aggregates as plain arrays for the writer."""
    return BackendTotals(identity_of(run), run.kind_agg, run.exit_agg, run.lat_counts,
                         run.terr_counts, run.state[:, S_SHIFT].copy())


def rows_for(events: bool | Sequence[str] | None, names: list[str]
             ) -> bool | frozenset[str] | None:
    """``events`` as True / False / None (checkpoints only), or the set of selected
    backends that write rows."""
    if events is None or isinstance(events, bool):
        return events
    if isinstance(events, str):
        events = [events]
    wanted = frozenset(events)
    unknown = sorted(wanted - set(names))
    if unknown:
        raise UsageError(f"per-event rows asked for {unknown[0]!r}, which is not among "
                              f"the selected backends ({', '.join(names)})")
    return wanted or False


def replay_traces(files: Sequence[TraceFile], configured: list[Configured], root: Path | None,
                  profile: str | None, events: bool | frozenset[str] | None,
                  chunk_rows: int | None = None, threads: int | None = None,
                  progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replay every trace through every configured backend.

    With ``root`` the results dataset is written under it (the caller makes ``root`` a
    temporary folder and renames it into place); without, everything stays in memory.
    ``events``: per-event rows for every backend (``True``), the named backends, none
    (``False``), or none but checkpoints to make them again on demand (``None``: the
    default with ``root``; in memory it means every backend's rows).
    """
    if root is None and events is None:
        events = True
    summaries, exits, vcpus, event_tables = [], [], [], []
    taken: set[str] = set()
    hasher = (ThreadPoolExecutor(max_workers=1, initializer=quiet_thread)
              if root is not None else None)
    try:
        for tf in files:
            # results files carry the trace's digest: hashed beside the replay, not before
            digest = hasher.submit(tf.sha256) if hasher is not None else None
            ctx = RunContext(tf, trace_id(tf.path, taken), profile, digest)
            for totals, tables in replay_trace(tf, ctx, configured, root, events, chunk_rows,
                                               threads, progress):
                summaries += summary_rows(totals, ctx)
                exits += exit_rows(totals, ctx)
                vcpus += vcpu_rows(totals, ctx)
                if tables:
                    who = totals.identity
                    event_tables.append((who.name, who.params_hash, ctx.trace_id, tables))
    finally:
        if hasher is not None:
            hasher.shutdown(cancel_futures=True)
    return ReplayResult(pa.Table.from_pylist(summaries, schema=SUMMARY_SCHEMA),
                        pa.Table.from_pylist(exits, schema=EXITS_SCHEMA),
                        ([] if root is not None else event_tables)
                        if events is not False else None, root,
                        pa.Table.from_pylist(vcpus, schema=VCPUS_SCHEMA))


def replay_trace(tf: TraceFile, ctx: RunContext, configured: list[Configured],
                 root: Path | None, events: bool | frozenset[str] | None,
                 chunk_rows: int | None = None, threads: int | None = None,
                 progress: Callable[[int], None] | None = None
                 ) -> list[tuple[BackendTotals, list[pa.Table]]]:
    """One trace through every backend: per backend its totals and, in memory, its rows.

    With ``root``, per-event rows stream into ``events/`` chunk by chunk (in the compact
    layout of ``perevent.py``), and the summary, exit, checkpoint and config files are
    written once the trace is done.
    """
    writers: dict[str, EventWriter] = {}
    mem: dict[str, list[pa.Table]] = {}
    done: dict[str, int] = {}  # rows each backend has handed over (chunks come in order)
    checkpoints: dict[str, Checkpoints] = {}

    def sink(run: BackendRun, cols, out):
        name = run.backend.name
        first = done.get(name, 0)
        done[name] = first + len(cols["ts_ns"])
        if root is None:
            mem.setdefault(name, []).append(joined_table(cols, first, out))
            return
        if name not in writers:  # first chunk: each backend has its own file
            who = identity_of(run)
            part = partition_dir(root, "events", who.name, who.params_sha256, ctx.trace_id)
            writers[name] = EventWriter(part / "part-0.parquet", ctx.metadata(who, "events"))
        writers[name].write(first, out)

    def checkpoint(run: BackendRun, row: int) -> None:
        name = run.backend.name
        if name not in checkpoints:  # first chunk: each backend has its own file
            who = identity_of(run)
            part = partition_dir(root, "checkpoints", who.name, who.params_sha256, ctx.trace_id)
            checkpoints[name] = Checkpoints(part / "part-0.parquet",
                                            ctx.metadata(who, "checkpoints"))
        checkpoints[name].take(row, run.state)

    try:
        # Files: each chunk is written before the sink returns, so the kernels may
        # reuse their output arrays; in memory the frames keep them.
        runs = replay_file(tf, configured, sink if events else None, chunk_rows, threads,
                           progress, sink_copies=root is not None,
                           rows_for=None if events is True else events,
                           checkpoint=checkpoint if root is not None and events is not False
                           else None)
    finally:
        for w in [*writers.values(), *checkpoints.values()]:
            w.close()
    out = []
    for run in runs:
        totals = totals_of(run)
        if root is not None:
            write_aggregates(root, totals, ctx)
        out.append((totals, mem.get(run.backend.name, [])))
    return out


def write_run_record(root: Path, files: Sequence[TraceFile], configured: list[Configured],
                     profile: str | None, events: bool | frozenset[str] | None) -> None:
    """``run.json``: what a results folder was made from, for people and for ``dataset``."""
    (root / "run.json").write_text(json.dumps({
        "tracebench_version": __version__, "profile": profile,
        "traces": [str(f.path) for f in files],
        "backends": [c.backend.name for c in configured],
        # null: no stored rows, checkpoints to make any backend's again (read_events)
        "events": events if events is None or isinstance(events, bool) else sorted(events),
    }, indent=2) + "\n")
