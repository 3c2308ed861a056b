"""The one table that maps guest trace events to canonical event kinds.

Every guest rule is registered here in :data:`GUEST_RULES` under the event's short
name (``write_msr``; a ``perf script`` ``msr:write_msr`` is the same event): events a
guest (or bare-metal) kernel writes. KVM's host-side tracepoints have their own
table in ``kvmhost.py``, which reuses :func:`msr_rows`; the machinery is in
``base.py``. ``GUEST_RULES.table()`` renders the table as documentation, so the
description of a rule lives beside its code.

A rule turns the records of its event (columns ``seq``, ``ts``, ``cpu``, ``pid``,
``payload``) into *candidate rows*: canonical kinds, or helper kinds (negative)
that :mod:`tracebench.ingest.stream.resolve` consumes: a handler exit gives its entry a
``dur_ns``; an ``ipi_send_cpu`` becomes an ``ipi_send`` only where no x2APIC ICR
write follows it; a ``kvm_exit``/``kvm_entry`` pair gives a measured exit.

Conventions the table relies on (x86, Linux guests):

* x2APIC MSR ``0x800 + reg/16`` is xAPIC register ``reg``: ``0x808`` TPR,
  ``0x80b`` EOI, ``0x830`` ICR (low byte vector, bits 18-19 shorthand, bit 11
  logical destination, bits 32-63 destination), ``0x838`` TMICT, ``0x83f`` SELF IPI.
* APIC id == vCPU index (true for KVM's default topology).
* Linux system vectors: 236 local timer, 253 reschedule, 252 call function,
  251 call function single, 246 irq work.
* ``eoi`` rows carry ``arg`` = :data:`EOI_TRACED` (0) when the trace shows the EOI
  and :data:`EOI_INFERRED` (1) when it is implied (one EOI per interrupt, e.g.
  under KVM PV EOI where the guest's EOI is a memory write nobody traces).
* Time-valued ``arg`` (timer deadlines) is in ns on the trace clock, shifted to
  the trace start like ``ts_ns``; -1 where the deadline cannot be known.
"""

from __future__ import annotations

import polars as pl

from tracebench.ingest.rules.base import (
    EOI_TRACED,
    H_EXIT,
    H_IPI_HINT,
    H_MARK,
    MapContext,
    RuleTable,
    as_i64,
    bits,
    field,
    hex_u64,
    int_field,
    lit,
    rows,
    unmapped,
)
from tracebench.ingest.rules.intercepts import intercepted
from tracebench.schema import EventKind as K

# x86 MSRs (SDM vol. 3, ch. 11 "x2APIC")
MSR_TSC = 0x10
MSR_TSC_DEADLINE = 0x6E0
X2APIC_FIRST, X2APIC_LAST = 0x800, 0x8FF
MSR_TPR, MSR_EOI, MSR_ICR, MSR_TMICT, MSR_SELF_IPI = 0x808, 0x80B, 0x830, 0x838, 0x83F
#: ns per TMICT count: KVM's emulated APIC bus runs at 1 GHz and Linux programs divide-by-16
APIC_TIMER_NS_PER_COUNT = 16
#: ``power:cpu_idle`` state that means "leaves idle" ((u32)-1)
IDLE_EXIT_STATE = 4294967295
#: hrtimer callbacks of the tick / clockevent path (what ends up in the LAPIC timer)
TICK_FUNCTIONS = ("tick_sched_timer", "tick_nohz_handler", "tick_nohz_highres_handler")
#: Linux x86 system vectors
VEC_LOCAL_TIMER, VEC_RESCHEDULE, VEC_CALL_FUNCTION, VEC_CALL_FUNCTION_SINGLE, VEC_IRQ_WORK = (
    236,
    253,
    252,
    251,
    246,
)

#: the guest mapping table (rules below)
GUEST_RULES = RuleTable("guest")
rule = GUEST_RULES.rule


# --------------------------------------------------------------------------- MSRs


