"""The default executor: a pool of worker processes on this machine.

One thread per process: the kernels release the GIL, but a batch also decodes Parquet,
builds Arrow tables, encodes histograms and writes files, much of it under the GIL, so
processes scale where threads stall (``scripts/bench_sweep.py`` measures both).

Workers are forked from a ``forkserver`` that has loaded the kernels once
(``_preload.py``): each worker starts warm in milliseconds, and none is forked from the
caller, whose threads (a progress bar, polars' or Arrow's pools) make ``fork`` unsafe.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor

from tracebench.sweep.worker import warm_up

#: imported by the fork server before it forks any worker
PRELOAD = ["tracebench.sweep._preload"]


def _watch(sweep_pid: int) -> None:
    """Exit the moment the sweep process is gone. A pool worker never notices on its own
    (it holds both ends of its task queue), and the fork server outlives the sweep while
    any worker lives, so a killed sweep would leave workers committing files behind the
    next run's back."""
    try:
        fd = os.pidfd_open(sweep_pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd (not Linux 5.3+): poll
        while True:
            time.sleep(0.5)
            try:
                os.kill(sweep_pid, 0)
            except ProcessLookupError:
                os._exit(1)
    select.select([fd], [], [])  # readable when the process has exited
    os._exit(1)


def _init_worker(sweep_pid: int) -> None:
    """Start the watchdog, then make sure the kernels are loaded (already done in the
    fork server unless its preload failed)."""
    threading.Thread(target=_watch, args=(sweep_pid,), name="tracebench-sweep-watch",
                     daemon=True).start()
    warm_up()


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def local_executor(workers: int | None = None) -> tuple[Executor, int]:
    """A process pool of ``workers`` (default: one per CPU) and its size."""
    n = workers or default_workers()
    try:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
    except ValueError:  # no fork server on this platform
        ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                               initargs=(os.getpid(),))
    return pool, n
