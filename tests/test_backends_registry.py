"""User-defined backends: TOML compositions and entry-point plug-ins with their own kernel."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import make_cols
from tracebench import backends as registry
from tracebench.backends import backend_from_toml, get_backend, resolve_backends
from tracebench.errors import ParamError

PLUGIN_SOURCE = '''
"""A plug-in backend with its own (plain-Python) kernel: every event is one VMCALL."""
from tracebench.backends.base import Backend
from tracebench.backends.kernel import hdr_index, record_exits
from tracebench.backends.layout import A_COLS, A_COUNT, A_EXITS, A_STALL, State, vcpu_state
from tracebench.hist import counts_len

COST_NS = 1000
VMCALL = 7


def kernel(ts, cpu, kind, target, arg, dur, kind_table, ipi_table, n_cpus, hdr, state, out,
           kind_agg, exit_agg, lat_counts, terr_counts):
    start_ns, latency_ns, stall_ns, exit_ns, timer_error_ns, exits, exit_reason = out
    vcpus = vcpu_state(state, n_cpus)  # one row per vCPU, columns named by State
    for i in range(len(ts)):
        c, k = int(cpu[i]), int(kind[i])
        v = vcpus[c]
        start = max(int(ts[i]) + int(v[State.SHIFT]), int(v[State.BUSY]))
        v[State.SHIFT] = start + COST_NS - int(ts[i])
        v[State.BUSY] = start + COST_NS
        start_ns[i] = start
        latency_ns[i] = stall_ns[i] = exit_ns[i] = COST_NS
        timer_error_ns[i], exits[i], exit_reason[i] = -1, 1, VMCALL
        kind_agg[k * A_COLS + A_COUNT] += 1
        kind_agg[k * A_COLS + A_EXITS] += 1
        kind_agg[k * A_COLS + A_STALL] += COST_NS
        record_exits(exit_agg, c, VMCALL, 1, COST_NS)
        lat_counts[k * counts_len() + hdr_index(COST_NS, hdr)] += 1
    return len(ts)


BACKEND = Backend(
    name="demo-everything-traps",
    description="test plug-in: every guest event is one VMCALL of 1 us",
    mechanisms=dict(apic_access="hypercall", timer="pv_alarm", clocksource="acpi_pm",
                    delivery="inject", eoi="trap", ipi="icr", tpr="apic_access",
                    mask="ioapic_mmio", idle="hlt_exit"),
    origin="entry point demo",
    kernel=kernel,
)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Install a tiny distribution with a ``tracebench.backends`` entry point on sys.path."""
    pkg = tmp_path / "tb_demo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PLUGIN_SOURCE)
    dist = tmp_path / "tb_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tb-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[tracebench.backends]\ndemo = tb_demo_plugin:BACKEND\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.plugin_backends.cache_clear()
    yield "demo-everything-traps"
    registry.plugin_backends.cache_clear()
    sys.modules.pop("tb_demo_plugin", None)


def test_plugin_is_registered_and_replays(plugin, tmp_path):
    import tracebench

    assert plugin in registry.registered_backends()
    cols = make_cols([(0, 0, "eoi"), (5, 0, "clock_read"), (7, 1, "timer_irq")])
    from tracebench.trace import TraceMeta, write_trace

    path = tmp_path / "t.parquet"
    write_trace(path, cols, TraceMeta(n_cpus=2, duration_ns=10, method="synth"))
    res = tracebench.replay([path], backends=[plugin, "native"])
    allrow = res.summary.filter(backend=plugin, kind="all").row(0, named=True)
    assert allrow["exits"] == 3 and allrow["stall_ns"] == 3000
    assert res.exits.filter(backend=plugin)["reason"].unique().to_list() == ["VMCALL"]
    ev = res.events.filter(backend=plugin)
    assert ev["latency_ns"].to_list() == [1000] * 3
    assert ev["exit_reason"].to_list() == ["VMCALL"] * 3
    # without per-event rows its kernel runs block by block: same aggregates
    agg_only = tracebench.replay([path], backends=[plugin], events=False)
    assert agg_only.summary.equals(res.summary.filter(backend=plugin))


