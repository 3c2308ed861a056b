"""Input formats, found by content: one small sniffer per format, listed in :data:`BUILTIN`.

Like Perfetto's trace processor, the format of a file is detected from its first
lines, never from its name. A format only sniffs and reads header facts; the line
syntax itself (ftrace, trace-cmd, perf script) is framed by one scanner
(``text/scan.py``), and the family a format names maps its events.
"""

from __future__ import annotations

from pathlib import Path

from tracebench.errors import TraceError
from tracebench.ingest.formats.base import InputFormat
from tracebench.ingest.formats.ftrace import FTRACE
from tracebench.ingest.formats.kvmhost import KVM_HOST
from tracebench.ingest.formats.perfscript import PERF_SCRIPT
from tracebench.ingest.formats.tracecmd import TRACE_CMD

#: every input format, in ``--help`` order (a new format: its module, then one entry here)
BUILTIN: tuple[InputFormat, ...] = (FTRACE, KVM_HOST, PERF_SCRIPT, TRACE_CMD)
FORMATS: dict[str, InputFormat] = {f.name: f for f in BUILTIN}
if len(FORMATS) != len(BUILTIN):
    raise AssertionError("two input formats share a name")
#: a file whose best score is below this is not a trace this package knows
MIN_SCORE = 0.3


def get_format(name: str) -> InputFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise TraceError(
            f"unknown input format {name!r} (known: auto, {', '.join(FORMATS)})"
        ) from None


def detect_format(path: str | Path) -> InputFormat:
    """The format that best explains the first lines of ``path``."""
    from tracebench.ingest.text.files import check_text_file, head_lines

    p = check_text_file(path)
    lines = head_lines(p)
    scores = {name: fmt.sniff(lines) for name, fmt in FORMATS.items()}
    best = max(scores, key=lambda n: scores[n])
    if scores[best] < MIN_SCORE:
        first = next((ln.strip() for ln in lines if ln.strip()), "")[:60]
        raise TraceError(
            f"{p}: cannot tell the trace format from its content (first line: "
            f"{first!r}); pass --format {'|'.join(FORMATS)}"
        )
    return FORMATS[best]


__all__ = ["BUILTIN", "FORMATS", "MIN_SCORE", "InputFormat", "detect_format", "get_format"]
