"""The ``tracebench`` command line: one module per verb family, all on one typer app."""

from tracebench.cli import dataset as _dataset  # noqa: F401  (registers dataset ...)
from tracebench.cli import ingest as _ingest  # noqa: F401  (registers ingest, record)
from tracebench.cli import replay as _replay  # noqa: F401  (registers replay, backends)
from tracebench.cli import report as _report  # noqa: F401  (registers report, export)
from tracebench.cli import stat as _stat  # noqa: F401  (registers stat, compare)
from tracebench.cli import sweep as _sweep  # noqa: F401  (registers sweep)
from tracebench.cli import synth as _synth  # noqa: F401  (registers synth)
from tracebench.cli import validate as _validate  # noqa: F401  (registers calibrate, validate)
from tracebench.cli.common import app as app

__all__ = ["app"]
