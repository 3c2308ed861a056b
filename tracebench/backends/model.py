"""The compiled form of a backend: integer-ns cost tables the kernels read.

Mechanisms (``mechanisms.py``) fill a :class:`CycleModel` in TSC cycles; it is
converted to ns once, here, with the ``tsc_ghz`` parameter (rounding each
entry once, so a composition of published cycle counts stays exact up to 1 ns).

``kind_table[kind, column]`` columns
    ACT_COST   guest-visible stall of a guest-originated action, ns
    ACT_EXITS  VM exits it causes
    ACT_REASON exit reason code of those exits
    IRQ_HOST   host-side latency before a vCPU can be notified (interrupt kinds), ns
    IRQ_RUN    extra delivery latency into a running vCPU, ns
    IRQ_RUN_STALL  part of IRQ_RUN during which the running vCPU is out of guest mode, ns
    IRQ_RUN_EXITS, IRQ_RUN_REASON  exits that delivery causes on a running vCPU
    IRQ_WAKE   extra delivery latency into a halted vCPU, ns (it was idle: no stall)

``ipi_table[column]`` columns: see the ``IPI_*`` names; an IPI to ``n`` targets costs
``CALL + n * TARGET`` (cost and exits), or ``SHORT`` when the backend uses the APIC
all-but-self shorthand for ``target == -1``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracebench.schema import N_KINDS, EventKind, ExitReason

(ACT_COST, ACT_EXITS, ACT_REASON, IRQ_HOST, IRQ_RUN, IRQ_RUN_STALL, IRQ_RUN_EXITS,
 IRQ_RUN_REASON, IRQ_WAKE) = range(9)
N_KIND_COLS = 9
KIND_COL_NAMES = ("act_cost", "act_exits", "act_reason", "irq_host", "irq_run", "irq_run_stall",
                  "irq_run_exits", "irq_run_reason", "irq_wake")

(IPI_TARGET_COST, IPI_TARGET_EXITS, IPI_CALL_COST, IPI_CALL_EXITS, IPI_REASON, IPI_USES_SHORT,
 IPI_SHORT_COST, IPI_SHORT_EXITS, IPI_SHORT_REASON, HALTS) = range(10)
N_IPI_COLS = 10
IPI_COL_NAMES = ("target_cost", "target_exits", "call_cost", "call_exits", "reason",
                 "uses_shorthand", "short_cost", "short_exits", "short_reason", "halts")

# Columns that hold costs (converted cycles -> ns); the others are counts or codes.
_KIND_COST_COLS = (ACT_COST, IRQ_HOST, IRQ_RUN, IRQ_RUN_STALL, IRQ_WAKE)
_IPI_COST_COLS = (IPI_TARGET_COST, IPI_CALL_COST, IPI_SHORT_COST)


@dataclasses.dataclass
class CycleModel:
    """Cost tables in cycles while mechanisms compose them."""

    kind: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((N_KINDS, N_KIND_COLS), dtype=np.float64))
    ipi: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(N_IPI_COLS, dtype=np.float64))

    def action(self, kind: EventKind, cyc: float, exits: int = 0,
               reason: ExitReason = ExitReason.NONE) -> None:
        row = self.kind[kind]
        row[ACT_COST], row[ACT_EXITS], row[ACT_REASON] = cyc, exits, reason if exits else 0

    def interrupt(self, kind: EventKind, host: float, run: float, run_stall: float,
                  run_exits: int, run_reason: ExitReason, wake: float) -> None:
        assert run_stall <= run, "a stall cannot exceed the delivery latency it is part of"
        row = self.kind[kind]
        row[IRQ_HOST], row[IRQ_RUN], row[IRQ_RUN_STALL] = host, run, run_stall
        row[IRQ_RUN_EXITS], row[IRQ_RUN_REASON] = run_exits, run_reason if run_exits else 0
        row[IRQ_WAKE] = wake

    def to_ns(self, tsc_ghz: float) -> CompiledModel:
        kind = self.kind.copy()
        ipi = self.ipi.copy()
        kind[:, _KIND_COST_COLS] = np.rint(kind[:, _KIND_COST_COLS] / tsc_ghz)
        ipi[list(_IPI_COST_COLS)] = np.rint(ipi[list(_IPI_COST_COLS)] / tsc_ghz)
        return CompiledModel(kind.astype(np.int64), ipi.astype(np.int64))


@dataclasses.dataclass(frozen=True)
class CompiledModel:
    """What a kernel needs: ``kind_table`` (N_KINDS x N_KIND_COLS) and ``ipi_table``, int64 ns."""

    kind_table: np.ndarray
    ipi_table: np.ndarray

    def describe(self) -> dict:
        """Readable form: per kind the non-zero columns, and the IPI/idle columns."""
        kinds = {}
        for k in EventKind:
            row = {name: int(v) for name, v in zip(KIND_COL_NAMES, self.kind_table[k], strict=True)
                   if v}
            for col in ("act_reason", "irq_run_reason"):
                if col in row:
                    row[col] = ExitReason(row[col]).name
            if row:
                kinds[k.label] = row
        ipi = {name: int(v) for name, v in zip(IPI_COL_NAMES, self.ipi_table, strict=True)}
        for col in ("reason", "short_reason"):
            ipi[col] = ExitReason(ipi[col]).name
        return {"kinds": kinds, "ipi": ipi}
