"""The compiled form of a backend: integer-ns cost tables the kernels read.

Mechanisms (``mechanisms.py``) fill a :class:`CycleModel` in TSC cycles; it is
converted to ns once, here, with the ``tsc_ghz`` parameter (rounding each
entry once, so a composition of published cycle counts stays exact up to 1 ns).
The tables' columns, with what each holds, are ``layout.KindCol`` (``kind_table[kind]``)
and ``layout.IpiCol`` (``ipi_table``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracebench.backends import layout as L
from tracebench.schema import N_KINDS, EventKind, ExitReason


@dataclasses.dataclass
class CycleModel:
    """Cost tables in cycles while mechanisms compose them."""

    kind: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((N_KINDS, L.N_KIND_COLS), dtype=np.float64))
    ipi: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(L.N_IPI_COLS, dtype=np.float64))

    def action(self, kind: EventKind, cyc: float, exits: int = 0,
               reason: ExitReason = ExitReason.NONE) -> None:
        row = self.kind[kind]
        row[L.ACT_COST], row[L.ACT_EXITS] = cyc, exits
        row[L.ACT_REASON] = reason if exits else 0

    def interrupt(self, kind: EventKind, host: float, run: float, run_stall: float,
                  run_exits: int, run_reason: ExitReason, wake: float) -> None:
        assert run_stall <= run, "a stall cannot exceed the delivery latency it is part of"
        row = self.kind[kind]
        row[L.IRQ_HOST], row[L.IRQ_RUN], row[L.IRQ_RUN_STALL] = host, run, run_stall
        row[L.IRQ_RUN_EXITS], row[L.IRQ_RUN_REASON] = run_exits, run_reason if run_exits else 0
        row[L.IRQ_WAKE] = wake

    def to_ns(self, tsc_ghz: float) -> CompiledModel:
        kind = self.kind.copy()
        ipi = self.ipi.copy()
        cost_cols = list(L.KIND_COST_COLS)
        kind[:, cost_cols] = np.rint(kind[:, cost_cols] / tsc_ghz)
        ipi_cost_cols = list(L.IPI_COST_COLS)
        ipi[ipi_cost_cols] = np.rint(ipi[ipi_cost_cols] / tsc_ghz)
        return CompiledModel(kind.astype(np.int64), ipi.astype(np.int64))


@dataclasses.dataclass(frozen=True)
class CompiledModel:
    """What a kernel needs: ``kind_table`` (N_KINDS x N_KIND_COLS) and ``ipi_table``, int64."""

    kind_table: np.ndarray
    ipi_table: np.ndarray

    def describe(self) -> dict:
        """Readable form: per kind the non-zero columns, and the IPI/idle columns."""
        kinds = {}
        for k in EventKind:
            row = {col.label: _readable(col, v) for col, v in zip(L.KindCol, self.kind_table[k],
                                                                  strict=True) if v}
            if row:
                kinds[k.label] = row
        ipi = {col.label: _readable(col, v) for col, v in zip(L.IpiCol, self.ipi_table,
                                                             strict=True)}
        return {"kinds": kinds, "ipi": ipi}


def _readable(col: L.TableColumn, value) -> int | str:
    """A table entry as ``describe()`` shows it: reasons by name, the rest as ints."""
    return ExitReason(int(value)).name if col.quantity == L.Q.REASON else int(value)
