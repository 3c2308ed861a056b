"""Raw ftrace text: ``/sys/kernel/tracing/trace`` or an instance's ``trace`` file.

Accepted shapes (framed by ``text/scan.py``): with or without the ``#`` header; with
or without the irq-flags column (``options/irq-info``) and the ``(tgid)`` column
(``options/record-tgid``); timestamp-only lines (``  6204.951631: kvm_exit: ...``,
as people paste them); records wrapped after the timestamp (mail archives); any
nanosecond trace_clock (``local``, ``global``, ``mono``, ``boot``, ``perf``...).
Counter clocks (``x86-tsc``, ``counter``) print raw ticks and are refused with a
message, because nothing in the text says how long a tick is.
"""

from __future__ import annotations

import re

from tracebench.ingest.formats.base import InputFormat, line_share

_LINE = re.compile(
    r"^\s*(?:.+-\d+\s+(?:\(\s*[\d-]+\)\s+)?\[\d+\]\s+(?:\S{4,5}\s+)?)?"
    r"\d+(?:\.\d+)?:\s+\w+:(?:\s|$)"
)
_HEADER_CPUS = re.compile(r"^#.*#P:(\d+)")


def sniff(lines: list[str]) -> float:
    if any(ln.startswith("# tracer:") for ln in lines[:3]):
        return 1.0
    return line_share(lines, _LINE) * 0.9  # ties with trace-cmd go to trace-cmd's header


def header(lines: list[str]) -> dict:
    for ln in lines[:20]:
        m = _HEADER_CPUS.match(ln)
        if m:
            return {"n_cpus": int(m.group(1))}
    return {}


FTRACE = InputFormat(
    name="ftrace",
    family="guest",
    description="raw ftrace text (tracefs trace file, any instance, with or without header)",
    sniff=sniff,
    header=header,
)
