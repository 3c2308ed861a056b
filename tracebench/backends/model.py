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
from tracebench.schema import INTERRUPT_KINDS, N_KINDS, EventKind, ExitReason


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
                  run_exits: int, run_reason: ExitReason, wake: float,
                  poll_wake: float | None = None) -> None:
        assert run_stall <= run, "a stall cannot exceed the delivery latency it is part of"
        row = self.kind[kind]
        row[L.IRQ_HOST], row[L.IRQ_RUN], row[L.IRQ_RUN_STALL] = host, run, run_stall
        row[L.IRQ_RUN_EXITS], row[L.IRQ_RUN_REASON] = run_exits, run_reason if run_exits else 0
        row[L.IRQ_WAKE] = wake
        # by default a pending interrupt costs, once interrupts are on again, what delivery
        # into a running vCPU costs, and so does one to a vCPU already in the host
        row[L.IRQ_WINDOW], row[L.IRQ_WINDOW_STALL] = run, run_stall
        row[L.IRQ_WINDOW_EXITS], row[L.IRQ_WINDOW_REASON] = row[L.IRQ_RUN_EXITS], \
            row[L.IRQ_RUN_REASON]
        row[L.IRQ_INJECT] = run
        # a vCPU the host still polls for needs no thread wake-up
        row[L.IRQ_POLL_WAKE] = wake if poll_wake is None else poll_wake

    def timer_advance(self, early: float, entry: float) -> None:
        """KVM fires a halted vCPU's timer ``early`` cycles before its deadline and waits
        for the deadline (kvm_wait_lapic_expire) before the ``entry`` that injects it."""
        row = self.kind[EventKind.TIMER_IRQ]
        row[L.IRQ_ADVANCE], row[L.IRQ_ADVANCE_MIN] = max(early, 0.0), entry

    def legacy_window(self, kind: EventKind, window: float, inject: float) -> None:
        """Legacy injection: an interrupt pending while the guest has interrupts off takes
        an interrupt-window exit (VMX PENDING_INTERRUPT, SVM VINTR) of ``window`` cycles
        once they are on; one to a vCPU already in the host is injected on its re-entry
        (``inject`` cycles, no kick)."""
        row = self.kind[kind]
        row[L.IRQ_WINDOW] = row[L.IRQ_WINDOW_STALL] = window
        row[L.IRQ_WINDOW_EXITS], row[L.IRQ_WINDOW_REASON] = 1, ExitReason.PENDING_INTERRUPT
        row[L.IRQ_INJECT] = inject

    def ns_tables(self, tsc_ghz: float) -> np.ndarray:
        """Both tables, costs in (unrounded) ns, as one flat vector: kind, then ipi."""
        kind, ipi = self.kind.copy(), self.ipi.copy()
        kind[:, list(L.KIND_COST_COLS)] /= tsc_ghz
        ipi[list(L.IPI_COST_COLS)] /= tsc_ghz
        return np.concatenate([kind.ravel(), ipi])

    def to_ns(self, tsc_ghz: float, seed: int = 0) -> CompiledModel:
        return CompiledModel.from_flat(np.rint(self.ns_tables(tsc_ghz))[None], seed)


def _entries(quantities: tuple[L.Quantity, ...]) -> np.ndarray:
    """Which entries of ``CycleModel.ns_tables`` hold one of ``quantities``."""
    return np.concatenate([
        np.array([m.quantity in quantities for m in L.KindCol])[None].repeat(N_KINDS, 0).ravel(),
        np.array([m.quantity in quantities for m in L.IpiCol])])


#: entries drawn per cost level; entries fixed at the median level (settled quantities);
#: the rest (counts, reasons, flags) never depend on a cost
COST_MASK = _entries((L.Q.NS,))
SETTLED_MASK = _entries((L.Q.NS_SETTLED,))


