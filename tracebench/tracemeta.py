"""A trace's footer metadata: how it was made, its vCPUs and duration, checked on load.

Kept apart from ``trace.py`` (the columns) because every reader of results and datasets
needs the metadata's schema without the column machinery.
"""

from __future__ import annotations

import dataclasses
import json

from tracebench._version import __version__
from tracebench.errors import TraceError
from tracebench.limits import INT64_MAX, MAX_CPUS
from tracebench.schema import SCHEMA_VERSION


def _one_line(text) -> str:
    return " ".join(str(text).split())[:200]


@dataclasses.dataclass
class TraceMeta:
    """File-level metadata of a canonical trace (stored as JSON under the ``tracebench`` key).

    Attributes
    ----------
    n_cpus : number of vCPUs; every ``cpu`` value is below it.
    duration_ns : length of the traced interval, ns.
    method : how it was made: ``record``, ``ingest`` or ``synth``.
    source : details of the method (scenario + seed + parameters, or source
        format, file names and sha256, unmapped event counts).
    clock : clock domain of ``ts_ns`` (e.g. ``local``, ``mono``, ``x86-tsc``, ``synthetic``).
    environment : where the trace was taken: ``{"platform": "bare-metal"|"guest"|"synthetic",
        "hypervisor": ..., "features": [...]}``.
    attribution : who recorded it, licence, provenance text.
    """

    n_cpus: int
    duration_ns: int
    method: str
    source: dict = dataclasses.field(default_factory=dict)
    clock: str = "unknown"
    environment: dict = dataclasses.field(default_factory=dict)
    attribution: str = ""
    schema_version: int = SCHEMA_VERSION
    tracebench_version: str = __version__

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> TraceMeta:
        """Parse and check the footer metadata against :data:`META_SCHEMA` (types and
        ranges); anything else is a one-line :class:`TraceError` naming the field."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise TraceError(f"{where}: unreadable tracebench metadata "
                             f"({_one_line(exc)})") from None
        if not isinstance(data, dict):
            raise TraceError(f"{where}: tracebench metadata is a JSON "
                             f"{type(data).__name__}, expected an object")
        for name, (types, lo, hi, required) in META_SCHEMA.items():
            if name not in data:
                if required:
                    raise TraceError(f"{where}: tracebench metadata has no {name!r}")
                continue
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, types):
                want = " or ".join(_JSON_NAME[t] for t in types)
                raise TraceError(f"{where}: metadata {name!r} must be {want}, got "
                                 f"{_one_line(repr(value))[:60]}")
            if lo is not None and not lo <= value <= hi:
                raise TraceError(f"{where}: metadata {name}={value} is outside {lo}..{hi}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_JSON_NAME = {int: "an integer", str: "a string", dict: "an object"}
#: footer metadata: field -> (JSON types, lowest, highest, required)
META_SCHEMA = {
    "n_cpus": ((int,), 1, MAX_CPUS, True),
    "duration_ns": ((int,), 0, INT64_MAX, True),
    "method": ((str,), None, None, True),
    "source": ((dict,), None, None, False),
    "clock": ((str,), None, None, False),
    "environment": ((dict,), None, None, False),
    "attribution": ((str,), None, None, False),
    "schema_version": ((int,), 1, SCHEMA_VERSION, False),
    "tracebench_version": ((str,), None, None, False),
}
