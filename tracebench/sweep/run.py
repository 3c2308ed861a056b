"""Run a sweep: plan it, skip what is done, run the rest on an executor, record it.

The dataset folder is an ordinary results dataset (``summary/``, ``exits/``, ``configs/``)
plus ``sweep.json`` (the plan: grid, traces with sha256, backends, tasks; and the last
run's outcome). One sweep writes into a folder at a time (a lock file); each run first
removes what killed runs left in the staging folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

from tracebench._version import __version__
from tracebench.atomic import atomic_path, mentions
from tracebench.backends import resolve_backends
from tracebench.errors import TracebenchError
from tracebench.sweep.grid import Grid, grid_from_mapping, load_grid
from tracebench.sweep.progress import SweepProgress
from tracebench.sweep.tasks import (
    Plan,
    Task,
    batches,
    expand_traces,
    plan_sweep,
    read_traces,
    result_tables,
    task_done,
)
from tracebench.sweep.worker import STAGING, BatchJob, BatchResult, commit, run_batch

SWEEP_JSON = "sweep.json"
LOCK = ".sweep.lock"
#: batches in flight per worker: enough to keep it fed, few enough that a large sweep
#: does not queue its whole task list in the executor at once
IN_FLIGHT_PER_WORKER = 4


@dataclasses.dataclass
class SweepResult:
    """What a sweep run did. ``failed``: each task with its one-line reason."""

    out: Path
    total: int
    skipped: int
    ran: int
    failed: list[tuple[Task, str]]
    seconds: float
    executor: str
    #: CPU time of the workers on the tasks that ran (wall time on a busy machine is not)
    cpu_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary_row(self) -> dict:
        return {"dataset": str(self.out), "tasks": self.total, "ran": self.ran,
                "skipped": self.skipped, "failed": len(self.failed),
                "seconds": round(self.seconds, 3),
                "tasks_per_s": round(self.ran / self.seconds, 2) if self.seconds else 0.0,
                "worker_cpu_ms_per_task": round(1e3 * self.cpu_seconds / self.ran, 2)
                if self.ran else 0.0, "executor": self.executor}


def sweep(traces: Sequence[str | os.PathLike], backends: Sequence[str] | None,
          grid: str | os.PathLike | Grid | Mapping, out: str | os.PathLike, *,
          executor: str = "local", scheduler: str | None = None, workers: int | None = None,
          profile: str | None = None, events: bool = False, batch_size: int | None = None,
          gather: bool | None = None, force: bool = False,
          progress: str | None = "off") -> SweepResult:
    """Replay every trace through every backend at every point of a parameter grid.

    Parameters
    ----------
    traces : trace files or glob patterns (``"traces/*.parquet"``).
    backends : registered names or ``.toml`` backend files; ``None``: all registered.
    grid : a grid TOML file (schema in ``tracebench.sweep.grid``), a :class:`Grid`, or
        the same structure as a dict.
    out : the sweep dataset folder; a rerun of the same sweep resumes it (verified tasks
        are skipped), a different sweep into it is refused unless ``force``.
    executor : ``"local"`` (process pool) or ``"dask"`` (``scheduler`` address, or a
        LocalCluster on this machine when ``None``).
    workers : processes (local pool, LocalCluster); default: one per CPU.
    events : also write per-event rows (large: off by default).
    batch_size : tasks per batch (default: sized to the sweep and the workers).
    gather : workers send results back to this process to write (needed when they do
        not share ``out``); default: only with a ``scheduler``.
    progress : ``"bar"``, ``"log"``, ``"off"``, or ``None`` (bar on a terminal, else log).

    Returns
    -------
    SweepResult; failed tasks do not raise (see ``SweepResult.failed``).
    """
    if executor not in ("local", "dask"):
        raise TracebenchError(f"--executor must be local or dask, not {executor!r}")
    if scheduler is not None and executor != "dask":
        raise TracebenchError("--scheduler needs --executor dask")
    if workers is not None and workers < 1:
        raise TracebenchError(f"--workers must be >= 1, not {workers}")
    if executor == "dask":  # before anything is written
        from tracebench.sweep.dask import require_distributed

        require_distributed()
    if isinstance(grid, Grid):
        g = grid
    elif isinstance(grid, Mapping):
        g = grid_from_mapping(grid)
    else:
        g = load_grid(grid)
    chosen = resolve_backends(list(backends) if backends else None)
    plan = plan_sweep(read_traces(expand_traces(traces)), chosen, g, profile, events)
    root = Path(out)
    _prepare(root, plan, force)
    with _locked(root):
        shutil.rmtree(root / STAGING, ignore_errors=True)  # what killed runs left
        for stale in root.glob(f".{SWEEP_JSON}.tmp-*"):
            stale.unlink(missing_ok=True)
        _write_json(root, plan, None)
        return _run(root, plan, executor, scheduler, workers, batch_size,
                    bool(scheduler) if gather is None else gather, progress)


def _prepare(root: Path, plan: Plan, force: bool) -> None:
    """Make ``root`` ready: new, or this same sweep to resume; else refuse (or clear)."""
    if root.exists() and not root.is_dir():
        raise TracebenchError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        old = _read_json(root)
        differs = _difference(old, plan.to_json()) if old is not None else "not a sweep dataset"
        if differs is not None:
            if not force:
                raise TracebenchError(f"{root}: {differs}; use another -o folder, or "
                                      "--force to replace it")
            aside = root.with_name(f".{root.name}.old-{os.getpid()}")
            root.rename(aside)  # one rename, then the slow delete
            shutil.rmtree(aside)
    root.mkdir(parents=True, exist_ok=True)


def _read_json(root: Path) -> dict | None:
    path = root / SWEEP_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise TracebenchError(f"{path}: unreadable ({exc})") from None


def _difference(old: dict, new: dict) -> str | None:
    """Which part of the plan differs from the one recorded (``None``: the same sweep)."""
    for key, what in (("traces", "traces or their content"), ("backends", "backends"),
                      ("grid", "grid"), ("profile", "profile"),
                      ("events", "per-event rows setting"), ("tasks", "task list")):
        was, now = old.get(key), new[key]
        if key == "grid":  # the same grid read from another path is the same sweep
            was, now = (was or {}).get("axes"), now["axes"]
        if was != now:
            return f"holds another sweep ({what} differ from {SWEEP_JSON})"
    return None


class _locked:
    """An exclusive lock on the dataset for the whole run (a second sweep is refused)."""

    def __init__(self, root: Path):
        self.path = root / LOCK

    def __enter__(self):
        self.fh = open(self.path, "a")  # noqa: SIM115 (held for the whole run)
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise TracebenchError(f"{self.path.parent}: another sweep is writing it") from None
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _write_json(root: Path, plan: Plan, last_run: dict | None) -> None:
    doc = {"tracebench_version": __version__, **plan.to_json(), "last_run": last_run}
    # rewritten on every run: --force-like, but only over a sweep.json a sweep wrote
    with atomic_path(root / SWEEP_JSON, force=True,
                     owned=mentions(b'"tracebench_version"')) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")


def _open_executor(stack, executor: str, scheduler: str | None, workers: int | None):
    if executor == "dask":
        from tracebench.sweep.dask import dask_executor

        return stack.enter_context(dask_executor(scheduler, workers))
    from tracebench.sweep.local import local_executor

    pool, n = local_executor(workers)
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    return pool, n, f"local pool of {n} processes"


def _run(root: Path, plan: Plan, executor: str, scheduler, workers, batch_size, gather: bool,
         progress) -> SweepResult:
    t0 = time.perf_counter()
    tables = result_tables(root)
    pending = [t for t in plan.tasks if not task_done(root, t, tables)]
    skipped = len(plan.tasks) - len(pending)
    failed: list[tuple[Task, str]] = []
    ran = 0
    cpu_s = 0.0
    where = executor
    status = "interrupted"
    with SweepProgress(len(pending), progress) as prog:
        if skipped:
            prog.say(f"{skipped} of {len(plan.tasks)} tasks already done in {root}: skipped")
        try:
            todo: list[list[Task]] = [pending] if pending else []  # batched once n is known
            for attempt in range(2):  # a second round on a fresh pool for lost batches
                if not todo:
                    break
                lost: list[list[Task]] = []
                with contextlib.ExitStack() as stack:
                    pool, n, where = _open_executor(stack, executor, scheduler, workers)
                    if attempt == 0:
                        prog.say(f"{len(pending)} tasks on {where}")
                        todo = batches(pending, n, batch_size, distinct_backends=plan.events)
                    jobs = [BatchJob(b, {t.backend: plan.backends[t.backend] for t in b},
                                     plan.profile, plan.events, None if gather else str(root))
                            for b in todo]
                    for result in _submit_all(pool, jobs, n * IN_FLIGHT_PER_WORKER):
                        if result.lost and attempt == 0:  # Dask reschedules on its own
                            lost.append([t for t, _ in result.failed])
                            continue
                        if result.files:
                            _write_gathered(root, result)
                        ran += len(result.done)
                        cpu_s += result.cpu_seconds
                        failed += result.failed
                        for task, reason in result.failed:
                            prog.say(f"task failed: {task.label()}: {reason}")
                        prog.advance(len(result.done), len(result.failed))
                # a lost batch may have committed some tasks before its worker died
                todo = [kept for b in lost
                        if (kept := [t for t in b if not task_done(root, t, tables)])]
                done_meanwhile = sum(len(b) for b in lost) - sum(len(b) for b in todo)
                ran += done_meanwhile
                prog.advance(done_meanwhile)
                if todo:
                    prog.say(f"a worker was lost: its {sum(len(b) for b in todo)} unfinished "
                             "tasks run again on a new pool")
            status = "failed" if failed else "complete"
        finally:
            seconds = time.perf_counter() - t0
            _write_json(root, plan, {
                "status": status, "executor": where, "seconds": round(seconds, 3),
                "tasks": len(plan.tasks), "skipped": skipped, "ran": ran,
                "worker_cpu_seconds": round(cpu_s, 3),
                "failed": [{**t.to_json(), "reason": r} for t, r in failed]})
            # what lost batches left (this run's workers are gone; a straggling Dask
            # worker's commit would fail, not land a partial file)
            shutil.rmtree(root / STAGING, ignore_errors=True)
    return SweepResult(root, len(plan.tasks), skipped, ran, failed, seconds, where, cpu_s)


def _submit_all(pool, jobs: list[BatchJob], window: int):
    """Yield each batch's result as it completes, at most ``window`` batches in flight;
    a batch lost with its worker (killed, out of memory) comes back as failed tasks."""
    queue = list(reversed(jobs))
    running: dict[Future, BatchJob] = {}
    try:
        while queue or running:
            while queue and len(running) < window:
                job = queue.pop()
                try:
                    running[pool.submit(run_batch, job)] = job
                except Exception as exc:  # a broken pool (a worker killed): nothing more runs
                    why = _lost(exc)
                    for j in [job, *queue]:
                        yield BatchResult([], [(t, why) for t in j.tasks], 0.0, "?", lost=True)
                    queue.clear()
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                try:
                    yield fut.result()
                except Exception as exc:  # the worker died or the batch could not travel
                    yield BatchResult([], [(t, _lost(exc)) for t in job.tasks], 0.0, "?",
                                      lost=True)
    finally:
        for fut in running:
            fut.cancel()


def _lost(exc: BaseException) -> str:
    return f"worker lost: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def _write_gathered(root: Path, result: BatchResult) -> None:
    """Files a worker sent back: written under staging, then renamed like a worker would."""
    import uuid

    staged = root / STAGING / f"client-{uuid.uuid4().hex[:12]}"
    try:
        for rel, blob in result.files.items():
            p = staged / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(blob)
        commit(staged, root)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
