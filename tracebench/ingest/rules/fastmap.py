"""Candidate rows of the hot guest events from their numeric fields (``text/fields.py``).

A compiled copy of the guest rules in ``guest.py`` for the records whose
fields the kernel could read: ``write_msr`` (``msr_rows``; the intercepted MSRs of
``intercepts.py``), the handler entries and
exits, ``cpu_idle``, ``ipi_send_cpu``, and the time marks (``TIME_MARKS``, and
``hrtimer_start`` when MSR writes are traced). Each branch cites the rule it mirrors;
the polars rules stay the reference (``tests/test_ingest_fastpath.py`` runs both on the
same records).
"""

from __future__ import annotations

import numpy as np

from tracebench.ingest.rules.base import EOI_TRACED, H_IPI_HINT, H_MARK, ROW_DTYPES
from tracebench.ingest.rules.guest import (
    APIC_TIMER_NS_PER_COUNT,
    GUEST_RULES,
    HANDLERS,
    IDLE_EXIT_STATE,
    MSR_EOI,
    MSR_ICR,
    MSR_SELF_IPI,
    MSR_TMICT,
    MSR_TPR,
    MSR_TSC_DEADLINE,
    TIME_MARKS,
    X2APIC_FIRST,
    X2APIC_LAST,
)
from tracebench.ingest.rules.intercepts import INTERCEPTED_RANGES
from tracebench.ingest.text import fields as F
from tracebench.jit import kernel
from tracebench.schema import EventKind as K

#: guest events read by ``text/fields.py`` and mapped here (their rules are the reference)
FAST = {
    "write_msr": F.R_MSR,
    "cpu_idle": F.R_IDLE,
    "ipi_send_cpu": F.R_IPI,
    **{entry: F.R_VEC for entry in HANDLERS},
    **{entry.removesuffix("_entry") + "_exit": F.R_VEC for entry in HANDLERS},
    **{mark: F.R_MARK for mark in TIME_MARKS},
}
for _name in FAST:
    if _name not in GUEST_RULES:
        raise AssertionError(f"fast path for {_name} without a mapping rule")

_ARM, _CANCEL = int(K.TIMER_ARM), int(K.TIMER_CANCEL)
_IPI_SEND, _EOI, _TPR, _APIC_WRITE = (
    int(K.IPI_SEND),
    int(K.EOI),
    int(K.TPR_WRITE),
    int(K.APIC_WRITE),
)
_IDLE_ENTER, _IDLE_EXIT = int(K.IDLE_ENTER), int(K.IDLE_EXIT)
_MSR_WRITE = int(K.MSR_WRITE)
_I64_LIMIT = 9.223372036854775807e18  # 2**63 as float: casts at or beyond it fail in polars


@kernel
def _bits(v, lo, n):
    """Bits ``lo .. lo+n-1`` of UInt64 bits held in an int64 (base.bits)."""
    return np.int64((np.uint64(v) >> np.uint64(lo)) & np.uint64((1 << n) - 1))


@kernel
def _intercepted(msr):
    """intercepts.intercepted: an MSR KVM intercepts (the table's ranges)."""
    for j in range(INTERCEPTED_RANGES.shape[0]):
        if INTERCEPTED_RANGES[j, 0] <= msr <= INTERCEPTED_RANGES[j, 1]:
            return True
    return False


