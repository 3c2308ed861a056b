"""Reading results datasets back: ``perf kvm stat``-style tables and A/B comparisons.

Both work on the folder ``tracebench replay -o`` wrote (or any copy of it), through
polars only, so they also serve datasets shared without the traces.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tracebench.errors import TracebenchError, UsageError


def load_table(results: str | Path, table: str) -> pl.DataFrame:
    """One table (``summary``, ``exits``) of a results folder."""
    root = Path(results)
    path = root / table
    if not root.is_dir():
        raise TracebenchError(f"{root}: no such results folder")
    if not path.is_dir():
        raise TracebenchError(f"{root}: not a tracebench results folder (no {table}/)")
    try:
        # summary and exits store backend/trace as columns too: no need to parse paths
        df = pl.read_parquet(path, hive_partitioning=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TracebenchError(f"{path}: unreadable ({' '.join(str(exc).split())[:160]})") \
            from None
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


def _select(df: pl.DataFrame, column: str, values: list[str] | None, what: str) -> pl.DataFrame:
    if not values:
        return df
    known = set(df[column].unique().to_list())
    missing = [v for v in values if v not in known]
    if missing:
        raise UsageError(f"no {what} {missing[0]!r} in the results; present: "
                              f"{', '.join(sorted(known))}")
    return df.filter(pl.col(column).is_in(values))


def kvm_stat(results: str | Path, backends: list[str] | None = None,
             traces: list[str] | None = None, vcpu: int | None = None,
             key: str = "samples") -> pl.DataFrame:
    """Exit reasons per backend as ``perf kvm stat report`` prints them.

    Columns: backend, reason, samples, samples_pct, time_pct, min_us, max_us, avg_us;
    sorted by ``key`` (``samples`` or ``time``) within each backend.
    """
    df = load_table(results, "exits")
    df = _select(df, "backend", backends, "backend")
    df = _select(df, "trace", traces, "trace")
    if vcpu is not None:
        df = df.filter(pl.col("cpu") == vcpu)
    if key not in ("samples", "time"):
        raise UsageError(f"--key must be samples or time, not {key!r}")
    g = (df.group_by(["backend", "reason"])
         .agg(samples=pl.col("count").sum(), total_ns=pl.col("total_ns").sum(),
              min_ns=pl.col("min_ns").min(), max_ns=pl.col("max_ns").max()))
    g = g.with_columns(
        samples_pct=100 * pl.col("samples") / pl.col("samples").sum().over("backend"),
        time_pct=100 * pl.col("total_ns") / pl.col("total_ns").sum().over("backend"),
        min_us=pl.col("min_ns") / 1000, max_us=pl.col("max_ns") / 1000,
        avg_us=pl.col("total_ns") / pl.col("samples") / 1000)
    sort_col = "samples" if key == "samples" else "total_ns"
    return (g.sort(["backend", sort_col, "reason"], descending=[False, True, False])
            .select("backend", "reason", "samples", "samples_pct", "time_pct", "min_us",
                    "max_us", "avg_us"))


def with_measured(stat: pl.DataFrame, measured: str | Path) -> pl.DataFrame:
    """Set a real run's exit mix (``NAME.exits.parquet`` from ``ingest`` of a host KVM
    trace) beside each backend's predicted one: ``measured_samples`` / ``measured_pct``."""
    path = Path(measured)
    try:
        m = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TracebenchError(f"{path}: not a measured-exits table "
                              f"({' '.join(str(exc).split())[:120]})") from None
    if not {"reason", "count"} <= set(m.columns):
        raise TracebenchError(f"{path}: not a measured-exits table (needs reason, count)")
    label = pl.coalesce(pl.col("exit_reason"), pl.col("reason")) if "exit_reason" in m.columns \
        else pl.col("reason")
    # the table stores schema labels (lower case); perf kvm stat prints upper case
    m = (m.group_by(label.str.to_uppercase().alias("reason"))
         .agg(measured_samples=pl.col("count").sum())
         .with_columns(measured_pct=100 * pl.col("measured_samples")
                       / pl.col("measured_samples").sum()))
    out = []
    for backend in stat["backend"].unique(maintain_order=True):
        part = stat.filter(pl.col("backend") == backend)
        joined = part.join(m, on="reason", how="full", coalesce=True)
        out.append(joined.with_columns(backend=pl.lit(backend)).fill_null(0))
    return pl.concat(out).sort(["backend", "samples", "measured_samples"],
                               descending=[False, True, True])


METRICS = {"exits": "exits", "overhead_pct": "overhead_pct", "p50_ns": "p50_ns",
           "p99_ns": "p99_ns", "p99_9_ns": "p99_9_ns"}


def compare(results: str | Path, other: str | Path | None = None, base: str = "native",
            kinds: list[str] | None = None) -> pl.DataFrame:
    """A/B comparison of summaries.

    With one results folder, every backend is set against ``base``; with two, each
    (trace, backend, kind) of ``other`` is set against the same one in ``results``
    (e.g. before/after a parameter change). Ratios are B / A; ``None`` where A is 0.
    """
    a = load_table(results, "summary").filter(pl.col("metric") == "latency_ns")
    kinds = kinds or ["all", "interrupts"]
    a = _select(a, "kind", kinds, "event kind")
    cols = ["trace", "backend", "kind"] + list(METRICS)
    if other is None:
        _select(a, "backend", [base], "backend")  # names the backends present if absent
        ref = a.filter(pl.col("backend") == base).select(
            ["trace", "kind"] + [pl.col(m).alias(f"{m}_a") for m in METRICS])
        b = a.filter(pl.col("backend") != base).select(cols)
        joined = b.join(ref, on=["trace", "kind"], how="left")
        joined = joined.with_columns(versus=pl.lit(base))
    else:
        b = _select(load_table(other, "summary").filter(pl.col("metric") == "latency_ns"),
                    "kind", kinds, "event kind")
        ref = a.select(["trace", "backend", "kind"] + [pl.col(m).alias(f"{m}_a") for m in METRICS])
        joined = b.select(cols).join(ref, on=["trace", "backend", "kind"], how="inner")
        if joined.height == 0:
            raise TracebenchError(f"{results} and {other} share no (trace, backend, kind)")
        joined = joined.with_columns(versus=pl.lit(str(results)))
    ratio = [
        pl.when(pl.col(f"{m}_a") != 0).then(pl.col(m) / pl.col(f"{m}_a")).otherwise(None)
        .alias(f"{m}_ratio") for m in ("exits", "p50_ns", "p99_ns", "p99_9_ns")
    ]
    delta = (pl.col("overhead_pct") - pl.col("overhead_pct_a")).alias("overhead_delta_pct")
    return (joined.with_columns(*ratio, delta)
            .select("trace", "backend", "kind", "versus", "exits", "exits_ratio",
                    "overhead_pct", "overhead_delta_pct", "p50_ns", "p50_ns_ratio", "p99_ns",
                    "p99_ns_ratio", "p99_9_ns_ratio")
            .sort(["trace", "kind", "backend"]))
