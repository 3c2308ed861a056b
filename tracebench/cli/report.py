"""``tracebench report`` (HTML / Markdown documents) and ``tracebench export`` (Perfetto)."""

from __future__ import annotations

import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tracebench.cli.common import app, fail, user_errors


class DocFormat(StrEnum):
    html = "html"
    md = "md"


class FigureFormat(StrEnum):
    svg = "svg"
    png = "png"


def _need_report_extra() -> None:
    """The documents need Altair and vl-convert (the ``[report]`` extra): say how to get
    them rather than fail on an import."""
    try:
        import altair  # noqa: F401
        import vl_convert  # noqa: F401
    except ImportError as exc:
        fail(f"reports need the optional packages altair and vl-convert-python ({exc.name} "
             f"is missing): pip install 'tracebench[report]'", code=1)


@app.command()
@user_errors
def report(
    results: Annotated[list[Path], typer.Argument(
        help="Results folders (replay -o) or packed datasets; with two or more, each is set "
        "against the first (A/B deltas and the parameters that differ).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report file to write "
                                      "(report.html, or report.md with --format md).")],
    fmt: Annotated[DocFormat, typer.Option(
        "--format", "-f", help="html: one self-contained offline file; md: Markdown with "
        "its figures in OUT-STEM-figures/ beside it.")] = DocFormat.html,
    figures: Annotated[FigureFormat, typer.Option(
        "--figures", help="Figure files for --format md.")] = FigureFormat.svg,
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "tracebench report",
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
    sensitivity: Annotated[bool, typer.Option(
        "--sensitivity", help="RESULTS is a sweep dataset (tracebench sweep -o): report "
        "which swept parameter moves each metric most, one chart per parameter (HTML).")]
    = False,
):
    """Comparative report: summary, exit mix, latency and timer-error CDFs, per-vCPU
    overhead, A/B deltas and provenance, as HTML (offline) or Markdown with figures."""
    _need_report_extra()
    if sensitivity:
        if len(results) != 1 or fmt is not DocFormat.html:
            fail("--sensitivity takes one sweep dataset and writes HTML", code=2)
        from tracebench.report.sensitivity import write_sensitivity_html

        write_sensitivity_html(results[0], out, force=force,
                               title=None if title == "tracebench report" else title)
        print(f"tracebench: sensitivity report written to {out}", file=sys.stderr)
        return
    command = "tracebench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if fmt is DocFormat.html:
        from tracebench.report.html import write_html

        write_html(results, out, command=command, force=force, title=title)
    else:
        from tracebench.report.markdown import write_markdown

        write_markdown(results, out, command=command, force=force,
                       figure_format=figures.value, title=title)
    print(f"tracebench: report written to {out}", file=sys.stderr)


@app.command()
@user_errors
def export(
    source: Annotated[Path, typer.Argument(
        help="A results folder with per-event rows, or a canonical trace (.parquet), "
        "replayed in memory.")],
    perfetto: Annotated[Path, typer.Option(
        "--perfetto", help="Chrome Trace Event JSON to write (OUT.json or OUT.json.gz); "
        "open it in ui.perfetto.dev.")],
    from_: Annotated[str | None, typer.Option(
        "--from", help="Window start, trace time (e.g. 1.5s, 200ms).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Window end, trace time.")] = None,
    vcpu: Annotated[int | None, typer.Option("--vcpu", min=0, help="Only this vCPU.")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", help="Only these backends; repeat (default: all).")] = None,
    warmup: Annotated[str | None, typer.Option(
        "--warmup", help="From a trace: replay only this long before --from (default: "
        "from the trace start, exact) to bound time and memory on long traces.")] = None,
    limit: Annotated[int, typer.Option(
        "--limit", min=1, help="Stop at about this many trace events (and say so; the "
        "slices written so far stay complete).")]
    = 2_000_000,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output.")] = False,
):
    """Timeline for ui.perfetto.dev: one process per backend, vCPUs as threads, exits and
    handlers as slices, interrupt arrivals as instants, flows from raise to handler."""
    from tracebench.report.export import export_perfetto
    from tracebench.units import parse_duration_ns

    if not source.exists():
        fail(f"{source}: no such file or folder", code=1)
    name = perfetto.name
    if not (name.endswith(".json") or name.endswith(".json.gz")):
        fail(f"--perfetto {perfetto}: the name must end in .json or .json.gz", code=2)
    start = parse_duration_ns(from_) if from_ is not None else None
    end = parse_duration_ns(to) if to is not None else None
    warm = parse_duration_ns(warmup) if warmup is not None else None
    info = export_perfetto(source, perfetto, backends=backend, start_ns=start, end_ns=end,
                           vcpu=vcpu, warmup_ns=warm, limit=limit, force=force)
    print(f"tracebench: {info['events']:,} trace events, {info['bytes']:,} bytes written to "
          f"{perfetto} (open in https://ui.perfetto.dev)", file=sys.stderr)
