"""Input formats, found by content: one small sniffer per format, listed in :data:`BUILTIN`.

Like Perfetto's trace processor, the format of a file is detected from its first
lines, never from its name. A format only sniffs and reads header facts; the line
syntax itself (ftrace, trace-cmd, perf script) is framed by one scanner
(``text/scan.py``), and the family a format names maps its events.
"""

from __future__ import annotations

import re
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
#: headers of exit-count reports (read by tracebench.validate.reports, not by ingest)
_REPORT = re.compile(r"(VM-EXIT|IO Port Access|MMIO Access)\s+Samples|\|\s*Event name\s*\||"
                     r"^\s*Event\s+Total\s|^kvm statistics")


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
        if any(_REPORT.search(ln) for ln in lines):
            raise TraceError(
                f"{p}: a perf kvm stat / kvm_stat report (exit counts, not a trace): give it "
                f"to `tracebench stat --measured` or `tracebench validate --measured`"
            )
        first = next((ln.strip() for ln in lines if ln.strip()), "")[:60]
        raise TraceError(
            f"{p}: cannot tell the trace format from its content (first line: "
            f"{first!r}); pass --format {'|'.join(FORMATS)}"
        )
    return FORMATS[best]


__all__ = ["BUILTIN", "FORMATS", "MIN_SCORE", "InputFormat", "detect_format", "get_format"]
