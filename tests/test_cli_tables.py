"""Terminal output: tables fit the terminal (COLUMNS), are never wrapped into a pipe, user
text is printed as written (no markup), and ``--version``. Run through a real subprocess:
terminal detection is what is under test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracebench
from tracebench.scenarios import generate
from tracebench.trace import write_trace

ROOT = Path(__file__).resolve().parent.parent


def _run(*args, columns: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(ROOT)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    main = "from tracebench.cli import app; app(prog_name='tracebench')"
    return subprocess.run([sys.executable, "-c", main, *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    cols, meta = generate("mixed-server", n_cpus=2, duration_ns=10_000_000, seed=2)
    write_trace(d / "t.parquet", cols, meta)
    tracebench.replay([d / "t.parquet"], ["native", "full-virt", "kvm-pv", "apicv"],
                      out=d / "r", events=False)
    return d / "r"


def test_version():
    out = _run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"tracebench {tracebench.__version__}"


def test_help_prints_brackets_as_written():
    out = _run("replay", "--help", columns=200)
    assert out.returncode == 0
    assert "(top level or [params])" in " ".join(out.stdout.split())
    assert "pip install" not in out.stderr


@pytest.mark.parametrize("columns", [80, 120])
def test_tables_fit_the_terminal_width(folder, columns):
    for args in (["compare", str(folder)], ["stat", str(folder), "-b", "full-virt"]):
        out = _run(*args, columns=columns)
        assert out.returncode == 0, out.stderr
        widths = [len(line) for line in out.stdout.splitlines()]
        assert max(widths) <= columns, (args, max(widths))


def test_pipe_gets_unwrapped_rows(folder):
    out = _run("compare", str(folder))  # stdout is a pipe, no COLUMNS: nothing wraps
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if "overhead_pct" in ln]
    assert lines and all("full-virt" in ln or "kvm-pv" in ln or "apicv" in ln for ln in lines)
    header = next(ln for ln in out.stdout.splitlines() if "change_pct" in ln)
    assert all(h in header for h in ("trace", "backend", "kind", "metric", "ratio"))


def test_user_text_is_not_markup(folder, tmp_path):
    import shutil

    odd = tmp_path / "[bold]run"
    shutil.copytree(folder, odd)
    out = _run("compare", str(folder), str(odd), "-m", "p99_ns")
    assert out.returncode == 0, out.stderr
    assert "[bold]run" in out.stdout  # the title names B's folder as typed
