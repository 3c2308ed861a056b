"""Up-front size checks of a synth request: refused before any work or write.

Beside the scenarios because the check generates a short probe of the scenario to size
the whole; the bounds themselves are :mod:`tracebench.limits`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tracebench.errors import TracebenchError
from tracebench.limits import check_cpus, check_duration_ns, check_event_budget

#: how much of a synth request is generated to estimate its size
_PROBE_NS = 20_000_000
_PROBE_CPUS = 4
#: fewer bytes per event than any synthetic trace takes on disk (measured 2 to 8)
_MIN_BYTES_PER_EVENT = 1


def check_synth_request(scenario: str, out: str | os.PathLike, n_cpus: int, duration_ns: int,
                        seed: int, params: Mapping | None) -> int:
    """Refuse, before any work, a synth request that cannot fit: a duration or vCPU count out
    of range, more events than a trace holds, or a trace larger than the free space where
    it goes. Returns the estimated event count (20 ms on up to 4 vCPUs, scaled up)."""
    import shutil

    from tracebench.scenarios import generate, get_scenario

    check_duration_ns(duration_ns)
    check_cpus(n_cpus)
    spec = get_scenario(scenario)
    probe_cpus = min(n_cpus, max(_PROBE_CPUS, spec.min_cpus))
    probe_ns = min(duration_ns, _PROBE_NS)
    cols, _ = generate(scenario, probe_cpus, probe_ns, seed, params)
    rate_per_s = len(cols["ts_ns"]) / probe_cpus / (probe_ns / 1e9)
    check_event_budget(n_cpus, duration_ns, rate_per_s, f"synth {scenario}")
    events = int(rate_per_s * n_cpus * duration_ns / 1e9)
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if events * _MIN_BYTES_PER_EVENT > free:
        raise TracebenchError(f"{out}: synth {scenario} would write ~{events:,} events "
                              f"(at least {events * _MIN_BYTES_PER_EVENT / 1e9:.3g} GB), "
                              f"{free / 1e9:.3g} GB free on that filesystem")
    return events
