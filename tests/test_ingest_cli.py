"""Round trip (ftrace vs perf script of one recording), bad input through the real CLI, replay."""

from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.ingest_helpers import DATA
from tracebench.cli import app
from tracebench.ingest import ingest
from tracebench.schema import EventKind as K
from tracebench.trace import read_trace

runner = CliRunner()


def _window(path, tmp_path, name):
    ingest([path], tmp_path / f"{name}.parquet")
    cols, meta = read_trace(tmp_path / f"{name}.parquet")
    return cols, meta


def _first_ts_ns(path) -> int:
    """Absolute ns of the first record, read with a plain regex (not the ingest code)."""
    for line in path.read_text().splitlines():
        m = re.search(r" (\d+)\.(\d+): ", line)
        if m and not line.startswith("#"):
            return int(m.group(1)) * 10**9 + int(m.group(2).ljust(9, "0"))
    raise AssertionError(path)


def test_same_recording_ftrace_vs_perf_script(tmp_path):
    """local-dual: one recording read by a tracefs instance (clock perf) and perf record."""
    fpath = DATA / "local-dual/ftrace.txt"
    f, _ = _window(fpath, tmp_path, "f")
    f_abs = f["ts_ns"] + _first_ts_ns(fpath)
    for name in ("perf-script.txt", "perf-script-F-ns.txt"):
        p, _ = _window(DATA / "local-dual" / name, tmp_path, name)
        p_abs = p["ts_ns"] + _first_ts_ns(DATA / "local-dual" / name)
        # perf's buffer for CPU 1 kept only a part of that CPU's records in this recording
        # (53 of 313 in the window), so the CPU 0 streams are compared; perf also misses
        # some IPI handler records the instance has, so those are checked as a subset
        for cpu in (0,):
            other = ~np.isin(f["kind"], [K.IPI_IRQ, K.EOI])
            pk = (p["cpu"] == cpu) & ~np.isin(p["kind"], [K.IPI_IRQ, K.EOI])
            lo, hi = p_abs[pk].min() - 20_000, p_abs[pk].max() + 20_000
            fk = (f["cpu"] == cpu) & other & (f_abs >= lo) & (f_abs <= hi)
            assert pk.sum() > 50 and pk.sum() == fk.sum(), (name, cpu)
            for col in ("kind", "vector", "target"):
                assert (f[col][fk] == p[col][pk]).all(), (name, cpu, col)
            # each consumer stamps the event in its own handler: equal to some microseconds
            dt = f_abs[fk] - p_abs[pk]
            assert np.abs(dt).max() <= 20_000 and np.median(np.abs(dt)) <= 2_000
            assert np.abs(f["dur_ns"][fk] - p["dur_ns"][pk]).max() <= 20_000
            fi = f_abs[(f["cpu"] == cpu) & (f["kind"] == K.IPI_IRQ)]
            pi = p_abs[(p["cpu"] == cpu) & (p["kind"] == K.IPI_IRQ)]
            assert all(np.abs(fi - t).min() <= 20_000 for t in pi)


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "empty file"),
        (b"PAR1\x00\x01garbage", "Parquet file"),
        (b"hello world\nthis is not a trace\n", "cannot tell the trace format"),
    ],
)
def test_bad_files_one_line_exit_1(tmp_path, content, needle):
    src = tmp_path / "in.txt"
    src.write_bytes(content)
    res = runner.invoke(app, ["ingest", str(src), "-o", str(tmp_path / "o.parquet")])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("tracebench: error:")
    assert not (tmp_path / "o.parquet").exists()


def _damaged(tmp_path):
    good = (DATA / "fc-guest-mixed/trace-head.txt").read_bytes().splitlines(keepends=True)
    lines = (
        good[:40]
        + [
            b"   bash-1 [000] d.h2.  12.3.4: local_timer_entry: vector=236\n",
            b"   bash-1 [000] d.h2.  649.0: caf\xe9\xff: x\n",
            b"x" * 200_000 + b"\n",
        ]
        + good[40:200]
        + [good[200][:30]]
    )
    src = tmp_path / "bad.txt"
    src.write_bytes(b"".join(lines))
    return src


