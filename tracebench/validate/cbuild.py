"""Compile the calibration loops (small C) at first use and cache them by source hash.

Timing a CPUID exit or a clock read from Python would measure the interpreter, so
the loops are C, compiled with the system compiler the first time they are needed
and kept under ``$XDG_CACHE_HOME/tracebench`` (or ``~/.cache/tracebench``) in a folder
named by the sha256 of the source and the compiler flags: an edited source or a
different compiler gets a fresh binary, an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import uuid
from importlib import resources
from pathlib import Path

from tracebench.errors import TracebenchError

CFLAGS = ("-O2", "-pthread", "-std=gnu11")
COMPILERS = ("cc", "gcc", "clang")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tracebench"


def find_compiler() -> str:
    """``$CC`` if set, else the first of cc/gcc/clang on PATH; a one-line error if none."""
    cc = os.environ.get("CC")
    if cc:
        path = shutil.which(cc)
        if path is None:
            raise TracebenchError(f"CC={cc!r} is not an executable on PATH: tracebench "
                                  "calibrate compiles its C loops with it")
        return path
    for name in COMPILERS:
        path = shutil.which(name)
        if path:
            return path
    raise TracebenchError("no C compiler found (cc, gcc or clang; or set CC): tracebench "
                          "calibrate compiles small C loops at first use; install one, e.g. "
                          "`apt-get install gcc`")


def source_text(name: str) -> bytes:
    return resources.files("tracebench.validate").joinpath("csrc", name).read_bytes()


def binary(name: str, say=None) -> Path:
    """The compiled program for ``csrc/NAME`` (``calib.c`` -> ``calib``), built if needed.

    Parameters
    ----------
    name : C source file name under ``tracebench/validate/csrc``.
    say : called with a one-line message when a compile happens (default: stderr).
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        raise TracebenchError(f"tracebench calibrate measures x86-64 (CPUID, RDTSC); this "
                              f"machine is {platform.machine()}")
    src = source_text(name)
    cc = find_compiler()
    key = hashlib.sha256(src + b"\0" + " ".join(CFLAGS).encode() + b"\0"
                         + os.path.basename(cc).encode()).hexdigest()[:16]
    out_dir = cache_root() / f"{Path(name).stem}-{key}"
    exe = out_dir / Path(name).stem
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    say = say or (lambda text: print(f"tracebench: {text}", file=sys.stderr, flush=True))
    say(f"compiling {name} with {cc} (first run only; cached in {out_dir})")
    out_dir.mkdir(parents=True, exist_ok=True)
    src_path = out_dir / name
    src_path.write_bytes(src)
    tmp = out_dir / f".{exe.name}.tmp-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(src_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln),
                     proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else "")
        raise TracebenchError(f"{cc} could not compile {name}: {first.strip()[:200]}")
    tmp.rename(exe)  # atomic: a concurrent first run sees the old absence or the whole file
    return exe
