"""Port I/O in host traces: ``kvm_pio``, and the port a VMX/SVM IO exit names.

``kvm_pio`` shows port, direction and value. Where it is not traced, an IO exit's own
information names port and direction (VMX exit qualification: bit 3 set for IN, bits
16-31 the port; SVM EXITINFO1: bit 0 set for IN, bits 16-31 the port), but not the value.
Either way a port access becomes the guest action it stands for: a PIC command write with
the EOI bit (OCW2 bit 5) an ``eoi``, a PIT or ACPI PM timer read a ``clock_read``, any
other access a ``port_io`` (arg = port, + ``PORT_WRITE`` for an OUT).

Without the value, a write to the PIC command port (0x20/0xa0) is taken as the EOI it
nearly always is once a guest runs; where ``kvm_ack_irq`` is traced, that event (raised
inside the same exit) already gives the EOI, so the write adds nothing. With ``kvm_pio``
traced the port write is the EOI and ``kvm_ack_irq`` adds nothing (``kvmhost._ack``).
"""

from __future__ import annotations

import polars as pl

from tracebench.ingest.rules.base import EOI_TRACED, bits, empty_rows, hex_u64, rows, unmapped
from tracebench.ingest.rules.kvmexits import exit_hints
from tracebench.ingest.rules.kvmfacts import vcpu_of
from tracebench.schema import PORT_WRITE, ClockSource
from tracebench.schema import EventKind as K

PIC_PORTS, PIT_PORTS, ACPI_PM_PORTS = (0x20, 0xA0), (0x40, 0x41, 0x42), (0x608, 0xB008)
#: IO exit reason as kvm_exit prints it -> the bit of its exit information that is set for IN
IO_EXIT_IN_BIT = {"IO_INSTRUCTION": 3, "io": 0}


def port_rows(df: pl.DataFrame, ctx, val_known: bool) -> pl.DataFrame:
    """Guest rows of port accesses; ``df`` has ``port`` (Int64), ``w`` (bool) and, where
    ``val_known``, ``val`` (Int64)."""
    port, w = pl.col("port"), pl.col("w")
    pic = w & port.is_in(PIC_PORTS)
    if val_known:
        eoi = pic & ((pl.col("val") // 32) % 2 == 1)
        drop = pl.lit(False)
    else:  # the ack in the same exit reports it where traced
        eoi = pic & pl.lit("kvm_ack_irq" not in ctx.present)
        drop = pic
    pit = ~w & port.is_in(PIT_PORTS)
    pm = ~w & port.is_in(ACPI_PM_PORTS)
    other = ~(eoi | drop | pit | pm)
    cpu = vcpu_of(ctx)
    return pl.concat([
        rows(df.filter(eoi), int(K.EOI), cpu=cpu, arg=EOI_TRACED),
        rows(df.filter(pit), int(K.CLOCK_READ), cpu=cpu, arg=int(ClockSource.PIT)),
        rows(df.filter(pm), int(K.CLOCK_READ), cpu=cpu, arg=int(ClockSource.ACPI_PM)),
        rows(df.filter(other), int(K.PORT_IO), cpu=cpu,
             arg=port + pl.when(w).then(PORT_WRITE).otherwise(0)),
    ])


def io_exit_rows(df: pl.DataFrame, ctx) -> pl.DataFrame:
    """Port accesses named by IO exits (``kvm_exit`` records with a ``reason`` column), for
    traces without ``kvm_pio``."""
    df = df.filter(pl.col("reason").is_in(list(IO_EXIT_IN_BIT)))
    if "kvm_pio" in ctx.present or df.height == 0:
        return empty_rows()
    info = hex_u64(pl.col("payload").str.extract(r" info1? (?:0x)?([0-9a-fA-F]+)", 1))
    i = pl.col("info")
    is_in = pl.when(pl.col("reason") == "io").then(bits(i, IO_EXIT_IN_BIT["io"], 1)) \
        .otherwise(bits(i, IO_EXIT_IN_BIT["IO_INSTRUCTION"], 1))
    df = df.with_columns(info=info).filter(i.is_not_null()) \
        .with_columns(port=bits(i, 16, 16), w=is_in == 0)
    return port_rows(df, ctx, False)


def _kvm_pio(df, ctx):
    p = pl.col("payload")
    port = hex_u64(p.str.extract(r"at (0x[0-9a-fA-F]+)", 1)).cast(pl.Int64)
    val = hex_u64(p.str.extract(r"val (0x[0-9a-fA-F]+)", 1)).cast(pl.Int64).fill_null(0)
    df = df.with_columns(port=port, val=val, w=p.str.starts_with("pio_write"))
    bad = df.filter(pl.col("port").is_null())  # counted, not dropped unseen
    df = df.filter(pl.col("port").is_not_null())
    return pl.concat([exit_hints(df, ctx, "IO_INSTRUCTION"), port_rows(df, ctx, True)]), \
        unmapped(bad, "kvm_pio(unparsed)")


def register(rule) -> None:
    """Add the ``kvm_pio`` rule to the KVM-host table."""
    rule(("kvm_pio",), "eoi (PIC), clock_read (PIT, ACPI PM timer), port_io",
         "'pio_write at 0x20 size 1 count 1 val 0x20': a write with bit 5 set to PIC port "
         "0x20/0xa0 is an EOI; reads of PIT 0x40-0x42 or ACPI PM 0x608/0xb008 -> clock_read; "
         "any other access -> port_io (arg = port, + 0x10000 for a write)")(_kvm_pio)
