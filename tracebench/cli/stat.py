"""``tracebench stat`` and ``tracebench compare``: read a results folder back as tables."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracebench.cli.common import OutputFormat, app, fail, print_rows, user_errors

FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]


def _us(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}us"


def _perf_rows(part) -> list[dict]:
    """One group's rows with perf's column names and cell formats."""
    rows = []
    for r in part.iter_rows(named=True):
        sd = "" if r["stddev_pct"] is None else f" ( +-{r['stddev_pct']:7.2f}% )"
        rows.append({"Event name": r["event"] or "(no exits)", "Samples": r["samples"],
                     "Samples%": f"{r['samples_pct']:.2f}%", "Time%": f"{r['time_pct']:.2f}%",
                     "Min time": _us(r["min_us"]), "Max time": _us(r["max_us"]),
                     "Avg time": (_us(r["avg_us"]) + sd) if r["avg_us"] is not None else ""})
    return rows


@app.command()
@user_errors
def stat(
    results: Annotated[Path, typer.Argument(help="Results folder written by replay -o (or a "
                                                 "packed dataset).")],
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", help="Only these backends; repeat.")] = None,
    trace: Annotated[list[str] | None, typer.Option(
        "--trace", "-t", help="Only these trace ids; repeat (shows the trace column).")] = None,
    vcpu: Annotated[int | None, typer.Option("--vcpu", min=0, help="Only this vCPU.")] = None,
    key: Annotated[str, typer.Option(
        "--key", "-k", help="Sort by sample (count; also: samples) or time (average time), "
        "as perf kvm stat does.")] = "sample",
    event: Annotated[str, typer.Option(
        "--event", help="vmexit (every exit), ioport (port I/O exits) or mmio (MMIO exits: "
        "APIC_ACCESS, EPT_MISCONFIG); ioport/mmio rows name the guest event that caused "
        "them when per-event rows are present.")] = "vmexit",
    merge_traces: Annotated[bool, typer.Option(
        "--merge-traces", help="Add several traces up instead of one table per trace.")]
    = False,
    measured: Annotated[str | None, typer.Option(
        "--measured", help="NAME.exits.parquet from `ingest` of a host KVM trace, or "
        "`perf kvm stat report` / `kvm_stat` text (FILE#N: its N-th table): show the real "
        "exit mix beside each backend's prediction.")] = None,
    fmt: FormatOpt = OutputFormat.table,
):
    """Exit events per backend, as `perf kvm stat report` prints them.

    Avg time is followed by perf's "+- stddev%" (the standard deviation of the mean, as a
    percentage of it), computed from the per-event rows; it is left out for results
    written with --no-events."""
    import polars as pl

    from tracebench.report.stat import kvm_stat, measured_exits, with_measured

    table = kvm_stat(results, backend, trace, vcpu, key, event,
                     per_trace=False if merge_traces else None)
    if measured is not None:
        from tracebench.validate.reports import read_measured

        m = measured_exits(read_measured(measured)[0])
        if m.height == 0 or m["measured_samples"].sum() == 0:
            print(f"tracebench: note: {measured}: the measured table is empty (no exit was "
                  f"seen); showing the prediction alone", file=sys.stderr)
        table = with_measured(table, m)
    if table["samples"].fill_null(0).sum() == 0 and (
            measured is None or table["measured_samples"].fill_null(0).sum() == 0):
        print("tracebench: no exits predicted" + (" and none measured" if measured else ""),
              file=sys.stderr)
    per_trace = table["trace"].null_count() < table.height
    multi_params = table.group_by("backend").agg(pl.col("params").n_unique()).filter(
        pl.col("params") > 1).height > 0
    if fmt is not OutputFormat.table:
        # trace and params columns when there is more than one of them, as in the table
        drop = ([] if per_trace else ["trace"]) + ([] if multi_params else ["params"])
        print_rows(table.drop(drop).to_dicts(), fmt)
        return
    what = {"vmexit": "VM-EXIT", "ioport": "IO Port Access", "mmio": "MMIO Access"}[event]
    scope = f"vCPU {vcpu}" if vcpu is not None else "all VCPUs"
    for (tr, be, ph), part in table.group_by(["trace", "backend", "params"],
                                              maintain_order=True):
        name = be + (f" (params {ph})" if multi_params else "")
        where = f", trace {tr}" if tr is not None else ""
        rows = _perf_rows(part)
        if measured is not None:
            for row, r in zip(rows, part.iter_rows(named=True), strict=True):
                row["Measured"] = r["measured_samples"]
                row["Measured%"] = f"{r['measured_pct']:.2f}%"
        print_rows(rows, fmt, title=f"Analyze {what} events of {name}{where}, {scope}:",
                   right=set(rows[0]) - {"Event name"} if rows else set())
        total_us = part["total_us"].fill_null(0).sum()
        print(f"Total Samples:{part['samples'].fill_null(0).sum()}, "
              f"Total events handled time:{total_us:.2f}us.\n")


@app.command()
@user_errors
def compare(
    results: Annotated[Path, typer.Argument(help="Results folder (A).")],
    other: Annotated[Path | None, typer.Argument(
        help="Second results folder (B): compare B against A, backend by backend.")] = None,
    base: Annotated[str | None, typer.Option(
        "--base", help="With one folder: the backend every other one is set against "
        "(default: native if replayed, else the first backend of the run).")] = None,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", help="Event kinds (or all, interrupts, timer_error); repeat. Default: all, "
        "interrupts, timer_error.")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", "-m", help="Metrics to show and gate; repeat. Default: exits_per_s, "
        "overhead_pct, p50_ns, p90_ns, p99_ns, p99_9_ns.")] = None,
    fail_above: Annotated[float | None, typer.Option(
        "--fail-above", min=0, help="Exit 3 if any metric shown is worse in B than in A by "
        "more than this many percent (CI regression gate).")] = None,
    fmt: FormatOpt = OutputFormat.table,
):
    """A/B comparison: backends against a base, or one results folder against another."""
    import polars as pl

    from tracebench.report.compare import compare as run_compare
    from tracebench.report.compare import param_diff, regressions
    from tracebench.report.load import Results

    a = Results(results)
    b = Results(other) if other is not None else None
    df = run_compare(a, b, base, kind, metric)
    if other is not None:
        diff = param_diff(a, b)
        if diff.height and fmt is OutputFormat.table:
            print_rows(diff.to_dicts(), fmt, stream=sys.stderr,
                       title=f"parameters that differ (a = {results}, b = {other})")
        elif diff.height:
            print("tracebench: parameters that differ (a -> b): " + "; ".join(
                f"{r['backend']} {r['param']} {r['a']:g} -> {r['b']:g}"
                for r in diff.iter_rows(named=True)), file=sys.stderr)
        else:
            print("tracebench: the two runs have the same parameter sets", file=sys.stderr)
    if other is not None:
        title = f"tracebench compare: b = {other}, a = {results} (ratio b / a)"
    else:
        title = (f"tracebench compare: each backend (b) against {df['versus'][0]} (a) in "
                 f"{results} (ratio b / a)")
    shown = df
    if fmt is OutputFormat.table:
        one_set = df.group_by("backend").agg(pl.col("params").n_unique()).filter(
            pl.col("params") > 1).height == 0
        shown = df.drop("versus", *(["params"] if one_set else []))
    print_rows(shown.to_dicts(), fmt, title=title)
    if fail_above is not None:
        worse = regressions(df, fail_above)
        if worse.height:
            r = worse.row(0, named=True)
            change = "from 0" if r["a"] == 0 else f"{r['change_pct']:+.1f}%"
            fail(f"regression: {worse.height} metric(s) worse by more than {fail_above:g}%; "
                 f"worst: {r['metric']} of {r['backend']} ({r['kind']}, trace {r['trace']}, "
                 f"params {r['params']}) "
                 f"{_num(r['a'])} -> {_num(r['b'])} ({change})", code=3)


def _num(v: float) -> str:
    """A metric value as people read it: whole numbers with separators, else 4 decimals."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.4f}"
