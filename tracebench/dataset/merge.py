"""``tracebench dataset merge``: two (or more) datasets into one.

Both must verify; then their union is packed. Identical duplicates (same trace, same
results file, same parameter set) are kept once; conflicts are refused with the reason:
one trace id with two digests, one parameter hash with two parameter sets, one
(table, backend, parameters, trace) with two different results, tables whose columns
differ (different results schema versions that cannot be upgraded to one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tracebench.dataset.pack import pack
from tracebench.dataset.safety import DatasetError


def merge(datasets: Sequence[str | os.PathLike], out: str | os.PathLike, *,
          license: str | None = None, title: str | None = None,
          description: str | None = None, force: bool = False) -> Path:
    """Merge dataset folders into ``out`` (atomically); see the module docstring.

    Without ``license`` the merged dataset carries every licence of its inputs.
    """
    if len(datasets) < 2:
        raise DatasetError("merge needs at least two datasets")
    for d in datasets:
        if not (Path(d) / "datapackage.json").is_file():
            raise DatasetError(f"{d}: not a dataset (no datapackage.json); `tracebench "
                               "dataset pack` makes one from results folders and traces")
    title = title or " + ".join(Path(d).name for d in datasets)
    return pack(list(datasets), out, license=license, title=title, description=description,
                force=force)
