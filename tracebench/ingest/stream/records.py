"""One input file, framed and its hot fields read, chunk by chunk (the reader thread).

Everything that needs the chunk's bytes happens here (messages quote the line,
payloads of the records that go to polars rules are copied out), so the mapped
window is released before the next and the driver (``window.py``) works on compact
arrays: one :class:`Chunk` per piece of the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from tracebench.ingest.stream.routes import Events
from tracebench.ingest.text import fields as F
from tracebench.ingest.text import lines as L
from tracebench.ingest.text import scan as S
from tracebench.ingest.text.files import ChunkReader
from tracebench.ingest.text.framed import Buffers, Framed
from tracebench.jit import kernel


@dataclasses.dataclass
class Chunk:
    """What the driver needs of one piece of a file.

    Attributes
    ----------
    where : file name for messages.
    line_no : first line of this piece (calibration starts at the first piece that
        starts past its lines, as it always has).
    done : bytes of the file read so far (progress).
    bad : malformed lines ``(line, why, quoted text)``, long ones first, in file order.
    lost : events the tracer reported lost.
    raw_clock : ``(line, text)`` of the first record with a raw counter timestamp, or None.
    counts : ``(name id, records)`` in order of first appearance.
    w : wanted records: ``seq`` (line), ``ts``, ``cpu`` (clipped), ``id``, ``ok``, ``a``, ``b``.
    no_cpu : wanted records without a ``[CPU]`` (put on CPU 0).
    slow : records for the polars rules, per short event name (first appearance order).
    calib : records of the calibration events within its first lines, or None.
    events : the name table's per-id columns as of this piece.
    pieceless : only reports (an over-long last line): no piece of the file to process.
    """

    where: str
    line_no: int
    done: int
    bad: list
    lost: int
    raw_clock: tuple | None
    counts: list
    w: dict
    no_cpu: int
    slow: dict
    calib: dict | None
    events: object
    pieceless: bool = False


@kernel
def _gather_nb(buf, off, length, out_off, out_data):
    """Copy the byte ranges ``buf[off:off+length]`` one after another (Arrow string layout)."""
    o = 0
    for r in range(len(off)):
        out_off[r] = o
        for m in range(length[r]):
            out_data[o + m] = buf[off[r] + m]
        o += length[r]
    out_off[len(off)] = o


def strings(buf: np.ndarray, off: np.ndarray, length: np.ndarray) -> pl.Series:
    """A polars String series of the byte ranges of ``buf`` (must be valid UTF-8)."""
    length = np.maximum(length, 0).astype(np.int64)
    out_off = np.empty(len(off) + 1, dtype=np.int64)
    out_data = np.empty(int(length.sum()), dtype=np.uint8)
    _gather_nb(buf, off.astype(np.int64), length, out_off, out_data)
    arr = pa.LargeStringArray.from_buffers(len(off), pa.py_buffer(out_off), pa.py_buffer(out_data))
    return pl.Series(arr)


def _valid_text(raw: bytes) -> bool:
    if b"\0" in raw:
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Source:
    """Frames one file; :meth:`chunks` yields a :class:`Chunk` per piece."""

    def __init__(self, path: Path, events: Events, chunk_bytes: int, calib_lines: int):
        self.path = path
        self.where = str(path)
        self.events = events
        self.calib_lines = calib_lines
        self.reader = ChunkReader(path, chunk_bytes)
        self.bufs = Buffers()

    def chunks(self):
        ev = self.events
        for win, lo, hi, first_line, last in self.reader:
            o = win.offset
            fr = Framed(win.arr, lo - o, hi - o, last, ev.table, ev, self.bufs)
            ev.jit_ready.set()
            self.reader.unused = hi - o - fr.consumed
            self.reader.newlines = fr.newlines
            yield self._chunk(fr, first_line, last)
            del fr
        if self.reader.long_lines:  # an over-long last line: no piece after it
            yield self._empty()

    def _empty(self) -> Chunk:
        w = {k: np.empty(0, t) for k, t in _W_DTYPES.items()}
        return Chunk(self.where, self.reader.line_no, self.reader.done, self._long_lines(), 0,
                     None, [], w, 0, {}, None, self.events.update(), pieceless=True)  # fmt: skip

    def _long_lines(self) -> list:
        out = [
            (ln, f"line of {n} bytes is too long for a trace record", "")
            for ln, n in self.reader.long_lines
        ]
        self.reader.long_lines = []
        return out

    def _special(self, fr: Framed, first_line: int, last: bool):
        """Malformed lines, lost events, the first raw-counter timestamp; records not text."""
        bad, lost, removed, raw_clock = [], 0, [], None
        cols = [fr.si[k].tolist() for k in range(5)] + [fr.sf[k].tolist() for k in range(2)]
        for r, start, length, n_lost, eid, status, flag in zip(*cols, strict=True):
            line = first_line + r
            if flag & S.F_TOO_LONG:
                why = f"line of {length} bytes is too long for a trace record"
                bad.append((line, why, fr.line_text(start)))
                continue
            if flag & S.F_HIBIT and not _valid_text(fr.line_bytes(start, length)):
                if status == S.EVENT:
                    removed.append((r, eid))
                status = S.BAD_BYTES
            if status == S.EVENT:
                if flag & S.F_TSINT and raw_clock is None:
                    raw_clock = (line, fr.line_text(start))
                continue
            if status == S.LOST:
                lost += n_lost
                continue
            why = S.BAD_REASONS.get(status, "malformed line")
            if r == fr.n - 1 and last and not self.reader.ends_with_newline:
                why += " (truncated last line)"
            bad.append((line, why, fr.line_text(start)))
        return bad, lost, removed, raw_clock

    def _chunk(self, fr: Framed, first_line: int, last: bool) -> Chunk:
        bad, lost, removed, raw_clock = self._special(fr, first_line, last)
        bad = self._long_lines() + bad
        evs = fr.events
        counts, order = fr.counts, fr.order
        wi, wc, wf = fr.wi, fr.wc, fr.wf
        bad_cpu = np.flatnonzero(wc[S.W_CPU] == L.BAD_CPU)
        if len(bad_cpu):  # a [CPU] that is no vCPU number: malformed, never CPU 0
            for k in bad_cpu.tolist():
                row = int(wi[S.W_ROW, k])
                text = fr.line_text(fr.line_start(int(wi[S.W_POFF, k])))
                why = f"CPU field is not a vCPU number in 0..{L.MAX_CPU_INDEX}"
                bad.append((first_line + row, why, text))
                removed.append((row, int(wc[S.W_ID, k])))
            bad.sort(key=lambda b: b[0])
        if removed:  # lines whose bytes are not text are not records after all
            counts = counts.copy()
            for _, eid in removed:
                counts[eid] -= 1
            keep = ~np.isin(wi[S.W_ROW], [r for r, _ in removed])
            wi, wc, wf = wi[:, keep], wc[:, keep], wf[:, keep]
            ids = wc[S.W_ID]
            firsts = {int(i): int(np.argmax(ids == i)) for i in np.unique(ids)}
            order = np.array(
                sorted((i for i in order.tolist() if counts[i]), key=lambda i: firsts.get(i, -1)),
                np.int32,
            )  # wanted names by first kept record; the others' order is not used
        counts_list = [(i, int(counts[i])) for i in order.tolist() if counts[i]]
        cpu = wc[S.W_CPU]
        w = {
            "seq": wi[S.W_ROW] + first_line,
            "ts": wi[S.W_TS].copy(),
            "cpu": np.maximum(cpu, 0),
            "id": wc[S.W_ID].copy(),
            "ok": wf[S.W_OK].copy(),
            "a": wi[S.W_A].copy(),
            "b": wi[S.W_B].copy(),
        }
        no_cpu = int(np.count_nonzero(cpu < 0))
        slow_sel = w["ok"] == F.SLOW
        if self.events.with_task:  # kvm-host: learn_vcpus reads every wanted record's task
            slow_sel |= evs.route[w["id"]] == F.R_NORULE
        slow = self._frames(fr, wi, w, np.flatnonzero(slow_sel), evs)
        calib = None
        if first_line <= self.calib_lines:
            sel = np.flatnonzero(evs.calib[w["id"]] & (w["seq"] <= self.calib_lines))
            calib = self._frames(fr, wi, w, sel, evs)
        return Chunk(self.where, first_line, self.reader.done, bad, lost, raw_clock, counts_list,
                     w, no_cpu, slow, calib, evs)  # fmt: skip

    def _frames(self, fr: Framed, wi, w, sel, evs) -> dict[str, pl.DataFrame]:
        """Records ``sel`` as polars frames per short event name (the rules' input)."""
        if len(sel) == 0:
            return {}
        data = {"ts": w["ts"][sel], "cpu": w["cpu"][sel]}
        if self.events.with_task:
            data["pid"] = wi[S.W_PID][sel]
        data["payload"] = strings(fr.buf, wi[S.W_POFF][sel], wi[S.W_PLEN][sel])
        if self.events.with_task:
            data["task"] = strings(fr.buf, wi[S.W_TOFF][sel], wi[S.W_TLEN][sel])
        data["seq"] = w["seq"][sel]
        data["id"] = w["id"][sel]
        parts = pl.DataFrame(data).partition_by("id", as_dict=True, include_key=False)
        out: dict[str, pl.DataFrame] = {}
        for (i,), part in parts.items():
            key = evs.short[i]
            out[key] = pl.concat([out[key], part]) if key in out else part
        return out


_W_DTYPES = {
    "seq": np.int64,
    "ts": np.int64,
    "cpu": np.int32,
    "id": np.int32,
    "ok": np.int8,
    "a": np.int64,
    "b": np.int64,
}
