"""The streaming driver: chunks of records -> candidate rows -> a window of canonical rows.

Memory stays bounded: only a window of candidate rows is kept between chunks:
those within :data:`HOLD_NS` of the newest timestamp, plus the last row of each kind
on each CPU (for relations that look back, e.g. "is there an EOI just before this
interrupt"). Rows are written once their time is older than the window, so every
relation is found as if the file had been read whole, as long as it spans less than
:data:`HOLD_NS`. A handler still open holds the window at its entry for up to
:data:`MAX_HANDLER_NS`: its host can preempt it for longer than HOLD_NS (184 ms in
fc-guest-mixed), and its time must not depend on where the chunks end.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from tracebench.errors import TraceError
from tracebench.ingest.rules.base import EOI_INFERRED, H_EXIT, H_IPI_HINT, MapContext
from tracebench.ingest.rules.fastmap import map_fast
from tracebench.ingest.stream import calibrate as cal_mod
from tracebench.ingest.stream import merge
from tracebench.ingest.stream.families import Family
from tracebench.ingest.stream.records import Chunk
from tracebench.ingest.stream.resolve import resolve
from tracebench.ingest.stream.routes import CALIB_EVENTS
from tracebench.ingest.text import fields
from tracebench.ingest.text.lines import MAX_CPU_INDEX
from tracebench.schema import INTERRUPT_KINDS, TARGET_MASK, EventKind

#: what a rule raises when a field's value does not fit its column (a strict cast)
_RANGE_ERRORS = (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError)


def _apply(rule, records: pl.DataFrame, ctx: MapContext, where: str, stats=None):
    """``rule.fn`` on ``records``. A value that does not fit its column (a strict cast) is a
    malformed line, found by bisecting the records (rules map rows independently): under
    ``--strict`` (or without ``stats``) a one-line error naming it, else counted and the
    record left out, and the rule run again on the rest."""
    while True:
        try:
            return rule.fn(records, ctx)
        except _RANGE_ERRORS as exc:
            lo, hi = 0, records.height
            while hi - lo > 1:
                mid = (lo + hi) // 2
                try:
                    rule.fn(records[lo:mid], ctx)
                except _RANGE_ERRORS:
                    hi = mid
                else:
                    lo = mid
            line = int(records["seq"][lo]) if records.height else 0
            why = f"{rule.event}: {_range_text(exc)}"
            if stats is None or records.height == 0:
                raise TraceError(f"{where}:{line}: {why}") from None
            stats.bad(where, line, why)  # raises under --strict
            records = pl.concat([records[:lo], records[lo + 1 :]])


def _check_rows(rows: dict, stats, where: str) -> dict:
    """Leave out (and count, or under ``--strict`` stop at) rows whose vCPU or IPI target
    cannot be stored: a trace holds vCPUs 0..MAX_CPU_INDEX (``n_cpus`` fits in uint16)."""
    if len(rows["seq"]) == 0:
        return rows
    cpu, target = rows["cpu"], rows["target"]
    ipi = (rows["kind"] == int(EventKind.IPI_SEND)) | (rows["kind"] == H_IPI_HINT)
    bad_cpu = (cpu < 0) | (cpu > MAX_CPU_INDEX)
    bad_target = ipi & ((target < TARGET_MASK) | (target > MAX_CPU_INDEX))
    bad = bad_cpu | bad_target
    if not bad.any():
        return rows
    for k in np.flatnonzero(bad).tolist():
        what = (f"vCPU {int(cpu[k])}" if bad_cpu[k] else f"IPI target vCPU {int(target[k])}")
        stats.bad(where, int(rows["seq"][k]), f"{what} is outside 0..{MAX_CPU_INDEX}")
    return {k: v[~bad] for k, v in rows.items()}


def _range_text(exc: Exception) -> str:
    m = re.search(r"from `(\w+)` to `(\w+)` failed.*?values: \[(.*?)\]", str(exc))
    if m:
        return f"field out of range: value {m.group(3)} does not fit its column ({m.group(2)})"
    return f"field out of range: {str(exc).splitlines()[0]}"

#: relations (send -> ICR write, EOI -> entry) longer than this are not found
HOLD_NS = 100_000_000
#: a handler's entry -> exit longer than this is not found (its dur_ns stays 0)
MAX_HANDLER_NS = 1_000_000_000
_IRQ_KINDS = np.array(INTERRUPT_KINDS, np.int8)
#: lines at the start of the input used to calibrate the TSC -> ns map
CALIB_LINES = 200_000
#: late lines reported by number, per event and chunk (the rest are only counted)
MAX_LINE_REPORT = 5


class Window:
    """State carried across chunks: the row window, the cut, the calibration."""

    def __init__(self, ctx: MapContext, stats, writer, acc, family: Family, settle=None):
        self.ctx, self.stats, self.writer, self.acc, self.family = ctx, stats, writer, acc, family
        # settle(): called once before the first rows are mapped; sets ctx.present
        self.settle = settle
        self.carry = merge.empty_rows()
        self.cut = None  # rows older than this have been written
        self.calibration = None
        self.max_cpu = -1

    # ------------------------------------------------------------------ per chunk
    def take(self, ch: Chunk) -> None:
        """Count what a chunk shows: malformed and lost lines, events seen and unmapped."""
        st = self.stats
        for line, why, text in ch.bad:
            st.bad(ch.where, line, why, text)
        st.lost += ch.lost
        if ch.raw_clock is not None:
            line, text = ch.raw_clock
            raise TraceError(
                f"{ch.where}:{line}: timestamp {text!r} is a raw "
                "counter (trace_clock x86-tsc or counter); record with a "
                "nanosecond clock (local, global, mono, boot)"
            )
        ev = ch.events
        by_hash = sorted(ch.counts, key=lambda c: int(ev.hashes[c[0]]))
        for i, n in by_hash:
            st.add(st.events, ev.short[i], n)
        for i, n in by_hash:
            if ev.route[i] == fields.R_SKIP:
                st.add(st.unmapped, ev.short[i], n)
        st.no_cpu += ch.no_cpu

    def feed(self, chunks) -> None:
        """Process ``(chunk, where)`` pairs in file order, then flush the window."""
        pending: list[tuple[Chunk, str]] = []
        last = "input"
        for ch, where in chunks:
            last = where
            self.take(ch)
            if ch.pieceless:
                continue
            if self.calibration is None:
                pending.append((ch, where))
                if ch.line_no < CALIB_LINES:
                    continue
                self._calibrate([c for c, _ in pending])
                for c, w in pending:
                    self._process(c, final=False, where=w)
                pending = []
                continue
            self._process(ch, final=False, where=where)
        if self.calibration is None:
            self._calibrate([c for c, _ in pending])
            for c, w in pending:
                self._process(c, final=False, where=w)
        self._process(None, final=True, where=last)

    def _calibrate(self, pending: list[Chunk]) -> None:
        ev = {}
        for name in CALIB_EVENTS:
            parts = [c.calib[name] for c in pending if c.calib and name in c.calib]
            if parts:
                ev[name] = pl.concat(parts)
        self.calibration = cal_mod.calibrate(ev)
        self.ctx.tsc_to_ns = self.calibration.tsc_expr()
        self.ctx.mono_offset_ns = self.calibration.mono_offset_ns
        self.family.calibrated(self.ctx, [c.slow for c in pending])

    def _late(self, ch: Chunk, late: np.ndarray, order: list, where: str) -> None:
        """Report records older than what was already written (per event, first few lines)."""
        st = self.stats
        w = ch.w
        for _short, ids in order:
            lines = np.concatenate([w["seq"][late & (w["id"] == i)] for i in ids])
            for line in lines[:MAX_LINE_REPORT].tolist():
                st.bad(
                    where,
                    line,
                    "timestamp earlier than records already written "
                    f"(more than {HOLD_NS // 1_000_000} ms out of order)",
                )
            st.malformed += max(len(lines) - MAX_LINE_REPORT, 0) if not st.strict else 0

    def _rows(self, ch: Chunk, where: str) -> dict:
        """Candidate rows of a chunk's records (fast path and polars rules), sorted."""
        st, ev, w = self.stats, ch.events, ch.w
        if len(w["ts"]) == 0:
            return merge.empty_rows()
        tmin, tmax = int(w["ts"].min()), int(w["ts"].max())
        st.first_ts = tmin if st.first_ts is None else min(st.first_ts, tmin)
        st.last_ts = tmax if st.last_ts is None else max(st.last_ts, tmax)
        # wanted events in order of first appearance, by short name (the old per-event order)
        order: dict[str, list] = {}
        for i, _ in ch.counts:
            if ev.route[i] != fields.R_SKIP:
                order.setdefault(ev.short[i], []).append(i)
        slow = ch.slow
        if self.cut is not None:
            late = w["ts"] < self.cut
            if late.any():
                self._late(ch, late, list(order.items()), where)
                w = {k: v[~late] for k, v in w.items()}
            slow = {k: df.filter(pl.col("ts") >= self.cut) for k, df in slow.items()}
        fast, miss_msr, bad = map_fast(w, ev.route, ev.kind, ev.fam, self.calibration)
        if bad >= 0:
            raise TraceError(
                f"{where}:{int(w['seq'][bad])}: write_msr value out of range (a TSC deadline "
                "beyond the trace clock's Int64 ns, or an ICR destination beyond Int32)"
            )
        parts = []
        for short in order:
            rule = self.family.rules.get(short)
            if short in slow and rule is not None:
                rows, miss = _apply(rule, slow[short], self.ctx, where, st)
                if miss.height:
                    for label, n in miss.group_by("label", maintain_order=True).len().iter_rows():
                        st.add(st.unmapped, label, n)
                if rows.height:
                    parts.append(merge.from_frame(rows))
            if short == "write_msr" and len(miss_msr):
                vals, counts = np.unique(miss_msr, return_counts=True)
                for v, n in zip(vals.tolist(), counts.tolist(), strict=True):
                    st.add(st.unmapped, f"write_msr(0x{v:x})", n)
        return _check_rows(merge.sort_new(fast, parts), st, where)

    def _process(self, ch: Chunk | None, final: bool, where: str) -> None:
        st = self.stats
        if self.settle is not None:
            self.settle()
            self.settle = None
        if ch is not None and ch.slow:
            try:
                self.family.learn(self.ctx, ch.slow)
            except _RANGE_ERRORS as exc:  # a vCPU number past Int64
                raise TraceError(f"{where}: vCPU number {_range_text(exc)}") from None
        new = self._rows(ch, where) if ch is not None else merge.empty_rows()
        cand = merge.merge_sorted(self.carry, new)
        if len(cand["ts"]) == 0 or st.first_ts is None:
            return
        newest = int(cand["ts"].max())
        cut = newest + 1 if final else newest - HOLD_NS
        lo = self.cut if self.cut is not None else -(1 << 62)
        if not final:
            cut = max(lo, min(cut, _open_handlers_from(cand, newest - MAX_HANDLER_NS)))
        rows, exits, keep, host = resolve(
            cand,
            infer_eoi=self.family.infer_eoi,
            msr_traced=self.ctx.msr_traced,
            lo=lo,
            cut=cut,
            hold_from=cut - HOLD_NS,
            exits_traced="kvm_exit" in self.ctx.present,
            open_reason=self.ctx.reason_id("UNKNOWN") if self.family.exits else -1,
            host_time=not self.ctx.bare_metal,
        )
        self._emit(rows)
        for key, v in host.items():
            st.handler_host[key] += v
        if len(exits["ts"]):
            timed = exits["ns"] >= 0
            self.acc.add(
                _frame({k: v[~timed] for k, v in exits.items() if k != "ns"}),
                _frame({k: v[timed] for k, v in exits.items()}),
            )
        self.carry = {k: v[keep] for k, v in cand.items()}
        self.cut = max(cut, lo)

    def _emit(self, rows: dict) -> None:
        if len(rows["ts"]) == 0:
            return
        t0 = self.stats.first_ts
        kind = rows["kind"]
        arg = rows["arg"].copy()
        timed = rows["argt"] & (arg >= 0)
        arg[timed] = np.maximum(arg[timed] - t0, 0)
        cols = {
            "ts_ns": rows["ts"] - t0,
            "cpu": rows["cpu"].astype(np.uint16),
            "kind": kind,
            "vector": rows["vector"],
            "target": rows["target"],
            "arg": arg,
            "dur_ns": rows["dur_ns"],
        }
        self.stats.kinds += np.bincount(kind, minlength=len(EventKind))
        eoi = kind == int(EventKind.EOI)
        self.stats.inferred += int((eoi & (arg == EOI_INFERRED)).sum())
        ipi = kind == int(EventKind.IPI_SEND)
        tg = cols["target"]
        to_cpu = ipi & (tg >= 0)
        self.max_cpu = max(
            self.max_cpu,
            int(rows["cpu"].max()),
            int(tg[to_cpu].max()) if to_cpu.any() else -1,
        )
        masked = ipi & (tg == -2)
        if masked.any():
            self.max_cpu = max(
                self.max_cpu, int(np.bitwise_or.reduce(arg[masked])).bit_length() - 1
            )
        self.writer.write(cols)

    def features(self) -> list[str]:
        """Paravirt / APIC features the trace shows (see the rule tables' docs)."""
        k = self.stats.kinds
        ev = self.stats.events
        feats = []
        if ev.get("write_msr") or ev.get("kvm_msr"):
            if self.calibration is not None and self.calibration.method != "none":
                feats.append("tsc-deadline")
            if k[EventKind.IPI_SEND]:
                feats.append("x2apic")
        interrupts = k[EventKind.TIMER_IRQ] + k[EventKind.IPI_IRQ] + k[EventKind.DEVICE_IRQ]
        if self.family.infer_eoi and interrupts and self.stats.inferred == interrupts:
            feats.append("eoi-not-traced")
        return feats


def _open_handlers_from(cand: dict, since: int) -> int:
    """The earliest entry at or after ``since`` of a handler whose exit is not among
    ``cand`` yet (the latest handler row on its CPU), or a time past every row."""
    kind = cand["kind"]
    rows = np.flatnonzero(np.isin(kind, _IRQ_KINDS) | (kind == H_EXIT))
    if len(rows) == 0:
        return 1 << 62
    cpu = cand["cpu"][rows][::-1]
    _, first = np.unique(cpu, return_index=True)  # per CPU, its latest handler row
    latest = rows[::-1][first]
    ts = cand["ts"][latest]
    open_ = np.isin(kind[latest], _IRQ_KINDS) & (ts >= since)
    return int(ts[open_].min()) if open_.any() else 1 << 62


def _frame(cols: dict) -> pl.DataFrame:
    """Exits as the accumulator expects them (ts Int64, cpu Int32, reason / ns Int64)."""
    return pl.DataFrame(cols)


__all__ = ["CALIB_LINES", "HOLD_NS", "Window"]
