"""The Python side of the framing kernel (``scan.py``): name table, output buffers, resumes."""

from __future__ import annotations

import numpy as np

from tracebench.ingest.text import scan as S


class NameTable:
    """Event names met so far, interned to ids (kept across the chunks of an ingest).

    Attributes
    ----------
    names : full event name of each id (``msr:write_msr`` for perf script input).
    id_hash : FNV-1a hash of each id's name (the order of unmapped names in reports).
    """

    def __init__(self, slots: int = 1 << 12):
        self.keys = np.zeros(slots, np.uint64)
        self.vals = np.zeros(slots, np.int32)
        self.id_hash = np.zeros(slots // 2, np.uint64)
        self.name_off = np.zeros(slots // 2, np.int64)
        self.name_len = np.zeros(slots // 2, np.int64)
        self.names: list[str] = []

    @property
    def capacity(self) -> int:
        return len(self.name_off)

    def learn(self, buf: np.ndarray, n_names: int) -> bool:
        """Decode the names the kernel added (their bytes are in this chunk's ``buf``)."""
        added = n_names > len(self.names)
        for i in range(len(self.names), n_names):
            o, ln = int(self.name_off[i]), int(self.name_len[i])
            self.names.append(bytes(buf[o : o + ln]).decode())
        return added

    def grow(self) -> None:
        """Double the table (the kernel keeps it at most half full)."""
        slots = 2 * len(self.keys)
        self.keys = np.zeros(slots, np.uint64)
        self.vals = np.zeros(slots, np.int32)
        for i in range(len(self.names)):
            h = self.id_hash[i]
            slot = int(h & np.uint64(slots - 1))
            while self.vals[slot]:
                slot = (slot + 1) & (slots - 1)
            self.keys[slot] = h
            self.vals[slot] = i + 1
        for name in ("id_hash", "name_off", "name_len"):
            setattr(self, name, _resized(getattr(self, name), slots // 2, 0))


def _resized(a: np.ndarray, n: int, fill) -> np.ndarray:
    out = np.full((*a.shape[:-1], n), fill, a.dtype)
    out[..., : a.shape[-1]] = a
    return out


class Buffers:
    """Output arrays of the kernel, reused from chunk to chunk (fresh memory costs page faults).

    ``wi``/``wc``/``wf`` hold wanted records, ``si``/``sf`` special lines, one row per
    field (``scan.W_*`` / ``scan.SP_*``); they grow when a chunk needs more.
    """

    def __init__(self, wanted: int = 1 << 16, special: int = 256):
        self.wi = np.empty((9, wanted), np.int64)
        self.wc = np.empty((2, wanted), np.int32)
        self.wf = np.empty((1, wanted), np.int8)
        self.si = np.empty((5, special), np.int64)
        self.sf = np.empty((2, special), np.int8)

    def grow_wanted(self, used: int) -> None:
        n = 2 * self.wi.shape[1]
        for k in ("wi", "wc", "wf"):
            setattr(self, k, _resized(getattr(self, k)[:, :used], n, 0))

    def grow_special(self, used: int) -> None:
        n = 2 * self.si.shape[1]
        for k in ("si", "sf"):
            setattr(self, k, _resized(getattr(self, k)[:, :used], n, 0))


class Framed:
    """The framed lines of one chunk (views into :class:`Buffers`, valid until the next).

    Attributes
    ----------
    n : physical lines framed (rows ``0 .. n-1``; line number = first line + row).
    consumed : end of the bytes framed (index in ``buf``; the rest goes to the next chunk).
    newlines : newline characters in the bytes framed.
    wi, wc, wf : wanted records (``scan.W_*`` rows), ``nw`` of them.
    si, sf : special lines (``scan.SP_*`` rows).
    counts : records per name id; ``order`` : name ids by first appearance.
    events : the per-id columns (``events.EventColumns``) the records were read with.
    """

    def __init__(self, buf: np.ndarray, start: int, end: int, final: bool, table: NameTable,
                 events, bufs: Buffers):  # fmt: skip
        if buf.ctypes.data % 8:
            buf = buf.copy()  # np.empty and mmap memory is aligned: uint64 view below
        words = buf[: len(buf) - len(buf) % 8].view(np.uint64)
        cap = table.capacity
        counts = np.zeros(cap, np.int64)
        first_row = np.full(cap, -1, np.int64)
        order = np.empty(cap, np.int32)
        st = np.zeros(8, np.int64)
        st[S.S_POS] = start
        st[S.S_CONT] = -1
        st[S.S_NNAMES] = len(table.names)
        cols = events.update()
        while True:
            code = S._frame_nb(
                buf, words, end, final, events.with_task, st, table.keys, table.vals,
                table.id_hash, table.name_off, table.name_len, _fit(cols.route, cap), counts,
                first_row, order, bufs.wi, bufs.wc, bufs.wf, bufs.si, bufs.sf,
            )  # fmt: skip
            if code == S.FULL_WANTED:
                bufs.grow_wanted(int(st[S.S_NW]))
            elif code == S.FULL_SPECIAL:
                bufs.grow_special(int(st[S.S_NSP]))
            elif code == S.NEW_NAME:
                if not table.learn(buf, int(st[S.S_NNAMES])):
                    table.grow()
                    cap = table.capacity
                    counts = _resized(counts, cap, 0)
                    first_row = _resized(first_row, cap, -1)
                    order = _resized(order, cap, 0)
                cols = events.update()
            else:
                break
        self.buf = buf
        self.events = cols
        self.n = int(st[S.S_ROW])
        self.consumed = int(st[S.S_POS])
        # every framed line ends with a newline but a final unterminated one
        self.newlines = self.n - int(self.consumed > start and buf[self.consumed - 1] != 10)
        nw, nsp = int(st[S.S_NW]), int(st[S.S_NSP])
        self.nw = nw
        self.wi, self.wc, self.wf = bufs.wi[:, :nw], bufs.wc[:, :nw], bufs.wf[:, :nw]
        self.si, self.sf = bufs.si[:, :nsp], bufs.sf[:, :nsp]
        self.counts = counts
        self.order = order[: st[S.S_NORDER]]

    def line_text(self, start: int, limit: int = 60) -> str:
        """The start of the line at byte ``start``, for error messages."""
        raw = bytes(self.buf[start : start + limit + 1]).split(b"\n", 1)[0]
        text = raw[:limit].decode("utf-8", "backslashreplace").strip()
        return text + ("..." if len(raw) > limit else "")

    def line_start(self, offset: int) -> int:
        """Where the line holding byte ``offset`` starts (for quoting a record's line)."""
        nl = np.flatnonzero(self.buf[max(offset - 4096, 0) : offset] == 10)
        return max(offset - 4096, 0) + int(nl[-1]) + 1 if len(nl) else max(offset - 4096, 0)

    def line_bytes(self, start: int, length: int) -> bytes:
        """The physical line at byte ``start`` of ``length`` bytes, without its newline."""
        raw = bytes(self.buf[start : start + length])
        return raw[:-1] if raw.endswith(b"\n") else raw


def _fit(route: np.ndarray, n: int) -> np.ndarray:
    """The route table padded to the name table's capacity (ids not routed yet: skipped)."""
    return route if len(route) >= n else _resized(route, n, -1)
