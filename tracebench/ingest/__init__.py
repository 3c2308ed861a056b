"""Text traces in, canonical traces out, in four stages (one sub-package each).

``formats/`` sniffs which input format a file is, from its first lines, never from
its name; ``text/`` reads the bytes (chunked reading, line framing by one scanner
for ftrace, trace-cmd and perf script text, compiled field readers, the presence
probe); ``rules/`` maps each event's records to canonical rows (the rule machinery,
the guest table, the KVM-host table, the compiled fast path); ``stream/`` drives the
chunks through calibration, the mapping, merge and resolve into the trace writer
(and the measured-exits table of host traces). A format names its *family*
(:class:`~tracebench.ingest.stream.families.Family`: ``guest`` or ``kvm-host``),
the object that carries everything a family changes. ``record.py`` records live
through tracefs and ingests the result.

Where things go:

* a new input format: a sniffer module in ``formats/`` (an ``InputFormat`` naming
  its family), added to ``BUILTIN`` in ``formats/__init__.py``; if its lines are
  not ftrace-, trace-cmd- or perf-script-shaped, the framing in ``text/scan.py``.
* a new rule: a ``@rule`` function in the family's table, ``rules/guest.py`` (the
  one documented guest table) or ``rules/kvmhost.py``; a hot guest event may also
  get a compiled copy (``text/fields.py`` reader, ``rules/fastmap.py`` branch and
  ``FAST`` entry), which ``tests/test_ingest_fastpath.py`` checks against the rule.
* a new family: its ``RuleTable`` in ``rules/``, one ``Family`` in
  ``stream/families.py`` (probed events, EOI inference, per-chunk learning, exits
  writer) and the formats that name it.

Public API::

    from tracebench.ingest import ingest, detect_format, FORMATS
    result = ingest(["trace.txt"], "trace.parquet")
"""

from __future__ import annotations

from tracebench.ingest.formats import FORMATS, InputFormat, detect_format, get_format
from tracebench.ingest.stream.pipeline import IngestResult, ingest

__all__ = [
    "FORMATS",
    "InputFormat",
    "IngestResult",
    "detect_format",
    "get_format",
    "ingest",
]
