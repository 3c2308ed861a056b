"""Sweeps: grid schema, planning, results equal to plain replays, resume, failures, CLI."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import tracebench
from tracebench.backends import resolve_backends
from tracebench.cli import app
from tracebench.errors import ParamError
from tracebench.schema import METADATA_KEY
from tracebench.sweep import sweep
from tracebench.sweep.grid import grid_from_mapping
from tracebench.sweep.tasks import batches, plan_sweep, read_traces, result_tables, task_done
from tracebench.trace import TraceFile

runner = CliRunner()


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("traces")
    out = []
    for name, scenario, seed in (("a", "timer-heavy", 1), ("b", "ipi-storm", 2)):
        out.append(tracebench.synth(scenario, d / f"{name}.parquet", n_cpus=2,
                                    duration="20ms", seed=seed))
    return out


GRID = {"params": {"exit_roundtrip_cyc": [800, 1530, 3000],
                   "timer_expiry_cyc": {"from": 300, "to": 900, "num": 2}}}


def write_grid(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------ grid schema


def test_grid_lists_ranges_zip_cross_in_file_order():
    g = grid_from_mapping({
        "params": {"a_cyc": [1, 2], "b_cyc": {"from": 10, "to": 1000, "num": 3, "scale": "log"},
                   "c_cyc": {"from": 0.1, "to": 0.3, "step": 0.1}},
        "zip": [{"d_cyc": [5, 6], "e_cyc": {"from": 7, "to": 8, "num": 2}}]})
    assert g.axes[1].rows == ((10.0,), (100.0,), (1000.0,))
    assert g.axes[2].rows == ((0.1,), (0.2,), (0.3,))  # no 0.30000000000000004
    assert len(g) == 2 * 3 * 3 * 2
    pts = g.points()
    assert pts[0] == {"a_cyc": 1, "b_cyc": 10, "c_cyc": 0.1, "d_cyc": 5, "e_cyc": 7}
    assert pts[1] == {**pts[0], "d_cyc": 6, "e_cyc": 8}  # the last axis moves fastest
    assert pts[-1] == {"a_cyc": 2, "b_cyc": 1000, "c_cyc": 0.3, "d_cyc": 6, "e_cyc": 8}
    assert len({tuple(p.items()) for p in pts}) == len(pts)


@pytest.mark.parametrize("data, message", [
    ({"params": {"x": []}}, "params.x: empty list"),
    ({"params": {"x": ["a"]}}, "params.x[0]: expected a number"),
    ({"params": {"x": {"from": 1, "to": 2}}}, "exactly one of 'num' and 'step'"),
    ({"params": {"x": {"from": 0, "to": 2, "num": 3, "scale": "log"}}}, "from > 0"),
    ({"params": {"x": {"from": 1, "to": 2, "num": 2, "size": 3}}}, "unknown range key 'size'"),
    ({"params": {"x": [1]}, "zip": [{"x": [2]}]}, "zip[0].x: parameter 'x' is already"),
    ({"zip": [{"x": [1, 2], "y": [1]}]}, "x has 2, y has 1"),
    ({"axes": {}}, "unknown key 'axes'"),
    ({}, "no parameters to sweep"),
])
def test_grid_errors_name_the_key(data, message):
    with pytest.raises(ParamError, match="^g.toml: .*" + message.replace("[", r"\[")
                       .replace("]", r"\]").replace("(", r"\(")):
        grid_from_mapping(data, "g.toml")


def test_plan_merges_points_a_backend_does_not_read(traces):
    chosen = resolve_backends(["full-virt", "native"])
    plan = plan_sweep(read_traces(traces), chosen, grid_from_mapping(GRID), None)
    per = {(t.trace.id, t.backend): [] for t in plan.tasks}
    for t in plan.tasks:
        per[t.trace.id, t.backend].append(t)
    # full-virt reads both swept costs; bare metal reads neither: one task stands for 6 points
    assert [len(v) for k, v in per.items() if k[1] == "full-virt"] == [6, 6]
    assert [len(v) for k, v in per.items() if k[1] == "native"] == [1, 1]
    assert [t.points for t in per["a", "native"]] == [tuple(range(6))]
    assert len({t.key for t in plan.tasks}) == len(plan.tasks) == 14
    bs = batches(plan.tasks, workers=2, size=4)
    assert sorted(t.key for b in bs for t in b) == sorted(t.key for t in plan.tasks)
    assert all(len({t.trace.id for t in b}) == 1 and len(b) <= 4 for b in bs)
    for b in batches(plan.tasks, workers=2, distinct_backends=True):
        assert len({t.backend for t in b}) == len(b)


# ------------------------------------------------------------------ running


def summary_of(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "summary", hive_partitioning=False).drop("hdr")


def test_cli_sweep_equals_plain_replays_and_resumes(traces, tmp_path):
    grid = write_grid(tmp_path / "grid.toml", """
