"""What the KVM-host rules learn about a whole input: who runs which vCPU, which
vectors are IPIs, what an exit reason is called.

A host trace names its vCPUs in some payloads (``vcpu N``, ``apicid N``) and in the
QEMU thread names (``CPU N/KVM``); :func:`learn_vcpus` keeps a thread -> vCPU map in
the :class:`~tracebench.ingest.rules.base.MapContext` as chunks stream by, and
:func:`vcpu_of` puts every record on a vCPU with it. :func:`icr_vectors` finds the
vectors the guest writes to its ICR (so an injected interrupt on one of them is an
IPI), and :func:`reason_label` names exit reasons for the measured-exits table.
"""

from __future__ import annotations

import polars as pl

from tracebench.ingest.rules.base import hex_u64, int_field
from tracebench.ingest.rules.guest import MSR_ICR
from tracebench.schema import ExitReason

#: SVM exit names (as the kvm_exit tracepoint prints them on AMD) -> perf kvm stat reasons
SVM_REASONS = {
    "hlt": "HLT",
    "idle-halt": "HLT",  # the Idle HLT intercept's exit, as KVM prints it (SVM_EXIT_IDLE_HLT)
    "idle-hlt": "HLT",
    "vintr": "PENDING_INTERRUPT",
    "intr": "EXTERNAL_INTERRUPT",
    "io": "IO_INSTRUCTION",
    "npf": "EPT_MISCONFIG",
    "vmmcall": "VMCALL",
    "avic_unaccelerated_access": "APIC_ACCESS",
    "avic_incomplete_ipi": "APIC_WRITE",
}
HLT_REASONS = ("HLT", "hlt", "idle-halt", "idle-hlt")

def exit_reason_label(reason: str, is_write: bool | None = None) -> str | None:
    """The :class:`ExitReason` label of a printed exit reason, or None when unknown."""
    name = SVM_REASONS.get(reason, reason)
    if reason == "msr" and is_write is not None:
        name = "MSR_WRITE" if is_write else "MSR_READ"
    return ExitReason[name].label if name in ExitReason.__members__ else None


def vcpu_of(ctx) -> pl.Expr:
    """vCPU of a record: ``vcpu N`` in the payload, else its thread's vCPU, else 0."""
    by_pid = (
        pl.col("pid").replace_strict(ctx.pid_vcpu, default=None, return_dtype=pl.Int64)
        if ctx.pid_vcpu
        else pl.lit(None, pl.Int64)
    )
    return pl.coalesce(
        int_field("vcpu").cast(pl.Int64, strict=False),
        pl.col("payload").str.extract(r"^vcpu (\d+)", 1).cast(pl.Int64),
        by_pid,
        pl.lit(0, pl.Int64),
    )


def learn_vcpus(ctx, by_event: dict[str, pl.DataFrame]) -> None:
    """Remember which thread runs which vCPU (``kvm_entry: vcpu N`` and ``CPU N/KVM`` names)."""
    for name in ("kvm_entry", "kvm_exit"):
        df = by_event.get(name)
        if df is None:
            continue
        pairs = (
            df.select("pid", v=pl.col("payload").str.extract(r"^vcpu (\d+)", 1).cast(pl.Int64))
            .drop_nulls()
            .unique("pid", keep="last")
        )
        ctx.pid_vcpu.update(zip(pairs["pid"].to_list(), pairs["v"].to_list(), strict=True))
    for df in by_event.values():
        if "task" in df.columns:
            named = (
                df.select("pid", v=pl.col("task").str.extract(r"^CPU (\d+)/KVM", 1).cast(pl.Int64))
                .drop_nulls()
                .unique("pid")
            )
            for pid, v in zip(named["pid"].to_list(), named["v"].to_list(), strict=True):
                ctx.pid_vcpu.setdefault(pid, v)


def reason_label(reason: str) -> str:
    """Label of a reason as ``kvm_exit`` rows carry it (SVM MSR exits split by direction):
    never null; a reason the model does not cover keeps its canonical name
    (:mod:`tracebench.exitnames`)."""
    from tracebench.exitnames import exit_label

    return exit_label(reason)


def int_field_sp(name: str) -> pl.Expr:
    """A ``name N`` (space-separated, decimal) payload field."""
    return pl.col("payload").str.extract(rf"{name} (\d+)", 1).cast(pl.Int64, strict=False)


def icr_vectors(df: pl.DataFrame | None) -> list[int]:
    """Vectors written to the ICR in ``kvm_msr``/``kvm_apic`` records (IPI vectors)."""
    if df is None or df.height == 0:
        return []
    v = df.select(
        pl.col("payload").str.extract(
            rf"(?:msr_write {MSR_ICR:x}|apic_write APIC_ICR) = (?:0x)?([0-9a-fA-F]+)", 1
        )
    )
    vals = hex_u64(pl.col(v.columns[0]))
    return sorted(set(v.select((vals % 256).cast(pl.Int64)).drop_nulls().to_series().to_list()))


def learn_ipi_vectors(ctx, slows: list[dict[str, pl.DataFrame]]) -> None:
    """The vectors written to the ICR in the records the calibration read: IPI vectors."""
    ctx.ipi_vectors = sorted(
        {
            v
            for slow in slows
            for name in ("kvm_msr", "kvm_apic")
            for v in icr_vectors(slow.get(name))
        }
    )


def injected_vectors(df: pl.DataFrame | None) -> set[int]:
    """Vectors of ``kvm_inj_virq`` records ('IRQ 0xec' or 'irq 52')."""
    if df is None or df.height == 0:
        return set()
    p = pl.col("payload")
    vec = pl.coalesce(
        hex_u64(p.str.extract(r"IRQ (0x[0-9a-fA-F]+)", 1)).cast(pl.Int64),
        p.str.extract(r"irq (\d+)", 1).cast(pl.Int64, strict=False),
    )
    return set(df.select(vec).drop_nulls().to_series().to_list())


def learn_vectors(ctx, slows: list[dict[str, pl.DataFrame]]) -> None:
    """IPI vectors (ICR writes) and injected vectors, from the records the calibration read."""
    learn_ipi_vectors(ctx, slows)
    ctx.injected_vectors = sorted(
        {v for slow in slows for v in injected_vectors(slow.get("kvm_inj_virq"))}
    )
