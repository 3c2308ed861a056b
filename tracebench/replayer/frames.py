"""What a replay hands back to Python: summaries, exit tables and per-event rows as polars."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import polars as pl


class ReplayResult:
    """What one replay produced, as polars frames: ``summary``, ``exits`` and ``events``
    (``None`` without per-event rows; lazy over ``out`` when results were written).

    The frames are built on first access: importing polars costs ~0.2 s, which the CLI's
    comparison table, read from the Arrow tables, does not pay. ``events`` is given as
    the in-memory row tables, ``(backend, params hash, trace id, chunks)`` per run, or
    ``None`` when no rows were made (``events=False``); with ``out`` set the rows are read
    back from there, or made again from its checkpoints.
    """

    def __init__(self, summary: pa.Table, exits: pa.Table,
                 events: list[tuple[str, str, str, list[pa.Table]]] | None, out: Path | None,
                 vcpus: pa.Table):
        self._summary, self._exits, self._events, self.out = summary, exits, events, out
        self._vcpus = vcpus

    def moved_to(self, out: Path) -> ReplayResult:
        """The same result, read back from ``out`` (where its temporary folder was renamed)."""
        return ReplayResult(self._summary, self._exits, self._events, out, self._vcpus)

    @functools.cached_property
    def summary(self) -> pl.DataFrame:
        import polars as pl

        return pl.from_arrow(self._summary)

    @functools.cached_property
    def exits(self) -> pl.DataFrame:
        import polars as pl

        return pl.from_arrow(self._exits)

    @functools.cached_property
    def vcpus(self) -> pl.DataFrame:
        """Per backend x vCPU: exits, exit time, final lag and the saturated flag."""
        import polars as pl

        return pl.from_arrow(self._vcpus)

    def saturated(self) -> list[dict]:
        """The vCPUs that could not keep up with the trace, per (trace, backend)."""
        return [r for r in self._vcpus.to_pylist() if r["saturated"]]

    @functools.cached_property
    def events(self) -> pl.DataFrame | None:
        """Every per-event row, joined to its trace (``perevent.JOINED_COLUMNS``); from a
        results folder through ``results.read_events`` (stored rows, or rows made again
        from checkpoints)."""
        import polars as pl

        from tracebench.replayer.perevent import JOINED_COLUMNS

        if self._events is None:
            return None
        if self.out is not None:
            from tracebench.replayer.results import read_events

            return read_events(self.out)
        frames = [pl.from_arrow(pa.concat_tables(tables))
                  .with_columns(backend=pl.lit(backend), params=pl.lit(phash),
                                trace=pl.lit(trace)).select(JOINED_COLUMNS)
                  for backend, phash, trace, tables in self._events]
        return pl.concat(frames, how="vertical_relaxed") if frames else None

    def comparison(self) -> list[dict]:
        """Per (trace, backend): the headline figures of the comparison table."""
        summary: dict[tuple, dict] = {}  # (trace, backend) -> {(kind, metric): row}
        for r in self._summary.to_pylist():
            summary.setdefault((r["trace"], r["backend"]), {})[r["kind"], r["metric"]] = r
        reasons: dict[tuple, dict[str, int]] = {}
        for r in self._exits.select(["trace", "backend", "reason", "count"]).to_pylist():
            per = reasons.setdefault((r["trace"], r["backend"]), {})
            per[r["reason"]] = per.get(r["reason"], 0) + r["count"]
        rows = []
        for (trace, backend), part in summary.items():
            allrow = part["all", "latency_ns"]
            irq = part["interrupts", "latency_ns"]
            terr = next(r for (_, metric), r in part.items() if metric == "timer_error_ns")
            ex = sorted(reasons.get((trace, backend), {}).items(), key=lambda rc: (-rc[1], rc[0]))
            total = max(sum(c for _, c in ex), 1)
            top = ", ".join(f"{r} {100 * c / total:.0f}%" for r, c in ex[:3])
            rows.append({
                "trace": trace, "backend": backend, "exits": allrow["exits"],
                "exits_per_s": allrow["exits_per_s"], "top_exit_reasons": top or "-",
                "overhead_pct": allrow["overhead_pct"], "irq_p50_us": _us(irq["p50_ns"]),
                "irq_p99_us": _us(irq["p99_ns"]), "irq_p99_9_us": _us(irq["p99_9_ns"]),
                "timer_err_p99_us": _us(terr["p99_ns"]),
            })
        return rows


def _us(ns: int | None) -> float | None:
    return None if ns is None else ns / 1000.0
