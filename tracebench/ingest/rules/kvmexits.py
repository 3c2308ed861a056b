"""Exits implied by KVM's handler tracepoints, for host traces without ``kvm_exit``.

Many host traces record only the handler tracepoints (``kvm_msr`` in a TSC-deadline
study, ``perf record -e kvm:kvm_msr``): each of those events is raised inside one exit,
so it stands for one exit of a known reason. The rules emit an *exit hint*
(``H_EXIT_HINT``, ``aux`` = reason id); :mod:`tracebench.ingest.stream.resolve` counts
the hints as the exits when ``kvm_exit`` is not traced, and otherwise uses the last
hint before a vCPU's first ``kvm_entry`` to name an exit that was already open when the
trace began.

Where two handler tracepoints fire inside the same exit, only one hints: ``kvm_apic``
only where neither ``kvm_msr`` nor ``kvm_mmio`` is traced (it fires inside their
handlers); ``kvm_mmio`` reads that completed in user space print twice
(``unsatisfied-read`` then ``read``), and only the second one hints.
"""

from __future__ import annotations

import polars as pl

from tracebench.ingest.rules.base import H_EXIT_HINT, empty_rows, rows, unmapped
from tracebench.ingest.rules.kvmfacts import vcpu_of

XAPIC_PAGE = (0xFEE00000, 0xFEE00FFF)


def exit_hints(df: pl.DataFrame, ctx, reason: str | pl.Expr) -> pl.DataFrame:
    """One ``H_EXIT_HINT`` row per record; ``reason`` a printed VMX name or an expression."""
    if df.height == 0:
        return empty_rows()
    expr = reason if isinstance(reason, pl.Expr) else pl.lit(reason)
    df = df.with_columns(_reason=expr)
    ids = {r: ctx.reason_id(r) for r in df["_reason"].drop_nulls().unique().sort().to_list()}
    df = df.filter(pl.col("_reason").is_not_null())
    return rows(df, H_EXIT_HINT, cpu=vcpu_of(ctx),
                aux=pl.col("_reason").replace_strict(ids, return_dtype=pl.Int64))


def mmio_reason(gpa: pl.Expr) -> pl.Expr:
    """An MMIO exit's reason: the xAPIC page traps as APIC_ACCESS, the rest EPT_MISCONFIG."""
    return pl.when(gpa.is_between(*XAPIC_PAGE)).then(pl.lit("APIC_ACCESS")) \
        .otherwise(pl.lit("EPT_MISCONFIG"))


def _only_hints(reason: str):
    def fn(df, ctx):
        return exit_hints(df, ctx, reason), unmapped(df.clear(), "")

    return fn


def register(rule) -> None:
    """Add the hint-only rules (events that map to no guest kind) to the KVM-host table."""
    for event, reason, doc in (
        ("kvm_vcpu_wakeup", "HLT", "'wait 9000 ns' / 'poll ...': the end of one HLT exit"),
        ("kvm_cpuid", "CPUID", "'func 0 idx ... rax ...': one CPUID exit"),
        ("kvm_cr", "CR_ACCESS", "'cr_write 4 = 0x...': one CR access exit"),
        ("kvm_fast_mmio", "EPT_MISCONFIG", "'fast mmio at gpa 0x...': one MMIO exit "
         "(ioeventfd)"),
    ):
        rule((event,), "(measured exit)", f"{doc}; counted where kvm_exit is not traced")(
            _only_hints(reason))

