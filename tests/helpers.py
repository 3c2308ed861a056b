"""Small builders shared by the tests: hand-written traces and one-call replays."""

from __future__ import annotations

import numpy as np

from tracebench import hist
from tracebench.backends import get_backend
from tracebench.backends.reference import replay_reference
from tracebench.replayer.driver import BackendRun
from tracebench.schema import EventKind
from tracebench.trace import empty_columns


def make_cols(rows: list[tuple]) -> dict[str, np.ndarray]:
    """Rows of ``(ts_ns, cpu, kind, target, arg, dur_ns)`` (the last three optional); kind
    may be an EventKind or its label."""
    cols = empty_columns(len(rows))
    for i, (ts, cpu, kind, *rest) in enumerate(rows):
        k = EventKind.from_label(kind) if isinstance(kind, str) else EventKind(kind)
        cols["ts_ns"][i], cols["cpu"][i], cols["kind"][i] = ts, cpu, k
        if rest:
            cols["target"][i] = rest[0]
        if len(rest) > 1:
            cols["arg"][i] = rest[1]
        if len(rest) > 2:
            cols["dur_ns"][i] = rest[2]
    return cols


def run_kernel(backend_name: str, cols, n_cpus: int, chunk: int | None = None,
               params: dict | None = None):
    """Kernel outputs (whole-trace arrays) and the BackendRun holding the aggregates."""
    b = get_backend(backend_name)
    ps = b.params(overrides=params or {})
    run = BackendRun(b, ps, b.compile(ps), n_cpus)
    n = len(cols["ts_ns"])
    chunk = chunk or max(n, 1)
    parts = []
    for lo in range(0, n, chunk):
        parts.append(run.run_chunk({k: v[lo:lo + chunk] for k, v in cols.items()},
                                   hist.geometry()))
    if not parts:
        return {}, run
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, run


def run_reference(backend_name: str, cols, n_cpus: int, params: dict | None = None):
    b = get_backend(backend_name)
    ps = b.params(overrides=params or {})
    return replay_reference(cols, b.compile(ps), n_cpus), b.compile(ps)


def cyc_to_ns(cycles: float, ghz: float = 2.4) -> float:
    return cycles / ghz


def tracefs_unusable() -> str | None:
    """Why this machine cannot record through a tracefs instance, or ``None`` if it can."""
    import os

    from tracebench.errors import TracebenchError
    from tracebench.ingest.record import find_tracefs

    if os.geteuid() != 0:
        return "not root: tracefs instances need root"
    try:
        find_tracefs()
    except TracebenchError as exc:
        return str(exc)
    return None
