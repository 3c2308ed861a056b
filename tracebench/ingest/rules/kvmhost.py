"""Host-side KVM tracepoints: the guest's actions as KVM saw them, plus the real exits.

``kvm:kvm_exit``/``kvm_entry`` pairs give a measured-exits table (per vCPU and
exit reason: count and handling time from exit to the next entry, the columns of
``perf kvm stat report``) written beside the trace as ``NAME.exits.parquet``, so a
real run's exit mix can be set beside a replay's prediction. The other events map
to the canonical guest kinds (rules below, the ``kvm-host`` table; the sniffer is
``formats/kvmhost.py``). Events are put on the vCPU named in the payload (``vcpu N``,
``apicid N``), else on the vCPU of the thread (learned from ``kvm_entry`` or from
QEMU's ``CPU N/KVM`` thread names, ``kvmfacts.py``), else on vCPU 0.

Where two tracepoints report the same guest action, the more specific one wins
when it occurs anywhere in the input: ``kvm_apic`` over the x2APIC part of
``kvm_msr`` and over ``kvm_mmio``; ``kvm_eoi`` over ``kvm_apic`` EOI writes,
``kvm_pv_eoi`` and IO-APIC ``kvm_ack_irq``; ``kvm_inj_virq`` over
``kvm_apic_accept_irq`` for the vectors it injects (the injection is when the guest gets
the interrupt; the accept only sets the IRR bit, inside the exit that raised it; posted
vectors are never injected and keep the accept); ICR writes over ``kvm_apic_ipi``.

Every handler tracepoint also hints the exit it was raised in (``kvmexits.py``): the
measured exits of a trace without ``kvm_exit``, and the reason of an exit already open
when the trace began.
"""

from __future__ import annotations

import polars as pl

from tracebench.ingest.rules.base import (
    EOI_TRACED,
    H_KVM_ENTRY,
    H_KVM_EXIT,
    RuleTable,
    empty_rows,
    hex_u64,
    rows,
    unmapped,
)
from tracebench.ingest.rules.guest import VEC_LOCAL_TIMER, X2APIC_FIRST, X2APIC_LAST, msr_rows
from tracebench.ingest.rules.kvmexits import exit_hints, mmio_reason, register
from tracebench.ingest.rules.kvmfacts import HLT_REASONS, int_field_sp, vcpu_of
from tracebench.ingest.rules.kvmports import io_exit_rows
from tracebench.ingest.rules.kvmports import register as register_ports
from tracebench.schema import ClockSource
from tracebench.schema import EventKind as K

#: the KVM-host mapping table (rules below)
KVM_HOST_RULES = RuleTable("kvm-host")
rule = KVM_HOST_RULES.rule

#: xAPIC register names in ``kvm_apic`` payloads -> register offset
APIC_REGS = {
    "APIC_ID": 0x20,
    "APIC_LVR": 0x30,
    "APIC_TASKPRI": 0x80,
    "APIC_ARBPRI": 0x90,
    "APIC_PROCPRI": 0xA0,
    "APIC_EOI": 0xB0,
    "APIC_RRR": 0xC0,
    "APIC_LDR": 0xD0,
    "APIC_DFR": 0xE0,
    "APIC_SPIV": 0xF0,
    "APIC_ISR": 0x100,
    "APIC_TMR": 0x180,
    "APIC_IRR": 0x200,
    "APIC_ESR": 0x280,
    "APIC_ICR": 0x300,
    "APIC_ICR2": 0x310,
    "APIC_LVTT": 0x320,
    "APIC_LVTTHMR": 0x330,
    "APIC_LVTPC": 0x340,
    "APIC_LVT0": 0x350,
    "APIC_LVT1": 0x360,
    "APIC_LVTERR": 0x370,
    "APIC_TMICT": 0x380,
    "APIC_TMCCT": 0x390,
    "APIC_TDCR": 0x3E0,
    "APIC_SELF_IPI": 0x3F0,
}
XAPIC_BASE_GPA = 0xFEE00000
HPET_BASE_GPA, HPET_COUNTER = 0xFED00000, 0xF0
KVM_HC_SEND_IPI = 10
#: Hyper-V synthetic APIC MSRs (HV_X64_MSR_EOI/ICR/TPR) -> their x2APIC equivalents: an
#: enlightened Windows guest signals EOI and sends IPIs through them
HYPERV_APIC_MSRS = {0x40000070: 0x80B, 0x40000071: 0x830, 0x40000072: 0x808}


