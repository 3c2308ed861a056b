"""What runs on a worker: warm-up, the trace cache, one batch replayed and committed.

A batch is replayed into a staging folder by the replayer's own writer, then each task's
files are renamed to their final names, ``summary`` last: a file at a final name is always
whole, and a task whose summary is there is complete. Executors (local pool, Dask) only
move :class:`BatchJob` objects in and :class:`BatchResult` objects out.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
import time
import traceback
import uuid
from pathlib import Path

from tracebench.backends.base import Backend
from tracebench.backends.configure import Configured
from tracebench.backends.params import ParamSet
from tracebench.errors import TracebenchError
from tracebench.sweep.tasks import Task
from tracebench.trace import TraceFile

#: hidden folder of the dataset where batches are written before their files are renamed
STAGING = ".sweep-staging"
#: traces up to this many rows stay decoded in a worker between batches (~30 B a row)
CACHE_ROWS = 2 << 20


@dataclasses.dataclass
class BatchJob:
    """One batch as sent to a worker: paths and small objects only."""

    tasks: list[Task]
    backends: dict[str, Backend]
    profile: str | None
    events: bool
    #: dataset root the worker writes into (shared storage), or ``None``: send the files
    #: back as bytes (:attr:`BatchResult.files`) for the client to write
    root: str | None


@dataclasses.dataclass
class BatchResult:
    """What came back: tasks done, tasks failed with a one-line reason, files to write."""

    done: list[Task]
    failed: list[tuple[Task, str]]
    seconds: float
    worker: str
    files: dict[str, bytes] | None = None
    #: CPU time the worker process spent on the batch (all its threads), s
    cpu_seconds: float = 0.0
    #: the batch never came back (its worker died): its tasks may run again elsewhere
    lost: bool = False


class _CachedTrace(TraceFile):
    """A trace whose validated chunks and digest stay in memory between batches."""

    def __init__(self, path: str):
        super().__init__(path)
        stat = os.stat(self.path)
        self.stamp = (stat.st_mtime_ns, stat.st_size)
        self._digest = super().sha256()
        self._chunks = list(super().chunks()) if self.num_rows <= CACHE_ROWS else None

    def chunks(self, rows: int | None = None):
        # results do not depend on chunking, so the cached chunks serve any ``rows``
        if self._chunks is None:
            return super().chunks(rows)
        return iter(self._chunks)

    def sha256(self) -> str:
        return self._digest


_cache: dict[str, _CachedTrace] = {}


def open_trace(path: str, sha256: str) -> TraceFile:
    """The trace at ``path``, read once per worker while it stays unchanged; refuses a
    trace whose content is not the one the sweep was planned (and recorded) with."""
    hit = _cache.get(path)
    stat = os.stat(path)
    if hit is None or hit.stamp != (stat.st_mtime_ns, stat.st_size):
        _cache.clear()  # batches come trace by trace: keep one
        hit = _cache[path] = _CachedTrace(path)
    if hit.sha256() != sha256:
        raise TracebenchError(f"{path}: changed since the sweep was planned "
                              f"(sha256 {hit.sha256()[:12]}, planned {sha256[:12]})")
    return hit


def warm_up() -> None:
    """Load (or compile) the kernels once per worker process, before its first task."""
    import numpy as np

    from tracebench.backends import get_backend
    from tracebench.backends.configure import configure
    from tracebench.backends.layout import LANES
    from tracebench.replayer.driver import replay_file
    from tracebench.trace import TraceMeta, empty_columns

    class _Tiny:  # a two-event trace in memory: enough to load every kernel variant
        meta = TraceMeta(n_cpus=1, duration_ns=1000, method="synth")
        path = Path("warm-up")

        def chunks(self, rows=None):
            cols = empty_columns(2)
            cols["ts_ns"][:] = np.array([10, 20])
            yield cols

    b = get_backend("full-virt")
    for n in (1, LANES):  # one alone, and a lane group
        replay_file(_Tiny(), configure([b] * n), None, threads=1)


def _replay_into(trace: TraceFile, trace_id: str, configured, root: Path, profile,
                 events: bool) -> None:
    """Replay one trace through ``configured`` and write its results under ``root``,
    through the replayer's writer (never a second one). One thread: the worker is one of
    a pool of processes."""
    from tracebench.replayer.results import RunContext
    from tracebench.replayer.session import replay_trace

    replay_trace(trace, RunContext(trace, trace_id, profile), configured, root, events,
                 threads=1)


def _configure(job: BatchJob, tasks: list[Task]) -> list[Configured]:
    """Each task's backend, parameter set and compiled model, checked against the plan:
    a worker with another tracebench version must not file results under this hash."""
    out = []
    for t in tasks:
        b = job.backends[t.backend]
        ps = ParamSet(b.param_specs(), dict(t.values), where=t.label())
        if ps.digest() != t.params_sha256 or len(ps) != len(t.values):
            raise TracebenchError(f"{t.label()}: this worker gives parameter set "
                                  f"{ps.digest()[:12]}, the plan says {t.params}; is it "
                                  "running another tracebench version?")
        out.append(Configured(b, ps, b.compile(ps)))
    return out


def commit(staged: Path, root: Path) -> None:
    """Move a staged batch into the dataset, ``summary/`` last (a task whose summary
    verifies is complete). A folder missing in the dataset moves whole, in one rename: a
    partition appears with its file already whole, and the sweep does a few metadata
    operations per task instead of a dozen (they dominated on a busy disk)."""
    order = {"configs": 0, "events": 1, "exits": 2, "summary": 3}
    for top in sorted(staged.iterdir(), key=lambda p: order.get(p.name, 2)):
        _merge(top, root / top.name)


def _merge(src: Path, dst: Path) -> None:
    if src.is_dir():
        if not dst.exists():
            try:
                os.rename(src, dst)
                return
            except OSError:  # another worker made it meanwhile: merge into theirs
                pass
        dst.mkdir(exist_ok=True)
        for child in sorted(src.iterdir()):
            _merge(child, dst / child.name)
    else:
        os.replace(src, dst)  # a file at its final name is always whole


def _gather(staged: Path) -> dict[str, bytes]:
    """Every staged file by its path under the dataset root, to send back."""
    return {p.relative_to(staged).as_posix(): p.read_bytes()
            for p in sorted(staged.rglob("*")) if p.is_file()}


def _run(job: BatchJob, tasks: list[Task]) -> dict[str, bytes] | None:
    trace = open_trace(tasks[0].trace.path, tasks[0].trace.sha256)
    configured = _configure(job, tasks)
    parent = Path(job.root) / STAGING if job.root is not None else Path(tempfile.gettempdir())
    staged = parent / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        staged.mkdir(parents=True)
        _replay_into(trace, tasks[0].trace.id, configured, staged, job.profile, job.events)
        if job.root is None:
            return _gather(staged)
        commit(staged, Path(job.root))
        return None
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TracebenchError):
        return str(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:]  # a bug: say where
    where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}{where}"


def run_batch(job: BatchJob) -> BatchResult:
    """Run a batch; a failure is retried task by task so that only the culprits fail."""
    t0, c0 = time.perf_counter(), time.process_time()
    where = f"{socket.gethostname()}:{os.getpid()}"
    done: list[Task] = []
    failed: list[tuple[Task, str]] = []
    files: dict[str, bytes] | None = None if job.root is not None else {}
    pending = [job.tasks]
    while pending:
        tasks = pending.pop(0)
        try:
            got = _run(job, tasks)
        except Exception as exc:
            if len(tasks) > 1:
                pending += [[t] for t in tasks]
            else:
                failed.append((tasks[0], _reason(exc)))
            continue
        done += tasks
        if got is not None:
            files.update(got)
    return BatchResult(done, failed, time.perf_counter() - t0, where, files,
                       time.process_time() - c0)
