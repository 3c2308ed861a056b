"""Shareable datasets: packed, verifiable, self-describing traces and results.

A dataset is a results folder (``replay -o``) with ``traces/``, a Frictionless
``datapackage.json``, ``SHA256SUMS``, per-table ``_common_metadata`` and a ``README.md``
card at its top; polars, pyarrow and DuckDB read it without tracebench. Opening one is
safe: it is data only (see :mod:`tracebench.dataset.safety`).

>>> from tracebench import dataset
>>> dataset.pack(["res", "t.parquet"], "ds", license="CC-BY-4.0")
>>> dataset.verify("ds").ok
True
>>> dataset.info("ds")["traces"]
"""

from tracebench.dataset.info import info
from tracebench.dataset.merge import merge
from tracebench.dataset.pack import pack
from tracebench.dataset.safety import DatasetError
from tracebench.dataset.verify import Problem, Verification, verify

__all__ = ["pack", "verify", "info", "merge", "DatasetError", "Problem", "Verification"]
