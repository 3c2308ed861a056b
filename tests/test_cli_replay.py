"""``tracebench replay`` / ``backends`` through the real entry point (typer CliRunner)."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

from tracebench.cli import app
from tracebench.scenarios import generate
from tracebench.trace import write_trace

runner = CliRunner()


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "mixed.parquet"
    cols, meta = generate("mixed-server", n_cpus=4, duration_ns=50_000_000, seed=5)
    write_trace(path, cols, meta)
    return path


def test_replay_prints_comparison_for_every_backend(trace):
    result = runner.invoke(app, ["replay", str(trace), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    from tracebench.backends import registered_backends

    assert [r["backend"] for r in rows] == list(registered_backends())
    native = next(r for r in rows if r["backend"] == "native")
    full = next(r for r in rows if r["backend"] == "full-virt")
    assert native["exits"] == 0 and full["exits"] > 0
    assert full["irq_p99_us"] >= full["irq_p50_us"] > 0


def test_replay_writes_dataset_atomically_and_refuses_overwrite(trace, tmp_path):
    out = tmp_path / "res"
    args = ["replay", str(trace), "-b", "full-virt", "-b", "irqchip", "-o", str(out), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # by default no per-event rows are stored, only checkpoints to make them again
    assert not (out / "events").exists()
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"backend=full-virt",
                                                                  "backend=irqchip"}
    from tracebench.replayer.results import read_events

    events = read_events(out)
    assert set(events["backend"].unique()) == {"full-virt", "irqchip"}
    summary = pl.read_parquet(out / "summary", hive_partitioning=True)
    assert {"p50_ns", "p99_9_ns", "hdr", "overhead_pct"} <= set(summary.columns)
    # the stored histogram decodes to the percentiles in the table
    from hdrh.histogram import HdrHistogram

    row = summary.filter(pl.col("kind") == "interrupts", pl.col("backend") == "full-virt").row(
        0, named=True)
    h = HdrHistogram.decode(row["hdr"])
    assert h.get_value_at_percentile(99.0) == row["p99_ns"]
    assert h.get_value_at_percentile(50.0) == row["p50_ns"]
    assert h.get_total_count() == row["count"]
    # per-event rows agree with the summary counts
    fv = events.filter(pl.col("backend") == "full-virt")
    assert fv["exits"].sum() == summary.filter(pl.col("kind") == "all",
                                               pl.col("backend") == "full-virt")["exits"][0]
    # every file says which trace (by digest) and parameters made it
    import hashlib
    import json

    import pyarrow.parquet as pq

    digest = hashlib.sha256(trace.read_bytes()).hexdigest()
    for f in (out / "checkpoints").rglob("*.parquet"):
        meta = json.loads(pq.read_schema(f).metadata[b"tracebench"])
        assert meta["trace_sha256"] == digest and f.parts[-4] == f"backend={meta['backend']}"
        assert f.parts[-3] == f"params={meta['params_sha256'][:12]}"
    for f in (out / "summary").rglob("*.parquet"):
        assert json.loads(pq.read_schema(f).metadata[b"tracebench"])["trace_sha256"] == digest
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "already exists (use --force" in result.stderr
    assert runner.invoke(app, args + ["--force"]).exit_code == 0
    assert not list(tmp_path.glob(".res.tmp-*"))


def test_params_override_and_errors(trace, tmp_path):
    base = runner.invoke(app, ["replay", str(trace), "-b", "full-virt", "-f", "json"])
    cheap = runner.invoke(app, ["replay", str(trace), "-b", "full-virt", "-f", "json",
                                "--param", "exit_roundtrip_cyc=500"])
    assert json.loads(cheap.stdout)[0]["overhead_pct"] < json.loads(base.stdout)[0]["overhead_pct"]
    toml = tmp_path / "p.toml"
    toml.write_text("[params]\nexit_roundtrip_cyc = 500\n")
    from_file = runner.invoke(app, ["replay", str(trace), "-b", "full-virt", "-f", "json",
                                    "--params", str(toml)])
    assert json.loads(from_file.stdout) == json.loads(cheap.stdout)
    bad = runner.invoke(app, ["replay", str(trace), "--param", "exit_rt=5"])
    assert bad.exit_code == 2  # a usage error
    assert "unknown parameter 'exit_rt'" in bad.stderr and "exit_roundtrip_cyc" in bad.stderr
    assert "Traceback" not in bad.output
    bad = runner.invoke(app, ["replay", str(trace), "-b", "nosuch"])
    assert bad.exit_code == 2 and "unknown backend 'nosuch'" in bad.stderr
    bad = runner.invoke(app, ["replay", str(trace), "--profile", "pentium4"])
    assert bad.exit_code == 2 and "unknown CPU profile" in bad.stderr


def test_bad_trace_files_give_one_line_and_exit_1(tmp_path):
    text = tmp_path / "notes.parquet"
    text.write_text("hello\n")
    for path, message in ((text, "not a readable Parquet file"),
                          (tmp_path / "absent.parquet", "no such file")):
        result = runner.invoke(app, ["replay", str(path)])
        assert result.exit_code == 1
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output


def test_backends_listing(tmp_path):
    result = runner.invoke(app, ["backends", "--format", "json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    fv = next(b for b in doc if b["name"] == "full-virt")
    assert fv["mechanisms"]["apic_access"] == "xapic_mmio"
    p = next(p for p in fv["params"] if p["name"] == "exit_roundtrip_cyc")
    assert p["unit"] == "cycles" and "Wanpeng Li" in p["source"]
    table = runner.invoke(app, ["backends", "--params", "full-virt"])
    assert table.exit_code == 0 and "insn_emulation_cyc" in table.stdout
    axes = runner.invoke(app, ["backends", "--axes", "-f", "csv"])
    assert "delivery,posted" in axes.stdout


def test_help_does_not_import_numba():
    code = ("import sys; from tracebench.cli import app; "
            "print('numba' in sys.modules, 'polars' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_events_for_some_backends_only(trace, tmp_path):
    """--events-for: rows for the named backends; every backend's summary as without it."""
    three = ["-b", "full-virt", "-b", "apicv", "-b", "native"]
    base = ["replay", str(trace), *three, "-q"]
    some = runner.invoke(app, base + ["-o", str(tmp_path / "some"), "--events-for", "apicv",
                                      "--events-for", "native"])
    assert some.exit_code == 0, some.output
    full = runner.invoke(app, base + ["-o", str(tmp_path / "all"), "--events"])
    assert full.exit_code == 0, full.output
    written = {p.name for p in (tmp_path / "some" / "events").iterdir()}
    assert written == {"backend=apicv", "backend=native"}
    for table in ("summary", "exits"):
        a = pl.read_parquet(tmp_path / "some" / table, hive_partitioning=True)
        b = pl.read_parquet(tmp_path / "all" / table, hive_partitioning=True)
        key = ["backend", "kind", "metric"] if table == "summary" else ["backend", "cpu", "reason"]
        assert a.sort(key).equals(b.sort(key)), table
    ev_some = pl.read_parquet(tmp_path / "some" / "events", hive_partitioning=True)
    ev_all = pl.read_parquet(tmp_path / "all" / "events", hive_partitioning=True)
    assert ev_some.height == 2 * ev_all.filter(pl.col("backend") == "apicv").height
    run = json.loads((tmp_path / "some" / "run.json").read_text())
    assert run["events"] == ["apicv", "native"]
    # a backend that is not selected is an error; so is asking for rows and refusing them
    bad = runner.invoke(app, base + ["-o", str(tmp_path / "bad"), "--events-for", "eli"])
    assert bad.exit_code == 2 and "'eli'" in bad.output and not (tmp_path / "bad").exists()
    clash = runner.invoke(app, base + ["-o", str(tmp_path / "c"), "--events-for", "apicv",
                                       "--no-events"])
    assert clash.exit_code == 2 and "contradict" in clash.output
    clash = runner.invoke(app, base + ["-o", str(tmp_path / "c"), "--events-for", "apicv",
                                       "--events"])
    assert clash.exit_code == 2 and "contradict" in clash.output


