"""A packed dataset read without tracebench (DuckDB, polars, pyarrow) gives stat's numbers;
the card's loading commands and the README's sharing commands run as written."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.dataset_helpers import make_inputs
from tracebench import dataset
from tracebench.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("load")
    inp = make_inputs(d)
    return dataset.pack([inp["res"], inp["res2"]], d / "ds", license="CC-BY-4.0")


def _clean_env() -> dict:
    """No path to this checkout: the subprocess can only import what is installed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env


def _run_plain(code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter that must finish without importing tracebench."""
    code += "\nimport sys\nassert not [m for m in sys.modules if m.startswith('tracebench')]\n"
    done = subprocess.run([sys.executable, "-I", "-c", code], cwd=cwd, capture_output=True,
                          text=True, env=_clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


STAT_DUCKDB = """
import duckdb, json
rows = duckdb.sql('''
    SELECT backend, reason, sum(count) AS samples, sum(total_ns) AS total_ns,
           min(min_ns) AS min_ns, max(max_ns) AS max_ns
    FROM read_parquet('exits/**/*.parquet', hive_partitioning = false)
    GROUP BY ALL ORDER BY ALL''').fetchall()
print(json.dumps(rows))
"""

STAT_POLARS = """
import polars as pl, json
rows = (pl.scan_parquet("exits/**/*.parquet", hive_partitioning=False)
        .group_by("backend", "reason")
        .agg(samples=pl.col("count").sum(), total_ns=pl.col("total_ns").sum(),
             min_ns=pl.col("min_ns").min(), max_ns=pl.col("max_ns").max())
        .sort("backend", "reason").collect().rows())
print(json.dumps(rows))
"""


@pytest.mark.parametrize("code", [STAT_DUCKDB, STAT_POLARS], ids=["duckdb", "polars"])
def test_same_numbers_as_stat_without_tracebench(packed, code):
    rows = json.loads(_run_plain(code, packed))
    out = runner.invoke(app, ["stat", str(packed), "-f", "json"])
    assert out.exit_code == 0, out.output
    # stat may print one group per trace and parameter set: add its rows up per
    # (backend, exit reason), which is what the plain query computes
    ours: dict[tuple, dict] = {}
    for r in json.loads(out.stdout):
        reason = r.get("event", r.get("reason"))
        if not r["samples"]:
            continue
        acc = ours.setdefault((r["backend"], reason), {"samples": 0, "total_us": 0.0,
                                                       "min_us": math.inf, "max_us": 0.0})
        acc["samples"] += r["samples"]
        acc["total_us"] += r["avg_us"] * r["samples"]
        acc["min_us"] = min(acc["min_us"], r["min_us"])
        acc["max_us"] = max(acc["max_us"], r["max_us"])
    assert len(rows) == len(ours) > 5
    for backend, reason, samples, total_ns, min_ns, max_ns in rows:
        s = ours[(backend, reason)]
        assert s["samples"] == samples
        assert s["min_us"] == pytest.approx(min_ns / 1000, rel=1e-12)
        assert s["max_us"] == pytest.approx(max_ns / 1000, rel=1e-12)
        assert s["total_us"] == pytest.approx(total_ns / 1000, rel=1e-9)


def test_summary_and_events_readable_without_tracebench(packed):
    code = """
import duckdb, json, polars as pl
s = pl.read_parquet("summary/**/*.parquet", hive_partitioning=False)
all_rows = s.filter(kind="all", metric="latency_ns")
ev = duckdb.sql('''
    SELECT backend, params, trace, count(*) FROM read_parquet('events/**/*.parquet',
        hive_partitioning = true,
        hive_types = {'backend': VARCHAR, 'params': VARCHAR, 'trace': VARCHAR})
    GROUP BY ALL ORDER BY ALL''').fetchall()
print(json.dumps({"summary": sorted(all_rows.select("backend", "params", "trace", "count")
                  .rows()), "events": ev}))
"""
    got = json.loads(_run_plain(code, packed))
    ev = {tuple(r[:3]): r[3] for r in got["events"]}
    assert ev
    for backend, params, trace, count in got["summary"]:
        if (backend, params, trace) in ev:  # res2 was replayed without per-event rows
            assert ev[(backend, params, trace)] == count


@pytest.fixture(scope="module")
def real_traces_only(tmp_path_factory):
    """The shipped real traces (an ingested and a recorded one), no results."""
    d = tmp_path_factory.mktemp("real")
    return dataset.pack([ROOT / "traces/fc-guest-mixed.parquet",
                         ROOT / "traces/local-guest-record.parquet"], d / "ds",
                        license="Apache-2.0")


@pytest.mark.parametrize("which", ["packed", "real_traces_only"])
def test_card_commands_run_as_written(which, request):
    ds = request.getfixturevalue(which)
    card = (ds / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 3  # polars, pyarrow, DuckDB
    for block in blocks:
        out = _run_plain(block, ds)
        assert out.strip()
    sh = re.findall(r"```sh\n(.*?)```", card, flags=re.S)[0]
    assert "sha256sum -c --quiet SHA256SUMS" in sh
    done = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=ds,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_card_says_how_each_real_trace_was_made(real_traces_only):
    card = (real_traces_only / "README.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| `fc-guest-mixed`"))
    assert "ingested from ftrace trace.txt (ftrace, 2291527 bytes, sha256 f2b9ad9219ba" in row
    assert "inside a virtual machine" in row and "clock `local`" in row
    row = next(line for line in card.splitlines()
               if line.startswith("| `local-guest-record`"))
    assert "recorded with `tracebench record` inside a virtual machine (Linux 6.18.44" in row
    assert "No replay results: traces only" in card
    assert "Firecracker-style microVM" in card  # the trace's own attribution, kept
    assert "exits/**" not in card  # no command for a table this dataset does not have


def _shim(bin_dir: Path) -> dict:
    """A ``tracebench`` on PATH that runs this checkout (as ``pip install .`` would)."""
    bin_dir.mkdir()
    exe = bin_dir / "tracebench"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; "
                   "from tracebench.cli import app; sys.argv[0] = \"tracebench\"; app()' "
                   "\"$@\"\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}


def test_readme_sharing_commands_round_trip(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Sharing datasets", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert commands, "the Sharing datasets section has no sh block"
    script = "set -eu\n" + "\n".join(commands)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, env=_shim(tmp_path / "bin"), timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert dataset.verify(tmp_path / "all").ok
    facts = dataset.info(tmp_path / "all")
    assert facts["dataset"]["parameter_sets"] >= 3
    assert "MSR_WRITE" in done.stdout or "HLT" in done.stdout  # stat printed its table
