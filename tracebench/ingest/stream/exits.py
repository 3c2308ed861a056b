"""The measured-exits table of a host-side KVM trace (``NAME.exits.parquet`` beside the trace).

One row per vCPU x exit reason, the columns ``perf kvm stat report`` users know:
``count`` (all exits), ``timed`` (exits whose next ``kvm_entry`` was seen),
``total_ns``/``min_ns``/``max_ns``/``mean_ns`` (exit -> entry handling time over the
timed ones), ``reason`` as the trace printed it (or, for exits known only from a handler
tracepoint, its VMX name) and ``exit_reason``, its canonical label from
:mod:`tracebench.exitnames` (an :class:`tracebench.schema.ExitReason` label where the model
covers the reason; never null).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tracebench.schema import METADATA_KEY

EXITS_SCHEMA = pa.schema(
    [
        pa.field("cpu", pa.uint16(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("exit_reason", pa.string()),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("timed", pa.int64(), nullable=False),
        pa.field("total_ns", pa.int64(), nullable=False),
        pa.field("min_ns", pa.int64()),
        pa.field("max_ns", pa.int64()),
        pa.field("mean_ns", pa.float64()),
    ]
)


def exits_path_for(trace_path: str | os.PathLike) -> Path:
    """``traces/x.parquet`` -> ``traces/x.exits.parquet``."""
    p = Path(trace_path)
    stem = p.name[: -len(".parquet")] if p.name.endswith(".parquet") else p.name
    return p.with_name(f"{stem}.exits.parquet")


class ExitsAccumulator:
    """Sums exit counts and handling times window by window (memory: one row per group)."""

    def __init__(self):
        self._counts: list[pl.DataFrame] = []
        self._times: list[pl.DataFrame] = []

    def add(self, exits: pl.DataFrame, timed: pl.DataFrame) -> None:
        if exits.height:
            self._counts.append(exits.group_by("cpu", "reason").agg(count=pl.len()))
        if timed.height:
            self._times.append(
                timed.group_by("cpu", "reason").agg(
                    timed=pl.len(),
                    total_ns=pl.col("ns").sum(),
                    min_ns=pl.col("ns").min(),
                    max_ns=pl.col("ns").max(),
                )
            )
        if len(self._counts) > 64:
            self._compact()

    def _compact(self) -> None:
        c, t = self._frames()
        self._counts, self._times = [c], [t]

    def _frames(self):
        c = (
            pl.concat(self._counts).group_by("cpu", "reason").agg(pl.col("count").sum())
            if self._counts
            else pl.DataFrame(schema={"cpu": pl.Int32, "reason": pl.Int64, "count": pl.UInt32})
        )
        t = (
            pl.concat(self._times)
            .group_by("cpu", "reason")
            .agg(
                pl.col("timed").sum(),
                pl.col("total_ns").sum(),
                pl.col("min_ns").min(),
                pl.col("max_ns").max(),
            )
            if self._times
            else pl.DataFrame(
                schema={
                    "cpu": pl.Int32,
                    "reason": pl.Int64,
                    "timed": pl.UInt32,
                    "total_ns": pl.Int64,
                    "min_ns": pl.Int64,
                    "max_ns": pl.Int64,
                }
            )
        )
        return c, t

    def table(self, reasons: dict[str, int], label) -> pl.DataFrame:
        """The final table; ``reasons`` maps printed names to ids, ``label(name)`` -> label."""
        c, t = self._frames()
        names = {v: k for k, v in reasons.items()}
        df = c.join(t, on=["cpu", "reason"], how="full", coalesce=True).with_columns(
            pl.col("count").fill_null(0).cast(pl.Int64),
            pl.col("timed").fill_null(0).cast(pl.Int64),
            pl.col("total_ns").fill_null(0).cast(pl.Int64),
        )
        df = df.with_columns(
            cpu=pl.col("cpu").cast(pl.UInt16),
            reason=pl.col("reason").replace_strict(names, return_dtype=pl.String),
            mean_ns=pl.when(pl.col("timed") > 0).then(pl.col("total_ns") / pl.col("timed")),
        )
        df = df.with_columns(
            exit_reason=pl.col("reason").map_elements(label, return_dtype=pl.String)
        )
        return df.select(EXITS_SCHEMA.names).sort("cpu", "reason")


def write_exits(tmp_path: Path, table: pl.DataFrame, meta_json: bytes) -> None:
    """Write the table with the trace's metadata in the footer (as the trace has it)."""
    arrow = table.to_arrow().cast(EXITS_SCHEMA).replace_schema_metadata({METADATA_KEY: meta_json})
    pq.write_table(arrow, tmp_path, compression="zstd")


def read_exits(path: str | os.PathLike) -> pl.DataFrame:
    """Read a measured-exits table (for ``stat`` / ``compare``)."""
    return pl.read_parquet(path)


@dataclasses.dataclass(frozen=True)
class MeasuredExits:
    """A family's measured-exits writer: where the table goes and how reasons are named.

    Attributes
    ----------
    label : printed exit reason (as the rows carry it) -> :class:`ExitReason` label or None.
    """

    label: Callable[[str], str | None]

    def path_for(self, trace_path: str | os.PathLike) -> Path:
        return exits_path_for(trace_path)

    def write(self, tmp_path: Path, acc: ExitsAccumulator, reasons: dict, meta_json: bytes):
        """The accumulated table, written to ``tmp_path`` (renamed by the caller)."""
        write_exits(tmp_path, acc.table(reasons, self.label), meta_json)
