"""``perf kvm stat report`` for a results folder: exit events per backend.

Columns and totals follow perf (``tools/perf/builtin-kvm.c``): Samples, Samples%, Time%,
Min/Max/Avg time and ``± stddev%``, where perf's stddev% is the standard deviation *of the
mean* (``s / sqrt(n)``, ``util/stat.c``) as a percentage of the mean; ``--key time`` sorts by
the average time, as perf does. The exit tables store (count, total, min, max) per vCPU x
reason; the sum of squares the stddev needs comes from the per-event rows when the folder
has them (each row holds ``exits`` exits of one reason costing ``exit_ns`` in all, which is
how the kernel adds them up), and is left empty otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from tracebench.errors import TracebenchError, UsageError
from tracebench.report.load import Results, event_rows, select

#: perf's ``--event`` families and the exit reasons each covers (``None``: every reason)
EVENT_FAMILIES: dict[str, tuple[str, ...] | None] = {
    "vmexit": None,
    "ioport": ("IO_INSTRUCTION",),
    "mmio": ("APIC_ACCESS", "EPT_MISCONFIG"),
}
#: ``--key`` spellings: perf's ``sample`` and ``time`` (= average time), and ``samples``
KEYS = {"sample": "samples", "samples": "samples", "time": "avg_ns"}
STAT_COLUMNS = ["trace", "backend", "params", "event", "samples", "samples_pct", "time_pct",
                "min_us", "max_us", "avg_us", "stddev_pct", "total_us"]


def _exit_groups(res: Results, backends, traces, vcpu, family) -> pl.DataFrame:
    """(trace, backend, params, event) -> samples, total/min/max ns, from the exit tables."""
    ex = res.exits
    if vcpu is not None:
        ex = ex.filter(pl.col("cpu") == vcpu)
    if backends:
        ex = ex.filter(pl.col("backend").is_in(backends))
    if traces:
        ex = ex.filter(pl.col("trace").is_in(traces))
    reasons = EVENT_FAMILIES[family]
    if reasons is not None:
        ex = ex.filter(pl.col("reason").is_in(reasons))
    return (ex.group_by(["trace", "backend", "params", pl.col("reason").alias("event")])
            .agg(samples=pl.col("count").sum(), total_ns=pl.col("total_ns").sum(),
                 min_ns=pl.col("min_ns").min(), max_ns=pl.col("max_ns").max()))


def exit_moments(rows: pl.LazyFrame, by_kind: bool = False) -> pl.LazyFrame:
    """Per (trace, backend, params, event): count, total, min, max and sum of squares of
    the exit times, from per-event rows (an event's ``exits`` exits share ``exit_ns``
    evenly; min and max use the integer share, as the kernel does)."""
    per = (pl.col("exit_ns") // pl.col("exits"))
    event = (pl.col("kind") if by_kind else pl.col("exit_reason")).alias("event")
    return (rows.filter(pl.col("exits") > 0)
            .group_by(["trace", "backend", "params", event])
            .agg(samples=pl.col("exits").cast(pl.Int64).sum(),
                 total_ns=pl.col("exit_ns").sum(), min_ns=per.min(), max_ns=per.max(),
                 sumsq_ns2=(pl.col("exit_ns").cast(pl.Float64) ** 2
                            / pl.col("exits").cast(pl.Float64)).sum()))


def _stddev_pct(samples: int, total_ns: float, sumsq: float | None) -> float | None:
    """perf's ``rel_stddev_stats(stddev_stats())``: 100 * (s / sqrt(n)) / mean."""
    if sumsq is None or samples < 2 or total_ns == 0:
        return None if sumsq is None else 0.0
    mean = total_ns / samples
    var = max(sumsq - samples * mean * mean, 0.0) / (samples - 1)
    return 100.0 * math.sqrt(var / samples) / mean


