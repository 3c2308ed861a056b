"""Line status codes and the byte-level pieces of the framing kernel (``scan.py``).

Whole 64-bit words are tested where a line is long and the answer rare (its end,
its colons): SWAR bit tricks, exact where the position matters. The per-line parts
that are short (timestamp, ``[CPU]``) are written out in the kernel itself.
"""

from __future__ import annotations

import numpy as np

from tracebench.jit import kernel

# --- line status codes ---------------------------------------------------------------
EVENT = 0  # a trace record
IGNORED = 1  # blank, '#' comment, '=>' stack frame, continuation of a wrapped record
LOST = 2  # "CPU:N [LOST M EVENTS]": M events the tracer dropped
BAD_NO_TS = 3  # no "TIMESTAMP:" anchor
BAD_TS = 4  # anchor found but the timestamp is not a number
BAD_EVENT = 5  # no "EVENT:" after the timestamp
BAD_BYTES = 6  # NUL or invalid UTF-8 bytes
WRAPPED_AT_END = 7  # record header is the chunk's last line: its event is in the next chunk
BAD_TS_RANGE = 8  # a timestamp whose nanoseconds do not fit in int64

#: ``[CPU]`` of a wanted record that is there but is not a vCPU number (kernel output)
BAD_CPU = -2
#: the highest vCPU index a trace can hold (``n_cpus`` <= 65535 must fit in uint16)
MAX_CPU_INDEX = 65534
#: seconds.fraction timestamps above this overflow int64 nanoseconds
MAX_TS_SEC = (2**63 - 1) // 1_000_000_000 - 1

#: one-line reasons for the malformed statuses (used in messages)
BAD_REASONS = {
    BAD_NO_TS: "no 'TIMESTAMP: event:' field",
    BAD_TS: "cannot parse timestamp",
    BAD_EVENT: "no 'event:' name after the timestamp",
    BAD_BYTES: "not UTF-8 text",
    WRAPPED_AT_END: "record header without its event line (truncated file?)",
    BAD_TS_RANGE: "timestamp out of range (its nanoseconds overflow int64)",
}

# flags of records and special lines
F_HIBIT = 1  # a byte >= 0x80 or NUL: the line needs a real UTF-8 check (Python side)
F_TSINT = 2  # timestamp without a fraction: a raw counter clock
F_TOO_LONG = 4  # longer than MAX_LINE_BYTES: malformed whatever it holds

_SP = 32
_TAB = 9
_COLON = 58
_DASH = 45
_Z = np.uint64(0)
_ONE = np.uint64(1)
_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_NLS = np.uint64(0x0A0A0A0A0A0A0A0A)
_COLONS = np.uint64(0x3A3A3A3A3A3A3A3A)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_BYTE_INDEX = np.uint64(0x0001020304050607)  # (1 << 8k) * this >> 56 == k


@kernel
def blank(c):
    return c == _SP or c == _TAB  # noqa: SIM109 (numba: plain compares)


@kernel
def task_pid(buf, p, pre_end):
    """(task offset, task length, pid or -1) of the line starting at ``p``, before ``pre_end``.

    ``pre_end`` is where the ``[CPU]`` column starts (else the timestamp): ftrace
    writes "task-pid [(tgid)]" there, perf "comm pid[/tid]".
    """
    t = pre_end
    while t > p and blank(buf[t - 1]):
        t -= 1
    if t > p and buf[t - 1] == 41:  # ")" of an ftrace "(tgid)" column
        while t > p and buf[t - 1] != 40:
            t -= 1
        t -= 1
        while t > p and blank(buf[t - 1]):
            t -= 1
    u = t
    while u > p and (48 <= buf[u - 1] <= 57 or buf[u - 1] == 47):
        u -= 1
    if u < t and (u == p or blank(buf[u - 1]) or buf[u - 1] == _DASH):
        v = 0
        for m in range(u, t):
            c = int(buf[m])  # int(): uint8 arithmetic would wrap without the JIT
            v = 0 if c == 47 else v * 10 + (c - 48)  # perf "pid/tid": keep the tid
        tt = u - 1 if u > p else p
        while tt > p and blank(buf[tt - 1]):
            tt -= 1
        return p, max(tt - p, 0), v
    return p, t - p, -1


@kernel
def line_end(buf, words, s, n):
    """(index of the newline ending the line at ``s``, or ``n``; F_HIBIT if a byte needs a check).

    Eight bytes at a time (``words`` is ``buf`` seen as uint64): a line is ~100 bytes,
    and a byte loop here was a third of the kernel's time.
    """
    w = s >> 3
    hb = _Z
    if 8 * w + 8 <= n:
        x = words[w]
        o = s & 7
        if o:
            low = (_ONE << np.uint64(8 * o)) - _ONE
            x = (x & ~low) | (_ONES & low)  # bytes before the line: plain ones
        while True:
            y = x ^ _NLS
            t = (y - _ONES) & ~y & _HIGHS
            if t:
                lowest = t & (~t + _ONE)
                below = (lowest >> np.uint64(7)) - _ONE  # the bytes before the newline
                hb |= ((x & _HIGHS) | ((x - _ONES) & ~x & _HIGHS)) & below
                e = 8 * w + np.int64(((lowest >> np.uint64(7)) * _BYTE_INDEX) >> np.uint64(56))
                return e, (F_HIBIT if hb else 0)
            hb |= (x & _HIGHS) | ((x - _ONES) & ~x & _HIGHS)
            w += 1
            if 8 * w + 8 > n:
                break
            x = words[w]
        s = 8 * w
    hi = F_HIBIT if hb else 0
    e = s
    while e < n:
        c = buf[e]
        if c == 10:
            break
        if c >= 128 or c == 0:
            hi = F_HIBIT
        e += 1
    return e, hi


@kernel
def next_colon(buf, words, k, e):
    """Index of the first ':' in ``buf[k:e]``, or -1 (aligned words tested whole)."""
    nb = 8 * len(words)
    while k < e:
        if (k & 7) == 0 and k + 8 <= nb:
            w = k >> 3
            y = words[w] ^ _COLONS
            t = ~(((y & _LOW7) + _LOW7) | y | _LOW7)  # exact: high bit where a byte is ':'
            if t == _Z:
                k += 8
                continue
            lowest = t & (~t + _ONE)
            k = 8 * w + np.int64(((lowest >> np.uint64(7)) * _BYTE_INDEX) >> np.uint64(56))
            return k if k < e else -1
        if buf[k] == _COLON:
            return k
        k += 1
    return -1


@kernel
def lost(buf, p, e):
    """(LOST, events) for "CPU:1 [LOST 123 EVENTS]" (ftrace) / "... LOST 12 ...", else BAD_NO_TS."""
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
                m = m * 10 + (int(buf[k2]) - 48)
                k2 += 1
            return LOST, m
    return BAD_NO_TS, 0
