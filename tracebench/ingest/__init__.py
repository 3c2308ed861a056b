"""Text traces in, canonical traces out: a registry of input formats, found by content.

Like Perfetto's trace processor, every input format is one module, registered
here under a stable string name, and the format of a file is detected from its
first lines, never from its name. A format names the *mapping family* its events
belong to (``guest`` events such as ``msr:write_msr``, or KVM's ``kvm-host``
tracepoints); the line syntax itself (ftrace, trace-cmd, perf script) is framed
by one scanner (``scan.py``).

Public API::

    from tracebench.ingest import ingest, detect_format, FORMATS
    result = ingest(["trace.txt"], "trace.parquet")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from tracebench.errors import TraceError


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """One registered input format.

    Attributes
    ----------
    name : stable id used by ``--format`` and stored in trace metadata.
    family : mapping family of its events (``guest`` or ``kvm-host``).
    description : one line for ``--help`` and docs.
    sniff : score in [0, 2] from the first lines of a file; the best score wins.
    header : reads facts from the first lines (``{"n_cpus": ...}``), may return {}.
    """

    name: str
    family: str
    description: str
    sniff: Callable[[list[str]], float]
    header: Callable[[list[str]], dict] = lambda lines: {}


FORMATS: dict[str, InputFormat] = {}
#: a file whose best score is below this is not a trace this package knows
MIN_SCORE = 0.3


def register(fmt: InputFormat) -> InputFormat:
    if fmt.name in FORMATS:
        raise ValueError(f"input format {fmt.name!r} registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> InputFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise TraceError(
            f"unknown input format {name!r} (known: auto, {', '.join(FORMATS)})"
        ) from None


def detect_format(path: str | Path) -> InputFormat:
    """The registered format that best explains the first lines of ``path``."""
    from tracebench.ingest.textio import check_text_file, head_lines

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


# Registration happens on import of each format module (one module per format).
from tracebench.ingest import ftrace as _ftrace  # noqa: E402,F401
from tracebench.ingest import kvmhost as _kvmhost  # noqa: E402,F401
from tracebench.ingest import perfscript as _perfscript  # noqa: E402,F401
from tracebench.ingest import tracecmd as _tracecmd  # noqa: E402,F401
from tracebench.ingest.pipeline import IngestResult as IngestResult  # noqa: E402
from tracebench.ingest.pipeline import ingest as ingest  # noqa: E402

__all__ = [
    "FORMATS",
    "InputFormat",
    "IngestResult",
    "detect_format",
    "get_format",
    "ingest",
    "register",
]
