"""``tracebench calibrate`` and ``tracebench validate``: the model against the real thing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracebench.cli.common import OutputFormat, app, fail, print_rows, user_errors

FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]


def _say(text: str) -> None:
    print(f"tracebench: {text}", file=sys.stderr, flush=True)


def _pair(text: str | None, option: str, cast, expected: str):
    """``"A,B"`` -> (cast(A), cast(B)); a usage error (exit 2) naming the option otherwise."""
    if text is None:
        return None
    try:
        a, b = (cast(x) for x in text.split(","))
    except ValueError:
        fail(f"{option} {text!r}: expected {expected}", code=2)
    return a, b


@app.command()
@user_errors
def calibrate(
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the profile (TOML) here, for `replay --profile FILE`.")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out.")] = False,
    reps: Annotated[int, typer.Option(
        "--reps", min=10, help="Samples per cost loop (CPUID, RDTSC, clock reads).")] = 20000,
    latency_reps: Annotated[int | None, typer.Option(
        "--latency-reps", min=10, help="Samples of the timer and wake-up latencies "
        "(default: reps / 10).")] = None,
    switch_clocksource: Annotated[bool, typer.Option(
        "--switch-clocksource", help="Also read the clock through every clocksource the "
        "kernel offers, switching to each (root); the original is always restored.")] = False,
    cpus: Annotated[str | None, typer.Option(
        "--cpus", metavar="A,B", help="The two CPUs of the wake-up measurement (default: "
        "the first two this process may run on).")] = None,
    fmt: FormatOpt = OutputFormat.table,
):
    """Measure this machine's exit, clock-read, timer and wake-up costs (C loops, compiled
    at first use) and detect the platform; -o writes a profile for `--profile`."""
    from tracebench.atomic import atomic_path
    from tracebench.validate.calibrate import calibrate as run
    from tracebench.validate.calibrate import profile_params, profile_toml

    pair = _pair(cpus, "--cpus", int, "two CPU numbers A,B")
    if out is not None and out.exists() and not force:
        fail(f"{out}: already exists (use --force to overwrite)", code=1)
    cal = run(reps=reps, latency_reps=latency_reps, switch_clocksources=switch_clocksource,
              cpus=pair, say=_say)
    if fmt is OutputFormat.json:
        import json

        doc = {"tsc_ghz": cal.tsc_ghz, "platform": cal.platform, "notes": cal.notes,
               "measurements": cal.rows(),
               "params": {n: v for n, v, _ in profile_params(cal)}}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        print_rows(cal.rows(), fmt, title=f"tracebench calibrate (TSC {cal.tsc_ghz:.3f} GHz)")
    if fmt is OutputFormat.table:
        p = cal.platform
        _say(f"platform: {p['virtualization']} CPU, hypervisor {p['hypervisor']}, x2APIC "
             f"{p['x2apic']}, TSC-deadline {p['tsc_deadline']}, kvm-clock {p['kvm_clock']}, "
             f"PV EOI {p['pv_eoi']}, PV send-IPI {p['pv_send_ipi']}, clocksource "
             f"{p['clocksource_current']}, cpuidle {p['cpuidle_driver']}")
    for note in cal.notes:
        _say(f"note: {note}")
    if out is not None:
        with atomic_path(out, force=force) as tmp:
            tmp.write_text(profile_toml(cal))
        _say(f"profile written to {out} (use: tracebench replay T.parquet --profile {out})")


@app.command()
@user_errors
def validate(
    host_traces: Annotated[list[Path], typer.Argument(
        help="Host-side KVM trace text (ftrace, trace-cmd report, perf script).")],
    backend: Annotated[str, typer.Option(
        "--backend", "-b", help="Preset (or .toml backend) to replay, or auto: chosen from "
        "the host configuration the trace shows.")] = "auto",
    measured: Annotated[str | None, typer.Option(
        "--measured", help="Measured exits from elsewhere: NAME.exits.parquet, `perf kvm "
        "stat report` or `kvm_stat` text (FILE#N: its N-th table). Default: the trace's "
        "own exits.")] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help="CPU cost profile name or a PROFILE.toml from calibrate.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="Override a cost parameter, NAME=VALUE; repeat.")] = None,
    fail_outside: Annotated[str | None, typer.Option(
        "--fail-outside", metavar="LO,HI", help="Exit 3 when a modelled reason's "
        "predicted/measured ratio is outside LO..HI (CI gate).")] = None,
    fmt: FormatOpt = OutputFormat.table,
):
    """Predicted vs measured VM exits per reason for a host KVM trace, perf kvm stat style."""
    from tracebench.backends.params import parse_assignments
    from tracebench.validate.run import validate as run

    bounds = _pair(fail_outside, "--fail-outside", float, "LO,HI (e.g. 0.5,2)")
    if bounds is not None and not 0 <= bounds[0] <= bounds[1]:
        fail(f"--fail-outside {fail_outside!r}: needs 0 <= LO <= HI", code=2)
    res = run(host_traces, backend, measured, profile, parse_assignments(param or []))
    comp = res.comparison
    if fmt is OutputFormat.json:
        import json

        doc = {"backend": comp.backend, "why": res.why, "measured": res.measured_source,
               "basis": comp.basis, "duration_s": res.duration_s, "notes": res.notes,
               "rows": comp.rows}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        if fmt is OutputFormat.table:
            _say(f"replayed through {comp.backend}: " + "; ".join(res.why))
            _say(f"measured: {res.measured_source}; ratio = predicted / measured "
                 f"{comp.basis}")
        print_rows(comp.rows, fmt, title=f"VM exits, predicted ({comp.backend}) vs measured")
        for note in res.notes:
            _say(f"note: {note}")
    if bounds is not None:
        bad = comp.outside(*bounds)
        if bad:
            first = bad[0]
            ratio = "no ratio" if first["ratio"] is None else f"ratio {first['ratio']:.3f}"
            fail(f"{len(bad)} modelled reason(s) outside {bounds[0]:g}..{bounds[1]:g} "
                 f"(first: {first['reason']} {ratio}, predicted {first['pred_samples']}, "
                 f"measured {first['meas_samples']})", code=3)