@rule(
    ("kvm_exit",),
    "(measured exit), idle_enter on HLT, eoi/clock_read/port_io on IO",
    "VMX 'reason NAME ...' or SVM 'vcpu N reason name ...'; paired with the next "
    "kvm_entry of the vCPU for the exits table; a HLT exit is idle_enter, its entry "
    "idle_exit; where kvm_pio is not traced, an IO exit's port and direction (kvmports.py) "
    "-> eoi / clock_read / port_io as kvm_pio",
)
def _kvm_exit(df, ctx):
    reason = pl.col("payload").str.extract(r"reason (\S+)", 1)
    info1 = pl.col("payload").str.extract(r"info1 (0x[0-9a-f]+)", 1)
    # SVM prints "msr" for both directions; info1 = 1 is a write
    reason = (
        pl.when((reason == "msr") & info1.is_not_null())
        .then(pl.when(hex_u64(info1) == 1).then(pl.lit("msr_write")).otherwise(pl.lit("msr_read")))
        .otherwise(reason)
    )
    df = df.with_columns(reason=reason.fill_null("UNKNOWN"))
    ids = {r: ctx.reason_id(r) for r in df["reason"].unique().sort().to_list()}
    return pl.concat([rows(
        df,
        H_KVM_EXIT,
        cpu=vcpu_of(ctx),
        aux=pl.col("reason").replace_strict(ids, return_dtype=pl.Int64),
        arg=pl.col("reason").is_in(HLT_REASONS).cast(pl.Int64),
    ), io_exit_rows(df, ctx)]), unmapped(df.clear(), "")


@rule(
    ("kvm_entry",),
    "(measured exit), idle_exit after HLT",
    "'vcpu N, rip ...': closes the vCPU's open exit",
)
def _kvm_entry(df, ctx):
    return rows(df, H_KVM_ENTRY, cpu=vcpu_of(ctx)), unmapped(df.clear(), "")


_KVM_MSR = r"^msr_(read|write) ([0-9a-fA-F]+) = (?:0x)?([0-9a-fA-F]+)"


@rule(
    ("kvm_msr",),
    "as write_msr/read_msr",
    "'msr_write 6e0 = 0x...': same MSR table as the guest's write_msr/read_msr (Hyper-V "
    "EOI/ICR/TPR MSRs 0x40000070-72 as x2APIC EOI/ICR/TPR); x2APIC MSRs are left to "
    "kvm_apic where it is traced; every other MSR -> msr_write/msr_read (arg = MSR: it "
    "exited); each is one MSR_WRITE/MSR_READ exit",
)
def _kvm_msr(df, ctx):
    p = pl.col("payload")
    df = df.with_columns(
        cpu=vcpu_of(ctx).cast(pl.Int32),
        dir=p.str.extract(_KVM_MSR, 1),
        msr=hex_u64(p.str.extract(_KVM_MSR, 2)).cast(pl.Int64),
        value=hex_u64(p.str.extract(_KVM_MSR, 3)),
    ).filter(pl.col("msr").is_not_null())
    hints = exit_hints(df, ctx, pl.when(pl.col("dir") == "write").then(pl.lit("MSR_WRITE"))
                       .otherwise(pl.lit("MSR_READ")))
    df = df.with_columns(msr=pl.col("msr").replace(HYPERV_APIC_MSRS))
    if "kvm_apic" in ctx.present:
        df = df.filter(~pl.col("msr").is_between(X2APIC_FIRST, X2APIC_LAST))
    # kvm_msr fires inside the RDMSR/WRMSR exit: every MSR it shows was intercepted
    w, wu = msr_rows(df.filter(pl.col("dir") == "write"), ctx, True, "kvm_msr_write", True)
    r, ru = msr_rows(df.filter(pl.col("dir") == "read"), ctx, False, "kvm_msr_read", True)
    return pl.concat([w, r, hints]), pl.concat([wu, ru])


