"""The default executor: a pool of worker processes on this machine.

One thread per process: the kernels release the GIL, but a batch also decodes Parquet,
builds Arrow tables and writes files, much of it under the GIL, so processes scale where
threads stall (``scripts/bench_sweep.py`` measures both). Workers start with ``spawn`` (no
fork of a parent holding threads and numba state) and load the kernels once, in the
pool's initializer, before their first batch.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import Executor, ProcessPoolExecutor

from tracebench.sweep.worker import warm_up


def _init_worker(parent_pid: int) -> None:
    """Die with the sweep (a killed sweep must leave no worker committing files behind the
    next run's back), then load the kernels."""
    if os.getppid() != parent_pid:
        os._exit(1)
    with contextlib.suppress(OSError, AttributeError):  # Linux: PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
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
    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
    return pool, n
