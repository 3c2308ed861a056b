"""``tracebench sweep``: parameter grids over traces x backends, and a sweep's ranking."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracebench.cli.common import OutputFormat, app, fail, print_rows, user_errors


@app.command()
@user_errors
def sweep(
    paths: Annotated[list[str] | None, typer.Argument(
        help="More trace files (an unquoted shell glob lands here); with --summary, the "
             "sweep dataset.", show_default=False)] = None,
    traces: Annotated[list[str] | None, typer.Option(
        "--traces", "-t", help="Trace files or glob patterns (quoted); repeat.")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", help="Backend name or .toml file; repeat; default: all.")] = None,
    grid: Annotated[Path | None, typer.Option(
        "--grid", "-g", help="Grid TOML: [params] axes (lists, {from, to, num|step, "
        "scale}) crossed, [[zip]] tables stepped together. See README 'Sweeps'.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Sweep dataset folder; rerunning the same sweep resumes it.")]
    = None,
    executor: Annotated[str, typer.Option(
        "--executor", help="local (process pool) or dask.")] = "local",
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="With --executor dask: join this scheduler (tcp://HOST:8786); "
        "without it a LocalCluster starts here.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", min=1, help="Worker processes (local, LocalCluster); default: "
        "one per CPU.")] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help="CPU cost profile: skx-2020 (default), nhm-2010, kvm-2012, "
        "modern-2024, or a PROFILE.toml from `tracebench calibrate -o` (read here only: "
        "workers get the resolved values).")] = None,
    events: Annotated[bool, typer.Option(
        "--events", help="Also write per-event rows (large; off by default).")] = False,
    batch: Annotated[int | None, typer.Option(
        "--batch", min=1, help="Tasks per batch (one pass over a trace); default: sized "
        "to the sweep.")] = None,
    gather: Annotated[bool | None, typer.Option(
        "--gather/--no-gather", help="Workers send results back to this process to write "
        "(default with --scheduler: workers need not share -o), or write into -o "
        "themselves.", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a -o folder that holds another sweep.")] = False,
    summary: Annotated[bool, typer.Option(
        "--summary", help="Print a sweep dataset's sensitivity ranking: which swept "
        "parameter moves each metric most.")] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
    = OutputFormat.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
):
    """Replay every trace through every backend at every point of a parameter grid.

    Results go into one results dataset (one params=HASH partition per parameter set) that
    stat, compare, report and DuckDB read like any other; sweep.json records the plan.
    A task already done is skipped, so a killed sweep resumes where it stopped.
    """
    if summary:
        _print_summary(paths, fmt)
        return
    if not grid or not out:
        fail("a sweep needs --grid and -o (or --summary DATASET)", code=2)
    patterns = list(traces or []) + list(paths or [])
    if not patterns:
        fail("no trace given (--traces GLOB)", code=2)
    from tracebench.sweep import sweep as run_sweep

    result = run_sweep(patterns, backend, grid, out, executor=executor, scheduler=scheduler,
                       workers=workers, profile=profile, events=events, batch_size=batch,
                       gather=gather, force=force, progress="off" if quiet else None)
    row = result.summary_row()
    if fmt is OutputFormat.json:
        row["failures"] = [{**t.to_json(), "reason": r} for t, r in result.failed]
    print_rows([row], fmt, title="tracebench sweep")
    if result.failed:
        for task, reason in result.failed[:20]:
            print(f"tracebench: failed: {task.label()}: {reason}", file=sys.stderr)
        more = len(result.failed) - 20
        fail(f"{len(result.failed)} of {result.total} tasks failed"
             + (f" ({more} more in {out}/sweep.json)" if more > 0 else "")
             + "; rerun the same command to retry them")


def _print_summary(paths: list[str] | None, fmt: OutputFormat) -> None:
    if not paths or len(paths) != 1:
        fail("--summary takes one sweep dataset folder", code=2)
    from tracebench.report.sensitivity import sensitivity

    ranking = sensitivity(paths[0]).ranking
    print_rows(ranking.to_dicts(), fmt,
               title=f"sensitivity of {paths[0]}: spread of each metric's main effect "
                     "across each parameter (% of its mean)")