def msr_rows(df: pl.DataFrame, ctx: MapContext, write: bool, event: str,
             all_exit: bool = False):
    """Rows for MSR accesses; ``df`` has ``msr`` (Int64) and ``value`` (UInt64) columns.

    Shared by the guest's ``msr:write_msr`` and the host's ``kvm_msr``. An MSR outside the
    APIC/timer table is an ``msr_write`` / ``msr_read`` (arg = the MSR) where the access
    exited: every one where ``all_exit`` (``kvm_msr`` fires inside the exit), else those
    of ``intercepts.INTERCEPTED_MSRS``; the others are unmapped.
    """
    msr, val = pl.col("msr"), pl.col("value")
    out, left = [], df
    if write:
        tsc = left.filter(msr == MSR_TSC_DEADLINE)
        deadline = ctx.tsc_to_ns(val) if ctx.tsc_to_ns is not None else lit(-1, pl.Int64)
        out.append(
            rows(
                tsc,
                pl.when(val == 0).then(int(K.TIMER_CANCEL)).otherwise(int(K.TIMER_ARM)),
                arg=pl.when(val == 0).then(0).otherwise(deadline),
                argt=ctx.tsc_to_ns is not None,
            )
        )
        icr = left.filter(msr == MSR_ICR)
        short = bits(val, 18, 2)
        logical = bits(val, 11, 1) == 1
        dest = bits(val, 32, 32)
        cluster = dest // 65536
        cluster_mask = (dest % 65536) * (
            pl.when(cluster == 0)
            .then(1)
            .when(cluster == 1)
            .then(1 << 16)
            .when(cluster == 2)
            .then(1 << 32)
            .otherwise(1 << 48)
        )
        target = (
            pl.when(short == 1)
            .then(pl.col("cpu"))
            .when(short >= 2)
            .then(-1)
            .when(logical)
            .then(-2)
            .otherwise(dest)
        )
        out.append(
            rows(
                icr,
                int(K.IPI_SEND),
                vector=bits(val, 0, 8),
                target=target,
                arg=pl.when((short == 0) & logical).then(cluster_mask).otherwise(0),
            )
        )
        selfipi = left.filter(msr == MSR_SELF_IPI)
        out.append(rows(selfipi, int(K.IPI_SEND), vector=bits(val, 0, 8), target=pl.col("cpu")))
        out.append(rows(left.filter(msr == MSR_EOI), int(K.EOI), arg=EOI_TRACED))
        out.append(rows(left.filter(msr == MSR_TPR), int(K.TPR_WRITE), arg=as_i64(val)))
        tmict = left.filter(msr == MSR_TMICT)
        out.append(
            rows(
                tmict,
                pl.when(val == 0).then(int(K.TIMER_CANCEL)).otherwise(int(K.TIMER_ARM)),
                arg=pl.when(val == 0)
                .then(0)
                .otherwise(pl.col("ts") + as_i64(val) * APIC_TIMER_NS_PER_COUNT),
                argt=True,
            )
        )
        done = [MSR_TSC_DEADLINE, MSR_ICR, MSR_SELF_IPI, MSR_EOI, MSR_TPR, MSR_TMICT]
        apic = left.filter(msr.is_between(X2APIC_FIRST, X2APIC_LAST) & ~msr.is_in(done))
        out.append(rows(apic, int(K.APIC_WRITE), arg=(msr - X2APIC_FIRST) * 16))
        rest = left.filter(~msr.is_between(X2APIC_FIRST, X2APIC_LAST) & ~msr.is_in(done))
    else:
        apic = left.filter(msr.is_between(X2APIC_FIRST, X2APIC_LAST))
        out.append(rows(apic, int(K.APIC_READ), arg=(msr - X2APIC_FIRST) * 16))
        out.append(rows(left.filter(msr == MSR_TSC), int(K.CLOCK_READ), arg=1))  # ClockSource.TSC
        rest = left.filter(~msr.is_between(X2APIC_FIRST, X2APIC_LAST) & (msr != MSR_TSC))
    other = rest if all_exit else rest.filter(intercepted(msr))
    out.append(rows(other, int(K.MSR_WRITE if write else K.MSR_READ), arg=msr))
    rest = rest.clear() if all_exit else rest.filter(~intercepted(msr))
    label = (
        pl.format(
            f"{event}(0x{{}})",
            pl.col("msr").map_batches(
                lambda s: pl.Series([format(int(v), "x") if v is not None else "?" for v in s]),
                return_dtype=pl.String,
            ),
        )
        if len(rest)
        else pl.lit(event)
    )
    return pl.concat(out), unmapped(rest, label)


_MSR_PAYLOAD = r"^([0-9a-fA-Fx]+), value ([0-9a-fA-Fx]+)"