def _apic_access(df, ctx, offset: pl.Expr, value: pl.Expr, write: pl.Expr, event: str):
    """xAPIC register accesses (kvm_apic, kvm_mmio) through the x2APIC MSR table."""
    df = df.with_columns(cpu=vcpu_of(ctx).cast(pl.Int32), off=offset, value=value, w=write)
    df = df.filter(pl.col("off").is_not_null() & pl.col("value").is_not_null())
    if "kvm_eoi" in ctx.present:  # kvm_eoi reports every EOI, with its vector
        df = df.filter(~(pl.col("w") & (pl.col("off") == APIC_REGS["APIC_EOI"])))
    # xAPIC ICR: the destination was written to ICR2 (bits 24-31) just before
    icr2 = df.filter(pl.col("w") & (pl.col("off") == APIC_REGS["APIC_ICR2"])).select(
        "ts", "cpu", dest=(pl.col("value") // (1 << 24)) % 256
    )
    df = df.filter(~(pl.col("w") & (pl.col("off") == APIC_REGS["APIC_ICR2"])))
    if icr2.height:
        df = df.sort("ts").join_asof(icr2.sort("ts"), on="ts", by="cpu", strategy="backward")
        df = (
            df.with_columns(
                value=pl.when(
                    (pl.col("off") == APIC_REGS["APIC_ICR"]) & (pl.col("value") < (1 << 32))
                )
                .then(pl.col("value") + pl.col("dest").fill_null(0) * (1 << 32))
                .otherwise(pl.col("value"))
            )
            .drop("dest")
            .sort("seq")
        )
    df = df.with_columns(msr=(pl.col("off") // 16 + X2APIC_FIRST).cast(pl.Int64))
    w, wu = msr_rows(df.filter(pl.col("w")), ctx, True, event)
    r, ru = msr_rows(df.filter(~pl.col("w")), ctx, False, event)
    return pl.concat([w, r]), pl.concat([wu, ru])


@rule(
    ("kvm_apic",),
    "ipi_send, eoi, tpr_write, timer_arm, apic_write, apic_read",
    "'apic_write APIC_ICR = 0x...': register name -> the x2APIC MSR rules (ICR dest from "
    "the preceding ICR2 write in xAPIC mode)",
)
def _kvm_apic(df, ctx):
    p = pl.col("payload")
    reg = p.str.extract(r"^apic_(?:read|write) (\S+)", 1)
    off = pl.coalesce(
        reg.replace_strict(APIC_REGS, default=None, return_dtype=pl.Int64),
        hex_u64(reg).cast(pl.Int64),
    )
    val = hex_u64(p.str.extract(r"= (?:0x)?([0-9a-fA-F]+)", 1))
    out, miss = _apic_access(df, ctx, off, val, p.str.starts_with("apic_write"), "kvm_apic")
    if not ctx.present & {"kvm_msr", "kvm_mmio"}:  # else the access hinted there already
        out = pl.concat([out, exit_hints(df, ctx, "APIC_ACCESS")])
    return out, miss


@rule(
    ("kvm_mmio",),
    "as kvm_apic; clock_read (HPET counter)",
    "'mmio write len 4 gpa 0xfee000b0 val 0x0': the xAPIC page as kvm_apic (unless kvm_apic "
    "is traced); reads of the HPET main counter -> clock_read",
)
def _kvm_mmio(df, ctx):
    p = pl.col("payload")
    gpa = hex_u64(p.str.extract(r"gpa (0x[0-9a-fA-F]+)", 1)).cast(pl.Int64)
    val = hex_u64(p.str.extract(r"val (0x[0-9a-fA-F]+)", 1)).fill_null(0)
    write = p.str.contains(r"^mmio write")
    df = df.with_columns(gpa=gpa)
    done = df.filter(~pl.col("payload").str.contains("unsatisfied"))
    hints = exit_hints(done, ctx, mmio_reason(pl.col("gpa")))
    hpet = df.filter(
        (pl.col("gpa") - HPET_BASE_GPA).is_in([HPET_COUNTER, HPET_COUNTER + 4]) & ~write
    )
    out = [rows(hpet, int(K.CLOCK_READ), cpu=vcpu_of(ctx), arg=int(ClockSource.HPET)), hints]
    lapic = df.filter((pl.col("gpa") - XAPIC_BASE_GPA).is_between(0, 0xFFF))
    rest = df.filter(~(pl.col("gpa") - XAPIC_BASE_GPA).is_between(0, 0xFFF)).join(
        hpet.select("seq"), on="seq", how="anti"
    )
    miss = [unmapped(rest, "kvm_mmio")]
    if "kvm_apic" not in ctx.present:
        r, u = _apic_access(lapic, ctx, pl.col("gpa") - XAPIC_BASE_GPA, val, write, "kvm_mmio")
        out.append(r)
        miss.append(u)
    return pl.concat(out), pl.concat(miss)


@rule(("kvm_eoi",), "eoi", "'apicid 0 vector 176' -> eoi on that vCPU (arg 0 = traced)")
def _kvm_eoi(df, ctx):
    return rows(
        df, int(K.EOI), cpu=int_field_sp("apicid"), vector=int_field_sp("vector"), arg=EOI_TRACED
    ), unmapped(df.clear(), "")


@rule(
    ("kvm_pv_eoi",),
    "eoi",
    "'apicid 0 vector 236' -> eoi, only where kvm_eoi is not traced (KVM writes both)",
)
def _kvm_pv_eoi(df, ctx):
    if "kvm_eoi" in ctx.present:
        return empty_rows(), unmapped(df.clear(), "")
    return _kvm_eoi(df, ctx)

def vector_kind(vec: pl.Expr, ipi_vectors: list[int]) -> pl.Expr:
    """Interrupt kind of a vector: 236 timer, Linux IPI vectors and vectors seen in ICR
    writes -> ipi_irq, anything else device_irq."""
    return (
        pl.when(vec == VEC_LOCAL_TIMER)
        .then(int(K.TIMER_IRQ))
        .when(vec.is_in([*ipi_vectors, 246, 251, 252, 253]))
        .then(int(K.IPI_IRQ))
        .otherwise(int(K.DEVICE_IRQ))
    )


@rule(
    ("kvm_apic_accept_irq",),
    "timer_irq, ipi_irq, device_irq",
    "'apicid 0 vec 236 (Fixed|edge)': the interrupt reaches the vCPU's APIC; used for "
    "vectors kvm_inj_virq never injects (posted delivery, or injection not traced). 1 ns "
    "after its time stamp: it is traced inside the exit that raised it, before that "
    "exit's own ICR write event",
)
def _accept(df, ctx):
    vec = int_field_sp("vec")
    df = df.filter(~vec.is_in(ctx.injected_vectors))
    return rows(
        df.with_columns(ts=pl.col("ts") + 1), vector_kind(vec, ctx.ipi_vectors),
        cpu=int_field_sp("apicid"), vector=vec
    ), unmapped(df.clear(), "")


@rule(
    ("kvm_inj_virq",),
    "timer_irq, ipi_irq, device_irq",
    "'IRQ 0xb0' / 'irq 52': injection into the vCPU, the guest handler's start (PIC-routed "
    "vectors included); a '[reinjected]' event re-delivers an interrupt already counted",
)
def _inj(df, ctx):
    p = pl.col("payload")
    vec = pl.coalesce(
        hex_u64(p.str.extract(r"IRQ (0x[0-9a-fA-F]+)", 1)).cast(pl.Int64),
        p.str.extract(r"irq (\d+)", 1).cast(pl.Int64, strict=False),
    )
    df = df.filter(~p.str.contains("reinjected"))
    return rows(df, vector_kind(vec, ctx.ipi_vectors), cpu=vcpu_of(ctx), vector=vec), unmapped(
        df.clear(), ""
    )


@rule(
    ("kvm_apic_ipi",),
    "ipi_send",
    "'dst b0 vec 176 (Fixed|physical|...|self)': only where neither kvm_msr nor kvm_apic "
    "is traced (they show the ICR write itself)",
)
def _apic_ipi(df, ctx):
    if ctx.present & {"kvm_msr", "kvm_apic"}:
        return empty_rows(), unmapped(df.clear(), "")
    p = pl.col("payload")
    dst = hex_u64(p.str.extract(r"dst ([0-9a-fA-F]+)", 1)).cast(pl.Int64)
    target = pl.when(p.str.contains(r"\|self\)")).then(vcpu_of(ctx)).otherwise(dst)
    return rows(
        df, int(K.IPI_SEND), cpu=vcpu_of(ctx), vector=int_field_sp("vec"), target=target
    ), unmapped(df.clear(), "")


@rule(
    ("kvm_hypercall",),
    "ipi_send",
    "'nr 0xa a0 ... a3 ...': KVM_HC_SEND_IPI (10) -> ipi_send to the mask a0 << a2, "
    "vector = a3 low byte; other hypercalls unmapped as kvm_hypercall(nr=0xN)",
)
def _hypercall(df, ctx):
    p = pl.col("payload")

    def reg(name):
        return hex_u64(p.str.extract(rf"{name} (0x[0-9a-fA-F]+)", 1))

    df = df.with_columns(nr=reg("nr").cast(pl.Int64))
    ipi = df.filter(pl.col("nr") == KVM_HC_SEND_IPI).with_columns(
        mask=(reg("a0") * pl.lit(2, pl.UInt64).pow(reg("a2").clip(0, 63))).reinterpret(signed=True),
        vec=(reg("a3") % 256).cast(pl.Int64),
    )
    rest = df.filter(pl.col("nr") != KVM_HC_SEND_IPI)
    sends = rows(
        ipi, int(K.IPI_SEND), cpu=vcpu_of(ctx), vector=pl.col("vec"), target=-2, arg=pl.col("mask")
    )
    return pl.concat([sends, exit_hints(df, ctx, "VMCALL")]), unmapped(
        rest, pl.format("kvm_hypercall(nr={})", pl.col("nr").cast(pl.String))
    )


@rule(
    ("kvm_ack_irq",),
    "eoi",
    "'irqchip PIC slave pin 12': the guest acknowledged a PIC interrupt -> eoi, unless "
    "kvm_pio is traced (its port write is that EOI); IO-APIC acks only where kvm_eoi is "
    "not traced (the LAPIC EOI is the guest's action there)",
)
def _ack(df, ctx):
    pic = pl.col("payload").str.contains("PIC")
    keep = df if "kvm_eoi" not in ctx.present else df.filter(pic)
    if "kvm_pio" in ctx.present:
        keep = keep.filter(~pic)
    return rows(keep, int(K.EOI), cpu=vcpu_of(ctx), arg=EOI_TRACED), unmapped(df.clear(), "")


register(rule)  # the hint-only rules: kvm_vcpu_wakeup, kvm_cpuid, kvm_cr, kvm_fast_mmio
register_ports(rule)  # kvm_pio
