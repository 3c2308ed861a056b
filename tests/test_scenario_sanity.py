"""Sanity of the model on synthesized scenarios (the spine issue's acceptance checks)."""

from __future__ import annotations

import pytest

import tracebench
from tracebench.scenarios import generate
from tracebench.schema import EventKind
from tracebench.trace import write_trace

SEED = 7


@pytest.fixture(scope="module")
def scenario_result(tmp_path_factory):
    cache = {}

    def get(name: str, n_cpus: int = 4, params=None):
        key = (name, n_cpus)
        if key not in cache:
            cols, meta = generate(name, n_cpus=n_cpus, duration_ns=200_000_000, seed=SEED,
                                  params=params)
            path = tmp_path_factory.mktemp("sc") / f"{name}.parquet"
            write_trace(path, cols, meta)
            cache[key] = (cols, tracebench.replay([path]))
        return cache[key]

    return get


def _kind(res, backend, kind):
    rows = res.summary.filter(backend=backend, kind=kind, metric="latency_ns")
    return rows.row(0, named=True) if rows.height else {"count": 0, "exits": 0}


def test_clock_heavy_pvclock_exitless_fullvirt_one_exit_per_read(scenario_result):
    cols, res = scenario_result("clock-heavy")
    reads = int((cols["kind"] == EventKind.CLOCK_READ).sum())
    assert reads > 1000
    assert _kind(res, "pv-clock", "clock_read")["exits"] == 0
    assert _kind(res, "full-virt", "clock_read")["exits"] == reads
    assert _kind(res, "full-virt", "clock_read")["count"] == reads
    fv = res.exits.filter(backend="full-virt", reason="IO_INSTRUCTION")["count"].sum()
    assert fv >= reads


def test_timer_heavy_fullvirt_exits_per_programming_irqchip_no_eoi_exits(scenario_result):
    cols, res = scenario_result("timer-heavy")
    programs = int(((cols["kind"] == EventKind.TIMER_ARM)
                    | (cols["kind"] == EventKind.TIMER_CANCEL)).sum())
    assert programs > 1000
    fv = _kind(res, "full-virt", "timer_arm")["exits"] + \
        _kind(res, "full-virt", "timer_cancel")["exits"]
    assert fv >= programs
    assert _kind(res, "irqchip", "eoi")["count"] > 0
    assert _kind(res, "irqchip", "eoi")["exits"] == 0


def test_ipi_storm_irqchip_ipi_exits_at_most_fullvirt(scenario_result):
    cols, res = scenario_result("ipi-storm")
    assert (cols["kind"] == EventKind.IPI_SEND).sum() > 100
    irqchip = _kind(res, "irqchip", "ipi_send")["exits"]
    full = _kind(res, "full-virt", "ipi_send")["exits"]
    print(f"ipi-storm IPI-send exits: irqchip {irqchip}, full-virt {full}")
    assert 0 < irqchip <= full


def test_native_never_exits_and_overhead_is_lowest(scenario_result):
    _, res = scenario_result("mixed-server")
    allrows = res.summary.filter(kind="all", metric="latency_ns")
    native = allrows.filter(backend="native").row(0, named=True)
    assert native["exits"] == 0
    assert native["overhead_pct"] == allrows["overhead_pct"].min()
    assert res.exits.filter(backend="native").height == 0
    full = allrows.filter(backend="full-virt").row(0, named=True)
    assert full["overhead_pct"] > native["overhead_pct"]


def test_same_seed_same_result_bytes(tmp_path):
    cols, meta = generate("net-rr", n_cpus=2, duration_ns=20_000_000, seed=3)
    write_trace(tmp_path / "a.parquet", cols, meta)
    cols2, meta2 = generate("net-rr", n_cpus=2, duration_ns=20_000_000, seed=3)
    write_trace(tmp_path / "b.parquet", cols2, meta2)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    tracebench.replay([tmp_path / "a.parquet"], ["full-virt", "apicv"], out=tmp_path / "r1")
    tracebench.replay([tmp_path / "a.parquet"], ["full-virt", "apicv"], out=tmp_path / "r2")
    files1 = sorted(p.relative_to(tmp_path / "r1") for p in (tmp_path / "r1").rglob("*")
                    if p.is_file())
    files2 = sorted(p.relative_to(tmp_path / "r2") for p in (tmp_path / "r2").rglob("*")
                    if p.is_file())
    assert files1 == files2 and len(files1) >= 7
    for rel in files1:
        assert (tmp_path / "r1" / rel).read_bytes() == (tmp_path / "r2" / rel).read_bytes(), rel