[params]
exit_roundtrip_cyc = [800, 1530, 3000]
timer_expiry_cyc = { from = 300, to = 900, num = 2 }
""")
    out = tmp_path / "sw"
    args = ["sweep", "--traces", str(traces[0].parent / "*.parquet"), "-b", "full-virt",
            "-b", "apicv", "--grid", str(grid), "-o", str(out), "--workers", "2", "-f", "json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)[0]
    assert (row["tasks"], row["ran"], row["skipped"], row["failed"]) == (24, 24, 0, 0)
    # not a terminal: plain progress lines on stderr, the last one complete
    assert "tracebench: sweep: 24/24 tasks, " in res.stderr
    doc = json.loads((out / "sweep.json").read_text())
    assert [t["sha256"] for t in doc["traces"]] == [TraceFile(t).sha256() for t in traces]
    assert len(doc["tasks"]) == 24 and doc["last_run"]["status"] == "complete"

    # every task's summary equals a plain replay with the same overrides
    got = summary_of(out)
    for task in doc["tasks"][::5]:
        trace = next(t for t in traces if t.stem == task["trace"])
        ref = tracebench.replay([trace], [task["backend"]], params=task["values"],
                                events=False).summary.drop("hdr")
        mine = got.filter(pl.col("params") == task["params"], pl.col("trace") == task["trace"],
                          pl.col("backend") == task["backend"])
        assert mine.sort("kind", "metric").equals(ref.sort("kind", "metric"))
    # readers take a sweep like any dataset
    assert runner.invoke(app, ["stat", str(out), "-f", "json"]).exit_code == 0
    import duckdb

    n = duckdb.sql(f"select count(distinct params) from read_parquet('{out}/summary/**/*.parquet',"
                   " hive_partitioning=true) where backend = 'full-virt'").fetchall()[0][0]
    assert n == 6
    some = next((out / "exits").rglob("*.parquet"))
    meta = json.loads(pq.read_metadata(some).metadata[METADATA_KEY])
    assert some.parent.parent.name == f"params={meta['params_sha256'][:12]}"

    # the same command again: everything verifies, nothing runs
    res = runner.invoke(app, args)
    assert json.loads(res.stdout)[0]["skipped"] == 24 and json.loads(res.stdout)[0]["ran"] == 0
    # a lost file, a truncated file and a leftover staging folder: only two tasks run again
    files = sorted((out / "summary").rglob("part-0.parquet"))
    files[0].unlink()
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])
    (out / ".sweep-staging" / "host-1-dead").mkdir(parents=True)
    (out / ".sweep-staging" / "host-1-dead" / "x.parquet").write_bytes(b"partial")
    res = runner.invoke(app, args)
    row = json.loads(res.stdout)[0]
    assert (row["ran"], row["skipped"]) == (2, 22), res.output
    assert not (out / ".sweep-staging").exists()
    assert summary_of(out).sort(pl.all()).equals(got.sort(pl.all()))


def test_another_sweep_into_the_folder_is_refused(traces, tmp_path):
    out = tmp_path / "sw"
    sweep(traces[:1], ["native"], {"params": {"native_irq_entry_cyc": [300, 400]}}, out,
          workers=1)
    res = runner.invoke(app, ["sweep", "-t", str(traces[1]), "-b", "native", "--grid",
                              str(write_grid(tmp_path / "g.toml", "[params]\ntsc_ghz=[2, 3]\n")),
                              "-o", str(out)])
    assert res.exit_code == 1
    assert "holds another sweep (traces or their content differ" in res.stderr
    res = runner.invoke(app, ["sweep", "-t", str(traces[1]), "-b", "native", "--grid",
                              str(tmp_path / "g.toml"), "-o", str(out), "--force", "-q"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in (out / "summary" / "backend=native").iterdir()} == {
        f"params={t['params']}" for t in json.loads((out / "sweep.json").read_text())["tasks"]}


def test_failing_task_does_not_stop_the_others(traces, tmp_path):
    # a trace whose footer is sound but whose rows are not sorted: found at replay time
    cols, meta = tracebench.read_trace(traces[0])
    cols["ts_ns"] = cols["ts_ns"][::-1].copy()
    from tracebench.trace import columns_to_table

    bad = tmp_path / "bad.parquet"
    pq.write_table(columns_to_table(cols, meta), bad)
    out = tmp_path / "sw"
    grid = write_grid(tmp_path / "g.toml", "[params]\nexit_roundtrip_cyc=[900, 1800]\n")
    res = runner.invoke(app, ["sweep", "-t", str(bad), "-t", str(traces[1]), "-b", "full-virt",
                              "--grid", str(grid),
                              "-o", str(out), "-f", "json", "-q", "--workers", "1"])
    assert res.exit_code == 1
    row = json.loads(res.stdout)[0]
    assert (row["ran"], row["failed"]) == (2, 2)
    assert {f["trace"] for f in row["failures"]} == {"bad"}
    assert {f["values"]["exit_roundtrip_cyc"] for f in row["failures"]} == {900.0, 1800.0}
    assert "bad x full-virt (exit_roundtrip_cyc=900): " in res.stderr
    assert "timestamps not sorted" in res.stderr
    assert "2 of 4 tasks failed" in res.stderr
    failed = json.loads((out / "sweep.json").read_text())["last_run"]["failed"]
    assert len(failed) == 2 and all("not sorted" in f["reason"] for f in failed)
    assert len(list((out / "summary").rglob("*.parquet"))) == 2


@pytest.mark.parametrize("args, code, message", [
    (["--grid", "G", "-o", "O"], 2, "no trace given"),
    (["-t", "T"], 2, "needs --grid and -o"),
    (["-t", "nothing-*.parquet", "--grid", "G", "-o", "O"], 1, "matches no file"),
    (["-t", "T", "--grid", "G", "-o", "O", "--scheduler", "tcp://x:1"], 1,
     "--scheduler needs --executor dask"),
    (["-t", "T", "--grid", "BADNAME", "-o", "O"], 2,  # a usage error
     "unknown parameter 'exit_rountrip_cyc' for the selected backends; valid: "),
    (["--summary", "O"], 1, "not a sweep dataset"),
])
def test_cli_errors_are_one_line(traces, tmp_path, args, code, message):
    grid = write_grid(tmp_path / "g.toml", "[params]\nexit_roundtrip_cyc=[1000]\n")
    badname = write_grid(tmp_path / "b.toml", "[params]\nexit_rountrip_cyc=[1000]\n")
    (tmp_path / "O").mkdir()
    (tmp_path / "O" / "summary").mkdir()
    subst = {"G": str(grid), "O": str(tmp_path / "O"), "T": str(traces[0]),
             "BADNAME": str(badname)}
    res = runner.invoke(app, ["sweep", *[subst.get(a, a) for a in args], "-b", "full-virt"])
    assert res.exit_code == code, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output


def test_sensitivity_ranks_the_cost_that_moves_the_result(traces, tmp_path):
    out = tmp_path / "sw"
    grid = {"params": {"exit_roundtrip_cyc": [500, 1500, 4500]},
            "zip": [{"native_irq_entry_cyc": [300, 350], "tsc_read_cyc": [20, 30]}]}
    sweep(traces, ["full-virt", "native"], grid, out, workers=1)
    from tracebench.report.sensitivity import sensitivity

    s = sensitivity(out)
    over = s.ranking.filter(pl.col("metric") == "overhead_pct")
    assert over["param"][0] == "exit_roundtrip_cyc" and over["rank"][0] == 1
    assert over.filter(pl.col("param") == "exit_roundtrip_cyc")["spread_pct"][0] > 10
    # full-virt's overhead grows with the exit cost, averaged over the other axis
    eff = s.effects.filter(pl.col("param") == "exit_roundtrip_cyc",
                           pl.col("metric") == "overhead_pct", pl.col("backend") == "full-virt")
    for _, part in eff.group_by("trace"):
        means = part.sort("value")["mean"].to_list()
        assert means == sorted(means) and means[0] < means[-1]
    assert "native" not in eff["backend"].to_list()  # bare metal reads no exit cost
    zipped = s.ranking.filter(pl.col("param") == "tsc_read_cyc")["axis"].unique().to_list()
    assert zipped == ["native_irq_entry_cyc+tsc_read_cyc"]
    charts = s.charts()
    assert set(charts) == {"exit_roundtrip_cyc", "native_irq_entry_cyc", "tsc_read_cyc"}
    assert charts["exit_roundtrip_cyc"]["$schema"].startswith("https://vega.github.io/schema")
    res = runner.invoke(app, ["sweep", "--summary", str(out), "-f", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["metric"] for r in rows} >= {"overhead_pct", "irq_p99_us", "exits_per_s"}
    assert all(r["spread_pct"] is None or math.isfinite(r["spread_pct"]) for r in rows)

    # a packed dataset drops sweep.json: the swept values come from configs/ instead
    packed = tmp_path / "packed"
    res = runner.invoke(app, ["dataset", "pack", str(out), "-o", str(packed), "--license",
                              "CC-BY-4.0"])
    assert res.exit_code == 0, res.output
    assert not (packed / "sweep.json").exists()
    key = ["metric", "param", "spread_pct"]
    assert sensitivity(packed).ranking.select(key).sort(key).equals(s.ranking.select(key)
                                                                        .sort(key))

    # tracebench report --sensitivity: the ranking and one chart per parameter, offline
    page = tmp_path / "sens.html"
    res = runner.invoke(app, ["report", "--sensitivity", str(out), "-o", str(page)])
    assert res.exit_code == 0, res.output
    from tests.browser import render

    dom, log = render(page, tmp_path)
    assert 'data-charts-rendered="3"' in dom and 'data-charts-failed="0"' in dom, log[-2000:]
    assert dom.count('class="mark-line') >= 3 and "exit_roundtrip_cyc" in dom
    assert "net::ERR" not in log


def test_dask_local_cluster_gives_the_local_pools_bytes(traces, tmp_path):
    pytest.importorskip("distributed")
    grid = {"params": {"exit_roundtrip_cyc": [900, 2700], "inject_cyc": [300, 500]}}
    backends = ["full-virt", "apicv", "xen-evtchn", "native"]
    local = sweep(traces, backends, grid, tmp_path / "local", workers=2, batch_size=3)
    remote = sweep(traces, backends, grid, tmp_path / "dask", executor="dask", workers=2,
                   batch_size=2)
    assert local.ok and remote.ok and local.ran == remote.ran == local.total
    assert remote.executor.startswith("LocalCluster of 2 processes")
    names = sorted(str(p.relative_to(tmp_path / "local"))
                   for p in (tmp_path / "local").rglob("*") if p.is_file()
                   and p.name not in ("sweep.json", ".sweep.lock"))
    tables = result_tables(tmp_path / "local")
    assert {"exits", "summary"} <= set(tables)
    tasks = json.loads((tmp_path / "local" / "sweep.json").read_text())["tasks"]
    assert len(names) == len(tables) * local.total + len({(t["backend"], t["params"])
                                                           for t in tasks})
    for rel in names:
        local_bytes = (tmp_path / "local" / rel).read_bytes()
        assert (tmp_path / "dask" / rel).read_bytes() == local_bytes, rel
    # the client writes what workers send back when they do not share the folder
    gathered = sweep(traces, backends, grid, tmp_path / "gathered", executor="dask",
                     workers=2, gather=True)
    assert gathered.ok
    for rel in names:
        assert (tmp_path / "gathered" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes()
    assert all(task_done(tmp_path / "gathered", t) for t in plan_sweep(
        read_traces(traces), resolve_backends(backends), grid_from_mapping(grid), None).tasks)
    assert sorted(os.listdir(tmp_path / "gathered")) == sorted(
        [".sweep.lock", "configs", "sweep.json", *tables])  # no staging left


def test_dask_missing_says_how_to_install_it(traces, tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['distributed'] = None; "  # as if not installed
            "from tracebench.cli import app; app()")
    grid = write_grid(tmp_path / "g.toml", "[params]\nexit_roundtrip_cyc=[1000]\n")
    res = subprocess.run([sys.executable, "-c", code, "sweep", "-t", str(traces[0]), "-b",
                          "apicv", "--grid", str(grid), "-o", str(tmp_path / "o"),
                          "--executor", "dask"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip() == ("tracebench: error: --executor dask needs Dask "
                                  "distributed: pip install 'tracebench[dask]'")
    assert not (tmp_path / "o").exists()


def test_per_event_rows_when_asked(traces, tmp_path):
    out = tmp_path / "sw"
    grid = {"params": {"exit_roundtrip_cyc": [900, 2700]}}
    res = sweep(traces[:1], ["full-virt", "apicv"], grid, out, workers=1, events=True)
    assert res.ok and res.ran == 4
    assert "events" in result_tables(out)
    doc = json.loads((out / "sweep.json").read_text())
    task = doc["tasks"][-1]
    from tracebench.replayer.results import read_events  # the one reader of per-event rows

    mine = read_events(out, backend=task["backend"], params=task["params"])
    ref = tracebench.replay(traces[:1], [task["backend"]], params=task["values"]).events
    cols = ["ts_ns", "cpu", "latency_ns", "stall_ns", "exits", "exit_ns"]
    assert mine.height == TraceFile(traces[0]).num_rows
    assert mine.select(cols).equals(ref.select(cols))


def test_a_trace_edited_after_planning_fails_its_tasks(tmp_path):
    from tracebench.sweep.worker import BatchJob, run_batch

    path = tracebench.synth("timer-heavy", tmp_path / "t.parquet", n_cpus=2, duration="10ms",
                            seed=1)
    plan = plan_sweep(read_traces([path]), resolve_backends(["apicv"]), grid_from_mapping(
        {"params": {"exit_roundtrip_cyc": [900, 1800]}}), None)
    tracebench.synth("timer-heavy", path, n_cpus=2, duration="10ms", seed=2, force=True)
    (tmp_path / "o").mkdir()
    res = run_batch(BatchJob(plan.tasks, plan.backends, None, False, str(tmp_path / "o")))
    assert not res.done and len(res.failed) == 2
    assert all("changed since the sweep was planned" in why for _, why in res.failed)
    assert not list((tmp_path / "o").rglob("*.parquet"))
