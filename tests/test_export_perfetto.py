"""``tracebench export --perfetto``: Chrome Trace Event JSON checked by a strict checker,
its numbers against the per-event rows, and its size bounded by the window."""

from __future__ import annotations

import gzip
import json

import polars as pl
import pytest
from typer.testing import CliRunner

import tracebench
from tests.trace_event_checker import check
from tracebench.cli import app
from tracebench.replayer.results import read_events
from tracebench.scenarios import generate
from tracebench.trace import write_trace

runner = CliRunner()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    cols, meta = generate("mixed-server", n_cpus=2, duration_ns=20_000_000, seed=8)
    write_trace(d / "t.parquet", cols, meta)
    tracebench.replay([d / "t.parquet"], ["full-virt", "apicv"], out=d / "r")
    tracebench.replay([d / "t.parquet"], ["full-virt"], out=d / "noev", events=False)
    return d


def _export(*args) -> dict:
    res = runner.invoke(app, ["export", *args])
    assert res.exit_code == 0, res.output
    return res


def _load(path) -> dict:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def test_checker_catches_broken_timelines():
    ok = {"traceEvents": [
        {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "p"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "t"}},
        {"ph": "B", "name": "a", "pid": 1, "tid": 1, "ts": 1.0},
        {"ph": "X", "name": "b", "pid": 1, "tid": 1, "ts": 1.5, "dur": 0.5},
        {"ph": "E", "pid": 1, "tid": 1, "ts": 3.0},
        {"ph": "s", "name": "f", "cat": "c", "id": 1, "pid": 1, "tid": 1, "ts": 1.2},
        {"ph": "f", "bp": "e", "name": "f", "cat": "c", "id": 1, "pid": 1, "tid": 1,
         "ts": 1.6}]}
    assert check(ok) == []
    broken = json.loads(json.dumps(ok))
    broken["traceEvents"].pop(4)  # the E
    assert any("never ended" in p for p in check(broken))
    broken = json.loads(json.dumps(ok))
    broken["traceEvents"][3]["dur"] = 5.0  # X sticks out of the B/E slice
    assert any("without nesting" in p for p in check(broken))
    broken = json.loads(json.dumps(ok))
    broken["traceEvents"][6]["ts"] = 9.0  # flow end in no slice
    assert any("in no slice" in p for p in check(broken))
    broken = json.loads(json.dumps(ok))
    del broken["traceEvents"][2]["ts"]
    assert any("missing 'ts'" in p for p in check(broken))


def test_export_from_results_is_valid_and_matches_rows(replayed, tmp_path):
    out = tmp_path / "t.json"
    _export(str(replayed / "r"), "--perfetto", str(out))
    doc = _load(out)
    assert check(doc) == []
    ev = doc["traceEvents"]
    procs = {e["args"]["name"] for e in ev if e.get("name") == "process_name"}
    assert len(procs) == 2 and any(p.startswith("full-virt") for p in procs)
    threads = {e["args"]["name"] for e in ev if e.get("name") == "thread_name"}
    assert {"vCPU 0", "vCPU 1", "interrupt sources"} <= threads
    pid = next(e["pid"] for e in ev if e.get("name") == "process_name"
               and e["args"]["name"].startswith("full-virt"))
    mine = [e for e in ev if e["pid"] == pid]
    rows = read_events(replayed / "r", backend="full-virt").with_columns(
        pl.col("kind", "exit_reason").cast(pl.String))
    irq = rows.filter(pl.col("kind").is_in(["timer_irq", "device_irq", "ipi_irq"]))
    assert sum(e["ph"] == "B" for e in mine) == irq.height  # one handler per interrupt
    assert sum(e["ph"] == "i" for e in mine) == irq.height  # one arrival per interrupt
    assert sum(e["ph"] == "s" for e in mine) == irq.height  # one flow per interrupt
    exits = rows.filter((pl.col("exits") > 0) & (pl.col("exit_ns") > 0))
    assert sum(e["ph"] == "X" and e["cat"] == "exit" for e in mine) == exits.height
    # microseconds: an action's exit slice starts at start_ns / 1000 and lasts exit_ns / 1000
    act = exits.filter(~pl.col("kind").is_in(["timer_irq", "device_irq", "ipi_irq",
                                               "idle_exit"])).row(0, named=True)
    x = [e for e in mine if e["ph"] == "X" and e["ts"] == pytest.approx(act["start_ns"] / 1000)
         and e["args"].get("kind") == act["kind"]]
    assert x and x[0]["dur"] == pytest.approx(act["exit_ns"] / 1000)
    # an interrupt's arrival instant is at handler start - latency
    first = irq.sort("start_ns").row(0, named=True)
    inst = [e for e in mine if e["ph"] == "i"
            and e["ts"] == pytest.approx((first["start_ns"] - first["latency_ns"]) / 1000)]
    assert inst