@dataclasses.dataclass(frozen=True)
class CompiledModel:
    """The model, int64: ``kind_levels`` (levels x N_KINDS x N_KIND_COLS) and
    ``ipi_levels`` (levels x N_IPI_COLS), one table per cost level (``spread.py``; one
    level where every cost is a constant), as the reference reads them; ``kind_table`` and
    ``ipi_table``, the median tables (the model at every parameter's p50). A kernel takes
    them in the compact form of :func:`kernel_tables`."""

    kind_table: np.ndarray
    ipi_table: np.ndarray
    kind_levels: np.ndarray
    ipi_levels: np.ndarray

    @classmethod
    def from_flat(cls, flat: np.ndarray, seed: int, median: np.ndarray | None = None
                  ) -> CompiledModel:
        """From ``(levels, ...)`` flat tables in ns as ``CycleModel.ns_tables`` lays them
        out (rounded here), the seed of the cost draws, and the median tables (default:
        the only level)."""
        flat = np.rint(flat).astype(np.int64)
        costs = flat[:, COST_MASK]
        if costs.size and (costs.min() < DRAW_MIN or costs.max() > DRAW_MAX):
            # the kernel's cost draws are int32 (kernel_tables): 2.1 s per event, where a
            # top quantile level of a wide distribution could otherwise reach far past it
            raise ValueError(f"a cost reaches {costs.max() / 1e9:.3g} s per event (at its top "
                             f"quantile level); the model holds costs up to {DRAW_MAX / 1e9:.3g} s")
        n_kind = N_KINDS * L.N_KIND_COLS
        kind = np.ascontiguousarray(flat[:, :n_kind]).reshape(-1, N_KINDS, L.N_KIND_COLS)
        ipi = flat[:, n_kind:].copy()
        ipi[:, L.IPI_COST_SEED] = seed
        mid = flat[0] if median is None else np.rint(median).astype(np.int64)
        mid_ipi = mid[n_kind:].copy()
        mid_ipi[L.IPI_COST_SEED] = seed
        return cls(mid[:n_kind].copy().reshape(N_KINDS, L.N_KIND_COLS), mid_ipi, kind, ipi)

    @property
    def levels(self) -> int:
        return self.kind_levels.shape[0]

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


def kernel_tables(models: list[CompiledModel]) -> tuple[np.ndarray, np.ndarray]:
    """The flat ``(kind_table, ipi_table)`` the kernels take for one backend or a lane
    group (``layout.py``; the lane axis last): the median tables, their columns that no
    level changes, with the cost draws (directory, then rows) after the kind table.

    Drawing a level per event from 1,024 full tables (2 MB a backend) missed the caches
    on most events and halved the kernel's speed (BENCHMARKS.md). A draw row holds only
    the costs its event reads, and a kind or the IPI table whose costs no level changes
    keeps one row for all levels, so the rows an event may read stay in L2. Every value is
    the level tables' own: the model, and so every result, is the same.
    """
    levels = max(m.levels for m in models)
    kind = np.stack([m.kind_table for m in models], axis=-1)
    ipi = np.stack([m.ipi_table for m in models], axis=-1)
    for m in models:  # what the kernel reads from the median tables must be every level's
        if not ((m.kind_levels == m.kind_table) | _drawn_kind).all() or \
                not ((m.ipi_levels == m.ipi_table) | _drawn_ipi).all():
            raise ValueError("a column read at the median varies with the cost level")
    directory = np.zeros(L.N_DIR, dtype=np.int64)
    directory[L.DIR_LEVELS] = levels
    rows, at = [], 0

    def place(where: int, tables: list[np.ndarray]) -> None:
        nonlocal at
        varies = any((t != t[0]).any() for t in tables)
        block = np.stack([np.repeat(t, levels // len(t), axis=0) if varies else t[:1]
                          for t in tables], axis=-1)
        directory[where], directory[where + 1] = at, block[0].size if varies else 0
        rows.append(block.ravel())
        at += block.size

    for k in range(N_KINDS):
        cols = list(L.IRQ_DRAWN if k in INTERRUPT_KINDS else L.ACT_DRAWN)
        place(L.DIR_KIND + 2 * k, [m.kind_levels[:, k, cols] for m in models])
    place(L.DIR_IPI, [m.ipi_levels[:, list(L.IPI_DRAWN)] for m in models])
    draws = np.concatenate(rows)
    assert draws.min() >= DRAW_MIN and draws.max() <= DRAW_MAX  # from_flat checked them
    draws = np.concatenate([draws, [0] * (draws.size % 2)]).astype(L.DRAW_DTYPE)
    return np.concatenate([kind.ravel(), directory, draws.view(np.int64)]), ipi.ravel()


DRAW_MIN, DRAW_MAX = np.iinfo(L.DRAW_DTYPE).min, np.iinfo(L.DRAW_DTYPE).max
_drawn_kind = np.zeros(L.N_KIND_COLS, dtype=bool)
_drawn_kind[list(L.ACT_DRAWN + L.IRQ_DRAWN)] = True
_drawn_ipi = np.zeros(L.N_IPI_COLS, dtype=bool)
_drawn_ipi[list(L.IPI_DRAWN)] = True


def _readable(col: L.TableColumn, value) -> int | str:
    """A table entry as ``describe()`` shows it: reasons by name, the rest as ints."""
    return ExitReason(int(value)).name if col.quantity == L.Q.REASON else int(value)
