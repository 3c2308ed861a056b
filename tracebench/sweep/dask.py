"""The Dask ``distributed`` executor: an existing cluster, or a LocalCluster here.

Installed with ``pip install 'tracebench[dask]'``. A worker plugin loads the kernels once
per worker process, also on workers that join later; tasks go through
``Client.get_executor()``, so the sweep code is the same as with the local pool. One
thread per worker process, for the reason given in ``local.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor

from tracebench.errors import TracebenchError

INSTALL_HINT = "pip install 'tracebench[dask]'"


def require_distributed():
    try:
        import distributed
    except ImportError:
        raise TracebenchError(f"--executor dask needs Dask distributed: {INSTALL_HINT}") \
            from None
    return distributed


def _plugin_class(distributed):
    class WarmUp(distributed.WorkerPlugin):
        """Load the compiled kernels when a worker starts, not in its first task."""

        idempotent = True

        def setup(self, worker) -> None:
            from tracebench.sweep.worker import warm_up

            warm_up()

    return WarmUp


@contextlib.contextmanager
def dask_executor(scheduler: str | None = None,
                  workers: int | None = None) -> Iterator[tuple[Executor, int, str]]:
    """Yield ``(executor, number of worker threads, description)``.

    ``scheduler``: address of a running ``dask scheduler`` (``tcp://host:8786``) to
    join; ``None`` starts a LocalCluster of ``workers`` processes on this machine.
    """
    distributed = require_distributed()
    from tracebench.sweep.local import default_workers

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            n = workers or default_workers()
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=40))
            client = stack.enter_context(distributed.Client(cluster))
            where = f"LocalCluster of {n} processes ({cluster.scheduler_address})"
        else:
            try:
                client = stack.enter_context(distributed.Client(scheduler, timeout="20s"))
            except (OSError, TimeoutError) as exc:
                raise TracebenchError(f"--scheduler {scheduler}: cannot connect "
                                      f"({' '.join(str(exc).split())[:160]})") from None
            where = f"Dask scheduler {scheduler}"
        client.register_plugin(_plugin_class(distributed)(), name="tracebench-warm-up")
        threads = sum(client.nthreads().values())
        if threads == 0:
            raise TracebenchError(f"{where}: no workers connected (start some with "
                                  f"`dask worker {scheduler or 'ADDRESS'}`)")
        yield client.get_executor(pure=False), threads, where
