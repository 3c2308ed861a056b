"""``trace-cmd report`` text.

Its records have the ftrace shape without the irq-flags column (unless ``-l``),
event names padded after the colon, a ``version = N`` / ``cpus=N`` preamble and
``=>`` stack frames under ``kernel_stack`` records; ``text/scan.py`` frames them all.
"""

from __future__ import annotations

import re

from tracebench.ingest.formats.base import InputFormat, line_share

_PREAMBLE = re.compile(r"^(version = \d+|cpus=\d+|CPU \d+ is empty|trace-cmd:)")
_PADDED = re.compile(r"^\s*.+-\d+\s+\[\d+\]\s+(?:\S{4}\s+)?\d+\.\d+:\s+\w+:\s{2,}\S")
_CPUS = re.compile(r"^cpus=(\d+)")


def sniff(lines: list[str]) -> float:
    if any(_PREAMBLE.match(ln) for ln in lines[:5]):
        return 1.0
    return line_share(lines, _PADDED)


def header(lines: list[str]) -> dict:
    for ln in lines[:10]:
        m = _CPUS.match(ln)
        if m:
            return {"n_cpus": int(m.group(1))}
    return {}


TRACE_CMD = InputFormat(
    name="trace-cmd",
    family="guest",
    description="`trace-cmd report` text",
    sniff=sniff,
    header=header,
)
