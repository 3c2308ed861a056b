"""The HTML and Markdown reports, made through the CLI from real results and opened in a
real headless browser with the network off."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import tracebench
from tests.browser import render
from tracebench import hist
from tracebench.cli import app
from tracebench.report import report_data
from tracebench.report.figures import chart_specs

runner = CliRunner()
SHIPPED = Path(__file__).resolve().parent.parent / "traces" / "fc-guest-mixed.parquet"
BACKENDS = ["native", "full-virt", "apicv", "pv-clock"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("html")
    tracebench.replay([SHIPPED], BACKENDS, out=d / "a")
    tracebench.replay([SHIPPED], BACKENDS, out=d / "b", params={"exit_roundtrip_cyc": 3000},
                      events=False)
    return d


def _charts_in(dom: str) -> list[str]:
    """Each chart container's part of the DOM (from its id to the next chart's)."""
    starts = [m.start() for m in re.finditer(r'<div [^>]*id="chart-\d+"', dom)]
    ends = starts[1:] + [dom.index("<h2>Provenance", starts[-1]) if starts else 0]
    return [dom[a:b] for a, b in zip(starts, ends, strict=True)]


def test_html_report_renders_offline_in_chromium(runs, tmp_path):
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", str(runs / "a"), str(runs / "b"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    # self-contained: no external script, style, image or font reference in the markup
    # (script bodies are JavaScript and JSON, looked at by the browser below)
    markup = re.sub(r"(<script[^>]*>).*?</script>", r"\1</script>", page, flags=re.S)
    assert not re.search(r"<(script|link|img|iframe|source)[^>]+(src|href)=", markup)
    assert "@import" not in markup and "url(" not in markup
    specs = page.count('type="application/json" data-chart=')
    assert specs == 5  # exits, two CDFs, per-vCPU overhead, A/B change
    dom, log = render(out, tmp_path, screenshot=tmp_path / "report.png")
    assert f'data-charts-rendered="{specs}"' in dom, log[-2000:]
    assert 'data-charts-failed="0"' in dom
    svgs = re.findall(r'<svg[^>]*class="marks"[^>]*width="(\d+)" height="(\d+)"', dom)
    assert len(svgs) == specs
    assert all(int(w) > 100 and int(h) > 100 for w, h in svgs)
    # every chart drew marks (bars, lines, points), not just axes
    bodies = _charts_in(dom)
    assert len(bodies) == specs
    for body in bodies:
        assert re.search(r'class="mark-(rect|line|symbol)', body), body[:300]
    console = [ln for ln in log.splitlines() if "CONSOLE" in ln]
    assert any(f"{specs} charts rendered, 0 failed" in ln for ln in console), console
    assert not [ln for ln in console if re.search(r"error|uncaught|warn", ln, re.I)], console
    assert "net::ERR" not in log  # nothing tried the network
    shot = (tmp_path / "report.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 30_000


def test_report_content_and_provenance(runs, tmp_path):
    out = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(runs / "a"), "-o", str(out)]).exit_code == 0
    page = out.read_text()
    meta = tracebench.trace.TraceFile(SHIPPED).meta
    digest = tracebench.trace.file_sha256(SHIPPED)
    assert digest in page and f"tracebench {tracebench.__version__}" in page
    assert "tracebench report" in page and str(runs / "a") in page  # the command
    for cfg in (runs / "a" / "configs").glob("*.json"):
        assert json.loads(cfg.read_text())["params_sha256"] in page
    assert str(meta.n_cpus) in page
    again = runner.invoke(app, ["report", str(runs / "a"), "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert runner.invoke(app, ["report", str(runs / "a"), "-o", str(out), "--force"]
                         ).exit_code == 0


def test_report_data_merges_histograms_across_traces(tmp_path):
    """Two traces: the merged percentiles are those of the added counts (not an average
    of each trace's percentiles), and the CDF ends at 1 with at most 200 + 2 points."""
    from tracebench.scenarios import generate
    from tracebench.trace import write_trace

    for name, seed, scen in (("x", 1, "timer-heavy"), ("y", 2, "mixed-server")):
        cols, meta = generate(scen, n_cpus=2, duration_ns=20_000_000, seed=seed)
        write_trace(tmp_path / f"{name}.parquet", cols, meta)
    tracebench.replay([tmp_path / "x.parquet", tmp_path / "y.parquet"], ["full-virt"],
                      out=tmp_path / "r", events=False)
    data = report_data([tmp_path / "r"])
    s = pl.read_parquet(tmp_path / "r" / "summary", hive_partitioning=False).filter(
        kind="interrupts", metric="latency_ns")
    counts = sum(hist.decode_counts(b) for b in s["hdr"])
    want = hist.percentiles(np.asarray(counts))
    row = data.summary.row(0, named=True)
    assert row["traces"] == 2
    assert row["irq_p99_us"] == want[2] / 1000 and row["irq_p50_us"] == want[0] / 1000
    cdf = data.cdf.filter(distribution="interrupt latency")
    assert cdf["fraction"].max() == 1.0 and cdf.height <= 202
    assert cdf["fraction"].is_sorted()
    specs = chart_specs(data)
    assert set(specs) == {"VM exits per second by reason", "Interrupt latency CDF",
                          "Timer error CDF", "Overhead per vCPU"}
    assert specs["Interrupt latency CDF"]["encoding"]["x"]["scale"]["type"] == "log"


def test_html_size_does_not_grow_with_trace_length(tmp_path):
    from tracebench.scenarios import generate
    from tracebench.trace import write_trace

    sizes = []
    for dur in (10_000_000, 200_000_000):
        cols, meta = generate("mixed-server", n_cpus=2, duration_ns=dur, seed=3)
        write_trace(tmp_path / f"t{dur}.parquet", cols, meta)
        tracebench.replay([tmp_path / f"t{dur}.parquet"], ["full-virt", "apicv"],
                          out=tmp_path / f"r{dur}", events=False)
        out = tmp_path / f"r{dur}.html"
        assert runner.invoke(app, ["report", str(tmp_path / f"r{dur}"), "-o", str(out)]
                             ).exit_code == 0
        sizes.append(out.stat().st_size)
    # 20x the events; the page grows only by the bounded CDF points
    assert sizes[1] < sizes[0] + 60_000, sizes


def test_markdown_report_with_figures(runs, tmp_path):
    out = tmp_path / "paper" / "report.md"
    res = runner.invoke(app, ["report", str(runs / "a"), str(runs / "b"), "--format", "md",
                              "-o", str(out), "--figures", "png"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    figs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(figs) == 5
    for f in figs:
        data = (out.parent / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    assert "| backend | param | a | b |" in text and "exit_roundtrip_cyc" in text
    assert "## Provenance" in text
    svg = tmp_path / "svg.md"
    assert runner.invoke(app, ["report", str(runs / "a"), "-f", "md", "-o", str(svg)]
                         ).exit_code == 0
    first = re.findall(r"\]\(([^)]+\.svg)\)", svg.read_text())
    assert len(first) == 4
    assert (tmp_path / first[0]).read_text().lstrip().startswith("<svg")


def test_report_missing_results_is_one_line(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path / "nope"), "-o", str(tmp_path / "x.html")])
    assert res.exit_code == 1 and "no such results folder" in res.stderr
    assert not (tmp_path / "x.html").exists()


def test_report_says_how_to_install_the_extra(runs, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vl_convert", None)  # as if not installed
    res = runner.invoke(app, ["report", str(runs / "a"), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 1
    assert "pip install 'tracebench[report]'" in res.stderr and "vl_convert" in res.stderr
    assert not (tmp_path / "r.html").exists()


def test_vcpu_overhead_adds_up_to_the_summary_and_covers_every_backend(tmp_path):
    from tracebench.scenarios import generate
    from tracebench.trace import write_trace

    cols, meta = generate("mixed-server", n_cpus=3, duration_ns=20_000_000, seed=6)
    write_trace(tmp_path / "t.parquet", cols, meta)
    tracebench.replay([tmp_path / "t.parquet"], ["full-virt", "apicv"], out=tmp_path / "r",
                      events=["apicv"])
    data = report_data([tmp_path / "r"])
    v = data.vcpu_overhead
    assert set(v["backend"]) == {"full-virt", "apicv"} and v.height == 6
    # with rows: the per-vCPU stall is what the summary's overhead adds up
    s = pl.read_parquet(tmp_path / "r" / "summary", hive_partitioning=False).filter(
        kind="all", metric="latency_ns", backend="apicv")
    assert v.filter(backend="apicv")["overhead_pct"].mean() == pytest.approx(
        s["overhead_pct"][0])
    assert "per-event rows" in data.vcpu_overhead_source
    assert "without per-event rows" in data.vcpu_overhead_source


def test_runs_without_a_common_trace_still_make_a_report(runs, tmp_path):
    from tracebench.scenarios import generate
    from tracebench.trace import write_trace

    cols, meta = generate("timer-heavy", n_cpus=2, duration_ns=5_000_000, seed=2)
    write_trace(tmp_path / "other.parquet", cols, meta)
    tracebench.replay([tmp_path / "other.parquet"], ["apicv"], out=tmp_path / "o",
                      events=False)
    out = tmp_path / "r.md"
    res = runner.invoke(app, ["report", str(runs / "a"), str(tmp_path / "o"), "-f", "md",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "no A/B deltas for o" in out.read_text() and "share no" in out.read_text()
