"""The streaming driver: text chunks -> records -> candidate rows -> canonical trace.

Memory stays bounded: the file is read in :data:`textio.CHUNK_BYTES` pieces, and
only a window of candidate rows is kept between pieces: those within
:data:`HOLD_NS` of the newest timestamp (a handler entry waits there for its
exit), plus the last row of each kind on each CPU (for relations that look back,
e.g. "is there an EOI just before this interrupt"). Rows are written once their
time is older than the window, so every relation is found as if the file had been
read whole, as long as it spans less than :data:`HOLD_NS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import numpy as np
import polars as pl

from tracebench.atomic import atomic_path
from tracebench.errors import TraceError
from tracebench.ingest import calibrate as cal_mod
from tracebench.ingest import exits as exits_mod
from tracebench.ingest import kvmhost, scan
from tracebench.ingest.mapping import EOI_INFERRED, RULES, MapContext, empty_rows
from tracebench.ingest.resolve import SORT, resolve
from tracebench.ingest.textio import CHUNK_BYTES, MAX_LINE_BYTES, ChunkReader, contains
from tracebench.schema import EventKind
from tracebench.trace import TraceMeta, TraceWriter, file_sha256

#: relations (entry -> exit, send -> ICR write) longer than this are not found
HOLD_NS = 100_000_000
#: lines at the start of the input used to calibrate the TSC -> ns map
CALIB_LINES = 200_000
#: events that calibration reads
CALIB_EVENTS = ("write_msr", "hrtimer_start", "hrtimer_expire_entry", "local_timer_entry")
#: events whose presence anywhere in the input changes a rule (see mapping / kvmhost docs)
PROBED = ("write_msr", "kvm_apic", "kvm_eoi", "kvm_msr", "kvm_apic_accept_irq")
MAX_LINE_REPORT = 5


@dataclasses.dataclass
class IngestResult:
    """What :func:`ingest` wrote and what it saw.

    Attributes
    ----------
    path, exits_path : the trace, and its measured-exits table (kvm-host only, else None).
    rows : canonical rows written.
    meta : the trace's metadata (``meta.source`` has the counts below).
    """

    path: Path
    exits_path: Path | None
    rows: int
    meta: TraceMeta

    @property
    def stats(self) -> dict:
        return self.meta.source


class _Stats:
    def __init__(self, strict: bool):
        self.strict = strict
        self.events: dict[str, int] = {}
        self.unmapped: dict[str, int] = {}
        self.kinds = np.zeros(len(EventKind), np.int64)
        self.inferred = 0
        self.malformed = 0
        self.bad_lines: list[int] = []
        self.lost = 0
        self.first_ts = None
        self.last_ts = None
        self.max_cpu = -1
        self.no_cpu = 0

    def bad(self, where: str, line: int, why: str, text: str = "") -> None:
        if self.strict:
            raise TraceError(f"{where}:{line}: {why}" + (f": {text!r}" if text else ""))
        self.malformed += 1
        if len(self.bad_lines) < MAX_LINE_REPORT:
            self.bad_lines.append(line)

    def add(self, d: dict, key: str, n: int) -> None:
        d[key] = d.get(key, 0) + int(n)


def _short(name: str) -> str:
    return name.rsplit(":", 1)[-1]


class _Source:
    """One input file being framed: yields per-piece records grouped by event."""

    def __init__(self, path: Path, fmt, family: str, stats: _Stats, chunk_bytes: int, progress):
        self.path, self.fmt, self.family, self.stats = path, fmt, family, stats
        self.reader = ChunkReader(path, chunk_bytes, self._long, progress)

    def _long(self, line_no: int, n: int) -> None:
        self.stats.bad(str(self.path), line_no, f"line of {n} bytes is too long for a trace record")

    def pieces(self):
        for buf, first_line, last in self.reader:
            s = scan.Scan(buf, final=last)
            self.reader.unused = len(buf) - s.consumed
            yield self._records(s, first_line, last)

    def _records(self, s: scan.Scan, first_line: int, last: bool) -> dict[str, pl.DataFrame]:
        c, st = s.cols, self.stats
        where = str(self.path)
        status = c["status"]
        lengths = np.diff(np.append(c["line_start"], s.consumed))
        too_long = np.flatnonzero(lengths > MAX_LINE_BYTES + 1)
        status[too_long] = scan.BAD_NO_TS
        bad = np.flatnonzero(status >= scan.BAD_NO_TS)
        for r in bad:
            why = scan.BAD_REASONS.get(int(status[r]), "malformed line")
            if r in too_long:
                why = f"line of {lengths[r]} bytes is too long for a trace record"
            elif r == s.n - 1 and last and not self.reader.ends_with_newline:
                why += " (truncated last line)"
            st.bad(where, first_line + int(r), why, s.line_text(int(r)))
        st.lost += int(c["lost"][status == scan.LOST].sum())
        ev = np.flatnonzero(status == scan.EVENT)
        if len(ev) and c["ts_int"][ev].any():
            r = int(ev[np.argmax(c["ts_int"][ev])])
            raise TraceError(
                f"{where}:{first_line + r}: timestamp {s.line_text(r)!r} is a raw "
                "counter (trace_clock x86-tsc or counter); record with a "
                "nanosecond clock (local, global, mono, boot)"
            )
        hashes, inv, counts = np.unique(c["ev_hash"][ev], return_inverse=True, return_counts=True)
        names = [s.names[int(h)] for h in hashes]
        for name, n in zip(names, counts, strict=True):
            st.add(st.events, _short(name), n)
        wanted = [
            i
            for i, nm in enumerate(names)
            if (self.family, _short(nm)) in RULES or _short(nm) in CALIB_EVENTS
        ]
        for i, nm in enumerate(names):
            if i not in wanted:
                st.add(st.unmapped, _short(nm), counts[i])
        sel = ev[np.isin(inv, wanted)]
        if len(sel) == 0:
            return {}
        df = s.frame(sel, with_task=self.family == "kvm-host")
        df = df.with_columns(seq=pl.col("row") + first_line).drop("row")
        if (df["cpu"] < 0).any():
            st.no_cpu += int((df["cpu"] < 0).sum())
            df = df.with_columns(cpu=pl.col("cpu").clip(0, None))
        by_hash = df.partition_by("ev", as_dict=True, include_key=False)
        out: dict[str, pl.DataFrame] = {}
        for (h,), part in by_hash.items():
            key = _short(s.names[int(h)])
            out[key] = pl.concat([out[key], part]) if key in out else part
        return out


def _probe(paths: list[Path]) -> frozenset:
    needles = {n: [f" {n}: ".encode(), f":{n}: ".encode(), f" {n}:\n".encode()] for n in PROBED}
    found = set()
    for p in paths:
        hit = contains(p, [b for v in needles.values() for b in v])
        found |= {n for n, bs in needles.items() if hit & set(bs)}
    return frozenset(found)


def ingest(
    inputs,
    output,
    fmt: str = "auto",
    strict: bool = False,
    force: bool = False,
    progress=None,
    chunk_bytes: int = CHUNK_BYTES,
    environment: dict | None = None,
    attribution: str = "",
    clock: str = "unknown",
    method: str = "ingest",
    extra_source: dict | None = None,
) -> IngestResult:
    """Read text traces and write one canonical trace (plus exits table for kvm-host input).

    Parameters
    ----------
    inputs : text trace files, consecutive pieces of one recording (same clock).
    output : the ``.parquet`` trace to write (atomically; existing only with ``force``).
    fmt : a registered format name, or ``auto`` to detect each file from its content.
    strict : stop at the first malformed line (``FILE:LINE: what``) instead of counting it.
    progress : ``callback(bytes_done, bytes_total)`` or None.
    chunk_bytes : bytes read per piece (memory bound).
    environment, attribution, clock, method, extra_source : stored in the metadata.
    """
    from tracebench.ingest import detect_format, get_format
    from tracebench.ingest.textio import check_text_file, head_lines

    paths = [
        check_text_file(p) for p in ([inputs] if isinstance(inputs, str | os.PathLike) else inputs)
    ]
    if not paths:
        raise TraceError("no input files")
    fmts = [detect_format(p) if fmt == "auto" else get_format(fmt) for p in paths]
    family = fmts[0].family
    if any(f.family != family for f in fmts):
        raise TraceError(
            "inputs mix guest and kvm-host traces: "
            + ", ".join(f"{p.name}={f.name}" for p, f in zip(paths, fmts, strict=True))
        )
    header: dict = {}
    for p, f in zip(paths, fmts, strict=True):
        header.update(f.header(head_lines(p)))
    stats = _Stats(strict)
    ctx = MapContext(present=_probe(paths))
    out_path = Path(output)
    exits_path = exits_mod.exits_path_for(out_path) if family == "kvm-host" else None
    meta = TraceMeta(
        n_cpus=1,
        duration_ns=0,
        method=method,
        clock=clock,
        environment=dict(environment or {}),
        attribution=attribution,
    )
    total = sum(p.stat().st_size for p in paths)
    done_before = [0]

    def prog(done, size):
        if progress is not None:
            progress(done_before[0] + done, total)

    sources = [
        _Source(p, f, family, stats, chunk_bytes, prog) for p, f in zip(paths, fmts, strict=True)
    ]
    acc = exits_mod.ExitsAccumulator()
    with contextlib.ExitStack() as stack:
        exits_tmp = None
        if exits_path is not None:
            exits_tmp = stack.enter_context(atomic_path(exits_path, force=force))
        writer = stack.enter_context(TraceWriter(out_path, meta, force=force))
        run = _Run(ctx, stats, writer, acc, family)
        run.feed(sources, done_before)
        cal = run.calibration
        n_cpus = max(run.max_cpu + 1, int(header.get("n_cpus", 0)) if family == "guest" else 0, 1)
        meta.n_cpus = n_cpus
        meta.duration_ns = int(stats.last_ts - stats.first_ts) if stats.first_ts is not None else 0
        src = {
            "format": ",".join(sorted({f.name for f in fmts})),
            "family": family,
            "files": [
                {
                    "name": p.name,
                    "bytes": p.stat().st_size,
                    "sha256": file_sha256(p),
                    "format": f.name,
                }
                for p, f in zip(paths, fmts, strict=True)
            ],
            "events_seen": dict(sorted(stats.events.items())),
            "unmapped": dict(sorted(stats.unmapped.items(), key=lambda kv: -kv[1])),
            "kinds": {k.label: int(stats.kinds[k]) for k in EventKind if stats.kinds[k]},
            "inferred": {"eoi": stats.inferred} if family == "guest" else {},
            "inferred_rule": "eoi rows with arg=1 are implied (one EOI per interrupt that no "
            "traced EOI accounts for)",
            "malformed_lines": stats.malformed,
            "malformed_first": stats.bad_lines,
            "lost_events": stats.lost,
            "events_without_cpu": stats.no_cpu,
            "calibration": cal.to_meta() if cal is not None else None,
            "probed_events": sorted(ctx.present),
        }
        if exits_path is not None:
            src["exits_table"] = exits_path.name
        src.update(extra_source or {})
        meta.source = src
        env = meta.environment
        env.setdefault("platform", "kvm-host" if family == "kvm-host" else "unknown")
        env["detected_features"] = run.features()
        if exits_tmp is not None:
            table = acc.table(ctx.reasons, _label)
            exits_mod.write_exits(exits_tmp, table, meta.to_json())
    return IngestResult(out_path, exits_path, writer.rows, meta)


def _label(reason: str):
    if reason in ("msr_write", "msr_read"):
        return kvmhost.exit_reason_label("msr", reason == "msr_write")
    return kvmhost.exit_reason_label(reason)


class _Run:
    """State carried across pieces: the row window, the cut, the calibration."""

    def __init__(self, ctx: MapContext, stats: _Stats, writer: TraceWriter, acc, family: str):
        self.ctx, self.stats, self.writer, self.acc, self.family = ctx, stats, writer, acc, family
        self.carry = empty_rows().with_columns(sub=pl.lit(0, pl.Int8)).clear()
        self.cut = None  # rows older than this have been written
        self.calibration = None
        self.max_cpu = -1
        self.msr_seen: set[int] = set()

    def feed(self, sources, done_before) -> None:
        pending: list[dict] = []
        lines = 0
        for src in sources:
            for recs in src.pieces():
                if self.calibration is None:
                    pending.append(recs)
                    lines = src.reader.line_no
                    if lines < CALIB_LINES:
                        continue
                    self._calibrate(pending)
                    for r in pending:
                        self._process(r, final=False, where=str(src.path))
                    pending = []
                    continue
                self._process(recs, final=False, where=str(src.path))
            done_before[0] += src.path.stat().st_size
        if self.calibration is None:
            self._calibrate(pending)
            for r in pending:
                self._process(r, final=False, where="input")
        self._process({}, final=True, where="input")

    def _calibrate(self, pending: list[dict]) -> None:
        ev = {}
        for name in CALIB_EVENTS:
            parts = [r[name].filter(pl.col("seq") <= CALIB_LINES) for r in pending if name in r]
            if parts:
                ev[name] = pl.concat(parts)
        self.calibration = cal_mod.calibrate(ev)
        self.ctx.tsc_to_ns = self.calibration.tsc_expr()
        self.ctx.mono_offset_ns = self.calibration.mono_offset_ns
        if self.family == "kvm-host":
            self.ctx.ipi_vectors = sorted(
                {
                    v
                    for r in pending
                    for name in ("kvm_msr", "kvm_apic")
                    for v in kvmhost.icr_vectors(r.get(name))
                }
            )

    def _process(self, recs: dict, final: bool, where: str) -> None:
        st = self.stats
        if self.family == "kvm-host" and recs:
            kvmhost.learn_vcpus(self.ctx, recs)
        parts = [self.carry]
        for name, df in recs.items():
            tmin, tmax = df["ts"].min(), df["ts"].max()
            st.first_ts = tmin if st.first_ts is None else min(st.first_ts, tmin)
            st.last_ts = tmax if st.last_ts is None else max(st.last_ts, tmax)
            if self.cut is not None:
                late = df.filter(pl.col("ts") < self.cut)
                for line in late["seq"].head(MAX_LINE_REPORT).to_list():
                    st.bad(
                        where,
                        line,
                        "timestamp earlier than records already written "
                        f"(more than {HOLD_NS // 1_000_000} ms out of order)",
                    )
                st.malformed += max(late.height - MAX_LINE_REPORT, 0) if not st.strict else 0
                df = df.filter(pl.col("ts") >= self.cut)
            rule = RULES.get((self.family, name))
            if rule is None:
                continue
            rows, miss = rule.fn(df, self.ctx)
            if miss.height:
                for label, n in miss.group_by("label").len().iter_rows():
                    st.add(st.unmapped, label, n)
            if rows.height:
                parts.append(rows.with_columns(sub=pl.lit(0, pl.Int8)))
        cand = pl.concat(parts).sort(SORT)
        if cand.height == 0 or st.first_ts is None:
            return
        newest = int(cand["ts"].max())
        cut = newest + 1 if final else newest - HOLD_NS
        rows, exits, timed = resolve(
            cand, infer_eoi=self.family == "guest", msr_traced=self.ctx.msr_traced
        )
        lo = self.cut if self.cut is not None else -(1 << 62)
        win = (pl.col("ts") >= lo) & (pl.col("ts") < cut)
        self._emit(rows.filter(win))
        self.acc.add(exits.filter(win), timed.filter(win))
        keep = cand.filter(pl.col("ts") >= cut - HOLD_NS)
        ctx_rows = (
            cand.filter(pl.col("ts") < cut - HOLD_NS)
            .group_by("cpu", "kind", maintain_order=True)
            .last()
        )
        self.carry = pl.concat([ctx_rows.select(cand.columns), keep]).sort(SORT)
        self.cut = max(cut, lo)

    def _emit(self, rows: pl.DataFrame) -> None:
        if rows.height == 0:
            return
        t0 = self.stats.first_ts
        kind = rows["kind"].to_numpy()
        arg = rows["arg"].to_numpy().copy()
        argt = rows["argt"].to_numpy()
        timed = argt & (arg >= 0)
        arg[timed] = np.maximum(arg[timed] - t0, 0)
        cols = {
            "ts_ns": rows["ts"].to_numpy() - t0,
            "cpu": rows["cpu"].to_numpy().astype(np.uint16),
            "kind": kind.astype(np.int8),
            "vector": rows["vector"].to_numpy().astype(np.int16),
            "target": rows["target"].to_numpy().astype(np.int32),
            "arg": arg,
            "dur_ns": rows["dur_ns"].to_numpy(),
        }
        self.stats.kinds += np.bincount(kind, minlength=len(EventKind))
        eoi = kind == int(EventKind.EOI)
        self.stats.inferred += int((eoi & (arg == EOI_INFERRED)).sum())
        ipi = kind == int(EventKind.IPI_SEND)
        tg = cols["target"]
        self.max_cpu = max(
            self.max_cpu,
            int(rows["cpu"].max()),
            int(tg[ipi & (tg >= 0)].max()) if (ipi & (tg >= 0)).any() else -1,
        )
        masked = ipi & (tg == -2)
        if masked.any():
            self.max_cpu = max(
                self.max_cpu, int(np.bitwise_or.reduce(arg[masked])).bit_length() - 1
            )
        self.writer.write(cols)

    def features(self) -> list[str]:
        """Paravirt / APIC features the trace shows (see mapping doc)."""
        k = self.stats.kinds
        ev = self.stats.events
        feats = []
        if ev.get("write_msr") or ev.get("kvm_msr"):
            if self.calibration is not None and self.calibration.method != "none":
                feats.append("tsc-deadline")
            if k[EventKind.IPI_SEND]:
                feats.append("x2apic")
        interrupts = k[EventKind.TIMER_IRQ] + k[EventKind.IPI_IRQ] + k[EventKind.DEVICE_IRQ]
        if self.family == "guest" and interrupts and self.stats.inferred == interrupts:
            feats.append("eoi-not-traced")
        return feats
