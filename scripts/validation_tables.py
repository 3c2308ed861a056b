#!/usr/bin/env python3
"""Print the per-reason tables of VALIDATION.md: `tracebench validate` on every shipped
host-side excerpt (tests/data/realtraces/), as Markdown.

Each table is headed by the exact command that makes it; tests/test_validate.py runs the
same commands and checks that VALIDATION.md still holds their numbers.

Usage::

    python scripts/validation_tables.py > /tmp/tables.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

D = "tests/data/realtraces"
SVM = f"{D}/kvm-svm-selfipi-eoi-idlehlt"
OE = f"{D}/kvm-ftrace-tscdeadline-kvmstat"
MSR = f"{D}/kvm-perfscript-msr-tscdeadline-x2apic"
INJ = f"{D}/kvm-perfscript-irq-injection"

#: (title, validate arguments)
CASES = (
    ("AMD SVM self-IPI -> HLT -> inject -> EOI (idle-HLT off), its own exits",
     [f"{SVM}/trace_idle_hlt_off.txt"]),
    ("the same, against the published perf kvm stat totals (idle-HLT off)",
     [f"{SVM}/trace_idle_hlt_off.txt", "--measured", f"{SVM}/perf_kvm_stat_tables.txt#1"]),
    ("AMD SVM with the idle-HLT intercept, its own exits",
     [f"{SVM}/trace_idle_hlt_on.txt"]),
    ("the same, against the published totals (idle-HLT on)",
     [f"{SVM}/trace_idle_hlt_on.txt", "--measured", f"{SVM}/perf_kvm_stat_tables.txt#2"]),
    ("the idle-HLT option: the idle-HLT-off run's guest events (its HLT exit shows the "
     "guest's sti; hlt) under svm-idlehlt, against the idle-HLT-on totals",
     [f"{SVM}/trace_idle_hlt_off.txt", "-b", "svm-idlehlt", "--measured",
      f"{SVM}/perf_kvm_stat_tables.txt#2"]),
    ("openEuler TSC-deadline kvm_msr trace (no kvm_exit: exits from kvm_msr)",
     [f"{OE}/kvm_msr_ftrace.txt"]),
    ("the same, against perf kvm stat report of that host",
     [f"{OE}/kvm_msr_ftrace.txt", "--measured", f"{OE}/perf_kvm_stat_report.txt"]),
    ("the same, against kvm_stat of that host",
     [f"{OE}/kvm_msr_ftrace.txt", "--measured", f"{OE}/kvm_stat.txt"]),
    ("qemu perf script kvm_msr, 4-vCPU x2APIC guest",
     [f"{MSR}/perf_script_kvm_msr.txt"]),
    ("qemu perf script kvm_msr, APIC-base reads",
     [f"{MSR}/perf_script_kvm_msr_apicbase.txt"]),
    ("dragonball perf script, IO-APIC routing (injection tracepoints only)",
     [f"{INJ}/perf_script_apic.txt"]),
    ("dragonball perf script, 8259 PIC routing (injection tracepoints only)",
     [f"{INJ}/perf_script_noapic.txt"]),
    ("QEMU SeaBIOS/FreeDOS with the in-kernel PIC (VMX kvm_exit)",
     [f"{D}/kvm-ftrace-pckbd-pic-seabios/trace_wrapped.txt"]),
)

COLS = ("reason", "modelled", "pred_samples", "meas_samples", "pred_pct", "meas_pct",
        "pred_avg_us", "meas_avg_us", "ratio")


def run(args: list[str]) -> dict:
    """`tracebench validate ARGS --format json`, through the real CLI."""
    from typer.testing import CliRunner

    from tracebench.cli import app

    res = CliRunner().invoke(app, ["validate", *args, "--format", "json"])
    if res.exit_code != 0:
        raise SystemExit(f"validate {' '.join(args)} failed: {res.output}")
    return json.loads(res.stdout)


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def table(doc: dict) -> str:
    lines = ["| " + " | ".join(COLS) + " |", "|" + "---|" * len(COLS)]
    for r in doc["rows"]:
        lines.append("| " + " | ".join(fmt(r[c]) for c in COLS) + " |")
    return "\n".join(lines)


def main() -> int:
    for title, args in CASES:
        doc = run(args)
        print(f"#### {title}\n\n```\ntracebench validate {' '.join(args)}\n```\n")
        print(f"Preset **{doc['backend']}** ({'; '.join(doc['why'])}); ratio basis "
              f"**{doc['basis']}**.\n")
        print(table(doc) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