def test_malformed_lines_counted_then_strict(tmp_path):
    src = _damaged(tmp_path)
    out = tmp_path / "o.parquet"
    res = runner.invoke(app, ["ingest", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    cols, meta = read_trace(out)
    assert meta.source["malformed_lines"] == 4
    assert meta.source["malformed_first"] == [41, 42, 43, 204]
    res = runner.invoke(app, ["ingest", str(src), "-o", str(tmp_path / "s.parquet"), "--strict"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{src}:41: cannot parse timestamp" in lines[0]
    assert not (tmp_path / "s.parquet").exists()


def test_existing_output_needs_force(tmp_path):
    src = DATA / "realtraces/kvm-ftrace-tscdeadline-kvmstat/kvm_msr_ftrace.txt"
    out = tmp_path / "o.parquet"
    assert runner.invoke(app, ["ingest", str(src), "-o", str(out)]).exit_code == 0
    res = runner.invoke(app, ["ingest", str(src), "-o", str(out)])
    assert res.exit_code == 1 and "already exists" in res.output
    assert runner.invoke(app, ["ingest", str(src), "-o", str(out), "--force"]).exit_code == 0


def test_chunked_equals_whole(tmp_path):
    """Tiny chunks (many windows) give the same trace as one chunk."""
    src = DATA / "fc-guest-mixed/trace-head.txt"
    ingest([src], tmp_path / "a.parquet")
    ingest([src], tmp_path / "b.parquet", chunk_bytes=4096)
    a, _ = read_trace(tmp_path / "a.parquet")
    b, _ = read_trace(tmp_path / "b.parquet")
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_ingested_trace_replays_through_every_backend(tmp_path):
    from tracebench.api import replay

    ingest([DATA / "fc-guest-mixed/trace-head.txt"], tmp_path / "t.parquet")
    res = replay([tmp_path / "t.parquet"])
    cols, _ = read_trace(tmp_path / "t.parquet")
    backends = set(res.summary["backend"].unique().to_list())
    assert {"native", "full-virt"} <= backends
    lat = res.summary.filter(res.summary["metric"] == "latency_ns")
    for kind in ("timer_irq", "device_irq", "ipi_send", "eoi"):
        n = int((cols["kind"] == K.from_label(kind)).sum())
        per = lat.filter(lat["kind"] == kind)
        assert per.height == len(backends) and set(per["count"].to_list()) == {n}, kind
    # every backend but native takes exits for this x2APIC / TSC-deadline guest
    s = res.summary
    ex = s.filter((s["kind"] == "all") & (s["metric"] == "latency_ns"))
    assert (ex.filter(ex["backend"] != "native")["exits"] > 0).all()


@pytest.mark.parametrize(
    "payload,value",
    [
        (b"local_timer_entry: vector=99999", "99999"),  # vector column is Int16
        (b"irq_handler_entry: irq=4294967296 name=x", "4294967296"),
        (b"ipi_send_cpu: cpu=3000000000 callsite=x callback=y", "3000000000"),  # Int32 target
    ],
)
def test_field_out_of_range_names_the_line(tmp_path, payload, value):
    """A value too wide for its column is a one-line error at its line under --strict, not
    a traceback; without --strict the line is skipped, counted and reported."""
    good = (DATA / "fc-guest-mixed/trace-head.txt").read_bytes().splitlines(keepends=True)
    bad = b"            bash-14674   [000] d.h..   648.914888: " + payload + b"\n"
    src = tmp_path / "wide.txt"
    src.write_bytes(b"".join(good[:60] + [bad] + good[60:80]))
    res = runner.invoke(app, ["ingest", str(src), "-o", str(tmp_path / "skip.parquet")])
    assert res.exit_code == 0, res.output
    assert "skipped 1 malformed lines (first at lines 61" in " ".join(res.stderr.split())
    res = runner.invoke(app, ["ingest", str(src), "-o", str(tmp_path / "o.parquet"), "--strict"])
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tracebench: error:"), res.output
    assert f"wide.txt:61: {payload.split(b':')[0].decode()}" in lines[0]
    assert value in lines[0] and "out of range" in lines[0]
    assert not (tmp_path / "o.parquet").exists()


def test_host_vcpu_number_out_of_range_is_one_line(tmp_path):
    host = DATA / "realtraces/kvm-svm-selfipi-eoi-idlehlt/trace_idle_hlt_off.txt"
    good = host.read_bytes().splitlines(keepends=True)[:60]
    bad = (b" 6204.961632: kvm_exit: vcpu 99999999999999999999999 reason hlt rip 0x4004ad "
           b"info1 0x0 info2 0x0 intr_info 0x00000000 error_code 0x00000000\n")
    src = tmp_path / "host.txt"
    src.write_bytes(b"".join(good + [bad]))
    res = runner.invoke(app, ["ingest", str(src), "-o", str(tmp_path / "o.parquet")])
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "host.txt" in lines[0] and "99999999999999999999999" in lines[0]
    assert not list(tmp_path.glob("o*.parquet"))


@pytest.mark.parametrize("payload", [b"write_msr: 830, value 99999999900000000fd",
                                     b"write_msr: 6e0, value fffffffffffffffff"])
def test_unparsable_msr_value_is_counted_not_dropped(tmp_path, payload):
    """A WRMSR value wider than 64 bits maps to nothing, and the summary says so."""
    good = (DATA / "fc-guest-mixed/trace-head.txt").read_bytes().splitlines(keepends=True)
    bad = b"            bash-14674   [000] d.h..   648.914888: " + payload + b"\n"
    src = tmp_path / "wide.txt"
    src.write_bytes(b"".join(good[:60] + [bad] + good[60:80]))
    ingest([src], tmp_path / "o.parquet")
    ref_src = tmp_path / "ref.txt"
    ref_src.write_bytes(b"".join(good[:60] + good[60:80]))
    ingest([ref_src], tmp_path / "r.parquet")
    (cols, meta), (ref, ref_meta) = read_trace(tmp_path / "o.parquet"), read_trace(
        tmp_path / "r.parquet")
    assert meta.source["unmapped"].get("write_msr(unparsed)") == 1
    assert "write_msr(unparsed)" not in ref_meta.source["unmapped"]
    assert np.array_equal(cols["kind"], ref["kind"])  # nothing else changed
