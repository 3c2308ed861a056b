"""From (traces, backends, grid) to tasks, batches of tasks, and which tasks are done.

A *task* is one (trace, backend, parameter set): the unit of results, of resuming and of
progress. A *batch* is what one worker runs: several tasks of one trace, replayed in one
pass over it (built-in backends four to a lane), so a trace is read once per batch and,
through the worker's trace cache, once per worker while its batches follow one another.

Grid points that give one backend the same parameter set (a swept name the backend's
model does not read) are one task: its output would be the same bytes.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

from tracebench.backends.base import Backend
from tracebench.errors import TracebenchError
from tracebench.replayer.results import params_hash, partition_dir, trace_id
from tracebench.schema import METADATA_KEY
from tracebench.sweep.grid import Grid
from tracebench.trace import TraceFile

#: most tasks in one batch: enough to fill lane groups and amortize a trace read, few
#: enough that a batch's failure or loss (a killed worker) costs little
MAX_BATCH = 16


@dataclasses.dataclass(frozen=True)
class TraceInput:
    """One input trace as planned: absolute path, partition id, SHA-256, size."""

    path: str
    id: str
    sha256: str
    rows: int


@dataclasses.dataclass(frozen=True)
class Task:
    """One (trace, backend, parameter set) and the grid points it stands for.

    ``overrides`` are the swept values this backend reads (others are dropped: they do
    not change its result); ``points`` are the grid indices that give this parameter set;
    ``values`` the whole set (profile and defaults resolved here, so that a worker needs
    no profile file).
    """

    trace: TraceInput
    backend: str
    params_sha256: str
    overrides: tuple[tuple[str, float], ...]
    points: tuple[int, ...]
    values: tuple[tuple[str, float], ...] = ()

    @property
    def params(self) -> str:
        return params_hash(self.params_sha256)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.trace.id, self.backend, self.params)

    def label(self) -> str:
        vals = ", ".join(f"{k}={v:g}" for k, v in self.overrides) or "defaults"
        return f"{self.trace.id} x {self.backend} ({vals})"

    def relpath(self, table: str) -> Path:
        """Where this task's ``table`` file sits under the dataset root."""
        return partition_dir(Path(), table, self.backend, self.params_sha256,
                             self.trace.id) / "part-0.parquet"

    def to_json(self) -> dict:
        return {"trace": self.trace.id, "backend": self.backend, "params": self.params,
                "params_sha256": self.params_sha256, "values": dict(self.overrides),
                "points": list(self.points)}


@dataclasses.dataclass
class Plan:
    """Everything a sweep will do, fixed before anything runs."""

    traces: list[TraceInput]
    backends: dict[str, Backend]
    grid: Grid
    profile: str | None
    events: bool
    tasks: list[Task]

    def to_json(self) -> dict:
        """The part of ``sweep.json`` that must match for a rerun to resume this sweep."""
        return {
            "grid": self.grid.to_json(), "profile": self.profile, "events": self.events,
            "traces": [dataclasses.asdict(t) for t in self.traces],
            "backends": [{"name": b.name, "origin": b.origin,
                          "mechanisms": dict(b.mechanisms)} for b in self.backends.values()],
            "tasks": [t.to_json() for t in self.tasks],
        }


def expand_traces(patterns: Sequence[str | os.PathLike]) -> list[Path]:
    """Glob patterns (or plain paths) to trace files, in argument order, each once."""
    out: list[Path] = []
    seen: set[str] = set()
    for pat in patterns:
        pat = os.fspath(pat)
        hits = sorted(glob.glob(pat, recursive=True)) if glob.has_magic(pat) else [pat]
        if not hits:
            raise TracebenchError(f"--traces {pat!r}: matches no file")
        for h in hits:
            full = os.path.abspath(h)
            if full not in seen:
                seen.add(full)
                out.append(Path(full))
    if not out:
        raise TracebenchError("no trace given")
    return out


