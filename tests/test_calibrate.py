"""`tracebench calibrate` on this machine: real C loops, real timings (small counts)."""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from tracebench.backends import get_backend
from tracebench.backends.costs import profile_values
from tracebench.backends.tomlfile import flat_params
from tracebench.cli import app

runner = CliRunner()


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_calibrate_compiles_once_and_writes_a_usable_profile(fresh_cache):
    out = fresh_cache / "me.toml"
    first = runner.invoke(app, ["calibrate", "--reps", "200", "--latency-reps", "20",
                                "-o", str(out), "-f", "json"])
    assert first.exit_code == 0, first.output
    assert "compiling calib.c" in first.stderr
    doc = json.loads(first.stdout)
    rows = {r["measure"]: r for r in doc["measurements"]}
    for r in rows.values():
        assert r["n"] > 0 and 0 < r["min_ns"] <= r["p50_ns"] <= r["p99_ns"] <= r["max_ns"]
    clock = next(v for k, v in rows.items() if k.startswith("clock_read("))
    # an exit costs more than a TSC read; a timer wake-up more than a clock read
    assert rows["exit_roundtrip"]["p50_ns"] > rows["tsc_read"]["p50_ns"]
    assert rows["timer_fire"]["p50_ns"] > clock["p50_ns"]
    assert rows["cross_cpu_wakeup"]["p50_ns"] > clock["p50_ns"]
    params = flat_params(tomllib.loads(out.read_text())["params"], str(out))
    assert all(v > 0 for v in params.values())
    # the measured exit's spread: its p99 beside its p50, usable as a distribution
    assert params["exit_roundtrip_cyc.p99"] > params["exit_roundtrip_cyc"]
    ps = get_backend("full-virt").params(profile=str(out))
    assert ps.spread("exit_roundtrip_cyc").p99 == pytest.approx(params["exit_roundtrip_cyc.p99"])
    assert params["exit_roundtrip_cyc"] > params["tsc_read_cyc"]
    assert 0.1 < params["tsc_ghz"] < 10
    assert profile_values(str(out)) == params  # what --profile FILE.toml reads
    assert doc["platform"]["cpu_vendor"] in ("GenuineIntel", "AuthenticAMD")

    second = runner.invoke(app, ["calibrate", "--reps", "50", "--latency-reps", "10",
                                 "-f", "csv"])
    assert second.exit_code == 0, second.output
    assert "compiling" not in second.stderr  # cached by source hash
    assert second.stdout.startswith("measure,n,")


def test_profile_file_drives_replay(fresh_cache):
    prof = fresh_cache / "p.toml"
    prof.write_text("[params]\nexit_roundtrip_cyc = 30000\ntsc_ghz = 2.0\n"
                    "[measured.x]\nwhat = 'ignored by replay'\n")
    base = runner.invoke(app, ["replay", "traces/local-guest-record.parquet", "-b", "kvm-pv",
                               "-f", "json", "-q"])
    slow = runner.invoke(app, ["replay", "traces/local-guest-record.parquet", "-b", "kvm-pv",
                               "-f", "json", "-q", "--profile", str(prof)])
    assert base.exit_code == 0 and slow.exit_code == 0, slow.output
    a, b = json.loads(base.stdout)[0], json.loads(slow.stdout)[0]
    # exits depend on timing a little since model v2 (an interrupt that finds its target
    # inside a longer exit needs no kick; a longer exit leaves more interrupts pending)
    assert abs(a["exits"] - b["exits"]) <= 0.01 * a["exits"]
    assert b["overhead_pct"] > 5 * a["overhead_pct"]
    prof.write_text("[params]\nexit_roundtrip = 3\n")
    bad = runner.invoke(app, ["replay", "traces/local-guest-record.parquet", "-b", "kvm-pv",
                              "--profile", str(prof)])
    assert bad.exit_code == 2 and "unknown parameter 'exit_roundtrip'" in bad.stderr  # usage


def test_no_compiler_is_one_line(fresh_cache, monkeypatch):
    monkeypatch.setenv("PATH", str(fresh_cache))  # no cc/gcc/clang here
    monkeypatch.delenv("CC", raising=False)
    res = runner.invoke(app, ["calibrate", "--reps", "10"])
    assert res.exit_code == 1
    assert "no C compiler found" in res.stderr and "Traceback" not in res.output
