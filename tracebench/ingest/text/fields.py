"""Numeric payload fields of the hot guest events, read by a compiled pass (no regex).

Most lines of a guest trace are a handful of events (``write_msr``, the
``irq_vectors`` and ``irq`` handler entries/exits, ``cpu_idle``, ``ipi_send_cpu``).
Their rules in ``rules/guest.py`` read one or two ``name=NUMBER`` fields with polars
regexes; this kernel reads the same fields straight from the chunk's bytes, exactly
as those regexes would, for the payloads whose shape it is sure about. Any other
payload (non-ASCII bytes, numbers too long to be exact, unusual spelling) is marked
``SLOW`` and goes through the polars rule unchanged, so the rules stay the
reference and this is only a shortcut (``tests/test_ingest_fastpath.py`` compares them).

Field semantics mirrored from ``rules/base.field``: the first ``name=`` that starts the
payload or follows whitespace or a comma and is followed by at least one digit.
"""

from __future__ import annotations

import numpy as np

from tracebench.ingest.rules.guest import IPI_CALLBACK_VECTORS
from tracebench.jit import kernel

# routes of a wanted event (per name id)
R_SKIP = -1  # not wanted: counted, never read
R_NORULE = 0  # wanted only for calibration / time range: no rows
R_SLOW = 1  # its polars rule reads every record
R_MSR = 2  # "HEX, value HEX" (write_msr)
R_VEC = 3  # vector=N, else irq=N, else -1 (handler entry / exit)
R_IDLE = 4  # state=N [cpu_id=N] (cpu_idle)
R_IPI = 5  # cpu=N callback=NAME (ipi_send_cpu)
R_MARK = 6  # no fields: a time mark (rules/base.H_MARK) inside handlers

# result of reading one payload
SLOW, OK, DROP = 0, 1, 2  # DROP: the rule filters the record out (no field to read)

#: most digits read as an exact Int64 (19+ could overflow, where polars gives null)
MAX_DIGITS = 18
INT32_MAX = (1 << 31) - 1
INT16_MAX = (1 << 15) - 1

# literals the kernel looks for, concatenated (offsets in _LIT_OFF)
_LITS = [
    b"vector=",
    b"irq=",
    b"state=",
    b"cpu_id=",
    b"cpu=",
    b"callback=",
    b", value ",
    # ipi_send_cpu callbacks (rules.guest.IPI_CALLBACK_VECTORS, same order as CALLBACK_VECTORS)
    b"0x0",
    b"(nil)",
    b"0",
    b"generic_smp_call_function_single_interrupt",
    b"generic_smp_call_function_interrupt",
]
L_VECTOR, L_IRQ, L_STATE, L_CPU_ID, L_CPU, L_CALLBACK, L_VALUE, L_CB0 = range(8)