def _guest_msr(df: pl.DataFrame, ctx: MapContext, write: bool, event: str):
    df = df.with_columns(
        msr=as_i64(hex_u64(pl.col("payload").str.extract(_MSR_PAYLOAD, 1))),
        value=hex_u64(pl.col("payload").str.extract(_MSR_PAYLOAD, 2)),
    )
    parsed = pl.col("msr").is_not_null() & pl.col("value").is_not_null()
    rows, miss = msr_rows(df.filter(parsed), ctx, write, event)
    bad = df.filter(~parsed)  # e.g. a value of more than 64 bits: counted, not dropped unseen
    if bad.height:
        miss = pl.concat([miss, unmapped(bad, f"{event}(unparsed)")])
    return rows, miss


@rule(
    ("write_msr",),
    "timer_arm, timer_cancel, ipi_send, eoi, tpr_write, apic_write, msr_write",
    "x86 WRMSR. 0x6e0 TSC-deadline -> timer_arm (arg = deadline ns via TSC calibration; "
    "value 0 -> timer_cancel); 0x830 x2APIC ICR -> ipi_send (vector = low byte; "
    "shorthand self -> own vCPU, all / all-but-self -> -1; logical cluster mode -> mask); "
    "0x83f SELF IPI -> ipi_send to self; 0x80b -> eoi (arg 0 = traced); 0x808 -> tpr_write; "
    "0x838 TMICT -> timer_arm (deadline = now + count x 16 ns); other 0x800-0x8ff -> "
    "apic_write (arg = xAPIC offset); MSRs KVM intercepts (intercepts.INTERCEPTED_MSRS: "
    "0x1b, 0x3b, 0x1a0, 0x11-0x12, 0x4b564d00-0x4b564dff) -> msr_write (arg = MSR); other "
    "MSRs unmapped as write_msr(0xNNN), records whose MSR or value does not parse as "
    "write_msr(unparsed)",
)
def _write_msr(df, ctx):
    return _guest_msr(df, ctx, True, "write_msr")


@rule(
    ("read_msr",),
    "apic_read, clock_read, msr_read",
    "x86 RDMSR. 0x800-0x8ff -> apic_read (arg = xAPIC offset); 0x10 TSC -> clock_read; "
    "MSRs KVM intercepts (as write_msr) -> msr_read (arg = MSR); other MSRs unmapped as "
    "read_msr(0xNNN), unparsable records as read_msr(unparsed)",
)
def _read_msr(df, ctx):
    return _guest_msr(df, ctx, False, "read_msr")


# --------------------------------------------------------------------------- interrupts

#: entry event -> (kind, pairing family); the matching *_exit event closes it
HANDLERS = {
    "local_timer_entry": (K.TIMER_IRQ, 1),
    "reschedule_entry": (K.IPI_IRQ, 2),
    "call_function_entry": (K.IPI_IRQ, 3),
    "call_function_single_entry": (K.IPI_IRQ, 4),
    "irq_work_entry": (K.IPI_IRQ, 5),
    "irq_handler_entry": (K.DEVICE_IRQ, 6),
}


def _vector(df: pl.DataFrame) -> pl.Expr:
    return pl.coalesce(int_field("vector"), int_field("irq"), pl.lit(-1, pl.Int64))


def _handler(entry: str, kind: K, family: int):
    exit_ev = entry.removesuffix("_entry") + "_exit"
    what = "device IRQ handler" if kind == K.DEVICE_IRQ else f"{kind.label} vector"
    doc = (
        f"{what} starts; vector = {'irq' if kind == K.DEVICE_IRQ else 'vector'} field; "
        f"dur_ns = time to the {exit_ev} on the same CPU"
    )

    @rule((entry,), kind.label, doc)
    def _entry(df, ctx):
        vec = _vector(df)
        return rows(df, int(kind), vector=vec, aux=family * 65536 + vec), unmapped(df.clear(), "")

    @rule((exit_ev,), "(dur_ns of the entry)", f"closes {entry}: gives its dur_ns")
    def _exit(df, ctx):
        vec = _vector(df)
        return rows(df, H_EXIT, vector=vec, aux=family * 65536 + vec), unmapped(df.clear(), "")


for _entry_name, (_kind, _fam) in HANDLERS.items():
    _handler(_entry_name, _kind, _fam)