def kvm_stat(results: str | Path | Results, backends: list[str] | None = None,
             traces: list[str] | None = None, vcpu: int | None = None, key: str = "sample",
             event: str = "vmexit", per_trace: bool | None = None) -> pl.DataFrame:
    """Exit events per (trace, backend, parameter set), as ``perf kvm stat report`` shows.

    Parameters
    ----------
    results : a results folder (or an opened :class:`Results`).
    backends, traces : only these (an unknown name is an error naming those present); a
        backend with no exit at all still gets a row (``event`` null, zero samples).
    vcpu : only this vCPU (perf's ``--vcpu``).
    key : ``sample``/``samples`` (count) or ``time`` (average time), descending.
    event : ``vmexit`` (every exit reason), ``ioport`` or ``mmio`` (those exits only,
        named by the guest event that caused them when per-event rows are present).
    per_trace : keep traces apart (default: when more than one trace is selected); False
        adds traces up.

    Returns
    -------
    DataFrame with :data:`STAT_COLUMNS`; percentages are within each group; ``stddev_pct``
    is null without per-event rows.
    """
    if key not in KEYS:
        raise UsageError(f"--key must be sample (samples) or time, not {key!r}")
    if event not in EVENT_FAMILIES:
        raise UsageError(f"--event must be one of {', '.join(EVENT_FAMILIES)}, "
                              f"not {event!r}")
    res = results if isinstance(results, Results) else Results(results)
    present = select(res.summary, "backend", backends, "backend")
    present = select(present, "trace", traces, "trace")
    groups = present.select("trace", "backend", "params").unique()
    by_kind = event != "vmexit"
    table = _exit_groups(res, backends, traces, vcpu, event)
    # per-event rows of the selected groups only (a long run's rows are large)
    found = [event_rows(res.root, b, p, t) for t, b, p in groups.iter_rows()]
    found = [f for f in found if f is not None]
    rows = pl.concat(found, how="vertical") if found else None
    if rows is not None:
        if vcpu is not None:
            rows = rows.filter(pl.col("cpu") == vcpu)
        if EVENT_FAMILIES[event] is not None:
            rows = rows.filter(pl.col("exit_reason").is_in(EVENT_FAMILIES[event]))
        moments = exit_moments(rows, by_kind).collect()
        has_rows = res_events_groups(res)
        # where rows exist they give the same counts and the sum of squares; exits tables
        # stay the source elsewhere (a replay may write rows for some backends only)
        table = pl.concat([
            table.join(has_rows, on=["trace", "backend", "params"], how="anti")
            .with_columns(sumsq_ns2=pl.lit(None, pl.Float64)),
            moments.join(groups, on=["trace", "backend", "params"], how="semi"),
        ], how="vertical_relaxed")
    else:
        table = table.with_columns(sumsq_ns2=pl.lit(None, pl.Float64))
    if per_trace is None:
        per_trace = groups["trace"].n_unique() > 1 or bool(traces)
    if not per_trace:
        table = (table.group_by(["backend", "params", "event"])
                 .agg(pl.col("samples").sum(), pl.col("total_ns").sum(), pl.col("min_ns").min(),
                      pl.col("max_ns").max(),
                      # one group without rows leaves the merged sum of squares unknown
                      pl.when(pl.col("sumsq_ns2").null_count() == 0)
                      .then(pl.col("sumsq_ns2").sum()).alias("sumsq_ns2"))
                 .with_columns(trace=pl.lit(None, pl.String)))
        groups = groups.select("backend", "params").unique().with_columns(
            trace=pl.lit(None, pl.String))
    gkeys = ["trace", "backend", "params"]
    table = table.join(groups, on=gkeys, how="semi", nulls_equal=True)
    # zero-exit groups: one row of zeros
    empty = groups.join(table, on=gkeys, how="anti", nulls_equal=True)
    table = pl.concat([table, empty.with_columns(
        event=pl.lit(None, pl.String), samples=pl.lit(0, pl.Int64),
        total_ns=pl.lit(0, pl.Int64), min_ns=pl.lit(None, pl.Int64),
        max_ns=pl.lit(None, pl.Int64), sumsq_ns2=pl.lit(None, pl.Float64))
        .select(table.columns)], how="vertical_relaxed")
    sums = pl.col("samples").sum().over(gkeys)
    tsum = pl.col("total_ns").sum().over(gkeys)
    table = table.with_columns(
        samples_pct=pl.when(sums > 0).then(100 * pl.col("samples") / sums).otherwise(0.0),
        time_pct=pl.when(tsum > 0).then(100 * pl.col("total_ns") / tsum).otherwise(0.0),
        min_us=pl.col("min_ns") / 1000, max_us=pl.col("max_ns") / 1000,
        avg_ns=pl.when(pl.col("samples") > 0).then(pl.col("total_ns") / pl.col("samples")),
        total_us=pl.col("total_ns") / 1000)
    table = table.with_columns(avg_us=pl.col("avg_ns") / 1000, stddev_pct=pl.struct(
        "samples", "total_ns", "sumsq_ns2").map_elements(
        lambda s: _stddev_pct(s["samples"], s["total_ns"], s["sumsq_ns2"]),
        return_dtype=pl.Float64))
    sort_col = KEYS[key]
    return (table.sort(gkeys + [sort_col, "event"], descending=[False] * 3 + [True, False],
                       nulls_last=True)
            .select(STAT_COLUMNS))


