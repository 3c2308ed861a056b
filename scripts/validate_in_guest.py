#!/usr/bin/env python3
"""In-guest validation: a reference workload measured and recorded on this machine, replayed.

The experiment (run as root inside the guest, or on bare metal):

1. ``tracebench calibrate`` measures this machine (exit round trip, clock reads, timer
   and wake-up latencies) and writes its profile;
2. a reference workload runs while ``tracebench record`` traces the guest: on every CPU
   a cyclictest-like loop (absolute deadlines every ``--period-us``, timer slack 1 ns,
   ``calib cyclic``) and a cross-CPU futex ping-pong between CPU 0 and CPU 1 whose woken
   side idles ``--gap-us`` first (``calib wake``); both measure their own latencies
   (wake-up time minus deadline; woken thread running minus the wake call);
3. the recording is replayed through the preset that matches the platform calibrate
   detected (KVM + x2APIC + TSC-deadline + PV EOI: ``kvm-pv``; no hypervisor: ``native``),
   once with the published default costs and once with the calibrated profile;
4. the predicted timer latency (``timer_irq``: deadline -> handler) and wake-up latency
   (``ipi_irq``: send -> handler) are set beside the measured ones, p50 and p99, with
   their ratios.

What the two sides measure differs in one known way: the model stops at the guest
handler's first instruction, the workload at its own thread running again, so the
measured side also holds the guest kernel's hrtimer/scheduler work. The calibrated
profile folds that work into ``halt_wakeup_cyc`` and ``timer_expiry_cyc`` (from calibrate's
isolated micro-measurements); the default profile has none of it.

Usage::

    sudo python scripts/validate_in_guest.py --duration 3 --out /tmp/ingest-validation
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLI = [sys.executable, "-c",
       "import sys; from tracebench.cli import app; sys.argv[0] = 'tracebench'; app()"]


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else float("nan")


def preset_for(platform: dict) -> str:
    if platform["hypervisor"].startswith("none"):
        return "native"
    if platform["x2apic"] and platform["tsc_deadline"] and platform["pv_eoi"]:
        return "kvm-pv"
    return "x2apic-tscdeadline" if platform["x2apic"] else "full-virt"


def run_workload(exe: Path, out: Path, cpus: list[int], seconds: float, period_us: int,
                 gap_us: int) -> str:
    """The shell command that runs the workload (recorded by tracebench record)."""
    n_cyc = max(int(seconds * 1e6 / period_us), 10)
    n_wake = max(int(seconds * 1e6 / (gap_us + 60)), 10)
    parts = [f"{shlex.quote(str(exe))} cyclic {n_cyc} {period_us} {c} > "
             f"{shlex.quote(str(out / f'cyclic{c}.txt'))}" for c in cpus]
    b = cpus[1] if len(cpus) > 1 else cpus[0]
    parts.append(f"{shlex.quote(str(exe))} wake {n_wake} {cpus[0]} {b} {gap_us} > "
                 f"{shlex.quote(str(out / 'wake.txt'))}")
    return " & ".join(parts) + " & wait"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3.0, help="workload seconds")
    ap.add_argument("--period-us", type=int, default=1000, help="cyclic timer period")
    ap.add_argument("--gap-us", type=int, default=500, help="idle time before each wake-up")
    ap.add_argument("--reps", type=int, default=5000, help="calibrate repetitions")
    ap.add_argument("--out", type=Path, default=None, help="keep the files here")
    ap.add_argument("--format", choices=("table", "json"), default="table")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("validate_in_guest: needs root (tracefs recording)", file=sys.stderr)
        return 2
    from tracebench.api import replay
    from tracebench.validate.calibrate import calibrate, profile_toml
    from tracebench.validate.cbuild import binary

    out = args.out or Path(tempfile.mkdtemp(prefix="tracebench-in-guest-"))
    out.mkdir(parents=True, exist_ok=True)
    cal = calibrate(reps=args.reps)
    profile = out / "profile.toml"
    profile.write_text(profile_toml(cal))
    exe = binary("calib.c")
    cpus = sorted(os.sched_getaffinity(0))
    rec = out / "workload.parquet"
    cmd = run_workload(exe, out, cpus, args.duration, args.period_us, args.gap_us)
    proc = subprocess.run([*CLI, "record", "-o", str(rec), "--force", "--", "sh", "-c", cmd],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"validate_in_guest: tracebench record failed: {proc.stderr.strip()[-400:]}",
              file=sys.stderr)
        return 1
    timer = np.concatenate([np.loadtxt(out / f"cyclic{c}.txt", dtype=np.int64, ndmin=1)
                            for c in cpus])
    wake = np.loadtxt(out / "wake.txt", dtype=np.int64, ndmin=1)
    preset = preset_for(cal.platform)
    rows = []
    for label, prof in (("defaults (skx-2020)", None), ("calibrated", str(profile))):
        res = replay([rec], [preset], profile=prof, events=False)
        s = res.summary.filter(res.summary["metric"] == "latency_ns")
        for kind, measured, what in (("timer_irq", timer, "timer latency (deadline -> run)"),
                                     ("ipi_irq", wake, "wake-up latency (wake -> run)")):
            pr = s.filter(s["kind"] == kind).row(0, named=True) if kind in s["kind"] else None
            for q, col in ((50, "p50_ns"), (99, "p99_ns")):
                m = pct(measured, q)
                p = float(pr[col]) if pr else float("nan")
                rows.append({"profile": label, "measure": what, "quantile": f"p{q}",
                             "measured_us": round(m / 1000, 2), "predicted_us": round(p / 1000, 2),
                             "ratio": round(p / m, 3) if m else None,
                             "n_measured": int(measured.size),
                             "n_predicted": int(pr["count"]) if pr else 0})
    doc = {"preset": preset, "platform": cal.platform, "tsc_ghz": cal.tsc_ghz,
           "duration_s": args.duration, "period_us": args.period_us, "gap_us": args.gap_us,
           "cpus": cpus, "files": str(out), "rows": rows}
    (out / "in_guest.json").write_text(json.dumps(doc, indent=2))
    if args.format == "json":
        print(json.dumps(doc, indent=2))
        return 0
    print(f"preset {preset}; workload {args.duration:g} s on CPUs {cpus}, period "
          f"{args.period_us} us, wake gap {args.gap_us} us; files in {out}")
    head = f"{'profile':<20} {'measure':<34} {'q':<4} {'measured_us':>12} " \
           f"{'predicted_us':>12} {'ratio':>7}"
    print(head)
    for r in rows:
        print(f"{r['profile']:<20} {r['measure']:<34} {r['quantile']:<4} "
              f"{r['measured_us']:>12.2f} {r['predicted_us']:>12.2f} "
              f"{(r['ratio'] if r['ratio'] is not None else float('nan')):>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
