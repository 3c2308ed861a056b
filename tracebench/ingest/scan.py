"""Line framing for every text syntax: one compiled pass over the bytes of a chunk.

ftrace, ``trace-cmd report`` and ``perf script`` lines all share one anchor,
``TIMESTAMP: EVENT: PAYLOAD``, with the task, pid and ``[CPU]`` in front of it in
slightly different shapes. :func:`scan_chunk` finds those fields for every line
in one numba pass and returns them as a polars frame; the payload of each event
is then parsed by event with polars string expressions (``mapping.py``).

Why a kernel and not a regex: polars' ``str.extract_groups`` on the line header
runs at ~0.6 M lines/s and ``str.split_exact`` plus two extracts at ~2.5 M
lines/s before any payload is parsed, on these 2-core machines; the issue asks for
>= 2 M lines/s end to end. The kernel frames ~2.2 M lines/s (1 M-line profile,
``scripts/bench_ingest.py``); the rest of the pipeline is what keeps ingest below target.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from tracebench.jit import kernel

# --- line status codes (column ``status``) -------------------------------------------
EVENT = 0  # a trace record
IGNORED = 1  # blank, '#' comment, '=>' stack frame, continuation of a wrapped record
LOST = 2  # "CPU:N [LOST M EVENTS]": M events the tracer dropped
BAD_NO_TS = 3  # no "TIMESTAMP:" anchor
BAD_TS = 4  # anchor found but the timestamp is not a number
BAD_EVENT = 5  # no "EVENT:" after the timestamp
BAD_BYTES = 6  # NUL or invalid UTF-8 bytes
WRAPPED_AT_END = 7  # record header is the chunk's last line: its event is in the next chunk

#: one-line reasons for the malformed statuses (used in messages)
BAD_REASONS = {
    BAD_NO_TS: "no 'TIMESTAMP: event:' field",
    BAD_TS: "cannot parse timestamp",
    BAD_EVENT: "no 'event:' name after the timestamp",
    BAD_BYTES: "not UTF-8 text",
    WRAPPED_AT_END: "record header without its event line (truncated file?)",
}

_SP = 32
_TAB = 9
_COLON = 58
_DOT = 46
_DASH = 45
_LBR = 91
_RBR = 93
_HASH = 35
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@kernel
def _is_name_char(c):
    return (
        (48 <= c <= 57)
        or (65 <= c <= 90)
        or (97 <= c <= 122)
        or c == 95
        or c == 58
        or c == _DOT  # noqa: SIM109 (numba: plain compares)
        or c == _DASH
    )


@kernel
def _scan_nb(
    buf,
    final,
    line_start,
    status,
    cpu,
    ts,
    ts_int,
    ev_off,
    ev_len,
    ev_hash,
    pay_off,
    pay_len,
    task_off,
    task_len,
    pid,
    lost,
    hibit,
):
    """Frame every line of ``buf``; return (lines framed, bytes consumed).

    A record header whose event sits on the next line (mail-wrapped traces) takes
    that line as its continuation; if the header is the last line of a non-final
    chunk the kernel stops before it so the caller can carry it into the next chunk.
    """
    n = len(buf)
    pos = 0
    i = 0
    cont_end = -1  # end of a continuation line already consumed by the previous record
    while pos < n:
        s = pos
        e = s
        while e < n and buf[e] != 10:
            e += 1
        nxt = e + 1
        if e > s and buf[e - 1] == 13:
            e -= 1
        line_start[i] = s
        status[i] = EVENT
        cpu[i] = -1
        ts[i] = 0
        ts_int[i] = 0
        ev_off[i] = 0
        ev_len[i] = 0
        ev_hash[i] = 0
        pay_off[i] = 0
        pay_len[i] = 0
        task_off[i] = s
        task_len[i] = 0
        pid[i] = -1
        lost[i] = 0
        hi = 0
        for k in range(s, e):
            if buf[k] >= 128 or buf[k] == 0:
                hi = 1
                break
        hibit[i] = hi
        if s == cont_end:
            status[i] = IGNORED
            i += 1
            pos = nxt
            continue
        p = s
        while p < e and (buf[p] == _SP or buf[p] == _TAB):
            p += 1
        if p == e or buf[p] == _HASH or (buf[p] == 61 and p + 1 < e and buf[p + 1] == 62):
            status[i] = IGNORED  # blank, comment, "=>" stack frame
            i += 1
            pos = nxt
            continue
        # anchor: a digit run (with dots) ending in ':' followed by a blank or the line end
        a = -1
        q = -1
        for k in range(p + 1, e):
            if (
                buf[k] == _COLON
                and 48 <= buf[k - 1] <= 57
                and (k + 1 == e or buf[k + 1] == _SP or buf[k + 1] == _TAB)
            ):
                j = k - 1
                while j >= p and (48 <= buf[j] <= 57 or buf[j] == _DOT):
                    j -= 1
                if j < p or buf[j] == _SP or buf[j] == _TAB:
                    a = k
                    q = j + 1
                    break
        if a < 0:
            # "CPU:1 [LOST 123 EVENTS]" (ftrace) / "CPU 1 is empty" (trace-cmd)
            status[i] = BAD_NO_TS
            for k in range(p, e - 5):
                if (
                    buf[k] == 76
                    and buf[k + 1] == 79
                    and buf[k + 2] == 83
                    and buf[k + 3] == 84
                    and buf[k + 4] == _SP
                ):
                    m = 0
                    k2 = k + 5
                    while k2 < e and 48 <= buf[k2] <= 57:
                        m = m * 10 + (buf[k2] - 48)
                        k2 += 1
                    status[i] = LOST
                    lost[i] = m
                    break
            i += 1
            pos = nxt
            continue
        # timestamp: seconds.fraction -> ns, or a raw integer counter
        dots = 0
        sec = 0
        frac = 0
        nfrac = 0
        ndig = 0
        for k in range(q, a):
            c = buf[k]
            if c == _DOT:
                dots += 1
            elif dots == 0:
                sec = sec * 10 + (c - 48)
                ndig += 1
            elif nfrac < 9:
                frac = frac * 10 + (c - 48)
                nfrac += 1
        if dots > 1 or ndig == 0 or ndig > 18 or (dots == 1 and nfrac == 0):
            status[i] = BAD_TS
            ev_off[i] = q
            ev_len[i] = a - q
            i += 1
            pos = nxt
            continue
        if dots == 0:
            ts[i] = sec
            ts_int[i] = 1
        else:
            for _ in range(nfrac, 9):
                frac *= 10
            ts[i] = sec * 1_000_000_000 + frac
        # event name, possibly on the next line (wrapped record)
        j = a + 1
        le = e
        while j < le and (buf[j] == _SP or buf[j] == _TAB):
            j += 1
        if j == le:
            if nxt >= n and not final:
                return i, s  # carry this header into the next chunk
            if nxt >= n:
                status[i] = WRAPPED_AT_END
                i += 1
                pos = nxt
                continue
            le = nxt
            while le < n and buf[le] != 10:
                le += 1
            cont_end = nxt
            j = nxt
            if le > j and buf[le - 1] == 13:
                le -= 1
            while j < le and (buf[j] == _SP or buf[j] == _TAB):
                j += 1
        k = j
        ok = False
        while k < le:
            c = buf[k]
            if c == _COLON and (k + 1 == le or buf[k + 1] == _SP or buf[k + 1] == _TAB):
                ok = k > j
                break
            if not _is_name_char(c):
                break
            k += 1
        if not ok:
            status[i] = BAD_EVENT
            i += 1
            pos = nxt
            continue
        h = _FNV_OFFSET
        for m in range(j, k):
            h = (h ^ np.uint64(buf[m])) * _FNV_PRIME
        ev_off[i] = j
        ev_len[i] = k - j
        ev_hash[i] = h
        b = k + 1
        while b < le and (buf[b] == _SP or buf[b] == _TAB):
            b += 1
        t = le
        while t > b and (buf[t - 1] == _SP or buf[t - 1] == _TAB):
            t -= 1
        pay_off[i] = b
        pay_len[i] = t - b
        # [CPU]: the last "[digits]" before the timestamp
        r = q - 1
        while r >= p and buf[r] != _RBR:
            r -= 1
        pre_end = q
        if r >= p:
            lb = r - 1
            v = 0
            mul = 1
            while lb >= p and 48 <= buf[lb] <= 57:
                v += (buf[lb] - 48) * mul
                mul *= 10
                lb -= 1
            if lb >= p and buf[lb] == _LBR and lb < r - 1:
                cpu[i] = v
                pre_end = lb
        # task and pid: ftrace "task-pid [(tgid)]", perf "comm pid[/tid]"
        t = pre_end
        while t > p and (buf[t - 1] == _SP or buf[t - 1] == _TAB):
            t -= 1
        if t > p and buf[t - 1] == 41:  # ")" of an ftrace "(tgid)" column
            while t > p and buf[t - 1] != 40:
                t -= 1
            t -= 1
            while t > p and (buf[t - 1] == _SP or buf[t - 1] == _TAB):
                t -= 1
        u = t
        while u > p and (48 <= buf[u - 1] <= 57 or buf[u - 1] == 47):
            u -= 1
        if u < t and (u == p or buf[u - 1] == _SP or buf[u - 1] == _TAB or buf[u - 1] == _DASH):
            v = 0
            for m in range(u, t):
                c = buf[m]
                v = 0 if c == 47 else v * 10 + (c - 48)  # perf "pid/tid": keep the tid
            pid[i] = v
            tt = u - 1 if u > p else p
            while tt > p and (buf[tt - 1] == _SP or buf[tt - 1] == _TAB):
                tt -= 1
            task_off[i] = p
            task_len[i] = max(tt - p, 0)
        else:
            task_off[i] = p
            task_len[i] = t - p
        i += 1
        pos = nxt
    return i, n


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


class Scan:
    """The framed lines of one chunk: numpy columns plus the chunk's bytes.

    Attributes
    ----------
    n : number of physical lines framed.
    consumed : bytes of the chunk that were framed (the rest belongs to the next chunk).
    cols : per-line numpy arrays (``status``, ``cpu``, ``ts`` in ns or raw ticks, ...).
    names : event name of each distinct ``ev_hash`` value seen in the chunk.
    """

    def __init__(self, buf: np.ndarray, final: bool):
        n_max = int(np.count_nonzero(buf == 10)) + 1
        c = {
            "line_start": np.empty(n_max, np.int64),
            "status": np.empty(n_max, np.int8),
            "cpu": np.empty(n_max, np.int32),
            "ts": np.empty(n_max, np.int64),
            "ts_int": np.empty(n_max, np.int8),
            "ev_off": np.empty(n_max, np.int64),
            "ev_len": np.empty(n_max, np.int64),
            "ev_hash": np.empty(n_max, np.uint64),
            "pay_off": np.empty(n_max, np.int64),
            "pay_len": np.empty(n_max, np.int64),
            "task_off": np.empty(n_max, np.int64),
            "task_len": np.empty(n_max, np.int64),
            "pid": np.empty(n_max, np.int64),
            "lost": np.empty(n_max, np.int64),
            "hibit": np.empty(n_max, np.int8),
        }
        n, consumed = _scan_nb(buf, final, *c.values())
        self.buf = buf
        self.n = int(n)
        self.consumed = int(consumed)
        self.cols = {k: v[: self.n] for k, v in c.items()}
        self._check_bytes()
        ev = self.cols["status"] == EVENT
        hashes, first = np.unique(self.cols["ev_hash"][ev], return_index=True)
        rows = np.flatnonzero(ev)[first]
        self.names = {
            int(h): bytes(
                buf[self.cols["ev_off"][r] : self.cols["ev_off"][r] + self.cols["ev_len"][r]]
            ).decode()
            for h, r in zip(hashes, rows, strict=True)
        }

    def _check_bytes(self) -> None:
        # Only lines with bytes >= 0x80 or NUL need a real UTF-8 check (rare in traces).
        for r in np.flatnonzero(self.cols["hibit"]):
            s = self.cols["line_start"][r]
            e = s
            while e < len(self.buf) and self.buf[e] != 10:
                e += 1
            raw = bytes(self.buf[s:e])
            try:
                raw.decode("utf-8")
                bad = b"\0" in raw
            except UnicodeDecodeError:
                bad = True
            if bad and self.cols["status"][r] != 1:
                self.cols["status"][r] = BAD_BYTES

    def line_text(self, row: int, limit: int = 60) -> str:
        """The start of physical line ``row``, for error messages."""
        s = int(self.cols["line_start"][row])
        raw = bytes(self.buf[s : s + limit + 1]).split(b"\n", 1)[0]
        text = raw[:limit].decode("utf-8", "backslashreplace").strip()
        return text + ("..." if len(raw) > limit else "")

    def frame(self, rows: np.ndarray, with_task: bool = False) -> pl.DataFrame:
        """Event rows as a polars frame: line (index in chunk), ts, cpu, event hash, payload."""
        c = self.cols
        data = {
            "row": rows.astype(np.int64),
            "ts": c["ts"][rows],
            "cpu": c["cpu"][rows],
            "pid": c["pid"][rows],
            "ev": c["ev_hash"][rows],
            "payload": strings(self.buf, c["pay_off"][rows], c["pay_len"][rows]),
        }
        if with_task:
            data["task"] = strings(self.buf, c["task_off"][rows], c["task_len"][rows])
        return pl.DataFrame(data)
