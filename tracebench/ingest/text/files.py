"""Reading a text trace in bounded chunks, with clear refusals for files that are not text."""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tracebench.errors import TraceError
from tracebench.jit import kernel

#: bytes read per chunk; memory stays a small multiple of this whatever the file size
CHUNK_BYTES = 32 << 20
#: a line longer than this is not a trace record (binary data, a joined file...)
MAX_LINE_BYTES = 1 << 16

_MAGIC = {
    b"PAR1": "is a Parquet file, not a text trace (a canonical trace is used as it is: "
    "`tracebench replay FILE`)",
    b"PERFILE2": "is a perf.data file; convert it first: `perf script -i FILE > FILE.txt`",
    b"\x17\x08\x44tracing": "is a trace-cmd trace.dat; convert it first: "
    "`trace-cmd report -i FILE > FILE.txt`",
    b"\xc1\x1f\xfc\xc1": "is a binary CTF (LTTng) stream; convert it with babeltrace2 first "
    "(CTF is not read directly)",
    b"/* CTF": "is CTF (LTTng) metadata; convert the trace with babeltrace2 first "
    "(CTF is not read directly)",
    b"\x1f\x8b": "is gzip-compressed; decompress it first",
    b"\x28\xb5\x2f\xfd": "is zstd-compressed; decompress it first",
}


