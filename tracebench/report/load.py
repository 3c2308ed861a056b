"""Reading a results folder back: the one place that knows its layout.

A results folder is what ``tracebench replay -o`` writes (``summary/``, ``exits/``,
``events/``, ``configs/``, ``run.json``); a packed dataset is the same folder with extra
files at its top (``traces/``, ``datapackage.json``, ``README.md``, ``SHA256SUMS``), so
everything here reads ``DIR/{summary,exits,events}`` and ignores what else is there.

Per-event rows are read through :func:`event_rows` only, which goes through
:func:`tracebench.replayer.results.read_events` (compact stored rows joined to the trace,
or rows made again from checkpoints); stat, export and the reports see the same columns.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from tracebench.errors import TracebenchError, UsageError
from tracebench.schema import METADATA_KEY

#: the columns :func:`event_rows` returns (trace columns first, then the replay's outputs)
EVENT_COLUMNS = ("ts_ns", "cpu", "kind", "start_ns", "latency_ns", "stall_ns", "exits",
                 "exit_reason", "exit_ns", "timer_error_ns")


def _oneline(exc: BaseException, limit: int = 160) -> str:
    return " ".join(str(exc).split())[:limit]


def load_table(results: str | Path, table: str) -> pl.DataFrame:
    """One aggregate table (``summary`` or ``exits``) of a results folder or dataset."""
    root = Path(results)
    path = root / table
    if not root.is_dir():
        raise TracebenchError(f"{root}: no such results folder")
    if not path.is_dir():
        raise TracebenchError(f"{root}: not a tracebench results folder (no {table}/)")
    files = sorted(path.glob("**/*.parquet"))
    if not files:
        raise TracebenchError(f"{path}: no Parquet files (an empty or interrupted run?)")
    try:
        # summary and exits store backend/params/trace as columns: no need to parse paths
        df = pl.read_parquet(files, hive_partitioning=False, glob=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TracebenchError(f"{path}: unreadable ({_oneline(exc)})") from None
    _check_columns(df, table, path)
    return df


_S, _I, _F = "string", "integer", "float"
#: the columns ``replay -o`` writes (replayer/results.py) that reading relies on, by class
COLUMNS = {
    "summary": {"backend": _S, "params": _S, "trace": _S, "kind": _S, "metric": _S,
                "count": _I, "exits": _I, "exits_per_s": _F, "stall_ns": _I,
                "overhead_pct": _F, "p50_ns": _I, "p90_ns": _I, "p99_ns": _I, "p99_9_ns": _I,
                "max_ns": _I, "hdr": _S},
    "exits": {"backend": _S, "params": _S, "trace": _S, "cpu": _I, "reason": _S, "count": _I,
              "samples_pct": _F, "time_pct": _F, "total_ns": _I, "min_ns": _I, "max_ns": _I,
              "mean_ns": _F},
}
#: columns that may be null (a percentile of an empty histogram)
_NULLABLE = {"p50_ns", "p90_ns", "p99_ns", "p99_9_ns", "max_ns", "hdr"}


def _check_columns(df: pl.DataFrame, table: str, path: Path) -> None:
    """A results table with a missing column, a column of the wrong type or a missing value
    where one is needed is refused in one line (another tool, or a damaged copy, wrote it)."""
    for name, cls in COLUMNS.get(table, {}).items():
        if name not in df.columns:
            raise TracebenchError(f"{path}: not a tracebench {table} table (no column "
                                  f"{name!r})")
        dtype = df.schema[name]
        ok = {_S: dtype == pl.String, _I: dtype.is_integer(),
              _F: dtype.is_float() or dtype.is_integer()}[cls]
        if not ok:
            raise TracebenchError(f"{path}: column {name!r} is {dtype}, expected {cls}")
        if name not in _NULLABLE and df[name].null_count():
            raise TracebenchError(f"{path}: column {name!r} has missing values")


@dataclasses.dataclass(frozen=True)
class Part:
    """One (backend, parameter set, trace) of a results folder and its file metadata."""

    backend: str
    params: str
    trace: str
    meta: dict

    @property
    def duration_ns(self) -> int:
        return int(self.meta.get("trace", {}).get("duration_ns", 0))

    @property
    def n_cpus(self) -> int:
        return int(self.meta.get("trace", {}).get("n_cpus", 0))


class Results:
    """A results folder opened for reading: its tables, parts, configs and run record.

    Parameters
    ----------
    path : the folder ``replay -o`` wrote, or a packed dataset.
    label : how reports name it (default: the folder's name).
    """

    def __init__(self, path: str | Path, label: str | None = None):
        self.root = Path(path)
        self.summary = load_table(self.root, "summary")
        self.label = label or self.root.resolve().name

    @functools.cached_property
    def exits(self) -> pl.DataFrame:
        return load_table(self.root, "exits")

    @functools.cached_property
    def parts(self) -> list[Part]:
        """Every (backend, params, trace) with its footer metadata (trace, parameters)."""
        out = []
        for f in sorted((self.root / "summary").glob("backend=*/params=*/trace=*/*.parquet")):
            try:
                raw = (pq.read_schema(f).metadata or {}).get(METADATA_KEY, b"{}")
                meta = json.loads(raw)
            except (OSError, ValueError) as exc:
                raise TracebenchError(f"{f}: unreadable metadata ({_oneline(exc)})") from None
            keys = [p.split("=", 1)[1] for p in f.parent.relative_to(self.root / "summary").parts]
            out.append(Part(keys[0], keys[1], keys[2], meta))
        return out

    @functools.cached_property
    def run(self) -> dict:
        p = self.root / "run.json"
        try:
            return json.loads(p.read_text()) if p.exists() else {}
        except (OSError, ValueError) as exc:
            raise TracebenchError(f"{p}: unreadable ({_oneline(exc)})") from None

    @functools.cached_property
    def configs(self) -> dict[tuple[str, str], dict]:
        """(backend, params hash) -> the stored parameter set (``configs/NAME-HASH.json``)."""
        out = {}
        for part in self.parts:
            key = (part.backend, part.params)
            if key in out:
                continue
            p = self.root / "configs" / f"{part.backend}-{part.params}.json"
            if p.exists():
                out[key] = json.loads(p.read_text())
            else:  # a copy without configs/: every file footer carries the set as well
                out[key] = {"backend": part.backend, "params": part.meta.get("params", {}),
                            "params_sha256": part.meta.get("params_sha256", ""),
                            "mechanisms": part.meta.get("mechanisms", {})}
        return out

    def duration_ns(self) -> pl.DataFrame:
        """Per (backend, params, trace): the trace's duration and vCPU count."""
        rows = [{"backend": p.backend, "params": p.params, "trace": p.trace,
                 "duration_ns": p.duration_ns, "n_cpus": p.n_cpus} for p in self.parts]
        return pl.DataFrame(rows, schema={"backend": pl.String, "params": pl.String,
                                          "trace": pl.String, "duration_ns": pl.Int64,
                                          "n_cpus": pl.Int64})

    def has_events(self, backend: str | None = None) -> bool:
        pattern = f"backend={backend or '*'}/params=*/trace=*/*.parquet"
        return any((self.root / "events").glob(pattern))


def event_rows(results: str | Path, backend: str | None = None, params: str | None = None,
               trace: str | None = None, window: tuple[int, int] | None = None,
               made_again: bool = False) -> pl.LazyFrame | None:
    """Per-event rows of a results folder (``None`` if it has none for the selection).

    Columns: :data:`EVENT_COLUMNS` plus ``backend``, ``params``, ``trace`` and ``row`` (the
    event's row in its trace). Read through :func:`tracebench.replayer.results.read_events`,
    the one reader of per-event results: stored rows (``--events``), and with
    ``made_again`` the rows of any other backend replayed again from the folder's
    checkpoints (exact; use a ``window`` on long traces).
    """
    from tracebench.replayer.results import read_events

    rows = read_events(results, backend, trace, window, params=params, made_again=made_again,
                       missing_ok=True)
    if rows is None:
        return None
    return rows.lazy().select(*EVENT_COLUMNS, "backend", "params", "trace", "row").with_columns(
        kind=pl.col("kind").cast(pl.String), exit_reason=pl.col("exit_reason").cast(pl.String))


def select(df: pl.DataFrame, column: str, values: list[str] | None, what: str) -> pl.DataFrame:
    """Rows whose ``column`` is among ``values``; an unknown value is an error naming those
    present."""
    if not values:
        return df
    known = set(df[column].unique().to_list())
    missing = [v for v in values if v not in known]
    if missing:
        raise UsageError(f"no {what} {missing[0]!r} in the results; present: "
                              f"{', '.join(sorted(known)) or 'none'}")
    return df.filter(pl.col(column).is_in(values))


def param_differences(a: dict[str, float], b: dict[str, float]) -> list[dict]:
    """The parameters whose values differ between two sets (``None`` where one lacks it)."""
    return [{"param": k, "a": a.get(k), "b": b.get(k)}
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
