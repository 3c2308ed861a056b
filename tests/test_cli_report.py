"""``tracebench stat`` and ``compare`` on real results folders, through the CLI.

stat's numbers are checked against an independent computation from the per-event rows
(each exit expanded to its own value, numpy's sample standard deviation), compare's gate
both ways on two runs that differ by one parameter.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import tracebench
from tracebench.cli import app
from tracebench.replayer.results import read_events
from tracebench.scenarios import generate
from tracebench.trace import write_trace

runner = CliRunner()
BACKENDS = ["native", "full-virt", "apicv", "pv-clock"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    # seed 3: ordering exits by count and by mean time differ (test_stat_keys_follow_perf)
    cols, meta = generate("mixed-server", n_cpus=2, duration_ns=40_000_000, seed=3)
    write_trace(d / "t.parquet", cols, meta)
    cols, meta = generate("timer-heavy", n_cpus=2, duration_ns=20_000_000, seed=5)
    write_trace(d / "u.parquet", cols, meta)
    tracebench.replay([d / "t.parquet"], BACKENDS, out=d / "a", events=True)
    # B differs from A by one parameter: dearer VM exits (median 2,500, mean 3,038: about
    # twice the default's mean 1,530)
    tracebench.replay([d / "t.parquet"], BACKENDS, out=d / "b", events=True,
                      params={"exit_roundtrip_cyc": 2500})
    tracebench.replay([d / "t.parquet", d / "u.parquet"], ["full-virt", "apicv"],
                      out=d / "two", events=False)
    return d


def _stat_json(*args) -> list[dict]:
    out = runner.invoke(app, ["stat", *args, "-f", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def _expected_from_rows(folder: Path, backend: str) -> dict[str, dict]:
    """perf kvm stat's figures per exit reason, from the per-event rows, exit by exit."""
    rows = read_events(folder, backend=backend)
    rows = rows.filter(pl.col("exits") > 0).with_columns(pl.col("exit_reason").cast(pl.String))
    out = {}
    for (reason,), part in rows.group_by(["exit_reason"]):
        n = part["exits"].to_numpy().astype(np.int64)
        total = part["exit_ns"].to_numpy()
        each = np.repeat(total / n, n)  # an event's n exits share its exit time evenly
        mean = each.mean()
        sd_mean = each.std(ddof=1) / math.sqrt(len(each)) if len(each) > 1 else 0.0
        out[reason] = {"samples": int(n.sum()), "total_us": total.sum() / 1000,
                       "avg_us": mean / 1000, "stddev_pct": 100 * sd_mean / mean,
                       "min_us": (total // n).min() / 1000, "max_us": (total // n).max() / 1000}
    return out


@pytest.mark.parametrize("backend", ["full-virt", "pv-clock"])
def test_stat_matches_independent_computation_from_event_rows(results, backend):
    rows = _stat_json(str(results / "a"), "-b", backend)
    want = _expected_from_rows(results / "a", backend)
    assert {r["event"] for r in rows} == set(want)
    total_samples = sum(w["samples"] for w in want.values())
    total_us = sum(w["total_us"] for w in want.values())
    for r in rows:
        w = want[r["event"]]
        assert r["samples"] == w["samples"]
        assert r["samples_pct"] == pytest.approx(100 * w["samples"] / total_samples)
        assert r["time_pct"] == pytest.approx(100 * w["total_us"] / total_us)
        assert r["avg_us"] == pytest.approx(w["avg_us"])
        assert r["min_us"] == pytest.approx(w["min_us"])
        assert r["max_us"] == pytest.approx(w["max_us"])
        assert r["stddev_pct"] == pytest.approx(w["stddev_pct"], rel=1e-6, abs=1e-9)
    # the exit table agrees with the rows on the counts
    ex = pl.read_parquet(results / "a" / "exits", hive_partitioning=False).filter(
        backend=backend).group_by("reason").agg(pl.col("count").sum())
    assert dict(ex.iter_rows()) == {k: v["samples"] for k, v in want.items()}
    assert any(r["stddev_pct"] > 0 for r in rows)  # HLT times vary: the column can fail


def test_stat_table_reads_like_perf(results):
    out = runner.invoke(app, ["stat", str(results / "a"), "-b", "full-virt"])
    assert out.exit_code == 0, out.output
    for col in ("Event name", "Samples", "Samples%", "Time%", "Min time", "Max time",
                "Avg time"):
        assert col in out.stdout
    assert "( +-" in out.stdout
    want = _expected_from_rows(results / "a", "full-virt")
    n = sum(w["samples"] for w in want.values())
    t = sum(w["total_us"] for w in want.values())
    # the per-reason totals are floats: their sum may round the other way at the last digit
    got = re.search(r"Total Samples:(\d+), Total events handled time:([\d.]+)us\.", out.stdout)
    assert got and int(got[1]) == n and float(got[2]) == pytest.approx(t, abs=0.01)


def test_stat_keys_follow_perf(results):
    by_sample = _stat_json(str(results / "a"), "-b", "full-virt", "--key", "sample")
    assert [r["samples"] for r in by_sample] == sorted((r["samples"] for r in by_sample),
                                                       reverse=True)
    assert _stat_json(str(results / "a"), "-b", "full-virt", "--key", "samples") == by_sample
    by_time = _stat_json(str(results / "a"), "-b", "full-virt", "--key", "time")
    # perf's "time" is the average time, not the total
    assert [r["avg_us"] for r in by_time] == sorted((r["avg_us"] for r in by_time),
                                                    reverse=True)
    assert [r["event"] for r in by_time] != [r["event"] for r in by_sample] or \
        len(by_time) < 2
    bad = runner.invoke(app, ["stat", str(results / "a"), "--key", "bogus"])
    assert bad.exit_code == 2 and "--key must be sample" in bad.stderr


def test_stat_zero_exit_backend_is_a_row_of_zeros(results):
    rows = _stat_json(str(results / "a"), "-b", "native")
    assert len(rows) == 1 and rows[0]["samples"] == 0 and rows[0]["event"] is None
    table = runner.invoke(app, ["stat", str(results / "a"), "-b", "native"])
    assert table.exit_code == 0
    assert "(no exits)" in table.stdout
    assert "Total Samples:0, Total events handled time:0.00us." in table.stdout
    bad = runner.invoke(app, ["stat", str(results / "a"), "-b", "nosuch"])
    assert bad.exit_code == 2 and "no backend 'nosuch'" in bad.stderr
    assert "native" in bad.stderr  # names those present
    bad = runner.invoke(app, ["stat", str(results / "absent")])
    assert bad.exit_code == 1 and "no such results folder" in bad.stderr


def test_stat_keeps_traces_apart(results):
    rows = _stat_json(str(results / "two"), "-b", "full-virt")
    assert {r["trace"] for r in rows} == {"t", "u"}
    ex = pl.read_parquet(results / "two" / "exits", hive_partitioning=False).filter(
        backend="full-virt")
    for (trace,), part in ex.group_by(["trace"]):
        mine = {r["event"]: r["samples"] for r in rows if r["trace"] == trace}
        assert mine == dict(part.group_by("reason").agg(pl.col("count").sum()).iter_rows())
        assert sum(r["samples_pct"] for r in rows if r["trace"] == trace) == \
            pytest.approx(100)
    # without per-event rows the stddev is unknown, and left empty rather than made up
    assert all(r["stddev_pct"] is None for r in rows)
    merged = _stat_json(str(results / "two"), "-b", "full-virt", "--merge-traces")
    assert "trace" not in merged[0]
    assert sum(r["samples"] for r in merged) == int(ex["count"].sum())
    one = _stat_json(str(results / "two"), "-b", "full-virt", "--trace", "u")
    assert {r["trace"] for r in one} == {"u"}
    table = runner.invoke(app, ["stat", str(results / "two"), "-b", "apicv"])
    assert "trace t" in table.stdout and "trace u" in table.stdout


def test_stat_event_families(results):
    io = _stat_json(str(results / "a"), "-b", "full-virt", "--event", "ioport")
    rows = read_events(results / "a", backend="full-virt").with_columns(
        pl.col("kind", "exit_reason").cast(pl.String))
    want = (rows.filter(pl.col("exit_reason") == "IO_INSTRUCTION").group_by("kind")
            .agg(pl.col("exits").cast(pl.Int64).sum()))
    assert want.height > 0
    assert {r["event"]: r["samples"] for r in io} == dict(want.iter_rows())
    none = _stat_json(str(results / "a"), "-b", "apicv", "--event", "ioport")
    assert [r["samples"] for r in none] == [0]
    bad = runner.invoke(app, ["stat", str(results / "a"), "--event", "irq"])
    assert bad.exit_code == 2 and "--event must be one of vmexit, ioport, mmio" in bad.stderr


def test_stat_says_when_measured_table_is_empty(results, tmp_path):
    empty = tmp_path / "none.exits.parquet"
    pl.DataFrame({"reason": [], "count": []},
                 schema={"reason": pl.String, "count": pl.Int64}).write_parquet(empty)
    out = runner.invoke(app, ["stat", str(results / "a"), "-b", "apicv", "--measured",
                              str(empty)])
    assert out.exit_code == 0, out.output
    assert "the measured table is empty" in out.stderr


def test_stat_sets_measured_host_exits_beside_prediction(tmp_path):
    """A real AMD host trace (kvm-unit-tests self-IPI, see tests/data SOURCE.md): its
    measured exits sit beside each backend's predicted ones, matched by reason."""
    src = (Path(__file__).parent / "data/realtraces/kvm-svm-selfipi-eoi-idlehlt"
           / "trace_idle_hlt_off.txt")
    trace = tmp_path / "h.parquet"
    assert runner.invoke(app, ["ingest", str(src), "-o", str(trace)]).exit_code == 0
    measured = tmp_path / "h.exits.parquet"
    assert measured.exists()
    assert runner.invoke(app, ["replay", str(trace), "-b", "apicv", "-o",
                               str(tmp_path / "r"), "-q"]).exit_code == 0
    rows = {r["event"]: r for r in _stat_json(str(tmp_path / "r"), "--measured",
                                              str(measured))}
    # the host saw two MSR writes: the x2APIC ICR write (its exit was open when the excerpt
    # began) and the EOI; under apicv the model predicts the ICR write only (EOI virtual)
    assert rows["MSR_WRITE"]["measured_samples"] == 2
    assert rows["MSR_WRITE"]["samples"] == 1
    assert rows["HLT"]["measured_samples"] == 1 and rows["HLT"]["samples"] == 1
    assert abs(sum(r["measured_pct"] for r in rows.values()) - 100) < 1e-9


def _compare_json(*args) -> tuple[list[dict], object]:
    out = runner.invoke(app, ["compare", *args, "-f", "json"])
    return (json.loads(out.stdout) if out.exit_code in (0, 3) else None), out


def test_compare_gate_both_ways_on_runs_differing_by_one_parameter(results):
    a, b = str(results / "a"), str(results / "b")
    rows, out = _compare_json(a, b)
    assert out.exit_code == 0, out.output
    # the parameter that differs is printed, with both values
    # (the default is the median 1258.87 whose mean is the published 1,530)
    assert "full-virt exit_roundtrip_cyc 1258.87 -> 2500" in out.stderr
    table = runner.invoke(app, ["compare", a, b])
    assert "exit_roundtrip_cyc" in table.stderr and "2,500" in table.stderr
    metrics = {r["metric"] for r in rows}
    assert metrics == {"exits_per_s", "overhead_pct", "p50_ns", "p90_ns", "p99_ns",
                       "p99_9_ns"}
    assert {r["kind"] for r in rows} == {"all", "interrupts", "timer_error"}
    worst = max((r for r in rows if r["change_pct"] is not None),
                key=lambda r: r["change_pct"])
    # the gate passes above the worst change and trips below it, naming metric and values
    loose = runner.invoke(app, ["compare", a, b, "--fail-above",
                                f"{worst['change_pct'] + 1:.3f}"])
    assert loose.exit_code == 0, loose.output
    tight = runner.invoke(app, ["compare", a, b, "--fail-above",
                                f"{worst['change_pct'] - 1:.3f}"])
    assert tight.exit_code == 3
    assert f"worst: {worst['metric']} of {worst['backend']}" in tight.stderr
    def shown(v):
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.4f}"

    assert f"{shown(worst['a'])} -> {shown(worst['b'])}" in tight.stderr
    same = runner.invoke(app, ["compare", a, a, "--fail-above", "0"])
    assert same.exit_code == 0, same.output
    assert "same parameter sets" in same.stderr


def test_compare_gate_covers_overhead_and_metric_picks(results):
    a, b = str(results / "a"), str(results / "b")
    rows, _ = _compare_json(a, b, "--metric", "overhead_pct")
    assert {r["metric"] for r in rows} == {"overhead_pct"}
    grew = [r for r in rows if r["backend"] == "full-virt" and r["kind"] == "all"][0]
    assert grew["b"] > grew["a"]  # dearer exits: more stall
    gate = runner.invoke(app, ["compare", a, b, "-m", "overhead_pct", "--fail-above", "1"])
    assert gate.exit_code == 3 and "overhead_pct" in gate.stderr
    # exit counts barely change with the exit cost (since model v2 a longer exit leaves a
    # few more interrupts to find their target in the host: no kick): gated alone, they pass
    ok = runner.invoke(app, ["compare", a, b, "-m", "exits_per_s", "--fail-above", "5"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["compare", a, b, "-m", "p42"])
    assert bad.exit_code == 2 and "unknown metric 'p42'" in bad.stderr


def test_compare_one_folder_default_base(results):
    rows, out = _compare_json(str(results / "a"))
    assert out.exit_code == 0, out.output
    assert {r["versus"] for r in rows} == {"native"}
    assert "native" not in {r["backend"] for r in rows}
    # no native replayed: the default base is one that exists
    rows, out = _compare_json(str(results / "two"))
    assert out.exit_code == 0, out.output
    assert {r["versus"] for r in rows} == {"full-virt"}
    bad = runner.invoke(app, ["compare", str(results / "two"), "--base", "native"])
    assert bad.exit_code == 2  # usage: a backend the results do not have
    assert "no backend 'native'" in bad.stderr and "apicv, full-virt" in bad.stderr


def test_packed_dataset_reads_like_a_results_folder(results, tmp_path):
    """A packed dataset is a results folder with extra files at its top."""
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(results / "a", ds)
    (ds / "traces").mkdir()
    shutil.copy(results / "t.parquet", ds / "traces" / "t.parquet")
    (ds / "datapackage.json").write_text('{"name": "x", "resources": []}\n')
    (ds / "README.md").write_text("---\nconfigs: []\n---\n# dataset\n")
    (ds / "SHA256SUMS").write_text("")
    assert _stat_json(str(ds), "-b", "full-virt") == _stat_json(str(results / "a"), "-b",
                                                                 "full-virt")
    rows, out = _compare_json(str(results / "a"), str(ds), "--fail-above", "0")
    assert out.exit_code == 0, out.output
    assert all(r["change_pct"] in (0, None) for r in rows)
    md = tmp_path / "r.md"
    res = runner.invoke(app, ["report", str(ds), "-f", "md", "-o", str(md)])
    assert res.exit_code == 0, res.output
    ev = runner.invoke(app, ["export", str(ds), "--perfetto", str(tmp_path / "t.json"),
                             "--to", "5ms"])
    assert ev.exit_code == 0, ev.output
