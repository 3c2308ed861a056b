"""``tracebench stat`` and ``compare`` on a real results folder."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import tracebench
from tracebench.cli import app
from tracebench.synth import generate
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
    assert bad.exit_code == 1 and "no backend 'nosuch'" in bad.stderr
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
