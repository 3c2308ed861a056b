"""A/B comparison of results, and the regression gate CI runs on it.

The table is long (one row per trace x backend x kind x metric, A and B side by side): it
fits a terminal whatever the number of metrics, and the gate reads it row by row, so every
metric shown is a metric gated. All metrics are "lower is better" (exit rate, overhead,
latency and timer-error percentiles); the gate fails where B exceeds A by more than the
allowed percentage, or where A is 0 and B is not.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tracebench.errors import TracebenchError, UsageError
from tracebench.report.load import Results, param_differences, select

#: metric name -> (summary metric, column) it reads; latency rows give every kind's
#: figures, the timer-error rows (kind ``timer_irq``) give ``timer_error``'s
LATENCY_METRICS = ("exits_per_s", "overhead_pct", "p50_ns", "p90_ns", "p99_ns", "p99_9_ns")
TIMER_METRICS = ("p50_ns", "p90_ns", "p99_ns", "p99_9_ns")
#: the pseudo kind holding timer error (handler start - programmed deadline) percentiles
TIMER_ERROR = "timer_error"
DEFAULT_KINDS = ("all", "interrupts", TIMER_ERROR)
COMPARE_COLUMNS = ["trace", "backend", "params", "kind", "metric", "a", "b", "ratio",
                   "change_pct", "versus"]


def _long(summary: pl.DataFrame, kinds: list[str]) -> pl.DataFrame:
    """Summary rows -> (trace, backend, params, kind, metric, value)."""
    lat = summary.filter(pl.col("metric") == "latency_ns").drop("metric")
    terr = (summary.filter(pl.col("metric") == "timer_error_ns").drop("metric")
            .with_columns(kind=pl.lit(TIMER_ERROR)))
    known = set(lat["kind"].unique().to_list()) | {TIMER_ERROR}
    missing = [k for k in kinds if k not in known]
    if missing:
        raise UsageError(f"no event kind {missing[0]!r} in the results; present: "
                              f"{', '.join(sorted(known))}")
    keys = ["trace", "backend", "params", "kind"]
    parts = [
        lat.filter(pl.col("kind").is_in(kinds)).unpivot(
            on=list(LATENCY_METRICS), index=keys, variable_name="metric", value_name="value"),
        terr.filter(pl.col("kind").is_in(kinds)).unpivot(
            on=list(TIMER_METRICS), index=keys, variable_name="metric", value_name="value"),
    ]
    return pl.concat([p.with_columns(pl.col("value").cast(pl.Float64)) for p in parts])


def default_base(res: Results) -> str:
    """``native`` when replayed, else the first backend the run lists (or alphabetically)."""
    present = res.summary["backend"].unique().to_list()
    if "native" in present:
        return "native"
    order = [b for b in res.run.get("backends", []) if b in present]
    return order[0] if order else sorted(present)[0]


def _one_params(res: Results, what: str) -> None:
    multi = (res.summary.group_by("backend").agg(pl.col("params").n_unique().alias("n"))
             .filter(pl.col("n") > 1))
    if multi.height:
        b = multi["backend"][0]
        raise TracebenchError(f"{res.root}: {multi['n'][0]} parameter sets of {b!r}; "
                              f"{what} needs one per backend (split the folder, or compare "
                              f"it alone against a base)")


def compare(results: str | Path | Results, other: str | Path | Results | None = None,
            base: str | None = None, kinds: list[str] | None = None,
            metrics: list[str] | None = None) -> pl.DataFrame:
    """A/B comparison of summaries.

    With one results folder, every backend (and parameter set) is set against ``base``
    (default: :func:`default_base`); with two, each (trace, backend, kind) of ``other`` (B)
    against the same one in ``results`` (A), e.g. before/after a parameter change.

    Returns
    -------
    DataFrame with :data:`COMPARE_COLUMNS`: ``params`` is B's parameter-set hash,
    ``ratio`` is B / A (null where A is 0), ``change_pct`` is 100 * (B / A - 1).
    """
    a = results if isinstance(results, Results) else Results(results)
    kinds = list(kinds or DEFAULT_KINDS)
    metrics = list(metrics or LATENCY_METRICS)
    unknown = [m for m in metrics if m not in LATENCY_METRICS]
    if unknown:
        raise UsageError(f"unknown metric {unknown[0]!r}; known: "
                              f"{', '.join(LATENCY_METRICS)}")
    la = _long(a.summary, kinds)
    if other is None:
        base = base or default_base(a)
        select(a.summary, "backend", [base], "backend")  # names the backends present if absent
        if a.summary["backend"].n_unique() < 2:
            raise TracebenchError(f"{a.root}: only {base!r} was replayed; a comparison needs "
                                  f"two backends, or a second results folder")
        ref = la.filter(pl.col("backend") == base)
        if ref["params"].n_unique() > 1:
            raise TracebenchError(f"{a.root}: {ref['params'].n_unique()} parameter sets of "
                                  f"base {base!r}; compare the folder against another base")
        b = la.filter(pl.col("backend") != base)
        joined = b.join(ref.select("trace", "kind", "metric", pl.col("value").alias("a")),
                        on=["trace", "kind", "metric"], how="inner")
        joined = joined.rename({"value": "b"}).with_columns(versus=pl.lit(base))
    else:
        bres = other if isinstance(other, Results) else Results(other)
        _one_params(a, "a comparison of two folders")
        _one_params(bres, "a comparison of two folders")
        lb = _long(bres.summary, kinds)
        joined = lb.rename({"value": "b"}).join(
            la.select("trace", "backend", "kind", "metric", pl.col("value").alias("a")),
            on=["trace", "backend", "kind", "metric"], how="inner")
        if joined.height == 0:
            raise TracebenchError(f"{a.root} and {bres.root} share no (trace, backend, kind)")
        joined = joined.with_columns(versus=pl.lit(a.label))
    joined = joined.filter(pl.col("metric").is_in(metrics))
    ratio = pl.when(pl.col("a") != 0).then(pl.col("b") / pl.col("a"))
    return (joined.with_columns(ratio=ratio, change_pct=100 * (ratio - 1))
            .with_columns(pl.col("metric").replace_strict(
                {m: i for i, m in enumerate(LATENCY_METRICS)}, return_dtype=pl.Int32)
                .alias("_order"))
            .sort(["trace", "kind", "backend", "params", "_order"])
            .select(COMPARE_COLUMNS))


def regressions(table: pl.DataFrame, fail_above_pct: float) -> pl.DataFrame:
    """Rows of a :func:`compare` table where B is worse than A by more than the allowance
    (A == 0 < B counts as worse whatever the allowance)."""
    worse = (pl.col("change_pct") > fail_above_pct) | (
        (pl.col("a") == 0) & (pl.col("b") > 0))
    return table.filter(worse.fill_null(False)).sort("change_pct", descending=True,
                                                     nulls_last=False)


def param_diff(results: str | Path | Results, other: str | Path | Results) -> pl.DataFrame:
    """Per backend present in both folders: the parameters whose values differ."""
    a = results if isinstance(results, Results) else Results(results)
    b = other if isinstance(other, Results) else Results(other)
    rows = []
    for (backend, _), cfg in sorted(b.configs.items()):
        mine = [c for (name, _), c in a.configs.items() if name == backend]
        if not mine:
            continue
        for d in param_differences(mine[0].get("params", {}), cfg.get("params", {})):
            rows.append({"backend": backend, **d})
    return pl.DataFrame(rows, schema={"backend": pl.String, "param": pl.String,
                                      "a": pl.Float64, "b": pl.Float64})
