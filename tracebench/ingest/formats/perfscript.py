"""``perf script`` text of tracepoint events.

Default fields are ``comm tid [cpu] time: sys:event: payload`` (event names are
right-aligned and always carry their subsystem); ``-F`` variations drop or add
columns in front of the timestamp (``pid/tid``, no ``[cpu]``, no ``comm``) and
``--ns`` prints nine decimals. ``text/scan.py`` anchors on ``TIME: sys:event:`` so all
of these frame the same way; a trace without ``[cpu]`` puts events on CPU 0 and
says so.
"""

from __future__ import annotations

import re

from tracebench.ingest.formats.base import InputFormat, line_share

_LINE = re.compile(r"^.*?\d+\.\d+:\s+(?:\d+\s+)?[\w.-]+:[\w.-]+:(?:\s|$)")


def sniff(lines: list[str]) -> float:
    return line_share(lines, _LINE)


PERF_SCRIPT = InputFormat(
    name="perf-script",
    family="guest",
    description="`perf script` text (default or -F fields)",
    sniff=sniff,
)
