"""``tracebench ingest`` and ``tracebench record``: text traces and live recordings in.

Thin: options are parsed here, the work is in :mod:`tracebench.ingest`; polars and
numba are imported inside the commands so ``tracebench --help`` stays instant.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tracebench.cli.common import app, compile_notice, stderr_console, user_errors


class FormatChoice(StrEnum):
    auto = "auto"
    ftrace = "ftrace"
    trace_cmd = "trace-cmd"
    perf_script = "perf-script"
    kvm_host = "kvm-host"


def _progress():
    """A rich progress bar on a terminal (stderr), else nothing."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "ingest",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
    )
    task = bar.add_task("ingest", total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


def _parse_features(features: str | None, platform: str | None) -> dict:
    env: dict = {}
    if platform:
        env["platform"] = platform
    if features:
        env["features"] = sorted({f.strip() for f in features.split(",") if f.strip()})
    return env


def report(result, console) -> None:
    """One summary block on stderr: rows per kind, unmapped and malformed counts."""
    src = result.meta.source
    kinds = ", ".join(f"{k} {v:,}" for k, v in src.get("kinds", {}).items()) or "none"
    console.print(
        f"wrote {result.path} ({result.rows:,} events, {result.meta.n_cpus} vCPUs, "
        f"{result.meta.duration_ns / 1e9:.3f} s): {kinds}",
        highlight=False,
    )
    if src.get("inferred", {}).get("eoi"):
        console.print(f"inferred: eoi {src['inferred']['eoi']:,} (arg=1)", highlight=False)
    if result.exits_path is not None:
        console.print(f"wrote {result.exits_path} (measured exits)", highlight=False)
    unmapped = src.get("unmapped", {})
    if unmapped:
        top = ", ".join(f"{k} {v:,}" for k, v in list(unmapped.items())[:12])
        more = f" and {len(unmapped) - 12} more" if len(unmapped) > 12 else ""
        console.print(f"unmapped events (counted, not written): {top}{more}", highlight=False)
    if src.get("malformed_lines"):
        console.print(
            f"skipped {src['malformed_lines']:,} malformed lines (first at lines "
            f"{', '.join(map(str, src['malformed_first']))}; --strict stops there)",
            highlight=False,
        )
    if src.get("lost_events"):
        console.print(f"the tracer reported {src['lost_events']:,} lost events", highlight=False)


@app.command("ingest")
@user_errors
def ingest_cmd(
    files: Annotated[
        list[Path], typer.Argument(help="Text trace files (pieces of one recording).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Canonical trace to write.")],
    fmt: Annotated[
        FormatChoice,
        typer.Option("--format", help="Input format; auto detects it from the content."),
    ] = FormatChoice.auto,
    strict: Annotated[bool, typer.Option(help="Stop at the first malformed line.")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output.")] = False,
    platform: Annotated[
        str | None, typer.Option(help="Where it was recorded: guest, bare-metal, ...")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(help="Known paravirt features, comma separated (e.g. x2apic,pv-eoi)."),
    ] = None,
    attribution: Annotated[str, typer.Option(help="Provenance / licence text.")] = "",
    clock: Annotated[str, typer.Option(help="trace_clock the text was written with.")] = "unknown",
) -> None:
    """Turn ftrace / trace-cmd / perf script / KVM host text into a canonical trace."""
    from tracebench.atomic import check_output_path
    from tracebench.ingest import ingest

    check_output_path(output, files)  # before reading a byte: never over an input
    bar, cb = _progress()
    try:
        if bar is not None:
            bar.start()
        with compile_notice(False, bar):
            result = ingest(
                files,
                output,
                fmt=fmt.value,
                strict=strict,
                force=force,
                progress=cb,
                environment=_parse_features(features, platform),
                attribution=attribution,
                clock=clock,
            )
    finally:
        if bar is not None:
            bar.stop()
    report(result, stderr_console())


@app.command("record", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def record_cmd(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", help="Canonical trace to write.")],
    duration: Annotated[
        str, typer.Option(help="How long to record (without a command), e.g. 5s, 500ms.")
    ] = "5s",
    events: Annotated[
        str,
        typer.Option(
            help="Preset name or comma-separated subsystem:event "
            "list (presets: see --list-presets)."
        ),
    ] = "guest",
    force: Annotated[bool, typer.Option(help="Overwrite an existing output.")] = False,
    keep_text: Annotated[
        Path | None, typer.Option(help="Also keep the raw ftrace text here.")
    ] = None,
    buffer_kb: Annotated[
        int, typer.Option(min=1, max=1 << 22, help="Per-CPU ring buffer size, KiB.")
    ] = 8192,
    list_presets: Annotated[
        bool, typer.Option("--list-presets", help="Print the event presets and exit.")
    ] = False,
) -> None:
    """Record the live machine through tracefs (own instance, root), then ingest it.

    A command after `--` runs while recording (recording stops when it exits).
    """
    from tracebench.ingest import record
    from tracebench.units import parse_duration_ns

    if list_presets:
        for name, evs in record.PRESETS.items():
            print(f"{name}: {','.join(evs)}")
        return
    from tracebench.atomic import check_output_path

    check_output_path(output, [keep_text] if keep_text else [])
    if keep_text is not None:
        check_output_path(keep_text, [output])
    command = list(ctx.args)
    console = stderr_console()
    result = record.record(
        output,
        duration_ns=parse_duration_ns(duration),
        events=events,
        command=command or None,
        force=force,
        keep_text=keep_text,
        buffer_kb=buffer_kb,
        log=lambda m: console.print(m, highlight=False),
    )
    report(result, console)
