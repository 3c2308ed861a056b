"""A sweep SIGKILLed part way and started again: no task twice, none missing, no debris."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

import tracebench
from tracebench.backends import resolve_backends
from tracebench.sweep.grid import load_grid
from tracebench.sweep.tasks import plan_sweep, read_traces, result_tables, task_done

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from tracebench.cli import app; app()", *args]


def _start(tmp_path: Path) -> tuple[list[Path], Path, Path, list[str], dict, subprocess.Popen]:
    """A 120-task sweep (3 traces x 40 points, 1 worker, 1 task a batch) running in a
    subprocess, once 10 tasks are done."""
    traces = [tracebench.synth("mixed-server", tmp_path / f"t{i}.parquet", n_cpus=2,
                               duration="20ms", seed=i) for i in range(3)]
    grid = tmp_path / "grid.toml"
    grid.write_text("[params]\nexit_roundtrip_cyc = { from = 500, to = 5000, num = 40 }\n")
    out = tmp_path / "sw"
    args = _cli("sweep", "-t", str(tmp_path / "t*.parquet"), "-b", "full-virt", "--grid",
                str(grid), "-o", str(out), "--workers", "1", "--batch", "1", "-f", "json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("summary/**/part-0.parquet"))) < 10:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.02)
    return traces, grid, out, args, env, proc


def test_killed_sweep_resumes_without_rerunning_or_leaving_debris(tmp_path):
    traces, grid, out, args, env, proc = _start(tmp_path)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)  # the sweep alone: its workers must not outlive it
    proc.communicate(timeout=60)  # EOF only once every worker holding its pipes is gone
    assert proc.returncode == -signal.SIGKILL
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, "a worker outlived the killed sweep"

    plan = plan_sweep(read_traces(sorted(traces)), resolve_backends(["full-virt"]),
                      load_grid(grid), None)
    assert len(plan.tasks) == 120
    done = [t for t in plan.tasks if task_done(out, t)]
    assert 10 <= len(done) < 120
    tables = result_tables(out)
    assert {"exits", "summary"} <= set(tables)
    stamps = {t.key: [(out / t.relpath(tb)).stat() for tb in tables] for t in done}

    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    row = json.loads(again.stdout)[0]
    assert (row["tasks"], row["skipped"], row["ran"], row["failed"]) == (
        120, len(done), 120 - len(done), 0)
    assert all(task_done(out, t) for t in plan.tasks)
    for t in done:  # finished before the kill: not written again (same file, same time)
        for tb, before in zip(tables, stamps[t.key], strict=True):
            now = (out / t.relpath(tb)).stat()
            assert (now.st_ino, now.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len([p for p in files if p.suffix == ".parquet"]) == len(tables) * 120
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or "staging" in p.name]
    assert {p.name for p in out.iterdir()} == {".sweep.lock", "configs", "sweep.json", *tables}


def test_a_killed_worker_is_replaced_and_its_tasks_run_again(tmp_path):
    traces, grid, out, args, env, proc = _start(tmp_path)
    server = next(p for p in psutil.Process(proc.pid).children(recursive=True)
                  if "forkserver" in " ".join(p.cmdline()))
    worker = server.children()[0]
    worker.send_signal(signal.SIGKILL)  # as the OOM killer would
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "a worker was lost: its " in stderr
    row = json.loads(stdout)[0]
    assert (row["ran"], row["failed"]) == (120, 0)
    plan = plan_sweep(read_traces(sorted(traces)), resolve_backends(["full-virt"]),
                      load_grid(grid), None)
    assert all(task_done(out, t) for t in plan.tasks)
    assert not (out / ".sweep-staging").exists()
