"""``tracebench synth``: write a synthesized trace, or list the scenarios."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tracebench.cli.common import OutputFormat, app, fail, print_rows, user_errors


@app.command()
@user_errors
def synth(
    scenario: Annotated[
        str | None, typer.Argument(help="Scenario name (see --list).", show_default=False)
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Trace file to write (.parquet).", show_default=False),
    ] = None,
    cpus: Annotated[
        int, typer.Option("--cpus", "-c", min=1, max=65535, help="Number of vCPUs of the guest.")
    ] = 4,
    duration: Annotated[
        str, typer.Option("--duration", "-d", help="Length of the trace (10s, 500ms, 2m).")
    ] = "10s",
    seed: Annotated[
        int,
        typer.Option("--seed", "-s", min=0, help="Random seed; same seed and options, same bytes."),
    ] = 0,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Scenario parameter NAME=VALUE (see --list); repeat.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing output file.")
    ] = False,
    list_: Annotated[
        bool, typer.Option("--list", help="Describe every scenario and its parameters, then exit.")
    ] = False,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format of --list.")
    ] = OutputFormat.table,
):
    """Synthesize a canonical trace from a named scenario of guest behaviour.

    Example: tracebench synth hz-tick -o tick.parquet --cpus 4 --duration 10s -p hz=250
    """
    from tracebench import scenarios as lib

    if list_:
        if scenario is None:
            _print_list(lib.describe_scenarios(), fmt)
        else:  # one scenario: its full doc, then its parameters
            spec = lib.get_scenario(scenario)
            if fmt is OutputFormat.table:
                print(f"{spec.name}: {spec.summary}\n\n{spec.doc}\n")
            _print_list([spec.describe()], fmt)
        return
    if scenario is None:
        fail("missing SCENARIO (or use --list)", code=2)
    if output is None:
        fail("missing option -o/--output FILE", code=2)
    from tracebench.units import parse_duration_ns

    duration_ns = parse_duration_ns(duration)
    params = lib.parse_assignments(param)
    from tracebench.scenarios.limits import check_synth_request

    check_synth_request(scenario, output, cpus, duration_ns, seed, params)
    started = time.perf_counter()
    path, meta, n_events = lib.synthesize_to_file(
        output, scenario, cpus, duration_ns, seed, params, force=force
    )
    elapsed = time.perf_counter() - started
    print(
        f"wrote {path}: {n_events:,} events, {meta.n_cpus} vCPUs, "
        f"{meta.duration_ns / 1e9:g} s of {scenario} (seed {seed}) in {elapsed:.2f} s",
        file=sys.stderr,
    )


def _print_list(scenarios: list[dict], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.json:
        print_rows(scenarios, fmt)
        return
    rows = []
    for s in scenarios:
        rows.append(
            {
                "scenario": s["name"],
                "parameter": "",
                "default": "",
                "unit": "",
                "description": f"{s['summary']} (min {s['min_cpus']} vCPUs)",
            }
        )
        for p in s["params"]:
            doc = p["doc"] + (f" [{'|'.join(p['choices'])}]" if "choices" in p else "")
            rows.append(
                {
                    "scenario": "",
                    "parameter": p["name"],
                    "default": _show(p["default"]),
                    "unit": p["unit"],
                    "description": doc,
                }
            )
    print_rows(rows, fmt, title="tracebench synth scenarios")


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