@kernel
def _map_nb(route, kind_of, fam_of, ids, ok, fa, fb, ts, seq, cpu, has_cal, tsc_per_ns,
            tsc_at_zero, c_i, c_cpu, c_kind, c_vec, c_target, c_arg, c_argt, c_aux,
            miss_msr):  # fmt: skip
    """Map OK records; return (rows, unmapped MSR writes, bad row or -1).

    ``c_i`` is the record each row comes from. A bad row is a value the rule's casts
    refuse (a TSC deadline beyond Int64 ns, an ICR destination beyond Int32).
    """
    nc = 0
    nm = 0
    for r in range(len(ids)):
        if ok[r] != F.OK:
            continue
        eid = ids[r]
        rt = route[eid]
        if rt == F.R_NORULE:
            continue
        kind = H_MARK  # R_MARK: the record's time is all it gives
        vec = -1
        target = -1
        arg = 0
        argt = False
        aux = 0
        c = cpu[r]
        a = fa[r]
        b = fb[r]
        if rt == F.R_MSR:  # msr_rows(write=True)
            msr = a
            if msr == MSR_TSC_DEADLINE:
                kind = _CANCEL if b == 0 else _ARM
                argt = has_cal
                if b != 0:
                    if has_cal:
                        x = np.round((np.float64(np.uint64(b)) - tsc_at_zero) / tsc_per_ns)
                        if not (-_I64_LIMIT <= x < _I64_LIMIT):
                            return nc, nm, r
                        arg = np.int64(x)
                    else:
                        arg = -1
            elif msr == MSR_ICR:
                short = _bits(b, 18, 2)
                logical = _bits(b, 11, 1) == 1
                dest = _bits(b, 32, 32)
                cluster = dest // 65536
                if cluster == 0:
                    scale = 1
                elif cluster == 1:
                    scale = 1 << 16
                elif cluster == 2:
                    scale = 1 << 32
                else:
                    scale = 1 << 48
                kind = _IPI_SEND
                vec = _bits(b, 0, 8)
                if short == 1:
                    target = c
                elif short >= 2:
                    target = -1
                elif logical:
                    target = -2
                else:
                    target = dest
                    if dest > F.INT32_MAX:
                        return nc, nm, r  # the rule's Int32 cast fails there too
                arg = (dest % 65536) * scale if (short == 0 and logical) else 0
            elif msr == MSR_SELF_IPI:
                kind = _IPI_SEND
                vec = _bits(b, 0, 8)
                target = c
            elif msr == MSR_EOI:
                kind = _EOI
                arg = EOI_TRACED
            elif msr == MSR_TPR:
                kind = _TPR
                arg = b
            elif msr == MSR_TMICT:
                kind = _CANCEL if b == 0 else _ARM
                arg = 0 if b == 0 else ts[r] + b * APIC_TIMER_NS_PER_COUNT
                argt = True
            elif X2APIC_FIRST <= msr <= X2APIC_LAST:
                kind = _APIC_WRITE
                arg = (msr - X2APIC_FIRST) * 16
            elif _intercepted(msr):
                kind = _MSR_WRITE
                arg = msr
            else:
                miss_msr[nm] = msr
                nm += 1
                continue
        elif rt == F.R_VEC:  # guest._handler: entry kind or H_EXIT, aux = family/vector
            kind = kind_of[eid]
            vec = a
            aux = fam_of[eid] * 65536 + a
        elif rt == F.R_IDLE:  # guest._cpu_idle
            kind = _IDLE_EXIT if a == IDLE_EXIT_STATE else _IDLE_ENTER
            arg = 0 if a == IDLE_EXIT_STATE else a
            c = b
        elif rt == F.R_IPI:  # guest._ipi_send, records with a cpu= field
            kind = H_IPI_HINT
            vec = b
            target = a
        c_i[nc] = r
        c_cpu[nc] = c
        c_kind[nc] = kind
        c_vec[nc] = vec
        c_target[nc] = target
        c_arg[nc] = arg
        c_argt[nc] = argt
        c_aux[nc] = aux
        nc += 1
    return nc, nm, -1


def map_fast(w: dict, route, kind_of, fam_of, calibration):
    """Candidate rows (``base.ROW_SCHEMA`` columns as numpy) of the OK records of ``w``.

    Returns (rows, msr values of unmapped MSR writes, bad record index or -1).
    """
    n = len(w["id"])
    cols = {
        "i": np.empty(n, np.int64),
        "cpu": np.empty(n, np.int32),
        "kind": np.empty(n, np.int8),
        "vector": np.empty(n, np.int16),
        "target": np.empty(n, np.int32),
        "arg": np.empty(n, np.int64),
        "argt": np.empty(n, np.bool_),
        "aux": np.empty(n, np.int64),
    }
    miss_msr = np.empty(n, np.int64)
    has_cal = calibration is not None and calibration.tsc_per_ns is not None
    a = float(calibration.tsc_per_ns) if has_cal else 1.0
    b = float(calibration.tsc_at_zero) if has_cal else 0.0
    nc, nm, bad = _map_nb(
        route, kind_of, fam_of, w["id"], w["ok"], w["a"], w["b"], w["ts"], w["seq"], w["cpu"],
        has_cal, a, b, *cols.values(), miss_msr,
    )  # fmt: skip
    i = cols.pop("i")[:nc]
    rows = {"seq": w["seq"][i], "ts": w["ts"][i]}
    rows.update({k: v[:nc] for k, v in cols.items()})
    rows["dur_ns"] = np.zeros(nc, np.int64)
    rows = {k: rows[k] for k in ROW_DTYPES}
    return rows, miss_msr[:nm], int(bad)
