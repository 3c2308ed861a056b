"""Line framing for every text syntax: one compiled pass over the bytes of a chunk.

ftrace, ``trace-cmd report`` and ``perf script`` lines all share one anchor,
``TIMESTAMP: EVENT: PAYLOAD``, with the task, pid and ``[CPU]`` in front of it in
slightly different shapes. :func:`_frame_nb` finds those fields for every line,
interns the event name (FNV-1a hash -> small id, in a table kept for the whole
input), counts records per name, and for the records of *wanted* events reads the
numeric payload fields of the hot ones (``fields.read_one``) while the line is in
cache. Its outputs are compact: one entry per wanted record, and one per "special"
line (malformed, lost-events marker, too long, non-ASCII bytes or a raw-counter
timestamp to look at in Python). ``framed.py`` is its Python side.

Why a kernel and not a regex: polars' ``str.extract_groups`` on the line header
runs at ~0.6 M lines/s on these 2-core machines; the issue asks for >= 2 M lines/s
end to end. This pass does ~4.5 M lines/s on one core (fields included), the
longest stage of the pipeline (see BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np

from tracebench.ingest.text import fields
from tracebench.ingest.text import lines as L
from tracebench.ingest.text.files import MAX_LINE_BYTES
from tracebench.ingest.text.lines import BAD_BYTES as BAD_BYTES
from tracebench.ingest.text.lines import BAD_EVENT as BAD_EVENT
from tracebench.ingest.text.lines import BAD_NO_TS as BAD_NO_TS
from tracebench.ingest.text.lines import BAD_REASONS as BAD_REASONS
from tracebench.ingest.text.lines import BAD_TS as BAD_TS
from tracebench.ingest.text.lines import EVENT as EVENT
from tracebench.ingest.text.lines import F_HIBIT as F_HIBIT
from tracebench.ingest.text.lines import F_TOO_LONG as F_TOO_LONG
from tracebench.ingest.text.lines import F_TSINT as F_TSINT
from tracebench.ingest.text.lines import IGNORED as IGNORED
from tracebench.ingest.text.lines import LOST as LOST
from tracebench.ingest.text.lines import WRAPPED_AT_END as WRAPPED_AT_END
from tracebench.jit import kernel

# kernel return codes: done, or stopped at a line start (an output is full, or a new
# event name needs its route from Python); the state vector lets the call resume
DONE, CARRY, FULL_WANTED, FULL_SPECIAL, NEW_NAME = 0, 1, 2, 3, 4
# slots of the kernel's state vector
S_POS, S_ROW, S_NW, S_NSP, S_CONT, S_NORDER, S_NNAMES = range(7)
# rows of the wanted-record outputs: int64 ``wi``, int32 ``wc``, int8 ``wf``
W_ROW, W_TS, W_POFF, W_PLEN, W_TOFF, W_TLEN, W_PID, W_A, W_B = range(9)
W_CPU, W_ID = range(2)  # CPU as printed (-1: none)
W_OK = 0
# rows of the special-line outputs: int64 ``si``, int8 ``sf``
SP_ROW, SP_START, SP_LEN, SP_LOST, SP_ID = range(5)
SP_STATUS, SP_FLAG = range(2)

_COLON = 58
_DOT = 46
_HASH = 35
_LBR = 91
_RBR = 93
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MAX_LINE = MAX_LINE_BYTES
#: bytes an event name is made of: [A-Za-z0-9_:.-] (a constant table for the kernel)
_NAME_CHARS = np.zeros(256, np.bool_)
_NAME_CHARS[[ord(c) for c in "_:.-"]] = True
_NAME_CHARS[48:58] = _NAME_CHARS[65:91] = _NAME_CHARS[97:123] = True


@kernel
def _frame_nb(buf, words, n, final, with_task, st, keys, vals, id_hash, name_off, name_len,
              route, counts, first_row, order, wi, wc, wf, si, sf):  # fmt: skip
    """Frame the lines of ``buf[st[S_POS]:n]``; return a code (``DONE``, ``CARRY``, ...).

    A record header whose event sits on the next line (mail-wrapped traces) takes
    that line as its continuation; if the header is the last line of a non-final
    chunk the kernel stops before it (``CARRY``) so the caller can carry it into the
    next chunk. ``FULL_*`` and ``NEW_NAME`` stop at a line start with ``st`` saved.
    """
    pos = st[S_POS]
    i = st[S_ROW]
    nw = st[S_NW]
    ns = st[S_NSP]
    cont_end = st[S_CONT]
    no = st[S_NORDER]
    nn = st[S_NNAMES]
    tmask = len(keys) - 1
    name_char = _NAME_CHARS
    code = DONE
    while pos < n:
        if nw >= wi.shape[1]:
            code = FULL_WANTED
            break
        if ns >= si.shape[1]:
            code = FULL_SPECIAL
            break
        s = pos
        e, hi = L.line_end(buf, words, s, n)
        nxt = e + 1
        length = min(nxt, n) - s
        if e > s and buf[e - 1] == 13:
            e -= 1
        flag = hi | (F_TOO_LONG if length > _MAX_LINE + 1 else 0)
        status = EVENT
        lost = 0
        cont_before = cont_end
        p = s
        while p < e and L.blank(buf[p]):
            p += 1
        a = -1
        q = -1
        if s == cont_end:
            status = IGNORED  # continuation of a wrapped record, already read
        elif p == e or buf[p] == _HASH or (buf[p] == 61 and p + 1 < e and buf[p + 1] == 62):
            status = IGNORED  # blank, comment, "=>" stack frame
        else:
            # anchor: a digit run (with dots) ending in ':' followed by a blank or the line end
            k = L.next_colon(buf, words, p + 1, e)
            while k >= 0:
                if 48 <= buf[k - 1] <= 57 and (k + 1 == e or L.blank(buf[k + 1])):
                    j = k - 1
                    while j >= p and (48 <= buf[j] <= 57 or buf[j] == _DOT):
                        j -= 1
                    if j < p or L.blank(buf[j]):
                        a = k
                        q = j + 1
                        break
                k = L.next_colon(buf, words, k + 1, e)
            if a < 0:
                status, lost = L.lost(buf, p, e)
        ts = 0
        if status == EVENT:
            # timestamp: seconds.fraction -> ns, or a raw integer counter (written out
            # here, not called: a call per line cost ~6 % of this kernel)
            dots = 0
            sec = 0
            frac = 0
            nfrac = 0
            ndig = 0
            for m in range(q, a):
                c = int(buf[m])  # int(): uint8 arithmetic would wrap without the JIT
                if c == _DOT:
                    dots += 1
                elif dots == 0:
                    sec = sec * 10 + (c - 48)
                    ndig += 1
                elif nfrac < 9:
                    frac = frac * 10 + (c - 48)
                    nfrac += 1
            if dots > 1 or ndig == 0 or ndig > 18 or (dots == 1 and nfrac == 0):
                status = BAD_TS
            elif dots == 1 and sec > L.MAX_TS_SEC:
                status = L.BAD_TS_RANGE  # sec * 1e9 would wrap around int64
            elif dots == 0:
                ts = sec
                flag |= F_TSINT
            else:
                for _ in range(nfrac, 9):
                    frac *= 10
                ts = sec * 1_000_000_000 + frac
        j = 0
        k = 0
        le = e
        if status == EVENT:
            # event name, possibly on the next line (wrapped record)
            j = a + 1
            while j < le and L.blank(buf[j]):
                j += 1
            if j == le:
                if nxt >= n and not final:
                    code = CARRY  # carry this header into the next chunk
                    break
                if nxt >= n:
                    status = WRAPPED_AT_END
                else:
                    le = nxt
                    while le < n and buf[le] != 10:
                        le += 1
                    cont_end = nxt
                    j = nxt
                    if le > j and buf[le - 1] == 13:
                        le -= 1
                    while j < le and L.blank(buf[j]):
                        j += 1
        h = _FNV_OFFSET  # FNV-1a of the name, computed as it is read
        if status == EVENT:
            k = j
            ok = False
            while k < le:
                c = buf[k]
                if c == _COLON and (k + 1 == le or L.blank(buf[k + 1])):
                    ok = k > j
                    break
                if not name_char[c]:
                    break
                h = (h ^ np.uint64(c)) * _FNV_PRIME
                k += 1
            if not ok:
                status = BAD_EVENT
        eid = -1
        if status == EVENT and not (flag & F_TOO_LONG):
            slot = np.int64(h & np.uint64(tmask))
            while vals[slot] != 0:
                if keys[slot] == h:
                    eid = vals[slot] - 1
                    break
                slot = (slot + 1) & tmask
            if eid < 0:
                # a new name: Python gives it a route (and grows the table) first
                if 2 * nn < len(keys):
                    keys[slot] = h
                    vals[slot] = nn + 1
                    id_hash[nn] = h
                    name_off[nn] = j
                    name_len[nn] = k - j
                    nn += 1
                cont_end = cont_before
                code = NEW_NAME
                break
            counts[eid] += 1
            if first_row[eid] < 0:
                first_row[eid] = i
                order[no] = eid
                no += 1
            rt = route[eid]
            if rt != fields.R_SKIP:
                b = k + 1
                while b < le and L.blank(buf[b]):
                    b += 1
                t = le
                while t > b and L.blank(buf[t - 1]):
                    t -= 1
                # [CPU]: the last "[digits]" before the timestamp (written out, as above)
                cpu = -1
                pre_end = q
                r = q - 1
                while r >= p and buf[r] != _RBR:
                    r -= 1
                if r >= p:
                    lb = r - 1
                    v = 0
                    mul = 1
                    nd = 0
                    while lb >= p and 48 <= buf[lb] <= 57:
                        if nd < 6:  # past 6 digits it is out of range anyway (no wrap)
                            v += (int(buf[lb]) - 48) * mul
                            mul *= 10
                        nd += 1
                        lb -= 1
                    if lb >= p and buf[lb] == _LBR and lb < r - 1:
                        cpu = v if nd <= 5 and v <= L.MAX_CPU_INDEX else L.BAD_CPU
                        pre_end = lb
                    else:
                        # "[...]" right before the timestamp that is not digits ("[abc]",
                        # "[0x1]", "[]"): a CPU column that is not a number, never CPU 0
                        lb = r - 1
                        while lb >= p and r - lb < 16 and buf[lb] != _LBR and not L.blank(buf[lb]):
                            lb -= 1
                        if lb >= p and buf[lb] == _LBR:
                            cpu = L.BAD_CPU
                            pre_end = lb
                r_ok, r_a, r_b = fields.read_one(buf, rt, b, t, flag & F_HIBIT, max(cpu, 0))
                wi[W_ROW, nw] = i
                wi[W_TS, nw] = ts
                wi[W_POFF, nw] = b
                wi[W_PLEN, nw] = t - b
                if with_task:  # only kvm-host rules read the task and pid
                    toff, tlen, pid = L.task_pid(buf, p, pre_end)
                    wi[W_TOFF, nw] = toff
                    wi[W_TLEN, nw] = tlen
                    wi[W_PID, nw] = pid
                wi[W_A, nw] = r_a
                wi[W_B, nw] = r_b
                wc[W_CPU, nw] = cpu
                wc[W_ID, nw] = eid
                wf[W_OK, nw] = r_ok
                nw += 1
        if (
            (flag & F_TOO_LONG)
            or (status != EVENT and status != IGNORED)
            or (status == EVENT and (flag & (F_HIBIT | F_TSINT)))
        ):
            si[SP_ROW, ns] = i
            si[SP_START, ns] = s
            si[SP_LEN, ns] = length
            si[SP_LOST, ns] = lost
            si[SP_ID, ns] = eid
            sf[SP_STATUS, ns] = status
            sf[SP_FLAG, ns] = flag
            ns += 1
        i += 1
        pos = nxt
    if code == DONE:
        pos = n
    st[S_POS] = pos
    st[S_ROW] = i
    st[S_NW] = nw
    st[S_NSP] = ns
    st[S_CONT] = cont_end
    st[S_NORDER] = no
    st[S_NNAMES] = nn
    return code
