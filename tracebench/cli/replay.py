"""``tracebench replay`` and ``tracebench backends``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracebench.cli.common import (
    OutputFormat,
    app,
    compile_notice,
    print_rows,
    stderr_console,
    user_errors,
)

BackendOpt = Annotated[list[str] | None, typer.Option(
    "--backend", "-b", help="Backend name or .toml backend file; repeat; default: all.")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", help="Override a cost parameter, NAME=VALUE (cycles / GHz); repeat.")]
ParamsFileOpt = Annotated[Path | None, typer.Option(
    "--params", help="TOML file of parameter overrides (top level or [params]).")]
ProfileOpt = Annotated[str | None, typer.Option(
    "--profile", help="CPU cost profile: skx-2020 (default), nhm-2010, kvm-2012, modern-2024, "
    "or a PROFILE.toml written by `tracebench calibrate -o`.")]
#: bounds of --chunk-rows and --threads (a chunk's arrays are allocated whole)
MAX_CHUNK_ROWS = 1 << 28
MAX_THREADS = 1024
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]


def _progress_bar(traces: list[Path], quiet: bool):
    """A rich progress bar on stderr when it is a terminal, else nothing."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tracebench.trace import TraceFile

    prog = Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed:,}/"
                    "{task.total:,} events"), TimeRemainingColumn(), console=stderr_console(),
                    transient=True)
    # Opening the footers to size the bar costs a read per trace: only when it is shown.
    total_rows = sum(TraceFile(t).num_rows for t in traces)
    task = prog.add_task("replay", total=total_rows)
    return prog, lambda n: prog.advance(task, n)


@app.command()
@user_errors
def replay(
    traces: Annotated[list[Path], typer.Argument(help="Canonical trace files (.parquet).")],
    backend: BackendOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the results dataset to this folder (atomically).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out.")] = False,
    param: ParamOpt = None,
    params: ParamsFileOpt = None,
    profile: ProfileOpt = None,
    events: Annotated[bool | None, typer.Option(
        "--events/--no-events",
        help="With --out: --events stores every backend's per-event rows (compact, joined "
             "to the trace by row; large: ~5 B a row per backend); --no-events stores "
             "summaries and exit tables only. Default: no rows, but checkpoints from which "
             "`read_events` makes any backend's rows again, exactly.",
        show_default=False)] = None,
    events_for: Annotated[list[str] | None, typer.Option(
        "--events-for", metavar="BACKEND",
        help="Store per-event rows for this backend (repeatable; with --out); the others "
             "get summaries, exit tables and checkpoints.")] = None,
    chunk_rows: Annotated[int | None, typer.Option(
        "--chunk-rows", min=1, max=MAX_CHUNK_ROWS,
        help="Rows per streamed chunk (results do not depend on it).")]
    = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, max=MAX_THREADS, help="Worker threads (default: CPU count).")] = None,
    fmt: FormatOpt = OutputFormat.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
):
    """Replay traces through every backend (or -b ...) and print the comparison table.

    Without --out nothing is written; with it, the results dataset (summaries with
    HdrHistograms, exit reasons, checkpoints for per-event drill-down, per-event rows
    with --events/--events-for) goes to that folder.
    """
    from tracebench.api import replay as run_replay
    from tracebench.backends.params import parse_assignments

    overrides = parse_assignments(param or [])
    if events_for and events is not None:
        raise typer.BadParameter("--events-for and --events/--no-events contradict each other",
                                 param_hint="--events-for")
    wanted_rows = events_for if events_for else events
    prog, advance = _progress_bar(traces, quiet)
    if prog is not None:
        prog.start()
    try:
        with compile_notice(quiet, prog):
            result = run_replay(traces, backend, out=out, force=force, params=overrides,
                                params_file=params, profile=profile,
                                events=wanted_rows if out is not None else False,
                                chunk_rows=chunk_rows,
                                threads=threads, progress=advance)
    finally:
        if prog is not None:
            prog.stop()
    rows = result.comparison()
    if fmt is OutputFormat.table and len({r["trace"] for r in rows}) == 1:
        title = f"{rows[0]['trace']}: interrupt/timer virtualization cost by backend"
        rows = [{k: v for k, v in r.items() if k != "trace"} for r in rows]
    else:
        title = "interrupt/timer virtualization cost by backend"
    print_rows(rows, fmt, title=title)
    _warn_saturated(result.saturated())
    if out is not None and not quiet:
        stderr_console().print(f"results written to {out}/ (summary, exits, vcpus, "
                               "checkpoints, configs; events with --events)", markup=False)


def _warn_saturated(rows: list[dict]) -> None:
    """One stderr line per (trace, backend) whose vCPUs could not keep up (even with -q:
    the numbers above mean something else then)."""
    by_run: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_run.setdefault((r["trace"], r["backend"]), []).append(r)
    for (trace, backend), vcpus in by_run.items():
        worst = max(vcpus, key=lambda r: r["final_lag_ns"])
        names = ", ".join(str(r["cpu"]) for r in vcpus)
        print(f"warning: {trace}: under {backend}, vCPU {names} could not keep up with the "
              f"trace (vCPU {worst['cpu']} ends {worst['final_lag_ns'] / 1e6:.1f} ms behind, "
              f"{worst['lag_pct']:.0f} % of the trace): the replay is open-loop, so its later "
              "latencies include that backlog (README: 'Limits of the model')",
              file=sys.stderr)


@app.command()
@user_errors
def backends(
    names: Annotated[list[str] | None, typer.Argument(
        help="Backends to show (names or .toml files); default: all.")] = None,
    show_params: Annotated[bool, typer.Option(
        "--params", help="List every parameter: unit, default, source.")] = False,
    axes: Annotated[bool, typer.Option(
        "--axes", help="List the mechanism axes and their options instead.")] = False,
    profile: ProfileOpt = None,
    fmt: FormatOpt = OutputFormat.table,
):
    """Describe backends: mechanisms, parameters with unit, default and published source."""
    from tracebench.backends import resolve_backends
    from tracebench.backends.mechanisms import AXES, axis_options

    if axes:
        rows = [{"axis": a, "option": o, "description": d}
                for a, opts in axis_options().items() for o, d in opts.items()]
        print_rows(rows, fmt, title="mechanism axes")
        return
    chosen = resolve_backends(names)
    if fmt is OutputFormat.json:
        import json

        doc = []
        for b in chosen:
            ps = b.params(profile=profile)
            doc.append({"name": b.name, "description": b.description, "origin": b.origin,
                        "mechanisms": dict(b.mechanisms),
                        "params": [{"name": s.name, "value": ps[s.name], "default": s.default,
                                    "unit": s.unit, "bounds": [s.lo, s.hi], "source": s.source,
                                    "doc": s.doc} for s in b.param_specs()],
                        "params_sha256": ps.digest()})
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    if show_params:
        rows = []
        for b in chosen:
            ps = b.params(profile=profile)
            rows += [{"backend": b.name, "param": s.name, "value": ps[s.name], "unit": s.unit,
                      "doc": s.doc, "source": s.source} for s in b.param_specs()]
        print_rows(rows, fmt, title="backend parameters")
        return
    rows = [{"backend": b.name, **{a: b.mechanisms[a] for a in AXES}, "origin": b.origin}
            for b in chosen]
    print_rows(rows, fmt, title="backends (mechanism per axis)")
    if fmt is OutputFormat.table:
        for b in chosen:
            print(f"\n{b.name}: {b.description}")
