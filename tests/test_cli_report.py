"""``tracebench stat`` and ``compare`` on a real results folder."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import tracebench
from tracebench.cli import app
from tracebench.scenarios import generate
from tracebench.trace import write_trace

runner = CliRunner()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    cols, meta = generate("timer-heavy", n_cpus=2, duration_ns=30_000_000, seed=4)
    write_trace(d / "t.parquet", cols, meta)
    backends = ["native", "full-virt", "apicv"]
    a = tracebench.replay([d / "t.parquet"], backends, out=d / "a", events=False)
    tracebench.replay([d / "t.parquet"], backends, out=d / "b", events=False,
                      params={"exit_roundtrip_cyc": 3000})
    return d, a


def test_stat_matches_exit_table(results):
    d, a = results
    out = runner.invoke(app, ["stat", str(d / "a"), "-b", "full-virt", "-f", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    expected = a.exits.filter(backend="full-virt").group_by("reason").agg(
        __import__("polars").col("count").sum())
    assert {r["reason"]: r["samples"] for r in rows} == dict(expected.iter_rows())
    assert abs(sum(r["samples_pct"] for r in rows) - 100) < 1e-9
    assert [r["samples"] for r in rows] == sorted((r["samples"] for r in rows), reverse=True)
    bad = runner.invoke(app, ["stat", str(d / "a"), "-b", "nosuch"])
    assert bad.exit_code == 2 and "no backend 'nosuch'" in bad.stderr  # usage
    bad = runner.invoke(app, ["stat", str(d / "absent")])
    assert bad.exit_code == 1 and "no such results folder" in bad.stderr


def test_compare_against_base_and_regression_gate(results):
    d, _ = results
    out = runner.invoke(app, ["compare", str(d / "a"), "--base", "native", "-f", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert {r["backend"] for r in rows} == {"full-virt", "apicv"}
    assert all(r["p99_ns_ratio"] > 1 for r in rows if r["kind"] == "interrupts")
    # dearer exits in B: the gate trips with exit code 3, and passes with a loose bound
    gate = runner.invoke(app, ["compare", str(d / "a"), str(d / "b"), "--fail-above", "5"])
    assert gate.exit_code == 3 and "regression" in gate.stderr
    loose = runner.invoke(app, ["compare", str(d / "a"), str(d / "b"), "--fail-above", "1000"])
    assert loose.exit_code == 0
    same = runner.invoke(app, ["compare", str(d / "a"), str(d / "a"), "--fail-above", "0"])
    assert same.exit_code == 0


def test_stat_sets_measured_host_exits_beside_prediction(tmp_path):
    """A real AMD host trace (kvm-unit-tests self-IPI, see tests/data SOURCE.md): its
    measured exits sit beside each backend's predicted ones, matched by reason."""
    from pathlib import Path

    src = (Path(__file__).parent / "data/realtraces/kvm-svm-selfipi-eoi-idlehlt"
           / "trace_idle_hlt_off.txt")
    trace = tmp_path / "h.parquet"
    assert runner.invoke(app, ["ingest", str(src), "-o", str(trace)]).exit_code == 0
    measured = tmp_path / "h.exits.parquet"
    assert measured.exists()
    assert runner.invoke(app, ["replay", str(trace), "-b", "apicv", "-o",
                               str(tmp_path / "r"), "-q"]).exit_code == 0
    out = runner.invoke(app, ["stat", str(tmp_path / "r"), "--measured", str(measured),
                              "-f", "json"])
    assert out.exit_code == 0, out.output
    rows = {r["reason"]: r for r in json.loads(out.stdout)}
    # the host saw one MSR write (the x2APIC ICR) and the model predicts it too
    assert rows["MSR_WRITE"]["measured_samples"] == 1
    assert rows["MSR_WRITE"]["samples"] == 1
    assert rows["HLT"]["measured_samples"] == 1 and rows["HLT"]["samples"] == 1
    assert abs(sum(r["measured_pct"] for r in rows.values()) - 100) < 1e-9