def test_plugin_listed_by_cli(plugin):
    from typer.testing import CliRunner

    from tracebench.cli import app

    result = CliRunner().invoke(app, ["backends", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert plugin in result.output


def test_toml_backend_with_base(tmp_path):
    p = tmp_path / "apicv-pveoi.toml"
    p.write_text(textwrap.dedent("""
        name = "apicv-pveoi"
        description = "APICv host, guest also uses PV send-IPI"
        base = "apicv"
        [mechanisms]
        ipi = "pv_multicast"
        [params]
        exit_roundtrip_cyc = 1200
    """))
    b = backend_from_toml(p)
    assert b.name == "apicv-pveoi"
    assert b.mechanisms["ipi"] == "pv_multicast"
    assert b.mechanisms["eoi"] == "virtual"  # from the base
    assert b.params()["exit_roundtrip_cyc"] == 1200
    # a cheaper exit changes the compiled model relative to the base
    base = get_backend("apicv")
    assert not np.array_equal(b.compile(b.params()).kind_table,
                              base.compile(base.params()).kind_table)
    assert resolve_backends([str(p)])[0].name == "apicv-pveoi"


def test_toml_backend_full_spec_and_errors(tmp_path):
    good = tmp_path / "mine.toml"
    good.write_text(textwrap.dedent("""
        [mechanisms]
        apic_access = "x2apic_apicv"
        timer = "tsc_deadline"
        clocksource = "hpet"
        delivery = "posted"
        eoi = "virtual"
        ipi = "ipiv"
        tpr = "cr8_shadow"
        mask = "shared_mem"
        idle = "poll"
    """))
    assert backend_from_toml(good).name == "mine"
    bad_axis = tmp_path / "bad.toml"
    bad_axis.write_text('base = "apicv"\n[mechanisms]\neoi = "magic"\n')
    with pytest.raises(ParamError, match="eoi = 'magic' is not an option"):
        backend_from_toml(bad_axis)
    bad_param = tmp_path / "badp.toml"
    bad_param.write_text('base = "apicv"\n[params]\nexit_rountrip_cyc = 5\n')
    with pytest.raises(ParamError, match="unknown parameter 'exit_rountrip_cyc'"):
        backend_from_toml(bad_param)
    missing = tmp_path / "missing.toml"
    missing.write_text('[mechanisms]\neoi = "trap"\n')
    with pytest.raises(ParamError, match="not chosen"):
        backend_from_toml(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(ParamError, match="broken.toml"):
        backend_from_toml(broken)


def test_unknown_backend_and_param_messages():
    with pytest.raises(ParamError, match="unknown backend 'ful-virt'; known: native"):
        get_backend("ful-virt")
    b = get_backend("full-virt")
    with pytest.raises(ParamError, match="valid: .*exit_roundtrip_cyc"):
        b.params(overrides={"exit_cycles": 3})
    with pytest.raises(ParamError, match="outside"):
        b.params(overrides={"tsc_ghz": 0})


def test_toml_backend_listed_and_replayed_by_cli(tmp_path):
    from typer.testing import CliRunner

    from tracebench.cli import app
    from tracebench.scenarios import generate
    from tracebench.trace import write_trace

    spec = tmp_path / "pveoi.toml"
    spec.write_text('name = "x2apic-pveoi"\nbase = "x2apic-tscdeadline"\n'
                    '[mechanisms]\neoi = "pv_eoi"\n')
    runner = CliRunner()
    listed = runner.invoke(app, ["backends", str(spec), "x2apic-tscdeadline", "-f", "json"])
    assert listed.exit_code == 0, listed.output
    names = [b["name"] for b in __import__("json").loads(listed.stdout)]
    assert names == ["x2apic-pveoi", "x2apic-tscdeadline"]
    cols, meta = generate("timer-heavy", n_cpus=2, duration_ns=20_000_000, seed=2)
    trace = tmp_path / "t.parquet"
    write_trace(trace, cols, meta)
    out = runner.invoke(app, ["replay", str(trace), "-b", str(spec), "-b",
                              "x2apic-tscdeadline", "-f", "json"])
    assert out.exit_code == 0, out.output
    rows = {r["backend"]: r for r in __import__("json").loads(out.stdout)}
    # PV EOI removes one MSR_WRITE exit per interrupt
    assert rows["x2apic-pveoi"]["exits"] < rows["x2apic-tscdeadline"]["exits"]
