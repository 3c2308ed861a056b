"""Reading a text trace in bounded chunks, with clear refusals for files that are not text."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tracebench.errors import TraceError

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
    with open(p, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise TraceError(f"{p}: empty file (no trace records)")
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise TraceError(f"{p}: {what}")
    if b"\0" in head:
        raise TraceError(f"{p}: binary data (NUL bytes in the first 4 KiB), not a text trace")
    return p


def head_lines(path: Path, n_bytes: int = 1 << 16) -> list[str]:
    """The first lines of a file, decoded leniently (for format detection)."""
    with open(path, "rb") as fh:
        raw = fh.read(n_bytes)
    lines = raw.decode("utf-8", "replace").splitlines()
    return lines[:-1] if len(raw) == n_bytes and len(lines) > 1 else lines


def contains(path: Path, needles: list[bytes]) -> set[bytes]:
    """Which of ``needles`` occur anywhere in the file (memchr-speed scan, no decoding)."""
    found = set()
    if path.stat().st_size == 0:
        return found
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for nd in needles:
            if mm.find(nd) >= 0:
                found.add(nd)
    return found


class ChunkReader:
    """Iterates newline-terminated pieces ``(uint8 array, first line number, is_last)``.

    The consumer sets ``unused`` to the number of bytes at the end of a piece it did
    not take (a record header whose event line is in the next piece); they come
    again at the start of the next piece. A line longer than a whole chunk is
    streamed through, never held, and reported to ``on_long_line(line_no, n_bytes)``.
    """

    def __init__(
        self, path: Path, chunk_bytes: int = CHUNK_BYTES, on_long_line=None, progress=None
    ):
        self.path = path
        self.chunk_bytes = max(int(chunk_bytes), 256)
        self.on_long_line = on_long_line
        self.progress = progress
        self.size = path.stat().st_size
        self.line_no = 1
        self.unused = 0
        self.ends_with_newline = True

    def __iter__(self) -> Iterator[tuple[np.ndarray, int, bool]]:
        done = 0
        pending = b""
        eof = False
        with open(self.path, "rb") as fh:
            while True:
                if not eof:
                    data = fh.read(self.chunk_bytes)
                    eof = not data
                    done += len(data)
                    pending += data
                if not pending:
                    return
                if not eof:
                    nl = pending.rfind(b"\n")
                    if nl < 0:
                        if len(pending) > self.chunk_bytes:
                            pending = self._skip_long(fh, pending)
                            eof = pending is None
                            pending = pending or b""
                        continue
                    piece, rest = pending[: nl + 1], pending[nl + 1 :]
                else:
                    piece, rest = pending, b""
                    self.ends_with_newline = piece.endswith(b"\n")
                last = eof and not rest
                self.unused = 0
                yield np.frombuffer(piece, dtype=np.uint8), self.line_no, last
                used = len(piece) - self.unused
                self.line_no += piece.count(b"\n", 0, used)
                pending = piece[used:] + rest
                if self.progress is not None:
                    self.progress(done, self.size)
                if last:
                    return

    def _skip_long(self, fh, buf: bytes) -> bytes | None:
        """Stream through one over-long line; return what follows its newline (None at EOF)."""
        n = 0
        while True:
            nl = buf.find(b"\n")
            if nl >= 0:
                if self.on_long_line is not None:
                    self.on_long_line(self.line_no, n + nl)
                self.line_no += 1
                return buf[nl + 1 :]
            n += len(buf)
            buf = fh.read(self.chunk_bytes)
            if not buf:
                if self.on_long_line is not None:
                    self.on_long_line(self.line_no, n)
                return None
