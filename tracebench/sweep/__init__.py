"""Sweeps: parameter grids over traces x backends, on a local process pool or Dask.

Data flow: ``grid.py`` (TOML -> parameter points) -> ``tasks.py`` (plan: one task per
trace x backend x distinct parameter set; batches of one trace; which tasks are done) ->
``local.py`` / ``dask.py`` (executors) -> ``worker.py`` (replay a batch through the
replayer's writer into staging, rename into place) -> ``run.py`` (orchestration,
``sweep.json``, resume), with ``progress.py`` on stderr.

>>> from tracebench.sweep import sweep
>>> res = sweep(["traces/*.parquet"], ["full-virt", "apicv"], "grid.toml", "sweep-out")
>>> res.ok, res.ran, res.skipped
"""

from tracebench.sweep.grid import Grid as Grid
from tracebench.sweep.grid import load_grid as load_grid
from tracebench.sweep.run import SweepResult as SweepResult
from tracebench.sweep.run import sweep as sweep

__all__ = ["Grid", "SweepResult", "load_grid", "sweep"]
