"""Synthesized traces (`tracebench synth`): seeded generators of guest interrupt/timer behaviour.

Every scenario is a :class:`~tracebench.scenarios.spec.Scenario` (stable name,
parameter spec with units and defaults, documented generator) registered in
:data:`SCENARIOS`. :func:`synthesize_to_file` streams one to a trace file window by
window (``stream.py``: memory bounded by the window, not the trace);
:func:`generate` gives it in memory. The trace's ``source`` holds the scenario, seed
and the full parameter set, so a trace can be made again from its own metadata.
Same inputs, same bytes, whatever the window size: every random number is drawn by
index from streams keyed by (seed, part, vCPU, quantity) (``draws.py``), and rows
are ordered by time, vCPU, then the stream that made them.

Example
-------
>>> from tracebench.scenarios import generate
>>> cols, meta = generate("hz-tick", n_cpus=2, duration_ns=10**9, seed=1, params={"hz": 250})
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tracebench.errors import ParamError, TracebenchError
from tracebench.scenarios import draws
from tracebench.scenarios.ipi import IPI_STORM
from tracebench.scenarios.mixed import MIXED_SERVER
from tracebench.scenarios.net import NET_RR
from tracebench.scenarios.spec import Param as Param
from tracebench.scenarios.spec import Scenario as Scenario
from tracebench.scenarios.spec import parse_assignments as parse_assignments
from tracebench.scenarios.stream import DEFAULT_CHUNK_EVENTS, TraceShape, windows, write_stream
from tracebench.scenarios.tick import CLOCK_HEAVY, HZ_TICK
from tracebench.scenarios.timers import IDLE_NOHZ, TIMER_HEAVY
from tracebench.trace import COLUMNS, TraceMeta, empty_columns

#: every scenario by its stable name; listings use this order
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (IDLE_NOHZ, HZ_TICK, TIMER_HEAVY, IPI_STORM, NET_RR, CLOCK_HEAVY, MIXED_SERVER)
}

MAX_CPUS = 65535
ATTRIBUTION = "synthetic trace made by tracebench synth; no recorded data"


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; an unknown name lists the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ParamError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None


def describe_scenarios() -> list[dict]:
    """Every scenario with its doc and parameter spec (what ``synth --list`` prints)."""
    return [s.describe() for s in SCENARIOS.values()]


def start(scenario: str, n_cpus: int, duration_ns: int, seed: int,
          params: Mapping | None = None):
    """Check the inputs and set a scenario up: ``(generator part, shape, meta)``.

    Raises
    ------
    ParamError
        unknown scenario or parameter, bad value, too few vCPUs, bad seed/duration.
    """
    spec = get_scenario(scenario)
    n_cpus, duration_ns, seed = _check_run(spec, n_cpus, duration_ns, seed)
    values = spec.resolve(params, n_cpus=n_cpus)
    shape = TraceShape(n_cpus, duration_ns)
    part = spec.part(draws.stream_key(seed), np.arange(n_cpus, dtype=np.int64), values, shape)
    meta = TraceMeta(
        n_cpus=n_cpus,
        duration_ns=duration_ns,
        method="synth",
        source={"scenario": spec.name, "seed": seed, "params": values, **shape.notes},
        clock="synthetic",
        environment={"platform": "synthetic"},
        attribution=ATTRIBUTION,
    )
    return part, shape, meta


def generate(
    scenario: str, n_cpus: int, duration_ns: int, seed: int, params: Mapping | None = None,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
) -> tuple[dict[str, np.ndarray], TraceMeta]:
    """Synthesize a trace in memory.

    Parameters
    ----------
    scenario : a name from :data:`SCENARIOS`.
    n_cpus : vCPUs of the guest (1..65535; some scenarios need more).
    duration_ns : length of the trace, ns; every event is before it.
    seed : non-negative integer, the root of every random stream.
    params : overrides of the scenario's parameters by name (typed values, or
        strings as on the command line: ``{"hz": "250"}``).
    chunk_events : events per generation window aimed at (the result does not depend on it).

    Returns
    -------
    cols : canonical numpy columns, sorted by ``ts_ns``, then ``cpu``.
    meta : metadata with ``method="synth"``, ``clock="synthetic"``,
        ``environment={"platform": "synthetic"}`` and ``source`` = scenario, seed,
        full parameter set (and layout notes, where the scenario makes any).

    Raises
    ------
    ParamError
        unknown scenario or parameter, bad value, too few vCPUs, bad seed/duration.
    """
    part, shape, meta = start(scenario, n_cpus, duration_ns, seed, params)
    chunks = list(windows(part, shape, chunk_events))
    if not chunks:
        return empty_columns(0), meta
    return {k: np.concatenate([c[k] for c in chunks]) for k in COLUMNS}, meta


def synthesize_to_file(
    path: str | os.PathLike,
    scenario: str,
    n_cpus: int,
    duration_ns: int,
    seed: int,
    params: Mapping | None = None,
    force: bool = False,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
) -> tuple[Path, TraceMeta, int]:
    """Stream a scenario into the trace file ``path`` (atomically; ``force`` overwrites).

    Generation and Parquet encoding overlap (the writer has its own thread); memory is
    bounded by ``chunk_events``, and the bytes written do not depend on it.
    Returns ``(path, meta, n_events)``.
    """
    path = Path(path)
    if path.exists() and not force:
        # Checked before generating, so a long synth does not fail at the very end.
        raise TracebenchError(f"{path}: already exists (use --force to overwrite)")
    part, shape, meta = start(scenario, n_cpus, duration_ns, seed, params)
    rows = write_stream(path, windows(part, shape, chunk_events), meta, force=force,
                        before_close=lambda: meta.source.update(shape.notes))
    return path, meta, rows


def _check_run(spec: Scenario, n_cpus, duration_ns, seed) -> tuple[int, int, int]:
    for name, value in (("n_cpus", n_cpus), ("duration_ns", duration_ns), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ParamError(f"{name} must be an integer, got {value!r}")
    if not spec.min_cpus <= n_cpus <= MAX_CPUS:
        raise ParamError(
            f"scenario {spec.name} needs {spec.min_cpus}..{MAX_CPUS} vCPUs, got {n_cpus}"
        )
    if duration_ns <= 0:
        raise ParamError(f"duration must be positive, got {duration_ns} ns")
    if seed < 0:
        raise ParamError(f"seed must be a non-negative integer, got {seed}")
    return int(n_cpus), int(duration_ns), int(seed)


__all__ = [
    "SCENARIOS",
    "Param",
    "Scenario",
    "describe_scenarios",
    "generate",
    "start",
    "get_scenario",
    "parse_assignments",
    "synthesize_to_file",
]

