"""Timeline export: Chrome Trace Event JSON that opens in ui.perfetto.dev.

One process per backend (and parameter set), one thread per vCPU; VM exits are complete
(``X``) slices, interrupt handlers ``B``/``E`` slices, interrupt arrivals instants (``i``)
on the vCPU, and a flow arrow (``s`` -> ``f``) runs from the raise (timer expiry, IPI
send, device interrupt: a zero-length slice on the backend's "interrupt sources" thread)
to the handler's start. Timestamps are microseconds (floats keep ns precision).

Perfetto needs the slices of one track to nest (PEERS.md section 3): an exit of an
arriving interrupt can overlap a guest action's stall, so each vCPU's slices are laid out
on as few tracks as keep them nested ("vCPU 0", "vCPU 0 #2", ...), never overlapping.

Rows come from :func:`timeline_rows` only: from a results folder through
:func:`tracebench.report.load.event_rows` (plus the trace's handler times when the trace
file is still where the results say), from a trace by replaying it in memory.
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from tracebench.atomic import atomic_path, mentions
from tracebench.errors import TracebenchError
from tracebench.report.load import Results, event_rows

IRQ_KINDS = ("timer_irq", "device_irq", "ipi_irq")
RAISE_NAMES = {"timer_irq": "timer expiry", "device_irq": "device interrupt",
               "ipi_irq": "IPI sent"}
#: trace events beyond which an export stops (and says so): a window keeps it far below
DEFAULT_LIMIT = 2_000_000
#: events x backends an in-memory replay of a trace may hold (~60 B a row): beyond it the
#: export asks for --warmup, fewer backends, or a results folder instead of running out
#: of memory
MEMORY_ROWS = 40_000_000
SOURCES_TID = 100_000
#: how long before --from an event may have been traced and still run in the window: the
#: rows of that stretch are read too (a vCPU lagging the trace by more is a saturated one;
#: its later rows then miss from the window's start)
LAG_SLACK_NS = 1_000_000_000


def _window(df: pl.LazyFrame, start_ns: int | None, end_ns: int | None,
            vcpu: int | None) -> pl.LazyFrame:
    # rows whose replayed time (handler start, or action start) falls in the window
    if start_ns is not None:
        df = df.filter(pl.col("start_ns") >= start_ns)
    if end_ns is not None:
        df = df.filter(pl.col("start_ns") < end_ns)
    if vcpu is not None:
        df = df.filter(pl.col("cpu") == vcpu)
    return df


def _trace_columns(path: Path, upto_ns: int | None) -> pl.LazyFrame:
    """Row position, handler time and vector of a canonical trace (for the join)."""
    return (pl.scan_parquet(path, glob=False).select("ts_ns", "dur_ns", "vector")
            .with_row_index("row")
            .filter(pl.col("ts_ns") < upto_ns if upto_ns is not None else pl.lit(True))
            .select("row", "dur_ns", "vector"))


def rows_from_results(results: str | Path, backends: list[str] | None, start_ns, end_ns,
                      vcpu) -> pl.DataFrame:
    """Per-event rows in the window from a results folder (with ``dur_ns`` from the trace
    when its file is still there and its digest matches, else 0)."""
    res = Results(results)
    present = sorted(set(res.summary["backend"].to_list()))
    for b in backends or []:
        if b not in present:
            raise TracebenchError(f"no backend {b!r} in {res.root}; present: "
                                  f"{', '.join(present)}")
    frames = []
    for part in res.parts:
        if backends and part.backend not in backends:
            continue
        # stored rows, or rows made again from the checkpoints (exact) for the trace-time
        # window that holds the replayed-time window (a vCPU runs late, never early)
        window = None
        if start_ns is not None or end_ns is not None:
            window = (0 if start_ns is None else max(0, start_ns - LAG_SLACK_NS),
                      end_ns if end_ns is not None else 1 << 62)
        rows = event_rows(res.root, part.backend, part.params, part.trace, window=window,
                          made_again=True)
        if rows is None:
            continue
        trace_file = Path(part.meta.get("trace_file", ""))
        if trace_file.is_file() and _same_digest(trace_file, part.meta.get("trace_sha256")):
            rows = rows.join(_trace_columns(trace_file, None)
                             .with_columns(pl.col("row").cast(pl.Int64)), on="row", how="left")
        else:
            rows = rows.with_columns(dur_ns=pl.lit(0, pl.Int64), vector=pl.lit(-1, pl.Int16))
        frames.append(_window(rows, start_ns, end_ns, vcpu)
                      .with_columns(series=pl.lit(f"{part.backend} ({part.params}) "
                                                  f"trace {part.trace}")))
    if not frames:
        raise TracebenchError(f"{res.root}: no per-event rows for the selection (replay "
                              f"with --events, or export from the trace file)")
    return pl.concat(frames, how="vertical_relaxed").collect()


_DIGESTS: dict[Path, str] = {}


def _same_digest(path: Path, digest: str | None) -> bool:
    from tracebench.trace import file_sha256

    if not digest:
        return False
    if path not in _DIGESTS:
        _DIGESTS[path] = file_sha256(path)
    return _DIGESTS[path] == digest


def rows_from_trace(trace: str | Path, backends: list[str] | None, start_ns, end_ns, vcpu,
                    warmup_ns: int | None = None) -> pl.DataFrame:
    """Replay ``trace`` in memory (``tracebench.api.replay``) and keep the window's rows.

    The replay runs from the trace start (exact), or from ``warmup_ns`` before the window
    (bounded memory on a long trace; the model state then starts fresh there).
    """
    from tracebench import api
    from tracebench.trace import TraceFile, empty_columns, write_trace

    tf = TraceFile(trace)
    lo = 0 if warmup_ns is None or start_ns is None else max(start_ns - warmup_ns, 0)
    parts = []
    for cols in tf.chunks():
        ts = cols["ts_ns"]
        keep = (ts >= lo) & (ts < end_ns if end_ns is not None else True)
        if keep.any():
            parts.append({k: v[keep] for k, v in cols.items()})
        if end_ns is not None and len(ts) and ts[-1] >= end_ns:
            break
    cols = ({k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts
            else empty_columns(0))
    from tracebench.backends import resolve_backends

    n_backends = len(resolve_backends(backends))
    if len(cols["ts_ns"]) * n_backends > MEMORY_ROWS:
        raise TracebenchError(
            f"{trace}: reaching the window means replaying {len(cols['ts_ns']):,} events x "
            f"{n_backends} backends in memory; pass --warmup (e.g. --warmup 1s: replay only "
            f"that long before --from), fewer -b, or export from a results folder "
            f"(replay -o)")
    with tempfile.TemporaryDirectory(prefix="tracebench-export-") as tmp:
        path = Path(tmp) / "window.parquet"
        write_trace(path, cols, tf.meta)
        res = api.replay([path], backends or None, events=True)
    events = res.events
    if events is None or events.height == 0:
        raise TracebenchError(f"{trace}: no events in the window")
    extra = pl.DataFrame({"dur_ns": cols["dur_ns"], "vector": cols["vector"]}).with_row_index(
        "row")
    frames = []
    for (backend, params), part in events.group_by(["backend", "params"], maintain_order=True):
        part = part.drop("row").with_row_index("row").join(extra, on="row", how="left")
        frames.append(_window(part.lazy(), start_ns, end_ns, vcpu)
                      .with_columns(series=pl.lit(f"{backend} ({params})")).collect())
    return pl.concat(frames, how="vertical_relaxed")


def timeline_rows(source: str | Path, backends: list[str] | None = None,
                  start_ns: int | None = None, end_ns: int | None = None,
                  vcpu: int | None = None, warmup_ns: int | None = None) -> pl.DataFrame:
    """The per-event rows a timeline is drawn from, for a results folder or a trace."""
    p = Path(source)
    if p.is_dir():
        return rows_from_results(p, backends, start_ns, end_ns, vcpu)
    return rows_from_trace(p, backends, start_ns, end_ns, vcpu, warmup_ns)


def _us(ns) -> float:
    return round(int(ns) / 1000.0, 3)


class _Track:
    """One vCPU's slices, laid out after the fact on sub-tracks on which they nest (slices
    are found out of time order: an idle period or an interrupt's exit starts before the
    row that reports it)."""

    def __init__(self):
        self.items: list[list] = []  # [start, end, payload, sub-track]

    def add(self, start: int, end: int, payload: tuple) -> list:
        item = [start, end, payload, 0]
        self.items.append(item)
        return item

    def layout(self) -> list[list[tuple]]:
        """Slices per sub-track; each item's sub-track is set in place."""
        stacks: list[list[int]] = []  # per sub-track: ends of the open slices
        subs: list[list[tuple]] = []
        for item in sorted(self.items, key=lambda it: (it[0], -it[1])):
            start, end = item[0], item[1]
            i = _fitting(stacks, start, end)
            if i == len(stacks):
                stacks.append([])
                subs.append([])
            stacks[i].append(end)
            subs[i].append((start, end, item[2]))
            item[3] = i
        return subs


