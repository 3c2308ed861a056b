"""A vCPU that cannot keep up is flagged, in the results and on stderr (open-loop replay)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import tracebench
from tracebench.cli import app
from tracebench.replayer.results import SATURATION_LAG_FRACTION
from tracebench.schema import EventKind
from tracebench.trace import TraceMeta, empty_columns, write_trace


def _clock_storm(path, n_reads: int, span_ns: int):
    """vCPU 0 reads the ACPI PM clock ``n_reads`` times in ``span_ns``; vCPU 1 idles."""
    cols = empty_columns(n_reads)
    cols["ts_ns"][:] = np.linspace(0, span_ns, n_reads, endpoint=False).astype(np.int64)
    cols["kind"][:] = EventKind.CLOCK_READ
    write_trace(path, cols, TraceMeta(n_cpus=2, duration_ns=span_ns, method="synth"))
    return path


def test_flag_follows_the_lag_threshold(tmp_path):
    """full-virt's PM-timer read costs ~20 us: 1,000 reads in 10 ms need ~20 ms, so vCPU 0
    ends about 10 ms (100 % of the trace) behind; native keeps up; vCPU 1 never lags."""
    trace = _clock_storm(tmp_path / "t.parquet", 1000, 10_000_000)
    res = tracebench.replay([trace], ["full-virt", "native"])
    v = res.vcpus.sort("backend", "cpu")
    fv = v.filter(backend="full-virt")
    assert fv["saturated"].to_list() == [True, False]
    assert fv["final_lag_ns"][0] > SATURATION_LAG_FRACTION * 10_000_000
    assert fv["final_lag_ns"][1] == 0
    assert not v.filter(backend="native")["saturated"].any()
    allrow = res.summary.filter(kind="all", backend="full-virt").row(0, named=True)
    assert allrow["saturated_vcpus"] == 1 and allrow["max_lag_ns"] == fv["final_lag_ns"][0]
    assert res.saturated() == fv.filter(saturated=True).to_dicts()


def test_below_the_threshold_is_not_saturated(tmp_path):
    """Few enough reads that the lag stays under the threshold: no flag."""
    trace = _clock_storm(tmp_path / "t.parquet", 20, 10_000_000)
    res = tracebench.replay([trace], ["full-virt"])
    lag = res.vcpus["final_lag_ns"][0]
    assert 0 < lag < SATURATION_LAG_FRACTION * 10_000_000
    assert not res.vcpus["saturated"].any()


@pytest.mark.parametrize("quiet", [False, True])
def test_replay_warns_and_writes_the_vcpus_table(tmp_path, quiet):
    trace = _clock_storm(tmp_path / "t.parquet", 1000, 10_000_000)
    out = tmp_path / "res"
    args = ["replay", str(trace), "-b", "full-virt", "-b", "native", "-o", str(out)]
    result = CliRunner().invoke(app, args + (["-q"] if quiet else []))
    assert result.exit_code == 0, result.output
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "full-virt" in warnings[0] and "vCPU 0" in warnings[0]
    v = pl.read_parquet(out / "vcpus", hive_partitioning=False)
    assert v.filter(saturated=True).select("backend", "cpu").rows() == [("full-virt", 0)]