def test_api_events_for_named_backends_in_memory(trace):
    import tracebench

    res = tracebench.replay([trace], ["full-virt", "apicv"], events=["apicv"])
    assert res.events["backend"].unique().to_list() == ["apicv"]
    whole = tracebench.replay([trace], ["full-virt", "apicv"], events=True)
    assert res.summary.equals(whole.summary)
    assert res.events.equals(whole.events.filter(pl.col("backend") == "apicv"))
    assert tracebench.replay([trace], ["apicv"], events=[]).events is None


def test_comparison_agrees_with_the_frames(trace):
    """The table is computed from the Arrow tables; polars over the same results agrees."""
    import tracebench

    res = tracebench.replay([trace], ["full-virt", "apicv", "native"], events=False)
    rows = res.comparison()
    assert [r["backend"] for r in rows] == ["full-virt", "apicv", "native"]
    for r in rows:
        s = res.summary.filter(backend=r["backend"])
        allrow = s.filter(kind="all", metric="latency_ns").row(0, named=True)
        irq = s.filter(kind="interrupts", metric="latency_ns").row(0, named=True)
        terr = s.filter(metric="timer_error_ns").row(0, named=True)
        assert (r["exits"], r["overhead_pct"]) == (allrow["exits"], allrow["overhead_pct"])
        assert r["irq_p99_us"] == irq["p99_ns"] / 1000
        assert r["timer_err_p99_us"] == (None if terr["p99_ns"] is None
                                         else terr["p99_ns"] / 1000)
        ex = (res.exits.filter(backend=r["backend"]).group_by("reason")
              .agg(pl.col("count").sum()).sort(["count", "reason"], descending=[True, False]))
        assert int(ex["count"].sum()) == r["exits"]
        if r["exits"]:
            assert r["top_exit_reasons"].split(" ")[0] == ex["reason"][0]
        else:
            assert r["top_exit_reasons"] == "-"


def test_replay_command_does_not_import_polars(trace):
    """Importing polars costs ~0.2 s of a second run's ~1.3 s; the table does not need it."""
    code = ("import sys; from tracebench.cli import app; sys.argv = ['tracebench', 'replay', "
            f"{str(trace)!r}, '-q', '-f', 'json']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print('polars' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)[0]["backend"] == "native"
    assert out.stderr.split()[-1] == "False"


def test_compiling_is_announced_once_and_only_when_it_happens(capsys):
    """A first run spends seconds compiling; it says so once, and a warm run says nothing."""
    from numba import config, njit

    from tracebench.cli.common import COMPILE_NOTICE, compile_notice

    if config.DISABLE_JIT:
        pytest.skip("nothing compiles with the JIT off")

    @njit(cache=False)
    def twice(x):
        return 2 * x

    with compile_notice(quiet=False):
        twice(1)
        twice(2.0)  # a second compile in the same block: still one notice
    assert capsys.readouterr().err.count(COMPILE_NOTICE) == 1
    with compile_notice(quiet=False):
        twice(3)  # compiled already
    with compile_notice(quiet=True):
        twice(1j)  # compiles, but --quiet
    assert capsys.readouterr().err == ""
