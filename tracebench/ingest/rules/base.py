"""The rule machinery: candidate rows, the context rules read, and one table per family.

A *rule* turns the records of one event (columns ``seq``, ``ts``, ``cpu``, ``pid``,
``payload``) into *candidate rows*: canonical kinds, or helper kinds (negative,
``H_*`` below) that :mod:`tracebench.ingest.stream.resolve` consumes. Rules are
registered in a :class:`RuleTable`, one per family (``guest.py``: events a guest
kernel writes; ``kvmhost.py``: KVM's host tracepoints); a table renders itself as
documentation (:meth:`RuleTable.table`), so a rule's description lives beside its code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import polars as pl

#: ``eoi`` rows: arg 0 when the trace shows the EOI, 1 when it is implied (see guest.py)
EOI_TRACED, EOI_INFERRED = 0, 1

# helper kinds: consumed by stream/resolve.py, never written
H_EXIT = -1  # handler exit; ``aux`` = family * 65536 + vector, as on the entry
H_IPI_HINT = -2  # ipi_send_cpu/_cpumask: an ipi_send unless an ICR write follows
H_KVM_EXIT = -3  # ``aux`` = exit reason id, ``arg`` = 1 for HLT
H_KVM_ENTRY = -4
H_EXIT_HINT = -5  # a handler tracepoint that implies one exit; ``aux`` = exit reason id
H_MARK = -6  # a traced moment and nothing else: splits a handler's time (resolve.py)

#: columns (and dtypes) of candidate rows
ROW_SCHEMA = {
    "seq": pl.Int64,
    "ts": pl.Int64,
    "cpu": pl.Int32,
    "kind": pl.Int8,
    "vector": pl.Int16,
    "target": pl.Int32,
    "arg": pl.Int64,
    "argt": pl.Boolean,
    "dur_ns": pl.Int64,
    "aux": pl.Int64,
}

#: numpy dtypes of the candidate-row columns (the compiled paths' arrays)
ROW_DTYPES = {k: pl.Series(dtype=d).to_numpy().dtype for k, d in ROW_SCHEMA.items()}


@dataclasses.dataclass
class MapContext:
    """What the rules need to know about the whole input, decided before streaming.

    Attributes
    ----------
    present : short names of events that occur anywhere in the inputs (pre-scan).
    tsc_to_ns : expression turning a TSC value (UInt64 column) into an absolute
        trace-clock ns (Int64), or None where no calibration was possible.
    mono_offset_ns : trace clock minus CLOCK_MONOTONIC, ns, or None if unknown.
    reasons : exit reason name -> id, grown as ``kvm_exit`` rows are mapped.
    pid_vcpu : host thread id -> vCPU (kvm-host traces).
    ipi_vectors : vectors the guest writes to its ICR (kvm-host: tells IPIs from devices).
    injected_vectors : vectors ``kvm_inj_virq`` injects (kvm-host: their interrupts are
        taken at the injection; others, posted ones, at ``kvm_apic_accept_irq``).
    bare_metal : recorded without a hypervisor (``--platform bare-metal``): a handler's
        time is all its own (no host exits or preemption to leave out).
    """

    present: frozenset = frozenset()
    tsc_to_ns: Callable[[pl.Expr], pl.Expr] | None = None
    mono_offset_ns: int | None = None
    reasons: dict = dataclasses.field(default_factory=dict)
    pid_vcpu: dict = dataclasses.field(default_factory=dict)
    ipi_vectors: list = dataclasses.field(default_factory=list)
    injected_vectors: list = dataclasses.field(default_factory=list)
    bare_metal: bool = False

    @property
    def msr_traced(self) -> bool:
        return "write_msr" in self.present

    def reason_id(self, name: str) -> int:
        return self.reasons.setdefault(name, len(self.reasons))


@dataclasses.dataclass(frozen=True)
class Rule:
    family: str
    event: str
    kinds: str
    doc: str
    fn: Callable



class RuleTable:
    """The rules of one family: short event name -> :class:`Rule`.

    Parameters
    ----------
    family : the family's name (``guest``, ``kvm-host``), shown in the docs table.
    """

    def __init__(self, family: str):
        self.family = family
        self.rules: dict[str, Rule] = {}

    def rule(self, events: tuple[str, ...], kinds: str, doc: str):
        """Register ``fn(records, ctx) -> (rows, unmapped)`` for ``events``."""

        def deco(fn):
            for ev in events:
                if ev in self.rules:
                    raise ValueError(f"duplicate mapping rule for {(self.family, ev)}")
                self.rules[ev] = Rule(self.family, ev, kinds, doc, fn)
            return fn

        return deco

    def get(self, short: str) -> Rule | None:
        return self.rules.get(short)

    def __contains__(self, short: str) -> bool:
        return short in self.rules

    def table(self) -> list[dict]:
        """The rules as rows (family, event, kinds, rule) for docs."""
        return [
            {"family": r.family, "event": r.event, "kinds": r.kinds, "rule": r.doc}
            for r in self.rules.values()
        ]


# --------------------------------------------------------------------------- row helpers


def lit(v, dtype) -> pl.Expr:
    return pl.lit(v, dtype=dtype)


def rows(
    df: pl.DataFrame, kind, vector=-1, target=-1, arg=0, argt=False, aux=0, cpu=None
) -> pl.DataFrame:
    """Candidate rows from records: each field a constant or a polars expression."""

    def ex(v, dtype):
        return (v if isinstance(v, pl.Expr) else pl.lit(v)).cast(dtype)

    return df.select(
        pl.col("seq"),
        pl.col("ts"),
        ex(pl.col("cpu") if cpu is None else cpu, pl.Int32).alias("cpu"),
        ex(kind, pl.Int8).alias("kind"),
        ex(vector, pl.Int16).alias("vector"),
        ex(target, pl.Int32).alias("target"),
        ex(arg, pl.Int64).alias("arg"),
        ex(argt, pl.Boolean).alias("argt"),
        lit(0, pl.Int64).alias("dur_ns"),
        ex(aux, pl.Int64).alias("aux"),
    )


def empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema=ROW_SCHEMA)


def unmapped(df: pl.DataFrame, label: str | pl.Expr) -> pl.DataFrame:
    """Records that no rule maps, with the name they are counted under."""
    lab = label if isinstance(label, pl.Expr) else pl.lit(label)
    return df.select(pl.col("ts"), lab.cast(pl.String).alias("label"))


def field(name: str, pattern: str = r"(\d+)") -> pl.Expr:
    """A ``name=value`` field of the payload (as text)."""
    return pl.col("payload").str.extract(rf"(?:^|[\s,]){name}={pattern}", 1)


def int_field(name: str) -> pl.Expr:
    """A decimal ``name=N`` field as Int64 (null where absent). Digits that do not fit in
    Int64 fail the cast: the line is malformed (``window._apply``), never a silent -1."""
    return field(name).cast(pl.Int64, strict=True)


def hex_u64(text: pl.Expr) -> pl.Expr:
    """Hex text (with or without 0x) -> UInt64 (null where it is not hex)."""
    return text.str.strip_prefix("0x").str.to_integer(base=16, dtype=pl.UInt64, strict=False)


def as_i64(u: pl.Expr) -> pl.Expr:
    return u.reinterpret(signed=True)


def bits(u: pl.Expr, lo: int, n: int) -> pl.Expr:
    """Bits ``lo .. lo+n-1`` of a UInt64 expression, as Int64 (polars has no shift operator)."""
    return ((u // pl.lit(1 << lo, pl.UInt64)) % pl.lit(1 << n, pl.UInt64)).cast(pl.Int64)
