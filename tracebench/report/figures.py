"""What a report shows, pre-aggregated: small polars frames, and the charts drawn from them.

Everything is reduced before it reaches a chart, so a report's size does not depend on the
trace length: latency distributions come from the stored HdrHistograms (decoded and added
across traces, never by averaging percentiles) as at most ``CDF_POINTS`` points per
series; exit rates are per backend x reason; per-vCPU overhead is one number per vCPU.

The charts are Vega-Lite specifications built with Altair (``[report]`` extra): a
declarative spec is data, so the same object renders in a browser (HTML report, inlined
Vega bundle) and to SVG/PNG without a browser (vl-convert, for Markdown); matplotlib would
give static images only and Plotly's static export needs Chrome (PEERS.md section 5).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from tracebench import hist
from tracebench.errors import TracebenchError
from tracebench.report.compare import compare, param_diff
from tracebench.report.load import Results, event_rows, load_table

CDF_POINTS = 200
#: (name, summary kind, summary metric) of the latency distributions drawn
DISTRIBUTIONS = (("interrupt latency", "interrupts", "latency_ns"),
                 ("timer error", "timer_irq", "timer_error_ns"))


@dataclasses.dataclass
class ReportData:
    """The frames a report is drawn from (every one also useful on its own).

    ``summary``: per run x backend x parameter set, merged over traces; ``exit_rates``:
    exits/s per reason; ``cdf``: latency CDF points (``value_us``, ``fraction``) per
    distribution; ``vcpu_overhead``: per vCPU; ``deltas`` and ``param_diffs``: each run
    after the first against the first (empty with one run); ``provenance``: dict.
    """

    runs: list[str]
    summary: pl.DataFrame
    exit_rates: pl.DataFrame
    cdf: pl.DataFrame
    vcpu_overhead: pl.DataFrame
    vcpu_overhead_source: str
    deltas: pl.DataFrame
    param_diffs: pl.DataFrame
    provenance: dict
    notes: list[str] = dataclasses.field(default_factory=list)


def _labels(paths: list[Path]) -> list[str]:
    """Short unique labels for the runs (folder names; parent folders added on a clash)."""
    names = [p.resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def _summary(res: Results, run: str) -> pl.DataFrame:
    s = res.summary
    dur = res.duration_ns()
    keys = ["backend", "params"]
    allrows = (s.filter((pl.col("kind") == "all") & (pl.col("metric") == "latency_ns"))
               .join(dur, on=["backend", "params", "trace"], how="left")
               .group_by(keys).agg(
                   traces=pl.col("trace").n_unique(), events=pl.col("count").sum(),
                   exits=pl.col("exits").sum(), stall_ns=pl.col("stall_ns").sum(),
                   duration_ns=pl.col("duration_ns").sum(),
                   capacity_ns=(pl.col("duration_ns") * pl.col("n_cpus")).sum(),
                   # vCPUs that fell behind their trace (results of newer replays say so)
                   saturated_vcpus=(pl.col("saturated_vcpus").sum()
                                    if "saturated_vcpus" in s.columns else pl.lit(None))))
    allrows = allrows.with_columns(
        exits_per_s=pl.col("exits") / (pl.col("duration_ns").clip(lower_bound=1) / 1e9),
        overhead_pct=100 * pl.col("stall_ns") / pl.col("capacity_ns").clip(lower_bound=1))
    pct = []
    for (backend, params), part in s.group_by(keys, maintain_order=True):
        row = {"backend": backend, "params": params}
        for short, kind, metric in (("irq", "interrupts", "latency_ns"),
                                    ("timer_err", "timer_irq", "timer_error_ns")):
            blobs = part.filter((pl.col("kind") == kind) & (pl.col("metric") == metric))["hdr"]
            p50, _, p99, p999, _ = hist.percentiles(hist.merge_encoded(blobs.to_list()))
            row |= {f"{short}_p50_us": _us(p50), f"{short}_p99_us": _us(p99),
                    f"{short}_p99_9_us": _us(p999)}
        pct.append(row)
    out = allrows.join(pl.DataFrame(pct), on=keys, how="left")
    return (out.with_columns(run=pl.lit(run))
            .select("run", "backend", "params", "traces", "events", "exits", "exits_per_s",
                    "overhead_pct", "irq_p50_us", "irq_p99_us", "irq_p99_9_us",
                    "timer_err_p50_us", "timer_err_p99_us", "timer_err_p99_9_us",
                    pl.col("saturated_vcpus").cast(pl.Int64))
            .sort("backend", "params"))


def _us(ns: int | None) -> float | None:
    return None if ns is None else ns / 1000.0


def _exit_rates(res: Results, run: str) -> pl.DataFrame:
    dur = (res.duration_ns().group_by("backend", "params")
           .agg(pl.col("duration_ns").sum()))
    return (res.exits.group_by("backend", "params", "reason").agg(pl.col("count").sum())
            .join(dur, on=["backend", "params"], how="left")
            .with_columns(exits_per_s=pl.col("count")
                          / (pl.col("duration_ns").clip(lower_bound=1) / 1e9),
                          run=pl.lit(run))
            .select("run", "backend", "params", "reason", "exits_per_s")
            .sort("backend", "reason"))


def _cdf(res: Results, run: str) -> pl.DataFrame:
    rows = []
    for (backend, params), part in res.summary.group_by(["backend", "params"],
                                                         maintain_order=True):
        for name, kind, metric in DISTRIBUTIONS:
            blobs = part.filter((pl.col("kind") == kind) & (pl.col("metric") == metric))["hdr"]
            values, frac = hist.cdf_points(hist.merge_encoded(blobs.to_list()), CDF_POINTS)
            if len(values) == 0:
                continue
            # a step from 0 at the first value, and the top level drawn a little past the
            # last one, so that a one-valued distribution is a visible step too
            values = [values[0], *values, values[-1] * 1.25]
            frac = [0.0, *frac, 1.0]
            rows += [{"run": run, "backend": backend, "params": params, "distribution": name,
                      # a log axis has no 0: a zero error is drawn at 1 ns
                      "value_us": max(float(v), 1.0) / 1000.0, "fraction": float(f)}
                     for v, f in zip(values, frac, strict=True)]
    return pl.DataFrame(rows, schema={"run": pl.String, "backend": pl.String,
                                      "params": pl.String, "distribution": pl.String,
                                      "value_us": pl.Float64, "fraction": pl.Float64})


def _vcpu_overhead(res: Results, run: str) -> tuple[pl.DataFrame, str]:
    """Stall per vCPU from the per-event rows (what overhead_pct adds up); for backends
    without rows, the exit-handling time per vCPU outside HLT (``vcpus`` table, or the
    exit tables of older results), and say which."""
    dur = (res.duration_ns().group_by("backend", "params").agg(pl.col("duration_ns").sum()))
    keys = ["backend", "params"]
    rows = event_rows(res.root)
    stall = (rows.group_by("backend", "params", "cpu").agg(ns=pl.col("stall_ns").sum())
             .collect() if rows is not None else None)
    if (res.root / "vcpus").is_dir():
        exits = load_table(res.root, "vcpus").rename({"exit_ns": "ns"})
    else:  # results written before the vcpus table: the same from the exit tables
        exits = res.exits.filter(pl.col("reason") != "HLT").rename({"total_ns": "ns"})
    exits = exits.group_by("backend", "params", "cpu").agg(pl.col("ns").sum())
    sources = []
    if stall is not None and stall.height:
        exits = exits.join(stall.select(keys).unique(), on=keys, how="anti")
        sources.append("stall time per vCPU from the per-event rows (as overhead_pct)")
    if exits.height:
        sources.append("exit time per vCPU outside HLT for backends without per-event rows")
    per = pl.concat([f for f in (stall, exits) if f is not None],
                    how="vertical_relaxed")
    source = "; ".join(sources)
    out = (per.join(dur, on=["backend", "params"], how="left")
           .with_columns(overhead_pct=100 * pl.col("ns")
                         / pl.col("duration_ns").clip(lower_bound=1),
                         cpu=pl.col("cpu").cast(pl.Int64), run=pl.lit(run))
           .select("run", "backend", "params", "cpu", "overhead_pct")
           .sort("backend", "cpu"))
    return out, source


def _provenance(results: list[Results], runs: list[str], command: str | None) -> dict:
    from tracebench._version import __version__

    traces, params = {}, []
    for res, run in zip(results, runs, strict=True):
        for part in res.parts:
            m = part.meta
            tmeta = m.get("trace", {})
            traces.setdefault(m.get("trace_sha256", part.trace), {
                "trace": part.trace, "sha256": m.get("trace_sha256", ""),
                "file": m.get("trace_file", ""), "method": tmeta.get("method", ""),
                "n_cpus": tmeta.get("n_cpus"), "duration_ns": tmeta.get("duration_ns"),
                "source": tmeta.get("source", {}), "attribution": tmeta.get("attribution", ""),
            })
        for (backend, phash), cfg in sorted(res.configs.items()):
            params.append({"run": run, "backend": backend, "params": phash,
                           "params_sha256": cfg.get("params_sha256", ""),
                           "mechanisms": cfg.get("mechanisms", {}),
                           "values": cfg.get("params", {})})
    return {"tracebench_version": __version__, "command": command,
            "runs": [{"run": run, "path": str(res.root), "made_by":
                      res.run.get("tracebench_version"), "profile": res.run.get("profile")}
                     for res, run in zip(results, runs, strict=True)],
            "traces": list(traces.values()), "parameter_sets": params}


def report_data(results: list[str | Path], command: str | None = None) -> ReportData:
    """Everything a report shows, for one or more results folders (the first is A)."""
    paths = [Path(r) for r in results]
    runs = _labels(paths)
    opened = [Results(p, label) for p, label in zip(paths, runs, strict=True)]
    summary = pl.concat([_summary(r, n) for r, n in zip(opened, runs, strict=True)])
    rates = pl.concat([_exit_rates(r, n) for r, n in zip(opened, runs, strict=True)])
    cdf = pl.concat([_cdf(r, n) for r, n in zip(opened, runs, strict=True)])
    vcpu, sources = [], set()
    for r, n in zip(opened, runs, strict=True):
        frame, source = _vcpu_overhead(r, n)
        vcpu.append(frame)
        sources.add(source)
    deltas, diffs = [], []
    notes = []
    for other in opened[1:]:
        diffs.append(param_diff(opened[0], other).with_columns(run=pl.lit(other.label)))
        try:
            deltas.append(compare(opened[0], other, kinds=["all", "interrupts", "timer_error"])
                          .with_columns(run=pl.lit(other.label)))
        except TracebenchError as exc:  # e.g. no trace in common: the rest still stands
            notes.append(f"no A/B deltas for {other.label}: {exc}")
    return ReportData(
        runs=runs, summary=summary, exit_rates=rates, cdf=cdf,
        vcpu_overhead=pl.concat(vcpu), vcpu_overhead_source="; ".join(sorted(sources)),
        deltas=pl.concat(deltas) if deltas else pl.DataFrame(),
        param_diffs=pl.concat(diffs) if diffs else pl.DataFrame(),
        provenance=_provenance(opened, runs, command), notes=notes)


def _series(df: pl.DataFrame, multi_run: bool) -> pl.DataFrame:
    """A ``series`` label: the backend, with the run when several runs are shown, and the
    parameter hash when one backend has several parameter sets."""
    multi_params = df.group_by("run", "backend").agg(pl.col("params").n_unique()).filter(
        pl.col("params") > 1).height > 0
    label = pl.col("backend")
    if multi_params:
        label = label + pl.lit("@") + pl.col("params")
    if multi_run:
        label = pl.col("run") + pl.lit(": ") + label
    return df.with_columns(series=label)


def chart_specs(data: ReportData) -> dict[str, dict]:
    """Vega-Lite specifications (dicts) of the report's charts, by title."""
    import altair as alt

    multi = len(data.runs) > 1
    specs: dict[str, dict] = {}
    rates = _series(data.exit_rates, multi)
    specs["VM exits per second by reason"] = alt.Chart(
        alt.InlineData(values=rates.to_dicts())).mark_bar().encode(
        y=alt.Y("series:N", title=None, sort=None),
        x=alt.X("sum(exits_per_s):Q", title="exits / s", stack="zero"),
        color=alt.Color("reason:N", title="exit reason"),
        tooltip=["series:N", "reason:N", alt.Tooltip("exits_per_s:Q", format=",.0f")],
    ).properties(width=560).to_dict()
    # several runs: one colour per backend, the run as the line dash / bar shade, so that
    # A and B of one backend sit side by side in one colour
    run_order = alt.Scale(domain=data.runs)
    for name, _, _ in DISTRIBUTIONS:
        part = _series(data.cdf.filter(pl.col("distribution") == name), False)
        enc = dict(
            x=alt.X("value_us:Q", title=f"{name} (us, log)", scale=alt.Scale(type="log")),
            y=alt.Y("fraction:Q", title="fraction of events <= x",
                    scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("series:N", title="backend"),
            detail="run:N",
            tooltip=["run:N", "series:N", alt.Tooltip("value_us:Q", format=",.3f"),
                     alt.Tooltip("fraction:Q", format=".4f")])
        if multi:
            enc["strokeDash"] = alt.StrokeDash("run:N", title="run", scale=run_order)
        specs[f"{name.capitalize()} CDF"] = alt.Chart(
            alt.InlineData(values=part.to_dicts())).mark_line(
            interpolate="step-after").encode(**enc).properties(width=560, height=300).to_dict()
    vcpu = _series(data.vcpu_overhead, False).with_columns(
        bar=pl.col("run") + pl.lit(": ") + pl.col("series"))
    bars = [f"{r}: {b}" for r in data.runs for b in sorted(set(vcpu["series"].to_list()))]
    enc = dict(x=alt.X("cpu:O", title="vCPU"), xOffset=alt.XOffset("bar:N", sort=bars),
               y=alt.Y("overhead_pct:Q", title="overhead, % of the vCPU's time"),
               color=alt.Color("series:N", title="backend"),
               tooltip=["run:N", "series:N", "cpu:O",
                        alt.Tooltip("overhead_pct:Q", format=".3f")])
    if multi:
        enc["opacity"] = alt.Opacity("run:O", title="run", sort=data.runs, scale=alt.Scale(
            domain=data.runs, range=[1.0, *([0.5] * (len(data.runs) - 1))]))
    specs["Overhead per vCPU"] = alt.Chart(
        alt.InlineData(values=vcpu.to_dicts())).mark_bar().encode(**enc).properties(
        width=560, height=260).to_dict()
    if multi and data.deltas.height and data.deltas["change_pct"].drop_nulls().len():
        d = data.deltas.filter(pl.col("change_pct").is_not_null()).with_columns(
            what=pl.col("kind") + pl.lit(" ") + pl.col("metric"))
        specs["A/B change by metric"] = alt.Chart(
            alt.InlineData(values=d.to_dicts())).mark_point(filled=True, size=70).encode(
            y=alt.Y("what:N", title=None, sort=None),
            x=alt.X("change_pct:Q", title=f"change vs {data.runs[0]} (%)"),
            color=alt.Color("backend:N"),
            shape=alt.Shape("backend:N"),
            row=alt.Row("run:N", title=None),
            tooltip=["run:N", "backend:N", "what:N", alt.Tooltip("a:Q", format=",.3f"),
                     alt.Tooltip("b:Q", format=",.3f"),
                     alt.Tooltip("change_pct:Q", format="+.1f")],
        ).properties(width=520).to_dict()
    return specs