def check_text_file(path: str | os.PathLike) -> Path:
    """Refuse, in one line, anything that is not a non-empty text trace file."""
    p = Path(path)
    if not p.exists():
        raise TraceError(f"{p}: no such file")
    if p.is_dir():
        raise TraceError(f"{p}: is a folder, expected a text trace file")
    if is_stream(p):
        raise TraceError(f"{p}: is a pipe or device; `tracebench ingest` reads pipes and "
                         "FIFOs itself (this reader needs a regular file)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise TraceError(f"{p}: cannot read ({exc.strerror})") from None
    if not head:
        raise TraceError(f"{p}: empty file (no trace records)")
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise TraceError(f"{p}: {what}")
    if b"\0" in head:
        raise TraceError(f"{p}: binary data (NUL bytes in the first 4 KiB), not a text trace")
    return p


#: bytes copied at a time from a pipe or FIFO (memory bound of spooling)
SPOOL_BLOCK = 1 << 20


def is_stream(path: str | os.PathLike) -> bool:
    """True for an input that can be read only once, in order: a pipe (``<(cmd)``,
    ``/dev/stdin``) or a FIFO. Other non-regular files are refused by :func:`spool`."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def spool(path: str | os.PathLike, folder: Path) -> Path:
    """Copy a pipe or FIFO, block by block (bounded memory), to ``folder / its name``.

    The text is read twice over (framing, and the hash/probe scan) and mapped, which a
    pipe cannot be; the copy is removed with ``folder`` when the ingest ends. A FIFO
    waits for its writer as ``cat`` does. Devices, sockets and terminals are refused.
    """
    src = Path(path)
    where = str(src)
    try:
        mode = os.stat(src).st_mode
    except OSError as exc:
        raise TraceError(f"{where}: cannot read ({exc.strerror})") from None
    if not stat.S_ISFIFO(mode):
        what = "a terminal" if os.path.realpath(src).startswith("/dev/tty") or (
            stat.S_ISCHR(mode) and _isatty(src)) else (
            "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise TraceError(f"{where}: is {what}, not a text trace file or pipe")
    dst = folder / (src.name or "stdin")
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            first = True
            while block := fin.read(SPOOL_BLOCK):
                if first and (b"\0" in block[:4096]):
                    raise TraceError(f"{where}: binary data (NUL bytes in the first 4 KiB), "
                                     "not a text trace")
                first = False
                fout.write(block)
    except OSError as exc:
        raise TraceError(f"{where}: cannot read ({exc.strerror or exc})") from None
    return dst


def _isatty(p: Path) -> bool:
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def head_lines(path: Path, n_bytes: int = 1 << 16) -> list[str]:
    """The first lines of a file, decoded leniently (for format detection)."""
    with open(path, "rb") as fh:
        raw = fh.read(n_bytes)
    lines = raw.decode("utf-8", "replace").splitlines()
    return lines[:-1] if len(raw) == n_bytes and len(lines) > 1 else lines


@kernel
def _last_newline(buf, lo, hi):
    for k in range(hi - 1, lo - 1, -1):
        if buf[k] == 10:
            return k
    return -1


@kernel
def _first_newline(buf, lo, hi):
    for k in range(lo, hi):
        if buf[k] == 10:
            return k
    return -1


@kernel
def _count_newlines(buf, lo, hi):
    c = 0
    for k in range(lo, hi):
        c += buf[k] == 10
    return c


class FileWindow:
    """Part of a file mapped read-only: ``arr[i]`` is byte ``offset + i`` of the file.

    Mapping instead of reading saves a copy of every byte (page-cache reads ran at
    ~2.5 GB/s here); each window is unmapped when dropped, so the pages of a file
    never all count in this process's resident memory at once.
    """

    def __init__(self, fh, lo: int, hi: int):
        self.offset = lo - lo % mmap.ALLOCATIONGRANULARITY
        self.end = hi
        self._mm = mmap.mmap(fh.fileno(), hi - self.offset, access=mmap.ACCESS_READ,
                             offset=self.offset)  # fmt: skip
        self.arr = np.frombuffer(self._mm, np.uint8)

    def close(self) -> None:
        self.arr = None
        with contextlib.suppress(BufferError):  # a view still alive: unmapped when it goes
            self._mm.close()


class ChunkReader:
    """Iterates newline-terminated pieces ``(window, lo, hi, first line number, is_last)``.

    A piece is bytes ``lo:hi`` of the file, seen through ``window.arr`` (indices minus
    ``window.offset``); the window is valid until the consumer asks for the next piece.
    Pieces are cut exactly where reading ``chunk_bytes`` at a time and cutting at the
    last newline would cut them (the reader before this one did that, and where a piece
    ends decides which relations a window finds). The consumer sets ``unused`` to the
    number of bytes at the end of a piece it did not take (a record header whose event
    line is in the next piece); they come again at the start of the next piece. It may
    set ``newlines`` to the newlines in the part it took (else they are counted here).
    A line longer than a whole chunk is streamed through, never held, and noted in
    ``long_lines`` as ``(line_no, n_bytes)`` for the consumer to report.
    """

    def __init__(self, path: Path, chunk_bytes: int = CHUNK_BYTES):
        self.path = path
        self.chunk_bytes = max(int(chunk_bytes), 256)
        self.size = path.stat().st_size
        self.line_no = 1
        self.unused = 0
        self.newlines: int | None = None
        self.ends_with_newline = True
        self.done = 0
        self.long_lines: list[tuple[int, int]] = []

    def _read(self, fh, lo: int, hi: int) -> tuple[FileWindow | None, int]:
        """Take the next ``chunk_bytes`` after ``hi``: (window over lo..new hi, bytes taken)."""
        got = min(self.chunk_bytes, self.size - hi)
        if hi + got == lo:
            return None, 0
        return FileWindow(fh, lo, hi + got), got

    def __iter__(self) -> Iterator[tuple[FileWindow, int, int, int, bool]]:
        lo = hi = 0  # file bytes lo..hi are read and not yet consumed ("pending")
        eof = False
        win = None
        with open(self.path, "rb") as fh:
            while True:
                if win is not None:
                    win.close()
                    win = None
                if not eof:
                    win, got = self._read(fh, lo, hi)
                    eof = got == 0
                    self.done += got
                    hi += got
                if lo == hi:
                    return
                if win is None:
                    win = FileWindow(fh, lo, hi)
                a, o = win.arr, win.offset
                if not eof:
                    nl = _last_newline(a, lo - o, hi - o)
                    if nl < 0:
                        if hi - lo > self.chunk_bytes:
                            win.close()
                            win = None
                            lo, hi, eof = self._skip_long(fh, lo, hi)
                        continue
                    cut = nl + o + 1
                else:
                    cut = hi
                    self.ends_with_newline = a[hi - 1 - o] == 10
                last = eof and cut == hi
                self.unused = 0
                self.newlines = None
                yield win, lo, cut, self.line_no, last
                used = cut - self.unused
                if self.newlines is None:
                    self.newlines = int(_count_newlines(a, lo - o, used - o))
                self.line_no += self.newlines
                lo = used
                if last:
                    win.close()
                    return

    def _skip_long(self, fh, lo: int, hi: int) -> tuple[int, int, bool]:
        """Stream through one over-long line starting at ``lo``; (lo, hi, eof) after it."""
        start = lo
        while True:
            win = FileWindow(fh, lo, hi)
            nl = _first_newline(win.arr, lo - win.offset, hi - win.offset)
            win.close()
            if nl >= 0:
                nl += win.offset
                self.long_lines.append((self.line_no, nl - start))
                self.line_no += 1
                return nl + 1, hi, False
            lo = hi
            got = min(self.chunk_bytes, self.size - hi)
            if not got:
                self.long_lines.append((self.line_no, hi - start))
                return hi, hi, True
            hi += got


def scan_file(path: Path, on_bytes, block: int = 16 << 20, overlap: int = 64, stop=None,
              ready=None):  # fmt: skip
    """Hex SHA-256 of a file, read through mapped windows (no copy; the GIL is released).

    ``on_bytes(array, lo, hi)`` also sees every byte, each window with the ``overlap``
    bytes before it (so a short pattern across two windows is seen whole). While
    ``ready()`` is false the blocks are only hashed and shown to ``on_bytes`` later
    (it is a numba kernel: its first call in a process waits for numba to set up,
    which another thread is doing; hashing meanwhile uses the idle core). Returns
    None when ``stop()`` turns true first.
    """
    h = hashlib.sha256()
    size = path.stat().st_size
    later: list[int] = []  # blocks hashed, not yet shown to on_bytes

    def show(lo: int) -> None:
        hi = min(lo + block, size)
        win = FileWindow(fh, max(lo - overlap, 0), hi)
        on_bytes(win.arr, max(lo - overlap, 0) - win.offset, hi - win.offset)
        win.close()

    with open(path, "rb") as fh:
        for lo in range(0, size, block):
            if stop is not None and stop():
                return None
            win = FileWindow(fh, lo, min(lo + block, size))
            h.update(win.arr)
            win.close()
            later.append(lo)
            if ready is None or ready():
                for lo2 in later:
                    show(lo2)
                later = []
        for lo2 in later:
            show(lo2)
    return h.hexdigest()