def test_export_from_trace_replays_the_same_timeline(replayed, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _export(str(replayed / "r"), "--perfetto", str(a), "-b", "full-virt", "--vcpu", "1")
    _export(str(replayed / "t.parquet"), "--perfetto", str(b), "-b", "full-virt",
            "--vcpu", "1")
    ea = [e for e in _load(a)["traceEvents"] if e["ph"] != "M"]
    eb = [e for e in _load(b)["traceEvents"] if e["ph"] != "M"]
    assert ea == eb and len(ea) > 100
    assert {e["tid"] for e in ea if e["ph"] in "BX" and e.get("cat") != "raise"} <= {2, 1002}


def test_window_bounds_the_output_of_a_long_trace(tmp_path):
    cols, meta = generate("timer-heavy", n_cpus=2, duration_ns=600_000_000, seed=9)
    trace = tmp_path / "long.parquet"
    write_trace(trace, cols, meta)
    out = tmp_path / "w.json.gz"
    _export(str(trace), "--perfetto", str(out), "--from", "300ms", "--to", "306ms",
            "-b", "apicv")
    doc = _load(out)
    assert check(doc) == []
    ev = [e for e in doc["traceEvents"] if e["ph"] != "M"]
    in_window = int(((cols["ts_ns"] >= 299_000_000) & (cols["ts_ns"] < 307_000_000)).sum())
    assert len(cols["ts_ns"]) > 50 * in_window  # the window is a small part of the trace
    assert 0 < len(ev) <= 6 * in_window
    slices = [e["ts"] for e in ev if e["ph"] in "BX" and e.get("cat") != "raise"]
    assert min(slices) >= 300_000 - 1000 and max(slices) < 306_000
    raw = gzip.decompress(out.read_bytes())
    assert len(raw) <= 400 * in_window + 4096  # bytes grow with the window, not the trace
    capped = _export(str(trace), "--perfetto", str(tmp_path / "c.json"), "--from", "300ms",
                     "--to", "306ms", "-b", "apicv", "--limit", "10")
    assert "stopped after" in capped.stderr


def test_export_errors_are_one_line(replayed, tmp_path):
    r = str(replayed / "r")
    bad = runner.invoke(app, ["export", r, "--perfetto", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2 and ".json or .json.gz" in bad.stderr
    bad = runner.invoke(app, ["export", r, "--perfetto", str(tmp_path / "x.json"),
                              "--from", "5ms", "--to", "1ms"])
    assert bad.exit_code == 1 and "must be after --from" in bad.stderr
    bad = runner.invoke(app, ["export", r, "--perfetto", str(tmp_path / "x.json"), "-b", "xx"])
    assert bad.exit_code == 1 and "no backend 'xx'" in bad.stderr and "apicv" in bad.stderr
    bad = runner.invoke(app, ["export", str(replayed / "noev"), "--perfetto",
                              str(tmp_path / "x.json")])
    assert bad.exit_code == 1 and "no per-event rows" in bad.stderr
    assert not (tmp_path / "x.json").exists()


def test_export_from_a_trace_refuses_to_exhaust_memory(replayed, tmp_path, monkeypatch):
    import tracebench.report.export as export

    monkeypatch.setattr(export, "MEMORY_ROWS", 1000)
    res = runner.invoke(app, ["export", str(replayed / "t.parquet"), "--perfetto",
                              str(tmp_path / "x.json"), "--from", "15ms", "--to", "16ms"])
    assert res.exit_code == 1 and "--warmup" in res.stderr
    ok = runner.invoke(app, ["export", str(replayed / "t.parquet"), "--perfetto",
                             str(tmp_path / "x.json"), "--from", "15ms", "--to", "16ms",
                             "--warmup", "100us", "-b", "apicv"])
    assert ok.exit_code == 0, ok.output
    assert check(_load(tmp_path / "x.json")) == []