def _fitting(stacks: list[list[int]], start: int, end: int) -> int:
    """The first sub-track on which [start, end) nests (closing what ended by ``start``),
    or ``len(stacks)`` for a new one."""
    for i, stack in enumerate(stacks):
        while stack and stack[-1] <= start:
            stack.pop()
        if not stack or end <= stack[-1]:
            return i
    return len(stacks)


def build_trace_events(rows: pl.DataFrame, limit: int = DEFAULT_LIMIT) -> tuple[list, bool]:
    """Chrome Trace Event list for ``rows`` (see the module docstring); True when the
    ``limit`` on emitted events cut it short."""
    out: list[dict] = []
    truncated = False
    flow_id = 0
    for pid, (series, part) in enumerate(rows.sort("start_ns").group_by(
            "series", maintain_order=True), start=1):
        series = series[0] if isinstance(series, tuple) else series
        out.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                    "args": {"name": series}})
        out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": SOURCES_TID,
                    "args": {"name": "interrupt sources"}})
        tracks: dict[int, _Track] = {}
        idle_since: dict[int, int] = {}
        sources: list[dict] = []
        flows: list[tuple[int, int, int, list]] = []  # (cpu, handler start, id, its slice)
        budget = limit - len(out)
        for n, r in enumerate(part.iter_rows(named=True)):
            if n % 64 == 0 and sum(len(t.items) for t in tracks.values()) \
                    + len(sources) > budget:
                truncated = True  # stop reading rows: the output would pass the limit
                break
            cpu, kind, start = r["cpu"], r["kind"], r["start_ns"]
            track = tracks.setdefault(cpu, _Track())
            reason = r["exit_reason"]
            if kind in IRQ_KINDS:
                arrive = start - r["latency_ns"]
                args = {"latency_ns": r["latency_ns"], "vector": r["vector"]}
                if r["timer_error_ns"] is not None:
                    args["timer_error_ns"] = r["timer_error_ns"]
                if r["exits"] and r["exit_ns"]:
                    lo = max(start - r["exit_ns"], arrive)
                    track.add(lo, start, ("X", f"{reason} ({kind})",
                                          {"exits": r["exits"], "exit_ns": r["exit_ns"]}))
                handler = track.add(start, start + max(r["dur_ns"] or 0, 0),
                                    ("BE", kind, args))
                flow_id += 1
                sources.append({"ph": "X", "name": f"{RAISE_NAMES[kind]} -> vCPU {cpu}",
                                "cat": "raise", "pid": pid, "tid": SOURCES_TID,
                                "ts": _us(arrive), "dur": 0.0})
                sources.append({"ph": "s", "name": "delivery", "cat": "irq", "id": flow_id,
                                "pid": pid, "tid": SOURCES_TID, "ts": _us(arrive)})
                sources.append({"ph": "i", "name": f"{kind} arrives", "s": "t", "pid": pid,
                                "tid": _tid(cpu, 0), "ts": _us(arrive),
                                "args": {"latency_ns": r["latency_ns"]}})
                flows.append((cpu, start, flow_id, handler))
            elif kind == "idle_enter":
                idle_since[cpu] = start
            elif r["exits"] and reason == "HLT" and r["exit_ns"]:
                since = idle_since.pop(cpu, start - r["exit_ns"])
                track.add(since, since + r["exit_ns"], ("X", "HLT", {"exit_ns": r["exit_ns"]}))
            elif r["exits"] and r["exit_ns"]:
                track.add(start, start + r["exit_ns"],
                            ("X", f"{reason} ({kind})",
                             {"exits": r["exits"], "exit_ns": r["exit_ns"], "kind": kind}))
        for cpu in sorted(tracks):
            for sub, slices in enumerate(tracks[cpu].layout()):
                tid = _tid(cpu, sub)
                label = f"vCPU {cpu}" + (f" #{sub + 1}" if sub else "")
                out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                            "args": {"name": label}})
                out += _emit(slices, pid, tid)
        out += sources
        out += [{"ph": "f", "bp": "e", "name": "delivery", "cat": "irq", "id": fid,
                 "pid": pid, "tid": _tid(cpu, handler[3]), "ts": _us(start)}
                for cpu, start, fid, handler in flows]
        if truncated or len(out) > limit:
            truncated = True
            break
    return out, truncated