@rule(
    ("cpu_idle",),
    "idle_enter, idle_exit",
    "power:cpu_idle: state 4294967295 -> idle_exit, other states -> idle_enter (arg = state); "
    "cpu = cpu_id field",
)
def _cpu_idle(df, ctx):
    state = int_field("state")
    cpu = pl.coalesce(int_field("cpu_id"), pl.col("cpu"))
    df = df.filter(state.is_not_null())
    return rows(
        df,
        pl.when(state == IDLE_EXIT_STATE).then(int(K.IDLE_EXIT)).otherwise(int(K.IDLE_ENTER)),
        arg=pl.when(state == IDLE_EXIT_STATE).then(0).otherwise(state),
        cpu=cpu,
    ), unmapped(df.clear(), "")


@rule(
    ("hrtimer_start",),
    "timer_arm",
    "tick/clockevent hrtimers (function tick_sched_timer, tick_nohz_handler, "
    "tick_nohz_highres_handler) -> timer_arm with arg = expires (CLOCK_MONOTONIC) moved to "
    "the trace clock, only where the trace has no MSR writes (they show the real timer "
    "programming); other hrtimers, or any when MSR writes are traced, are time marks",
)
def _hrtimer_start(df, ctx):
    func = field("function", r"([A-Za-z0-9_.]+)")
    if ctx.msr_traced:
        return rows(df, H_MARK), unmapped(df.clear(), "")
    tick = df.filter(func.is_in(TICK_FUNCTIONS))
    rest = df.filter(~func.is_in(TICK_FUNCTIONS) | func.is_null())
    exp = int_field("expires")
    if ctx.mono_offset_ns is None:
        arg, argt = lit(-1, pl.Int64), False
    else:
        arg, argt = exp + ctx.mono_offset_ns, True
    arms = rows(tick, int(K.TIMER_ARM), arg=arg, argt=argt)
    return pl.concat([arms, rows(rest, H_MARK)]), unmapped(df.clear(), "")


#: events that only say when they happened: inside a handler, the gaps between them tell
#: the guest's own work from its exits and from its host's preemption (stream/resolve.py)
TIME_MARKS = ("hrtimer_expire_entry", "hrtimer_expire_exit", "hrtimer_cancel")


@rule(
    TIME_MARKS,
    "(time mark)",
    "no row: inside a handler, splits its time so that dur_ns leaves out the recording's "
    "exits and host preemption",
)
def _time_mark(df, ctx):
    return rows(df, H_MARK), unmapped(df.clear(), "")


#: ``callback=`` of ipi_send_cpu -> vector the IPI will carry (Linux x86)
IPI_CALLBACK_VECTORS = {
    "0x0": VEC_RESCHEDULE,
    "(nil)": VEC_RESCHEDULE,
    "0": VEC_RESCHEDULE,
    "generic_smp_call_function_single_interrupt": VEC_CALL_FUNCTION_SINGLE,
    "generic_smp_call_function_interrupt": VEC_CALL_FUNCTION,
}


def cpulist_mask(text: str | None) -> int:
    """``"0-2,5"`` -> bit mask (0 when unparsable or beyond 63)."""
    mask = 0
    try:
        for part in (text or "").split(","):
            lo, _, hi = part.partition("-")
            for c in range(int(lo), int(hi or lo) + 1):
                mask |= 1 << c
    except ValueError:
        return 0
    return mask if mask < (1 << 63) else 0


@rule(
    ("ipi_send_cpu", "ipi_send_cpumask"),
    "ipi_send",
    "ipi:ipi_send_cpu (target = cpu) / ipi_send_cpumask (target -2, arg = mask); vector from "
    "callback (NULL -> 253 reschedule, generic_smp_call_function_single_interrupt -> 251); "
    "dropped as a duplicate where an x2APIC ICR write follows on the same CPU",
)
def _ipi_send(df, ctx):
    cb = field("callback", r"([^\s+]+)")
    vec = cb.replace_strict(IPI_CALLBACK_VECTORS, default=-1, return_dtype=pl.Int64)
    one = df.filter(int_field("cpu").is_not_null())
    many = df.filter(int_field("cpu").is_null())
    masks = many.select(field("cpumask", r"([0-9,\-]+)")).to_series()
    many = many.with_columns(
        mask=pl.Series([cpulist_mask(t) for t in masks.to_list()], dtype=pl.Int64)
    )
    out = pl.concat(
        [
            rows(one, H_IPI_HINT, vector=vec, target=int_field("cpu")),
            rows(
                many.filter(pl.col("mask") != 0),
                H_IPI_HINT,
                vector=vec,
                target=-2,
                arg=pl.col("mask"),
            ),
        ]
    )
    return out, unmapped(many.filter(pl.col("mask") == 0), "ipi_send_cpumask")
