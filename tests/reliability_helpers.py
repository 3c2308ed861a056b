"""Shared by the reliability tests: the real CLI (in-process and as a subprocess), the
one-line-error property, and small real filesystems (tmpfs) for disk failures."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracebench.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args):
    """Run the real typer app in-process."""
    return runner.invoke(app, [str(a) for a in args])


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli_cmd(*args) -> list[str]:
    """The argv of ``tracebench ARGS`` as a subprocess (``python -m tracebench``)."""
    return [sys.executable, "-m", "tracebench", *map(str, args)]


def run_cli(*args, timeout: float = 120, input: bytes | None = None,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli_cmd(*args), capture_output=True, timeout=timeout,
                          env=cli_env(), input=input, cwd=cwd)


def one_line_error(result, codes=(1, 2), *fragments: str) -> str:
    """The property every user mistake must have: exit 1 or 2, one line on stderr, no
    traceback. ``result``: a CliRunner result or a CompletedProcess."""
    if isinstance(result, subprocess.CompletedProcess):
        code = result.returncode
        err = result.stderr.decode(errors="replace").strip()
        out = err + result.stdout.decode(errors="replace")
    else:
        code, err, out = result.exit_code, result.stderr.strip(), result.output
    codes = (codes,) if isinstance(codes, int) else codes
    assert code in codes, f"exit {code}, expected {codes}: {out[-2000:]}"
    assert "Traceback" not in out, out[-3000:]
    assert err.startswith("tracebench: error:") or "Usage:" in err, err[-2000:]
    if err.startswith("tracebench: error:"):
        assert "\n" not in err, err
    for f in fragments:
        assert f in err, err
    return err


def temporaries(folder: Path) -> list[Path]:
    """Leftovers of atomic writes under ``folder`` (``.NAME.tmp-*`` / ``.NAME.old-*``)."""
    return [p for p in Path(folder).rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str = "1m", ro: bool = False) -> Iterator[Path]:
    """A real small tmpfs at ``where`` (root only): full at ``size``, or read-only."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a real tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tracebench-test", str(where)],
                       capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount(where: Path, opts: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{opts}", str(where)], check=True,
                   capture_output=True)