def res_events_groups(res: Results) -> pl.DataFrame:
    """The (trace, backend, params) that have per-event rows."""
    keys = []
    for f in (res.root / "events").glob("backend=*/params=*/trace=*/*.parquet"):
        k = dict(p.split("=", 1) for p in f.parent.relative_to(res.root / "events").parts)
        keys.append({"trace": k["trace"], "backend": k["backend"], "params": k["params"]})
    return pl.DataFrame(keys, schema={"trace": pl.String, "backend": pl.String,
                                      "params": pl.String}).unique()


def totals(stat: pl.DataFrame) -> pl.DataFrame:
    """perf's closing line per group: ``Total Samples:N, Total events handled time:Xus.``"""
    return (stat.group_by(["trace", "backend", "params"], maintain_order=True)
            .agg(total_samples=pl.col("samples").sum(),
                 total_time_us=pl.col("total_us").fill_null(0).sum()))


def measured_exits(measured: str | Path | pl.DataFrame) -> pl.DataFrame:
    """A real run's exit mix: ``NAME.exits.parquet`` from ``ingest`` of a host KVM trace,
    or such a table already read (``reason``, ``count``, maybe ``exit_reason``; e.g. from
    :func:`tracebench.validate.reports.read_measured`, which also reads ``perf kvm stat``
    and ``kvm_stat`` text). Returns event (upper case, as perf prints it),
    measured_samples, measured_pct."""
    if isinstance(measured, pl.DataFrame):
        m = measured
    else:
        path = Path(measured)
        try:
            m = pl.read_parquet(path, glob=False)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise TracebenchError(f"{path}: not a measured-exits table "
                                  f"({' '.join(str(exc).split())[:120]})") from None
    if not {"reason", "count"} <= set(m.columns):
        raise TracebenchError(f"{measured}: not a measured-exits table (needs reason, count)")
    label = pl.coalesce(pl.col("exit_reason"), pl.col("reason")) if "exit_reason" in m.columns \
        else pl.col("reason")
    # the table stores schema labels (lower case); perf kvm stat prints upper case
    total = pl.col("measured_samples").sum()
    return (m.group_by(label.str.to_uppercase().alias("event"))
            .agg(measured_samples=pl.col("count").sum())
            .with_columns(measured_pct=pl.when(total > 0)
                          .then(100 * pl.col("measured_samples") / total).otherwise(0.0)))


def with_measured(stat: pl.DataFrame, measured: str | Path | pl.DataFrame) -> pl.DataFrame:
    """Set a real run's exit mix beside each group's predicted one (``measured_samples``,
    ``measured_pct``), matched by reason."""
    m = measured if isinstance(measured, pl.DataFrame) else measured_exits(measured)
    out = []
    gkeys = ["trace", "backend", "params"]
    for key, part in stat.group_by(gkeys, maintain_order=True):
        joined = part.filter(pl.col("event").is_not_null()).join(
            m, on="event", how="full", coalesce=True)
        joined = joined.with_columns(**{k: pl.lit(v, pl.String) for k, v in zip(gkeys, key,
                                                                                 strict=True)})
        out.append(joined.with_columns(pl.col("samples", "measured_samples").fill_null(0),
                                       pl.col("samples_pct", "measured_pct").fill_null(0.0)))
    if not out:
        return stat
    return pl.concat(out, how="diagonal_relaxed").sort(
        gkeys + ["samples", "measured_samples"], descending=[False] * 3 + [True, True],
        nulls_last=True)
