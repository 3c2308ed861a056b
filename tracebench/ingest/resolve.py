"""Relations between candidate rows: handler durations, duplicate IPIs, implied EOIs, exits.

Every relation looks at the neighbouring row *on the same CPU* among a few kinds,
so it is a ``shift().over("cpu")`` on a sorted frame: no Python loop per row.
The streaming driver calls :func:`resolve` on a window of rows that overlaps the
previous one (see ``pipeline.py``), so relations that cross a chunk boundary are
still found.
"""

from __future__ import annotations

import polars as pl

from tracebench.ingest.mapping import (
    EOI_INFERRED,
    EOI_TRACED,
    H_EXIT,
    H_IPI_HINT,
    H_KVM_ENTRY,
    H_KVM_EXIT,
)
from tracebench.schema import EventKind as K

INTERRUPTS = [int(K.TIMER_IRQ), int(K.IPI_IRQ), int(K.DEVICE_IRQ)]
#: an ipi_send_cpu is the same IPI as the ICR write to the same target that follows it on
#: its CPU (the guest can be descheduled in between: 1.2 ms seen in fc-guest-mixed)
IPI_DUP_WINDOW_NS = 10_000_000
#: a traced EOI stands for the interrupt whose entry follows it within this time
EOI_BEFORE_ENTRY_NS = 50_000
SORT = ["ts", "seq", "sub"]


def _neighbour(df: pl.DataFrame, kinds: list[int], n: int) -> pl.DataFrame:
    """Rows of ``kinds`` with the kind/aux/ts/arg of the row ``n`` away on the same CPU."""
    sub = df.filter(pl.col("kind").is_in(kinds)).select(
        "i", "cpu", "kind", "aux", "ts", "arg", "target"
    )
    return sub.with_columns(
        nk=pl.col("kind").shift(n).over("cpu"),
        naux=pl.col("aux").shift(n).over("cpu"),
        nts=pl.col("ts").shift(n).over("cpu"),
        narg=pl.col("arg").shift(n).over("cpu"),
        ntarget=pl.col("target").shift(n).over("cpu"),
    )


def resolve(cand: pl.DataFrame, infer_eoi: bool, msr_traced: bool):
    """Apply the relations to candidate rows sorted by (ts, seq).

    Parameters
    ----------
    cand : candidate rows (``mapping.ROW_SCHEMA`` plus ``sub``), sorted.
    infer_eoi : add one EOI (arg = ``EOI_INFERRED``) per interrupt that no traced
        EOI accounts for (guest traces: x2APIC EOIs are written with an untraced
        WRMSR, and PV EOI is a memory write).
    msr_traced : the trace has MSR writes, so an ``ipi_send_cpu`` is a duplicate of the
        ICR write that follows it.

    Returns
    -------
    rows : canonical rows (kinds >= 0), sorted by (ts, seq, sub).
    exits : one row per VM exit: ts, cpu, reason id.
    timed : one row per exit whose VM entry was seen: ts (of the entry), cpu, reason, ns.
    """
    df = cand.with_row_index("i")
    upd = []
    # handler durations: entry followed on its CPU by the exit of the same family/vector
    h = _neighbour(df, [*INTERRUPTS, H_EXIT], -1)
    upd.append(
        h.filter(
            pl.col("kind").is_in(INTERRUPTS)
            & (pl.col("nk") == H_EXIT)
            & (pl.col("naux") == pl.col("aux"))
        ).select("i", dur_ns=pl.col("nts") - pl.col("ts"))
    )
    # ipi_send_cpu: an ipi_send of its own unless an ICR write follows it
    ipi = _neighbour(df, [H_IPI_HINT, int(K.IPI_SEND)], -1)
    dup = (
        (pl.col("nk") == int(K.IPI_SEND))
        & (pl.col("nts") - pl.col("ts") <= IPI_DUP_WINDOW_NS)
        & ((pl.col("target") < 0) | (pl.col("ntarget") == pl.col("target")))
    )
    hints = ipi.filter(pl.col("kind") == H_IPI_HINT)
    drop = hints.filter(dup).select("i") if msr_traced else hints.clear().select("i")
    df = df.with_columns(
        kind=pl.when(pl.col("kind") == H_IPI_HINT)
        .then(pl.lit(int(K.IPI_SEND), pl.Int8))
        .otherwise(pl.col("kind"))
    )
    df = df.join(drop.with_columns(drop=pl.lit(True)), on="i", how="left")
    df = df.filter(pl.col("drop").is_null()).drop("drop")
    if upd[0].height:
        df = (
            df.join(upd[0].rename({"dur_ns": "d"}), on="i", how="left")
            .with_columns(dur_ns=pl.coalesce("d", "dur_ns"))
            .drop("d")
        )
    extra = []
    if infer_eoi:
        e = _neighbour(df, [*INTERRUPTS, int(K.EOI)], 1)
        covered = (
            (pl.col("nk") == int(K.EOI))
            & (pl.col("narg") == EOI_TRACED)
            & (pl.col("ts") - pl.col("nts") <= EOI_BEFORE_ENTRY_NS)
        )
        need = e.filter(pl.col("kind").is_in(INTERRUPTS) & ~covered.fill_null(False)).select("i")
        src = df.join(need, on="i", how="semi")
        extra.append(
            src.with_columns(
                kind=pl.lit(int(K.EOI), pl.Int8),
                target=pl.lit(-1, pl.Int32),
                arg=pl.lit(EOI_INFERRED, pl.Int64),
                argt=pl.lit(False),
                dur_ns=pl.lit(0, pl.Int64),
                sub=pl.lit(1, pl.Int8),
            )
        )
    # VM exits: the entry after an exit closes it; HLT exits are idle periods
    x = _neighbour(df, [H_KVM_EXIT, H_KVM_ENTRY], 1)
    exits = x.filter(pl.col("kind") == H_KVM_EXIT).select("ts", "cpu", reason=pl.col("aux"))
    closed = x.filter((pl.col("kind") == H_KVM_ENTRY) & (pl.col("nk") == H_KVM_EXIT))
    timed = closed.select("ts", "cpu", reason=pl.col("naux"), ns=pl.col("ts") - pl.col("nts"))
    hlt_in = df.join(
        x.filter((pl.col("kind") == H_KVM_EXIT) & (pl.col("arg") == 1)).select("i"),
        on="i",
        how="semi",
    )
    hlt_out = df.join(closed.filter(pl.col("narg") == 1).select("i"), on="i", how="semi")
    for src, kind in ((hlt_in, K.IDLE_ENTER), (hlt_out, K.IDLE_EXIT)):
        extra.append(
            src.with_columns(
                kind=pl.lit(int(kind), pl.Int8),
                arg=pl.lit(0, pl.Int64),
                aux=pl.lit(0, pl.Int64),
                sub=pl.lit(1, pl.Int8),
            )
        )
    out = pl.concat([df.filter(pl.col("kind") >= 0), *extra]).drop("i").sort(SORT)
    return out, exits, timed
