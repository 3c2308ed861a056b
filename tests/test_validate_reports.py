"""perf kvm stat / kvm_stat text read into measured-exits tables, and stat --measured."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tracebench.cli import app
from tracebench.errors import TracebenchError
from tracebench.exitnames import EXIT_NAMES, exit_label, is_modelled, lookup
from tracebench.ingest.stream.exits import EXITS_SCHEMA
from tracebench.scenarios import generate
from tracebench.trace import write_trace
from tracebench.validate.reports import read_report

DATA = Path(__file__).parent / "data" / "realtraces"
runner = CliRunner()


def counts(rep) -> dict[str, int]:
    return dict(zip(rep.table["reason"], rep.table["count"], strict=True))


def test_perf_kvm_stat_report_vmexit_table():
    rep = read_report(DATA / "perf-kvm-stat-reports" / "x86_vmx_linux_guest_100s.txt")
    c = counts(rep)
    assert c == {"MSR_WRITE": 42521, "HLT": 15885, "IO_INSTRUCTION": 10892,
                 "APIC_WRITE": 6226, "EXTERNAL_INTERRUPT": 1965, "PREEMPTION_TIMER": 1805,
                 "EPT_MISCONFIG": 302, "MSR_READ": 132, "PAUSE_INSTRUCTION": 16}
    assert sum(c.values()) == rep.meta["total_samples"] == 79744
    row = rep.table.filter(pl.col("reason") == "MSR_WRITE").row(0, named=True)
    # 'perf kvm stat record -a sleep 100' gives the interval: a rate
    assert rep.meta["duration_s"] == 100 and row["rate_per_s"] == pytest.approx(425.21)
    assert (row["min_ns"], row["max_ns"], row["mean_ns"]) == (500, 52940, pytest.approx(1710))
    assert set(EXITS_SCHEMA.names) <= set(rep.table.columns)
    assert rep.table["exit_reason"].null_count() == 0


def test_perf_kvm_stat_live_snapshot_and_not_modelled_reasons():
    rep = read_report(DATA / "perf-kvm-stat-reports" / "x86_vmx_windows10_guest_hpet_live.txt")
    c = counts(rep)
    assert sum(c.values()) == 1981 and c["EPT_VIOLATION"] == 1 and c["MSR_READ"] == 1501
    labels = dict(zip(rep.table["reason"], rep.table["exit_reason"], strict=True))
    assert not is_modelled(labels["EPT_VIOLATION"]) and not is_modelled(labels["PAUSE_INSTRUCTION"])
    assert is_modelled(labels["PENDING_INTERRUPT"])


def test_two_live_snapshots_are_summed_and_experiments_must_be_picked(tmp_path):
    text = (DATA / "perf-kvm-stat-reports" / "x86_vmx_windows10_guest_hpet_live.txt").read_text()
    two = tmp_path / "live.txt"
    two.write_text(text + "\n" + text.replace("19:24:22.553073", "19:24:23.553073"))
    assert sum(counts(read_report(two)).values()) == 2 * 1981
    boxed = DATA / "kvm-svm-selfipi-eoi-idlehlt" / "perf_kvm_stat_tables.txt"
    with pytest.raises(TracebenchError, match="holds 2 tables.*Without idle halt"):
        read_report(boxed)
    off, on = read_report(f"{boxed}#1"), read_report(f"{boxed}#2")
    assert counts(off) == {"msr": 524213, "hlt": 262080, "vintr": 262080}
    assert counts(on) == {"msr": 524213, "vintr": 262080, "io": 1879}
    assert off.table.filter(pl.col("reason") == "msr")["total_ns"][0] == 592573933


def test_ioport_and_mmio_families(tmp_path):
    # the layout perf prints for --event=ioport / --event=mmio (tools/perf/arch/x86/util/kvm-stat.c)
    f = tmp_path / "io.txt"
    f.write_text("Analyze events for all VMs, all VCPUs:\n\n"
                 "      IO Port Access    Samples  Samples%     Time%    Min Time    Max Time"
                 "         Avg time\n\n"
                 "         0x70:POUT        120    60.00%    40.00%      2.00us      9.00us"
                 "      3.00us ( +-   1.00% )\n"
                 "          0x71:PIN         80    40.00%    60.00%      2.50us     10.00us"
                 "      4.00us ( +-   2.00% )\n\n"
                 "Total Samples:200, Total events handled time:680.00us.\n")
    rep = read_report(f)
    assert rep.meta["family"] == "IO Port Access"
    assert counts(rep) == {"0x70:POUT": 120, "0x71:PIN": 80}
    assert rep.table["total_ns"].sum() == 120 * 3000 + 80 * 4000


def test_kvm_stat_table_batch_and_log(tmp_path):
    rep = read_report(DATA / "kvm-ftrace-tscdeadline-kvmstat" / "kvm_stat.txt")
    assert counts(rep) == {"kvm_msr": 816, "kvm_vcpu_wakeup": 291,
                           "kvm_exit (other reasons)": 18, "kvm_fast_mmio": 8}
    assert sum(counts(rep).values()) == 1133  # every kvm_exit accounted for, once
    assert rep.table.filter(pl.col("reason") == "kvm_msr")["rate_per_s"][0] == 58
    # kvm_stat -1: '%-42s%10d%10d' name, total, count in the 1 s sample
    batch = tmp_path / "once.txt"
    batch.write_text("".join(f"{n:<42}{t:>10}{d:>10}\n" for n, t, d in (
        ("kvm_exit(HLT)", 500, 50), ("kvm_exit(MSR_WRITE)", 900, 90),
        ("kvm_exit(EPT_VIOLATION)", 7, 0), ("kvm_entry", 1407, 140))))
    rep = read_report(batch)
    assert counts(rep) == {"kvm_exit(MSR_WRITE)": 900, "kvm_exit(HLT)": 500,
                           "kvm_exit(EPT_VIOLATION)": 7}
    assert dict(zip(rep.table["reason"], rep.table["exit_reason"], strict=True))[
        "kvm_exit(EPT_VIOLATION)"] == "ept_violation"
    # kvm_stat -l: a banner of names, then one line per interval with its timestamp
    log = tmp_path / "log.txt"
    log.write_text("kvm_entry kvm_exit kvm_msr kvm_vcpu_wakeup \n"
                   "2026-01-01 10:00:00      100      100       60       30\n"
                   "2026-01-01 10:00:03      110      110       70       30\n")
    rep = read_report(log)
    assert counts(rep) == {"kvm_msr": 130, "kvm_vcpu_wakeup": 60,
                           "kvm_exit (other reasons)": 20}
    assert rep.meta["duration_s"] == 6.0
    assert rep.table.filter(pl.col("reason") == "kvm_msr")["rate_per_s"][0] == \
        pytest.approx(130 / 6)


def test_every_exit_name_is_named():
    assert len(EXIT_NAMES) > 150
    for name, entry in EXIT_NAMES.items():
        assert entry.label and entry.printed == name
    assert exit_label("SOMETHING_NEW") == "something_new"  # unknown: kept, never null
    assert lookup("npf").canonical == "EPT_MISCONFIG" and lookup("vintr").modelled
    assert exit_label("msr", True) == "msr_write" and not is_modelled("cpuid")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("r")
    trace = root / "t.parquet"
    cols, meta = generate("timer-heavy", n_cpus=2, duration_ns=20_000_000, seed=3)
    write_trace(trace, cols, meta)
    for name, backends in (("mixed", ["native", "kvm-pv"]), ("none", ["native"])):
        res = runner.invoke(app, ["replay", str(trace), *sum((["-b", b] for b in backends), []),
                                  "-o", str(root / name), "-q"])
        assert res.exit_code == 0, res.output
    return root


def test_stat_measured_report_text_and_empty_sides(results, tmp_path):
    report = DATA / "perf-kvm-stat-reports" / "x86_vmx_linux_guest_100s.txt"
    res = runner.invoke(app, ["stat", str(results / "none"), "--measured", str(report),
                              "-f", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["event"]: r["measured_samples"] for r in rows}["MSR_WRITE"] == 42521
    assert all(r["samples"] == 0 for r in rows)  # nothing predicted: 0 vs N, no traceback
    res = runner.invoke(app, ["stat", str(results / "mixed"), "-b", "native", "--measured",
                              str(report), "-f", "json"])
    assert res.exit_code == 0, res.output
    assert {r["backend"] for r in json.loads(res.stdout)} == {"native"}
    empty = tmp_path / "empty.exits.parquet"
    pl.from_arrow(EXITS_SCHEMA.empty_table()).write_parquet(empty)
    res = runner.invoke(app, ["stat", str(results / "mixed"), "-b", "kvm-pv", "--measured",
                              str(empty), "-f", "csv"])
    assert res.exit_code == 0, res.output
    assert "measured table is empty" in res.stderr and "kvm-pv,MSR_WRITE" in res.stdout
    res = runner.invoke(app, ["stat", str(results / "none"), "--measured", str(empty)])
    assert res.exit_code == 0 and "no exits predicted and none measured" in res.stderr
    bad = tmp_path / "x.txt"
    bad.write_text("hello\n")
    res = runner.invoke(app, ["stat", str(results / "none"), "--measured", str(bad)])
    assert res.exit_code == 1 and "not a perf kvm stat report" in res.stderr


def test_ingest_points_reports_to_measured(tmp_path):
    for f in (DATA / "perf-kvm-stat-reports" / "x86_vmx_linux_guest_100s.txt",
              DATA / "kvm-ftrace-tscdeadline-kvmstat" / "kvm_stat.txt"):
        res = runner.invoke(app, ["ingest", str(f), "-o", str(tmp_path / "x.parquet")])
        assert res.exit_code == 1 and "--measured" in res.stderr
        assert not (tmp_path / "x.parquet").exists()
