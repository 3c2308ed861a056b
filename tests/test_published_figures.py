"""Worked examples: compositions reproduce published kvm-unit-tests round trips.

Each test replays the operation sequence of a ``x86/vmexit.c`` test as a tiny trace
and converts the modelled round trip back to cycles with the profile's TSC
frequency. Tolerance: 1.5 % (run-to-run noise of these microbenchmarks is ~1 %; the
figures come from different hosts and kernels, which is why the fitted parameters say which
figure they were fitted to). Sources: ../shared/COSTS.md section a.2.
"""

from __future__ import annotations

import pytest

from tests.helpers import make_cols, run_kernel
from tracebench import hist
from tracebench.backends import get_backend
from tracebench.backends.base import Backend
from tracebench.replayer.driver import BackendRun

#: exact times the model composes: every cost at its mean (conftest.constant_costs)
pytestmark = pytest.mark.usefixtures("constant_costs")

TOLERANCE = 0.015


def _ghz(backend: str, profile: str | None = None) -> float:
    return get_backend(backend).params(profile=profile)["tsc_ghz"]


def _within(model_cyc: float, published_cyc: float) -> None:
    err = abs(model_cyc - published_cyc) / published_cyc
    print(f"model {model_cyc:,.0f} cycles vs published {published_cyc:,.0f} ({err:+.1%})")
    assert err <= TOLERANCE, (model_cyc, published_cyc)


def _tscdeadline_cycle(backend: str) -> float:
    """``tscdeadline``: arm TSC-deadline = now + 3000 cycles, spin, handler, EOI.

    Round trip = deadline + (handler start - deadline) + EOI, in cycles."""
    ghz = _ghz(backend)
    deadline = round(3000 / ghz)
    cols = make_cols([(0, 0, "timer_arm", -1, deadline), (deadline, 0, "timer_irq"),
                      (deadline, 0, "eoi")])
    out, _ = run_kernel(backend, cols, n_cpus=1)
    return (deadline + out["latency_ns"][1] + out["latency_ns"][2]) * ghz


def test_tscdeadline_without_apicv_7474():
    # Wanpeng Li, tscdeadline fastpath cover letter (Skylake-SP, no APICv): 7,474 cycles
    _within(_tscdeadline_cycle("x2apic-tscdeadline"), 7474)


def test_tscdeadline_with_apicv_5662():
    # same source, APICv on: 5,661.75 cycles
    _within(_tscdeadline_cycle("apicv"), 5661.75)


def _run(backend: Backend | str, rows, n_cpus: int, profile: str | None = None):
    """Kernel outputs for ``rows`` and the TSC frequency of the profile used."""
    b = get_backend(backend) if isinstance(backend, str) else backend
    ps = b.params(profile=profile)
    run = BackendRun(b, ps, b.compile(ps), n_cpus)
    return run.run_chunk(make_cols(rows), hist.geometry()), ps["tsc_ghz"]


def _ipi_round_trip(backend: Backend | str) -> float:
    """``ipi``: cpu0 writes the ICR, cpu1 (running, spinning) runs the handler."""
    out, ghz = _run(backend, [(0, 0, "ipi_send", 1), (0, 1, "ipi_irq")], 2)
    return (out["start_ns"][1] - out["start_ns"][0]) * ghz


def test_x2apic_ipi_4338():
    # Zeng Guang et al., IPIv v7 (APICv on, IPIv off, x2APIC): 4,338 cycles
    _within(_ipi_round_trip("apicv"), 4338)


def test_xapic_ipi_6059():
    # same source, xAPIC: 6,059 cycles. Compose: apicv with the xAPIC page.
    xapic = Backend(name="apicv-xapic", description="APICv, xAPIC mode",
                    mechanisms={**get_backend("apicv").mechanisms, "apic_access": "xapic_apicv"})
    _within(_ipi_round_trip(xapic), 6059)


def test_ipiv_x2apic_3645():
    # same source, IPIv on: x2APIC 3,645 cycles
    _within(_ipi_round_trip("apicv-ipiv"), 3645)


def test_pm_timer_read_2012_24615():
    # kvm-unit-tests commit 00bfecaa, inl_from_pmtimer: 24,615 cycles (2012 host)
    out, ghz = _run("full-virt", [(0, 0, "clock_read")], 1, profile="kvm-2012")
    _within(out["latency_ns"][0] * ghz, 24615)


def test_pit_read_2012_is_outl_plus_two_inl_to_kernel():
    # same commit: outl_to_kernel 4,451 (fast path) and inl_from_kernel 7,237 (the IN went
    # through the emulator in 2012): a PIT read is a latch OUT and two INs to the in-kernel
    # PIT, 4,451 + 2 x 7,237 = 18,925 cycles (the PIT taken to cost what ELCR does)
    pit = Backend(name="full-virt-pit", description="full-virt reading the PIT",
                  mechanisms={**get_backend("full-virt").mechanisms, "clocksource": "pit"})
    out, ghz = _run(pit, [(0, 0, "clock_read")], 1, profile="kvm-2012")
    _within(out["latency_ns"][0] * ghz, 4451 + 2 * 7237)


def test_hrtimer_costs_1200_more_than_the_preemption_timer():
    # kvm-unit-tests commit cfbd129c (Haswell): tscdeadline 6,800 on a host hrtimer vs
    # 5,600 with the VMX preemption timer. svm is x2apic-tscdeadline on a host hrtimer.
    _within(_tscdeadline_cycle("svm") - _tscdeadline_cycle("x2apic-tscdeadline"), 6800 - 5600)


@pytest.mark.parametrize("profile", ["skx-2020", "nhm-2010", "kvm-2012", "modern-2024"])
def test_profiles_change_costs_consistently(profile):
    """A slower exit (older CPU) never makes any trapping operation cheaper in cycles."""
    b = get_backend("full-virt")
    base = b.compile(b.params()).kind_table * b.params()["tsc_ghz"]
    prof_ps = b.params(profile=profile)
    other = b.compile(prof_ps).kind_table * prof_ps["tsc_ghz"]
    if prof_ps["exit_roundtrip_cyc"] >= 1530:
        assert (other[:, 0] >= base[:, 0] - 1 * prof_ps["tsc_ghz"]).all()
    else:
        assert (other[:, 0] <= base[:, 0] + 1 * prof_ps["tsc_ghz"]).all()