def _tid(cpu: int, sub: int) -> int:
    return cpu + 1 + 1000 * sub


def _emit(slices: list[tuple], pid: int, tid: int) -> list[dict]:
    """One sub-track's slices in time order, ``B``/``E`` pairs closed innermost first."""
    out, open_ends = [], []
    for start, end, (ph, name, args) in sorted(slices, key=lambda s: (s[0], -s[1])):
        while open_ends and open_ends[-1] <= start:
            out.append({"ph": "E", "pid": pid, "tid": tid, "ts": _us(open_ends.pop())})
        if ph == "X":
            out.append({"ph": "X", "name": name, "cat": "exit", "pid": pid, "tid": tid,
                        "ts": _us(start), "dur": _us(end - start), "args": args})
        else:
            out.append({"ph": "B", "name": name, "cat": "handler", "pid": pid, "tid": tid,
                        "ts": _us(start), "args": args})
            open_ends.append(end)
    while open_ends:
        out.append({"ph": "E", "pid": pid, "tid": tid, "ts": _us(open_ends.pop())})
    return out


def export_perfetto(source: str | Path, out: str | Path, *, backends: list[str] | None = None,
                    start_ns: int | None = None, end_ns: int | None = None,
                    vcpu: int | None = None, warmup_ns: int | None = None,
                    limit: int = DEFAULT_LIMIT, force: bool = False) -> dict:
    """Write the Chrome Trace Event JSON timeline of ``source`` (results folder or trace)
    to ``out`` (gzip-compressed when it ends in ``.gz``), atomically.

    Returns ``{"events": N, "truncated": bool, "bytes": size}``.
    """
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise TracebenchError(f"--to ({end_ns} ns) must be after --from ({start_ns} ns)")
    rows = timeline_rows(source, backends, start_ns, end_ns, vcpu, warmup_ns)
    events, truncated = build_trace_events(rows, limit)
    doc = {"traceEvents": events, "displayTimeUnit": "ns",
           "otherData": {"source": str(source), "from_ns": start_ns, "to_ns": end_ns,
                         "vcpu": vcpu, "truncated": truncated,
                         "made_by": f"tracebench {_version()}"}}
    data = json.dumps(doc, separators=(",", ":")).encode()
    out = Path(out)
    with atomic_path(out, force=force, owned=mentions(b'"made_by":"tracebench ', 1 << 40)) as tmp:
        if out.suffix == ".gz":
            with gzip.open(tmp, "wb", compresslevel=6) as fh:
                fh.write(data)
        else:
            tmp.write_bytes(data)
    if truncated:
        print(f"tracebench: note: stopped after {len(events):,} trace events (--limit); "
              f"narrow the window with --from/--to or --vcpu", file=sys.stderr)
    return {"events": len(events), "truncated": truncated, "bytes": out.stat().st_size}


def _version() -> str:
    from tracebench._version import __version__

    return __version__
