"""Independent counting of events in real text traces (plain Python regex, not the ingest code)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

DATA = Path(__file__).parent / "data"
_EVENT = re.compile(r"\d+\.\d+:\s+(?:[\w-]+:)?(\w+):\s?(.*)$")


def count_events(path: Path) -> Counter:
    """Count (event, payload) facts line by line: independent of tracebench.ingest."""
    c: Counter = Counter()
    pending: dict[str, bool] = {}  # CPU -> an ipi_send_cpu still waiting for its ICR write
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = _EVENT.search(line)
        if not m:
            continue
        ev, payload = m.group(1), m.group(2)
        cpu = (re.search(r"\[(\d+)\]", line) or re.match("", "")).group(0)
        c[ev] += 1
        if ev == "ipi_send_cpu":
            c["ipi_send_orphan"] += pending.get(cpu, False)
            pending[cpu] = True
        if ev == "write_msr":
            msr, value = re.match(r"(\w+), value (\w+)", payload).groups()
            if msr == "6e0":
                c["tsc_deadline_arm" if int(value, 16) else "tsc_deadline_cancel"] += 1
            elif msr in ("830", "83f"):
                c["icr_write"] += 1
                pending[cpu] = False
        if ev == "cpu_idle":
            c["idle_exit" if "state=4294967295" in payload else "idle_enter"] += 1
    c["ipi_send_orphan"] += sum(pending.values())
    return c
