"""The documented Python API; the CLI is a thin layer over these functions.

>>> import tracebench
>>> tracebench.synth("timer-heavy", "t.parquet", n_cpus=2, duration="1s", seed=1)
>>> res = tracebench.replay(["t.parquet"], backends=["full-virt", "pv-clock"])
>>> res.summary.filter(kind="timer_arm")     # polars DataFrame
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tracebench.atomic import atomic_dir
from tracebench.backends import resolve_backends
from tracebench.backends.configure import configure
from tracebench.backends.params import param_values_from_toml
from tracebench.errors import TracebenchError, UsageError
from tracebench.replayer.frames import ReplayResult
from tracebench.replayer.session import replay_traces, rows_for, write_run_record
from tracebench.trace import TraceFile

__all__ = ["ReplayResult", "replay", "synth"]


def replay(traces: Sequence[str | os.PathLike], backends: Sequence[str] | None = None, *,
           out: str | os.PathLike | None = None, force: bool = False,
           params: Mapping[str, float] | None = None,
           params_file: str | os.PathLike | None = None, profile: str | None = None,
           events: bool | Sequence[str] | None = None, chunk_rows: int | None = None,
           threads: int | None = None,
           progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replay traces through backends.

    Parameters
    ----------
    traces : canonical trace files (``.parquet``).
    backends : registered names or ``.toml`` backend files; ``None`` = every registered one.
    out : results folder to write atomically (refused if it exists unless ``force``);
        ``None`` keeps everything in memory.
    params, params_file : cost overrides (``name -> value``; a TOML file), applied to every
        selected backend that has the parameter; a name none has is an error.
    profile : CPU cost profile name (``skx-2020``, ``nhm-2010``, ``kvm-2012``, ``modern-2024``).
    events : per-event rows. Default (``None``): in memory, every backend's; with ``out``,
        none are stored but checkpoints are, so ``result.events`` and
        ``tracebench.replayer.results.read_events`` make any backend's rows again on
        demand (exactly, a window at a time). ``True``: store every backend's rows (compact
        layout, README "Per-event results"); names: store those backends' rows; ``False``:
        summaries and exit tables only.
    chunk_rows : rows per streamed chunk (results do not depend on it).
    threads : worker threads for the backends (default: CPU count).
    """
    if not traces:
        raise TracebenchError("no trace given")
    for name, value, hi in (("chunk_rows", chunk_rows, 1 << 28), ("threads", threads, 1024)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= hi):
            raise UsageError(f"{name} must be a whole number in 1..{hi}, got {value!r}")
    files = [TraceFile(t) for t in traces]  # validate every input before writing anything
    chosen = resolve_backends(list(backends) if backends else None)
    overrides = dict(param_values_from_toml(params_file)) if params_file else {}
    overrides.update(params or {})
    configured = configure(chosen, overrides, profile,
                           where=str(params_file) if params_file and not params else "--param")
    events = rows_for(events, [c.backend.name for c in configured])
    if out is None:
        return replay_traces(files, configured, None, profile, events, chunk_rows, threads,
                             progress)
    inputs = [*traces, *([params_file] if params_file else []),
              *(c.backend.origin for c in configured if c.backend.origin.endswith(".toml"))]
    with atomic_dir(out, "results", force=force, inputs=inputs) as tmp:
        result = replay_traces(files, configured, tmp, profile, events, chunk_rows, threads,
                               progress)
        write_run_record(tmp, files, configured, profile, events)
    return result.moved_to(Path(out))


def synth(scenario: str, out: str | os.PathLike, *, n_cpus: int, duration: str | int,
          seed: int, params: Mapping | None = None, force: bool = False) -> Path:
    """Synthesize ``scenario`` into the trace file ``out``.

    ``duration`` is ns (int) or a string such as ``"10s"`` / ``"250ms"``; ``params``
    override the scenario's parameters (``tracebench synth --list`` shows them).
    Also reachable as ``tracebench.synth(...)``.
    """
    from tracebench.scenarios import synthesize_to_file
    from tracebench.scenarios.limits import check_synth_request
    from tracebench.units import parse_duration_ns

    duration_ns = duration if isinstance(duration, int) else parse_duration_ns(duration)
    check_synth_request(scenario, out, n_cpus, duration_ns, seed, params)
    synthesize_to_file(out, scenario, n_cpus, duration_ns, seed, params, force=force)
    return Path(out)
