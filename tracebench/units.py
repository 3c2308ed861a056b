"""Parsing of human durations and sizes at the CLI boundary; the library works in integer ns."""

from __future__ import annotations

import re

from tracebench.errors import UsageError
from tracebench.limits import INT64_MAX

_NS_PER = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
           "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ]*)\s*$")


def parse_duration_ns(text: str, default_unit: str = "s") -> int:
    """``"10s"``, ``"250ms"``, ``"1.5us"``, ``"3"`` (default unit) -> integer ns."""
    m = _DURATION.match(str(text))
    unit = (m.group(2) or default_unit) if m else None
    if not m or unit not in _NS_PER:
        raise UsageError(f"cannot parse duration {text!r} (examples: 10s, 250ms, 40us)")
    value = float(m.group(1)) * _NS_PER[unit]
    if not value < INT64_MAX:  # also catches inf from a 400-digit number
        raise UsageError(f"duration {text!r} does not fit in int64 nanoseconds (max ~292 years)")
    return round(value)


def parse_count(text: str) -> int:
    """``"10M"``, ``"1e6"``, ``"250k"``, ``"1G"`` -> int."""
    s = str(text).strip()
    mult = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9}.get(s[-1:], 1)
    if mult != 1:
        s = s[:-1]
    try:
        value = float(s) * mult
    except ValueError:
        raise UsageError(f"cannot parse count {text!r} (examples: 1000, 250k, 10M)") from None
    if value < 0 or value != int(value):
        raise UsageError(f"count {text!r} must be a non-negative whole number")
    return int(value)
