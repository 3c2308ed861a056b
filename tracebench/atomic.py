"""Confined, write-then-rename outputs: no reader ever sees a half-written output, and
nothing but an output tracebench itself wrote is ever replaced.

Rules every writer gets from :func:`atomic_path` / :func:`atomic_dir`:

- the output's last component must name something (``-o .`` and ``-o a/b/..`` are refused)
  and must not be a symlink (a symlink is never followed for writing);
- it may not contain, or be, one of the command's inputs;
- an existing output is replaced only with ``force``, and only when tracebench wrote it:
  a folder carries the marker file :data:`MARKER` (JSON, ``{"kind": ...}``), a file is
  recognized by its owner test (a trace by the ``tracebench`` key in its Parquet footer);
- the new output is built under ``.NAME.tmp-PID-HEX`` beside it and swapped in with one
  ``renameat2(RENAME_EXCHANGE)`` (two renames where the filesystem lacks it);
- temporaries left by killed runs (``.NAME.tmp-PID-*`` whose PID is gone, and which carry
  the marker or are empty) are removed by the next run on the same output;
- an OS error while writing (read-only, full, permission, quota) becomes a one-line
  :class:`~tracebench.errors.TracebenchError` naming the path; the previous output stays.

Other writers (dataset pack, sweep, report) use :func:`atomic_dir` with their own ``kind``,
or :func:`write_marker` on a folder they build themselves inside :func:`atomic_path`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tracebench.errors import TracebenchError, UsageError

#: the file inside every folder tracebench writes that says it may be replaced by --force
MARKER = ".tracebench-output"
#: ``.NAME.tmp-PID-HEX8``: a temporary of NAME being built by process PID
_TMP_RE = r"^\.{name}\.(?:tmp|old)-(\d+)-[0-9a-f]{{8}}$"


# --------------------------------------------------------------------------- markers


def write_marker(folder: Path, kind: str, **extra) -> None:
    """Mark ``folder`` as a tracebench output of ``kind`` (``results``, ``dataset`` ...)."""
    from tracebench._version import __version__

    doc = {"kind": kind, "tracebench_version": __version__, "pid": os.getpid(), **extra}
    (Path(folder) / MARKER).write_text(json.dumps(doc, sort_keys=True) + "\n")


def read_marker(folder: Path) -> dict | None:
    """The marker of a folder tracebench wrote, or ``None`` (absent, symlink, unreadable)."""
    p = Path(folder) / MARKER
    try:
        if not stat.S_ISREG(p.lstat().st_mode) or p.lstat().st_size > 65536:
            return None
        doc = json.loads(p.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("kind"), str) else None


def is_tracebench_parquet(path: Path) -> bool:
    """True for a Parquet file whose footer has the ``tracebench`` metadata key."""
    import pyarrow.parquet as pq

    from tracebench.schema import METADATA_KEY

    try:
        meta = pq.read_metadata(path).metadata or {}
    except Exception:  # anything unreadable is, for this purpose, not ours
        return False
    return METADATA_KEY in meta


def mentions(signature: bytes, limit: int = 64 << 20) -> Callable[[Path], bool]:
    """An ``owned`` test for text outputs (HTML, Markdown, JSON, gzip JSON): the file holds
    ``signature``, a string only tracebench's writer puts there, in its first ``limit``
    bytes (decompressed for ``.gz``)."""

    def owned(path: Path) -> bool:
        import gzip

        try:
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rb") as fh:
                return signature in fh.read(limit)
        except (OSError, EOFError):
            return False

    return owned


# --------------------------------------------------------------------------- checks


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def os_error(exc: OSError, default: Path | str, tmp: Path | None = None) -> TracebenchError:
    """A one-line error for an OS failure: the path it hit and the system's words.

    A path inside the temporary ``tmp`` (or one of the output's hidden siblings) is named
    as the output ``default`` it stands for: the user never asked for ``.NAME.tmp-*``."""
    where = exc.filename if exc.filename is not None else default
    if tmp is not None:
        hidden = re.compile(_TMP_RE.format(name=re.escape(Path(default).name)))
        w = Path(os.fsdecode(where))
        if w == tmp or tmp in w.parents or hidden.match(w.name):
            where = default
    why = exc.strerror or _one_line(exc) or type(exc).__name__
    if exc.errno == errno.EDQUOT:
        why = "disk quota exceeded"
    return TracebenchError(f"{where}: cannot write ({why})")


def check_output_path(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output path that cannot safely be written: a usage error (exit 2)."""
    text = os.fspath(path)
    if not text:
        raise UsageError("output path is empty")
    if "\0" in text:
        raise UsageError(f"{text!r}: output path contains a NUL byte")
    last = text.rstrip("/").rsplit("/", 1)[-1] if text.rstrip("/") else ""
    if last in ("", ".", ".."):
        raise UsageError(f"{text}: output must name a new file or folder, not "
                         f"{'the root' if not last else repr(last)}")
    final = Path(text)
    if final.is_symlink():
        raise TracebenchError(f"{final}: output is a symlink; tracebench never writes through one "
                         "(give the real path)")
    out_abs = Path(os.path.abspath(final))
    for inp in inputs:
        in_abs = Path(os.path.abspath(inp))
        in_real = Path(os.path.realpath(inp))
        for cand in {in_abs, in_real}:
            if cand == out_abs or out_abs in cand.parents:
                raise UsageError(f"{final}: output would replace the input {inp}")
    return final


def _is_ours(final: Path, owned: Callable[[Path], bool] | None, kind: str | None) -> bool:
    st = final.lstat()
    if stat.S_ISDIR(st.st_mode):
        marker = read_marker(final)
        if marker is not None:
            return kind is None or marker["kind"] == kind
        return kind is None and owned is not None and owned(final)
    if stat.S_ISREG(st.st_mode):
        return kind is None and (owned or is_tracebench_parquet)(final)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(final: Path) -> list[Path]:
    """Remove temporaries of ``final`` left by runs that were killed; return them.

    Only ``.NAME.tmp-PID-HEX`` / ``.NAME.old-PID-HEX`` siblings whose PID is gone, that are
    files, empty folders, or folders with the tracebench marker, are touched."""
    parent = final.parent
    pattern = re.compile(_TMP_RE.format(name=re.escape(final.name)))
    removed = []
    try:
        siblings = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in siblings:
        m = pattern.match(entry.name)
        if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        p = Path(entry.path)
        try:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                if read_marker(p) is None and any(os.scandir(p)):
                    continue
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            continue
        removed.append(p)
    return removed


# --------------------------------------------------------------------------- swap

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _sibling(final: Path, what: str) -> Path:
    return final.with_name(f".{final.name}.{what}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


# --------------------------------------------------------------------------- writers


@contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False, *, kind: str | None = None,
                inputs: Iterable[str | os.PathLike] = (),
                owned: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success swap it into place.

    Parameters
    ----------
    path : the final output (file or folder).
    force : replace an existing output, if tracebench wrote it (see module docstring).
    kind : for folder outputs: the marker kind an existing output must carry; a folder the
        body builds gets a marker of this kind.
    inputs : paths the command reads; the output may not be one of them or contain one.
    owned : the test that an existing output without a marker is one tracebench wrote
        (files: default a Parquet file with tracebench metadata; folders: no default, a
        folder without the marker is refused). Formats with their own manifest (a packed
        dataset: every file listed) pass this instead of carrying the marker.

    An existing ``path`` is an error unless ``force``; on failure the temporary is removed.
    """
    final = check_output_path(path, inputs)
    exists = final.exists() or final.is_symlink()
    if exists and not force:
        raise TracebenchError(f"{final}: already exists (use --force to replace it)")
    if exists and not _is_ours(final, owned, kind):
        what = "folder" if final.is_dir() else "file"
        need = (f"no {MARKER} marker" + (f" of kind {kind!r}" if kind else "")
                if final.is_dir() else "not recognized as one")
        raise TracebenchError(f"{final}: this {what} is not a tracebench output ({need}); "
                              "--force only replaces tracebench's own outputs, remove it yourself")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, final.parent) from None
    if not final.parent.is_dir():
        raise TracebenchError(f"{final.parent}: not a folder")
    clean_stale(final)
    tmp = _sibling(final, "tmp")
    try:
        yield tmp
        if kind is not None and tmp.is_dir() and not tmp.is_symlink() and read_marker(tmp) is None:
            write_marker(tmp, kind)
        _commit(tmp, final, exists)
    except OSError as exc:
        _remove(tmp)
        raise os_error(exc, final, tmp) from None
    except BaseException:
        _remove(tmp)
        raise


def _commit(tmp: Path, final: Path, replace: bool) -> None:
    if not tmp.exists():
        raise TracebenchError(f"{final}: nothing was written")
    if not replace:
        os.rename(tmp, final)  # never over something that appeared meanwhile: see below
        return
    if tmp.is_dir() != final.is_dir():
        was, new = ("folder", "file") if final.is_dir() else ("file", "folder")
        raise TracebenchError(f"{final}: will not replace a {was} with a {new}")
    if _exchange(tmp, final):
        _remove(tmp)  # now holds the previous output
        return
    old = _sibling(final, "old")
    os.rename(final, old)
    os.rename(tmp, final)
    _remove(old)


@contextmanager
def atomic_dir(path: str | os.PathLike, kind: str, force: bool = False, *,
               inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """:func:`atomic_path` for a folder output: yields the temporary folder, created and
    already marked with ``kind``."""
    with atomic_path(path, force=force, kind=kind, inputs=inputs) as tmp:
        try:
            tmp.mkdir()
            write_marker(tmp, kind)
        except OSError as exc:
            raise os_error(exc, path) from None
        yield tmp


@contextmanager
def scratch_dir(beside: str | os.PathLike, kind: str = "scratch") -> Iterator[Path]:
    """A marked temporary folder named like a temporary of ``beside`` (same filesystem as
    the output, cleaned by :func:`clean_stale` if this process is killed), always removed
    when the block ends: working space, never an output."""
    final = check_output_path(beside)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(final)
        tmp = _sibling(final, "tmp")
        tmp.mkdir()
        write_marker(tmp, kind)
    except OSError as exc:
        raise os_error(exc, final.parent) from None
    try:
        yield tmp
    finally:
        _remove(tmp)