def _literals() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, offsets, callback vectors): constant arrays the kernels read as globals."""
    cbs = [lit.decode() for lit in _LITS[L_CB0:]]
    if set(cbs) != set(IPI_CALLBACK_VECTORS):
        raise AssertionError("fields._LITS callbacks differ from guest.IPI_CALLBACK_VECTORS")
    data = np.frombuffer(b"".join(_LITS), np.uint8).copy()
    off = np.cumsum([0] + [len(x) for x in _LITS]).astype(np.int64)
    vec = np.array([IPI_CALLBACK_VECTORS[c] for c in cbs], np.int64)
    return data, off, vec


# Globals, not arguments: numba compiles constant arrays into the kernel, and an array
# argument costs reference counting on every call of these small functions.
_LIT_BYTES, _LIT_OFF, _CB_VECTORS = _literals()


@kernel
def _is_sep(c):
    # regex (?:^|[\s,]) on ASCII: \t \n \v \f \r, space, comma
    return (9 <= c <= 13) or c == 32 or c == 44


@kernel
def _is_hex(c):
    return (48 <= c <= 57) or (65 <= c <= 70) or (97 <= c <= 102)


@kernel
def _hexval(c):
    if c <= 57:
        return c - 48
    if c <= 70:
        return c - 55
    return c - 87


@kernel
def _match(buf, p, end, li):
    """Whether literal ``li`` sits at ``buf[p:]`` (within ``end``)."""
    lits = _LIT_BYTES
    a = _LIT_OFF[li]
    b = _LIT_OFF[li + 1]
    if p + (b - a) > end:
        return False
    for m in range(b - a):  # noqa: SIM110 (numba: no generator expressions)
        if buf[p + m] != lits[a + m]:
            return False
    return True


@kernel
def _next_key(buf, p, o, end, li):
    """Index just after the first ``NAME=`` (literal ``li``) at or after ``p`` that opens
    the payload ``buf[o:end]`` or follows a separator, with a byte after it; -1 if none."""
    a = _LIT_OFF[li]
    klen = _LIT_OFF[li + 1] - a
    c0 = _LIT_BYTES[a]
    for q in range(p, end - klen):
        if buf[q] == c0 and (q == o or _is_sep(buf[q - 1])) and _match(buf, q, end, li):
            return q + klen
    return -1


@kernel
def _int_field(buf, o, end, li):
    """First ``NAME=DIGITS`` (literal ``li``): (0 absent | 1 found | 2 too long, value)."""
    d = _next_key(buf, o, o, end, li)
    while d >= 0 and not (48 <= buf[d] <= 57):
        d = _next_key(buf, d - (_LIT_OFF[li + 1] - _LIT_OFF[li]) + 1, o, end, li)
    if d >= 0:
        v = 0
        nd = 0
        while d < end and 48 <= buf[d] <= 57:
            v = v * 10 + (int(buf[d]) - 48)  # int(): plain Python reads uint8 too
            nd += 1
            d += 1
        return (2, 0) if nd > MAX_DIGITS else (1, v)
    return 0, 0


@kernel
def _hex_run(buf, p, end, max_digits):
    """Hex digits at ``p`` as the regex ``[0-9a-fA-Fx]+`` takes them: (end, value bits).

    The end is -1 when the run is empty, holds an ``x``, or is longer than
    ``max_digits`` (not exact here).
    """
    v = np.uint64(0)
    d = p
    while d < end and _is_hex(buf[d]):
        v = (v << np.uint64(4)) | np.uint64(_hexval(int(buf[d])))
        d += 1
    if d == p or d - p > max_digits or (d < end and buf[d] == 120):  # 'x'
        return -1, np.int64(0)
    return d, np.int64(v)


@kernel
def read_one(buf, rt, o, end, hibit, cpu):
    """Read the fields of one wanted record (payload ``buf[o:end]``): (ok, a, b).

    ``ok`` is SLOW / OK / DROP; the numbers by route: MSR (msr, value bits), VEC
    (vector, 0), IDLE (state, cpu: ``cpu_id`` or the record's ``cpu``), IPI (target
    cpu, vector). ``hibit``: the line has non-ASCII bytes (regex \\s and \\d are
    Unicode-aware: the polars rule reads it).
    """
    a = 0
    b = 0
    if rt == R_NORULE or rt == R_MARK:  # noqa: SIM109 (numba: plain compares)
        return OK, a, b
    if rt == R_SLOW or hibit:
        return SLOW, a, b
    if rt == R_MSR:
        d, a = _hex_run(buf, o, end, 15)  # 15 digits: the msr stays a positive Int64
        if d < 0 or not _match(buf, d, end, L_VALUE):
            return SLOW, a, b
        d2, b = _hex_run(buf, d + _LIT_OFF[L_VALUE + 1] - _LIT_OFF[L_VALUE], end, 16)
        return (SLOW if d2 < 0 else OK), a, b
    if rt == R_VEC:
        f, a = _int_field(buf, o, end, L_VECTOR)
        if f == 0:
            f, a = _int_field(buf, o, end, L_IRQ)
        if f == 2 or (f == 1 and a > INT16_MAX):
            return SLOW, a, b  # too long, or an Int16 cast that polars refuses
        return OK, (a if f == 1 else -1), b
    if rt == R_IDLE:
        f, a = _int_field(buf, o, end, L_STATE)
        if f == 0:
            return DROP, a, b
        if f == 2:
            return SLOW, a, b
        g, b = _int_field(buf, o, end, L_CPU_ID)
        if g == 2 or (g == 1 and b > INT32_MAX):
            return SLOW, a, b
        return OK, a, (b if g == 1 else cpu)
    if rt == R_IPI:
        f, a = _int_field(buf, o, end, L_CPU)
        if f != 1 or a > INT32_MAX:
            return SLOW, a, b  # a cpumask, or a cast polars refuses
        return OK, a, _callback_vector(buf, o, end)
    return SLOW, a, b


@kernel
def _callback_vector(buf, o, end):
    """Vector of the first ``callback=TOKEN`` (TOKEN = ``[^\\s+]+``); -1 if absent/unknown."""
    klen = _LIT_OFF[L_CALLBACK + 1] - _LIT_OFF[L_CALLBACK]
    t0 = _next_key(buf, o, o, end, L_CALLBACK)
    while t0 >= 0:
        t1 = t0
        while t1 < end and not ((9 <= buf[t1] <= 13) or buf[t1] == 32 or buf[t1] == 43):
            t1 += 1
        if t1 == t0:  # "callback=" with no token: the regex looks further
            t0 = _next_key(buf, t0 - klen + 1, o, end, L_CALLBACK)
            continue
        for c in range(len(_CB_VECTORS)):
            li = L_CB0 + c
            if _LIT_OFF[li + 1] - _LIT_OFF[li] == t1 - t0 and _match(buf, t0, t1, li):
                return _CB_VECTORS[c]
        return -1
    return -1
