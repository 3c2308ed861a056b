"""The sizes every stage must fit in, and the up-front checks that refuse impossible ones.

One place for the bounds that columns and replay state impose, so that a request that
cannot fit (a duration past int64 ns, more vCPUs than a ``uint16`` column holds, a rate
whose event count cannot be stored) is refused in one line before any work or any write.
"""

from __future__ import annotations

from tracebench.errors import UsageError

#: the largest value an int64 column (every ``*_ns`` column) holds
INT64_MAX = 2**63 - 1
#: vCPUs a trace may declare: ``cpu`` is uint16 and ``n_cpus`` itself must fit in it
MAX_CPUS = 65535
#: rows one trace may hold: row indices and counts are int64, and no machine this runs on
#: stores more (2^40 rows is ~30 TB of trace)
MAX_EVENTS = 1 << 40


def check_duration_ns(duration_ns, what: str = "duration") -> int:
    """A positive int64 count of ns, or a :class:`UsageError`."""
    if isinstance(duration_ns, bool) or not isinstance(duration_ns, int):
        raise UsageError(f"{what} must be a whole number of ns, got {duration_ns!r}")
    if duration_ns <= 0:
        raise UsageError(f"{what} must be positive, got {duration_ns} ns")
    if duration_ns > INT64_MAX:
        raise UsageError(f"{what} {duration_ns} ns does not fit in int64 ns (max ~292 years)")
    return duration_ns


def check_cpus(n_cpus, what: str = "vCPU count") -> int:
    if isinstance(n_cpus, bool) or not isinstance(n_cpus, int):
        raise UsageError(f"{what} must be a whole number, got {n_cpus!r}")
    if not 1 <= n_cpus <= MAX_CPUS:
        raise UsageError(f"{what} {n_cpus} is outside 1..{MAX_CPUS}")
    return n_cpus


def check_event_budget(n_cpus: int, duration_ns: int, rate_per_s: float, what: str) -> None:
    """Refuse a (vCPUs x duration x rate) whose event count cannot be stored at all."""
    events = float(n_cpus) * (duration_ns / 1e9) * float(rate_per_s)
    if not events < MAX_EVENTS:
        raise UsageError(f"{what}: {n_cpus} vCPUs x {duration_ns / 1e9:g} s x "
                         f"{rate_per_s:g}/s is ~{events:.3g} events, more than a trace can "
                         f"hold ({MAX_EVENTS:.3g}); shorten the duration or lower the rate")