def read_traces(paths: list[Path]) -> list[TraceInput]:
    """Open every trace (schema errors name the file) and hash it (two files at a time:
    ``hashlib`` releases the GIL)."""
    files = [TraceFile(p) for p in paths]
    taken: set[str] = set()
    ids = [trace_id(f.path, taken) for f in files]
    with ThreadPoolExecutor(max_workers=2) as pool:
        digests = list(pool.map(TraceFile.sha256, files))
    return [TraceInput(str(f.path), tid, d, f.num_rows)
            for f, tid, d in zip(files, ids, digests, strict=True)]


def plan_sweep(traces: list[TraceInput], backends: list[Backend], grid: Grid,
               profile: str | None, events: bool = False) -> Plan:
    """Every (trace, backend, distinct parameter set); bad values name the grid file."""
    valid = {p.name for b in backends for p in b.param_specs()}
    grid.check_names(valid)
    points = grid.points()
    per_backend: list[tuple[Backend, list[tuple[str, tuple, list[int], tuple]]]] = []
    for b in backends:
        base = b.params(profile=profile)
        mine = set(base)
        distinct: dict[str, tuple[tuple, list[int], tuple]] = {}
        for i, point in enumerate(points):
            overrides = tuple((k, v) for k, v in point.items() if k in mine)
            ps = base.copy()
            ps.update(dict(overrides), f"{grid.source} (backend {b.name})")
            entry = distinct.setdefault(ps.digest(),
                                        (overrides, [], tuple(ps.as_dict().items())))
            entry[1].append(i)
        per_backend.append((b, [(d, ov, pts, full)
                                for d, (ov, pts, full) in distinct.items()]))
    tasks = [Task(t, b.name, digest, ov, tuple(pts), full)
             for t in traces for b, configs in per_backend for digest, ov, pts, full in configs]
    return Plan(traces, {b.name: b for b in backends}, grid, profile, events, tasks)


def batches(tasks: list[Task], workers: int, size: int | None = None,
            distinct_backends: bool = False) -> list[list[Task]]:
    """Tasks of one trace, cut into batches of at most ``size`` (default: enough batches
    to keep ``workers`` busy to the end, at most :data:`MAX_BATCH` tasks each).

    ``distinct_backends``: no backend twice in a batch (per-event rows are written by
    backend name, one file at a time).
    """
    if size is None:
        size = max(1, min(MAX_BATCH, math.ceil(len(tasks) / (4 * max(workers, 1)))))
    by_trace: dict[str, list[Task]] = {}
    for t in tasks:
        by_trace.setdefault(t.trace.id, []).append(t)
    out = []
    for group in by_trace.values():
        if distinct_backends:
            rounds: list[list[Task]] = []
            depth: dict[str, int] = {}
            for t in group:  # the n-th set of a backend goes to the n-th round
                n = depth[t.backend] = depth.get(t.backend, -1) + 1
                if n == len(rounds):
                    rounds.append([])
                rounds[n].append(t)
        else:
            rounds = [group]
        for r in rounds:
            out += [r[lo:lo + size] for lo in range(0, len(r), size)]
    return out


def result_tables(root: Path) -> list[str]:
    """The tables a dataset holds (``summary``, ``exits``, ... as the replayer writes
    them; ``summary`` always): each task must have a verified file in every one."""
    found = {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
             and d.name != "configs"} if root.is_dir() else set()
    return sorted(found | {"summary"})


def footer_meta(path: Path) -> dict | None:
    """The ``tracebench`` footer metadata of a results file, ``None`` if unreadable."""
    try:
        raw = (pq.read_metadata(path).metadata or {}).get(METADATA_KEY)
        return json.loads(raw) if raw is not None else None
    except (OSError, ValueError, Exception):  # truncated, not Parquet, bad JSON
        return None


def task_done(root: Path, task: Task, tables: Sequence[str] | None = None) -> bool:
    """Whether ``task``'s files exist in every table (default: :func:`result_tables`) and
    their footers name this trace digest, backend and parameter set (a file from an
    edited trace or another model does not count)."""
    for table in tables if tables is not None else result_tables(root):
        meta = footer_meta(root / task.relpath(table))
        if (meta is None or meta.get("trace_sha256") != task.trace.sha256
                or meta.get("backend") != task.backend
                or meta.get("params_sha256") != task.params_sha256):
            return False
    return (root / "configs" / f"{task.backend}-{task.params}.json").is_file()
