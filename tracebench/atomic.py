"""Write-then-rename helpers so that no reader ever sees a half-written output."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tracebench.errors import TracebenchError


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (file or folder); rename it into place on success.

    An existing ``path`` is an error unless ``force``; on failure the temporary is removed.
    """
    final = Path(path)
    if final.exists() and not force:
        raise TracebenchError(f"{final}: already exists (use --force to overwrite)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final)
    try:
        yield tmp
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    if final.exists():
        # Move the old one aside first so the swap is two renames, not a slow delete.
        old = _temp_sibling(final)
        final.rename(old)
        tmp.rename(final)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        tmp.rename(final)
