"""A real recorded trace through every preset: the guest-overhead ordering we expect.

traces/fc-guest-mixed.parquet is a 2-vCPU Linux 6.18 guest under KVM (x2APIC,
TSC-deadline, PV EOI), ~2.8 s of ordinary activity (see traces/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tracebench
from tracebench.backends import builtin_backends

TRACE = Path(__file__).resolve().parent.parent / "traces" / "fc-guest-mixed.parquet"


@pytest.fixture(scope="module")
def overhead():
    res = tracebench.replay([TRACE], list(builtin_backends()))
    rows = res.summary.filter(kind="all", metric="latency_ns")
    table = dict(zip(rows["backend"], rows["overhead_pct"], strict=True))
    print("\nguest overhead % on fc-guest-mixed, by backend:")
    for name, pct in sorted(table.items(), key=lambda kv: kv[1]):
        exits = rows.filter(backend=name)["exits"][0]
        print(f"  {name:20s} {pct:8.4f} %   {exits:7d} exits")
    return table, res


def test_expected_overhead_ordering(overhead):
    o, _ = overhead
    assert o["native"] < o["apicv-ipiv"] <= o["apicv"] < o["x2apic-tscdeadline"] < o["full-virt"]
    # the 2007 design space: each paravirt step cuts the full-virt cost
    assert o["irqchip"] < o["pv-clock"] < o["full-virt"]
    assert o["apic-hooks"] < o["full-virt"]
    # PV EOI + PV IPI on top of x2APIC/TSC-deadline
    assert o["kvm-pv"] < o["x2apic-tscdeadline"]


def test_every_preset_replays_the_whole_trace(overhead):
    _, res = overhead
    rows = len(tracebench.read_trace(TRACE)[0]["ts_ns"])
    counts = res.summary.filter(kind="all", metric="latency_ns")["count"].unique().to_list()
    assert counts == [rows]
