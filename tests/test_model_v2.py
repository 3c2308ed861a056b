"""Model v2 mechanisms in the replay kernel, each pinned at its boundary (issue 14).

Interrupt-window exits under legacy injection, no kick for a self-IPI or a target already
in the host, and a HLT that finds an interrupt pending returning at once; the AMD self-IPI
cycle (a real SVM host trace) predicted exactly per iteration through the real CLI.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.helpers import make_cols, run_kernel, run_reference
from tests.test_kernel_reference import _compare, traces
from tracebench import hist
from tracebench.backends import backend_from_toml, get_backend
from tracebench.backends.kernel import replay_lanes_nb
from tracebench.backends.layout import (
    IPI_CALL_COST,
    IPI_HLT_RETURN_COST,
    IPI_TARGET_COST,
    LANES,
    N_OUT,
    OUT_NAMES,
)
from tracebench.cli import app
from tracebench.replayer.driver import BackendRun, LaneGroup, flat
from tracebench.schema import EventKind as K
from tracebench.schema import ExitReason as R

#: exact times the model composes: every cost at its mean (conftest.constant_costs)
pytestmark = pytest.mark.usefixtures("constant_costs")

SVM = Path(__file__).parent / "data/realtraces/kvm-svm-selfipi-eoi-idlehlt"
LEGACY = "x2apic-tscdeadline"


def _cycle(k: int) -> str:
    """k iterations of the published excerpt, 10 us apart; iterations 2..k put back the ICR
    write's kvm_exit that the excerpt begins after (as in tests/test_validate.py)."""
    lines = (SVM / "trace_idle_hlt_off.txt").read_text().splitlines()
    icr_exit = ("kvm_exit: vcpu 0 reason msr rip 0x406a87 info1 0x0000000000000001 info2 "
                "0x0000000000000000 intr_info 0x00000000 error_code 0x00000000")
    out = []
    for i in range(k):
        if i:
            out.append(f" {6204.951630 + 10e-6 * i:.6f}: {icr_exit}")
        for ln in lines:
            ts, rest = ln.split(":", 1)
            out.append(f" {float(ts) + 10e-6 * i:.6f}:{rest}")
    return "\n".join(out) + "\n"


def _measured_hlt_ns() -> float:
    """Mean HLT exit time of the same test in the poster's ``perf kvm stat`` table."""
    text = (SVM / "perf_kvm_stat_tables.txt").read_text()
    n, total = re.search(r"\|\s*hlt\s*\|\s*(\d+)\s*\|[^|]*\|\s*(\d+)\s*\|", text).groups()
    return int(total) / int(n)


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("backend", ["svm", "svm-idlehlt"])
def test_amd_self_ipi_cycle_exact_per_iteration(tmp_path, k, backend):
    """Under the ``svm`` preset (AMD without AVIC), through the real CLI; under
    ``svm-idlehlt`` the same guest events give what the host with the Idle HLT intercept
    measured (trace_idle_hlt_on.txt): no HLT exit, the VINTR exit still there."""
    src = tmp_path / "cycle.txt"
    src.write_text(_cycle(k))
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(src), "-o", str(tmp_path / "c.parquet")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["replay", str(tmp_path / "c.parquet"), "-b", backend,
                              "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    ex = pl.read_parquet(next((tmp_path / "out/exits").rglob("*.parquet")))
    counts = dict(ex.group_by("reason").agg(pl.col("count").sum()).iter_rows())
    if backend == "svm-idlehlt":
        assert counts == {"MSR_WRITE": 2 * k, "PENDING_INTERRUPT": k}
        return
    assert counts == {"MSR_WRITE": 2 * k, "HLT": k, "PENDING_INTERRUPT": k}
    hlt = ex.filter(pl.col("reason") == "HLT")
    ratio = hlt["total_ns"].sum() / k / _measured_hlt_ns()
    assert 0.5 <= ratio <= 2.0, ratio


def _row(out, i):
    return {name: int(col[i]) for name, col in out.items()}


def _same_as_reference(backend, cols, n_cpus):
    out, _ = run_kernel(backend, cols, n_cpus)
    ref, model = run_reference(backend, cols, n_cpus)
    assert out["start_ns"].tolist() == ref.start_ns
    assert out["exits"].tolist() == ref.exits
    assert out["exit_ns"].tolist() == ref.exit_ns
    return out, model


def test_self_ipi_is_injected_on_reentry_not_kicked():
    # running vCPU 0 sends itself an IPI (its ICR write exits); vCPU 1 gets one from it too
    cols = make_cols([(0, 0, "ipi_send", 0), (5000, 0, "ipi_irq"),
                      (10000, 0, "ipi_send", 1), (15000, 1, "ipi_irq")])
    out, model = _same_as_reference(LEGACY, cols, 2)
    inject = int(model.kind_table[K.IPI_IRQ][13])  # IRQ_INJECT
    assert _row(out, 1)["exits"] == 0 and _row(out, 1)["stall_ns"] == inject > 0
    # the other vCPU was running in guest mode: a kick (host IPI + EXTERNAL_INTERRUPT)
    assert _row(out, 3)["exits"] == 1 and _row(out, 3)["exit_reason"] == R.EXTERNAL_INTERRUPT
    # posted delivery never kicks: nothing changes there
    posted, _ = _same_as_reference("apicv", cols, 2)
    assert posted["exits"][[1, 3]].tolist() == [0, 0]


@pytest.mark.parametrize("gap, kicked", [(-1, False), (0, True), (1, True)])
def test_target_inside_an_exit_is_not_kicked(gap, kicked):
    """vCPU 1 is in the host for an exit (an xAPIC EOI trap under full-virt) when the IPI
    from vCPU 0 is ready; one ready ``gap`` ns before that exit ends is injected on its
    re-entry, one ready at or after it needs a kick."""
    b = get_backend("full-virt")
    model = b.compile(b.params())
    eoi = int(model.kind_table[K.EOI][0])
    send = int(model.ipi_table[IPI_CALL_COST] + model.ipi_table[IPI_TARGET_COST])
    host = int(model.kind_table[K.IPI_IRQ][3])
    # the EOI exit on vCPU 1 runs [t1, t1 + eoi); the IPI is ready at send + host
    t1 = send + host - eoi - gap
    cols = make_cols([(0, 0, "ipi_send", 1), (t1, 1, "eoi"), (t1 + 50000, 1, "ipi_irq")])
    out, _ = _same_as_reference("full-virt", cols, 2)
    irq = _row(out, 2)
    assert (irq["exits"] == 1) is kicked
    if not kicked:  # injected when the EOI exit re-enters
        assert irq["start_ns"] == t1 + eoi + int(model.kind_table[K.IPI_IRQ][13])


@pytest.mark.parametrize("before", [True, False])
def test_hlt_with_an_interrupt_pending_returns_at_once(before):
    """An IPI that arrives 1 ns before the vCPU's HLT: HLT returns at once (one exit round
    trip, no blocked-thread wake-up) and the IPI is injected through an interrupt window;
    1 ns after: the vCPU blocks and is woken."""
    b = get_backend(LEGACY)
    model = b.compile(b.params())
    arrive = int(model.ipi_table[IPI_TARGET_COST])  # the ICR write ends; vCPU 1 is idle
    hlt = arrive + 1 if before else arrive - 1
    cols = make_cols([(0, 0, "ipi_send", 1), (hlt, 1, "idle_enter"),
                      (hlt + 20000, 1, "ipi_irq"), (hlt + 20000, 1, "idle_exit")])
    out, _ = _same_as_reference(LEGACY, cols, 2)
    irq, leave = _row(out, 2), _row(out, 3)
    assert leave["exits"] == 1 and leave["exit_reason"] == R.HLT
    if before:
        assert leave["exit_ns"] == int(model.ipi_table[IPI_HLT_RETURN_COST]) > 0
        assert irq["exits"] == 1 and irq["exit_reason"] == R.PENDING_INTERRUPT
    else:  # blocked from the HLT until the wake-up started the handler
        assert irq["exits"] == 0
        assert irq["latency_ns"] == int(model.kind_table[K.IPI_IRQ][3]
                                         + model.kind_table[K.IPI_IRQ][8])
        assert leave["exit_ns"] == irq["start_ns"] - hlt


@pytest.mark.parametrize("before", [True, False])
def test_idle_hlt_intercept_lets_a_hlt_with_an_interrupt_pending_through(before):
    """AMD's Idle HLT intercept: a HLT that finds an IPI pending (it arrived 1 ns before)
    takes no exit and does not block, and the IPI still waits for the interrupt window
    (VINTR); plain SVM takes that HLT's exit. An IPI 1 ns after the HLT finds the vCPU
    blocked: an (idle-halt) HLT exit and a wake-up, the same under both."""
    model = get_backend("svm").compile(get_backend("svm").params())
    arrive = int(model.ipi_table[IPI_TARGET_COST])
    hlt = arrive + 1 if before else arrive - 1
    # as the host traces them: the HLT's re-entry, then the VINTR exit's injection; a
    # blocked vCPU's injection before the re-entry that ends its HLT
    irq, leave = ((hlt + 20000, 1, "ipi_irq"), (hlt + 20000, 1, "idle_exit"))
    rows = [(0, 0, "ipi_send", 1), (hlt, 1, "idle_enter")]
    rows += [leave, irq] if before else [irq, leave]
    cols = make_cols(rows)
    idle, _ = _same_as_reference("svm-idlehlt", cols, 2)
    plain, _ = _same_as_reference("svm", cols, 2)
    if before:
        assert _row(idle, 2)["exits"] == _row(idle, 2)["exit_ns"] == 0
        assert _row(plain, 2)["exits"] == 1 and _row(plain, 2)["exit_reason"] == R.HLT
        for out in (idle, plain):
            assert _row(out, 3)["exits"] == 1
            assert _row(out, 3)["exit_reason"] == R.PENDING_INTERRUPT
        # the window opens once the HLT is done: at once without its exit
        assert _row(plain, 3)["start_ns"] - _row(idle, 3)["start_ns"] == int(
            model.ipi_table[IPI_HLT_RETURN_COST])
    else:
        for name in OUT_NAMES:
            assert idle[name].tolist() == plain[name].tolist(), name
        assert _row(idle, 3)["exits"] == 1 and _row(idle, 2)["exits"] == 0


def _toml_backend(tmp_path, idle: str, base: str = LEGACY) -> str:
    """A backend (legacy injection by default) with the given idle option, from TOML."""
    path = tmp_path / f"{base}-{idle}.toml"
    path.write_text(f'name = "{base}-{idle}"\ndescription = "test"\nbase = "{base}"\n'
                    f'[mechanisms]\nidle = "{idle}"\n')
    return backend_from_toml(path)


@pytest.mark.parametrize("gap_ns, polled", [(199_999, True), (200_000, False)])
def test_host_halt_polling_wake_costs_no_schedule(tmp_path, gap_ns, polled):
    """A wake-up inside KVM's halt-polling window (halt_poll_ns, default 200 us after the
    HLT) skips the blocked-thread wake-up; one at the window's end pays it."""
    from tracebench.backends.reference import replay_reference

    b = _toml_backend(tmp_path, "hlt_halt_poll")
    model = b.compile(b.params())
    host = int(model.kind_table[K.DEVICE_IRQ][3])
    cols = make_cols([(0, 0, "idle_enter"), (gap_ns - host, 0, "device_irq"),
                      (gap_ns + 10_000, 0, "idle_exit")])
    ref = replay_reference(cols, model, 1)
    wake = int(model.kind_table[K.DEVICE_IRQ][14 if polled else 8])
    assert ref.latency_ns[1] == host + wake
    assert ref.exits[2] == 1 and ref.exit_ns[2] == ref.start_ns[1]  # blocked from HLT
    assert int(model.kind_table[K.DEVICE_IRQ][14]) < int(model.kind_table[K.DEVICE_IRQ][8])


@pytest.mark.parametrize("gap_ns, polled", [(199_999, True), (200_000, False)])
def test_guest_haltpoll_interrupt_in_window_takes_no_hlt_exit(tmp_path, gap_ns, polled):
    """The guest's haltpoll driver polls guest_halt_poll_ns before HLT: an interrupt the
    host has ready inside that window reaches a running vCPU (no HLT exit at all); one
    after it wakes a vCPU blocked since start + 200 us."""
    from tracebench.backends.reference import replay_reference

    b = _toml_backend(tmp_path, "guest_haltpoll")
    model = b.compile(b.params())
    host = int(model.kind_table[K.DEVICE_IRQ][3])
    cols = make_cols([(0, 0, "idle_enter"), (gap_ns - host, 0, "device_irq"),
                      (gap_ns + 10_000, 0, "idle_exit")])
    ref = replay_reference(cols, model, 1)
    if polled:
        assert ref.exits[2] == 0  # never executed HLT
        assert ref.exits[1] == 1 and ref.reason[1] == R.EXTERNAL_INTERRUPT  # in guest mode
    else:
        assert ref.exits[2] == 1 and ref.reason[2] == R.HLT
        assert ref.exit_ns[2] == ref.start_ns[1] - 200_000


#: kinds of the AVIC / idle random traces: mostly idling vCPUs and IPIs between them
IDLE_IPI_KINDS = [K.IDLE_ENTER, K.IDLE_ENTER, K.IDLE_EXIT, K.IPI_SEND, K.IPI_SEND, K.IPI_IRQ,
                  K.EOI, K.TIMER_ARM, K.TIMER_IRQ, K.DEVICE_IRQ]


@pytest.mark.parametrize("group", ["legacy", "avic"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(traces(), traces(kinds=IDLE_IPI_KINDS)),
       poll_ns=st.sampled_from([1, 400, 3000]), chunk=st.sampled_from([1, 7]))
def test_polling_idle_options_kernel_lanes_reference_agree(tmp_path_factory, group, data,
                                                           poll_ns, chunk):
    """The idle options no built-in backend uses yet, with windows short enough for the
    random traces to fall on both sides, under legacy injection and under AVIC (whose
    sends to a blocked vCPU exit: blocked only once the polling is over), and the idle-HLT
    intercept: the one-backend kernel (chunked), the four-lane kernel and the reference
    agree."""
    from tracebench.backends.reference import replay_reference

    cols, n_cpus = data
    n = len(cols["ts_ns"])
    if n == 0:
        return
    tmp = tmp_path_factory.mktemp("idle")
    if group == "legacy":
        backends = [_toml_backend(tmp, "hlt_halt_poll"), _toml_backend(tmp, "guest_haltpoll"),
                    get_backend("apicv"), get_backend("native")]
    else:
        backends = [_toml_backend(tmp, "hlt_halt_poll", "avic"),
                    _toml_backend(tmp, "guest_haltpoll", "avic"),
                    _toml_backend(tmp, "idle_hlt", "avic"), get_backend("svm-idlehlt")]
    poll = {"halt_poll_ns": poll_ns, "guest_halt_poll_ns": poll_ns}
    runs, singles = [], []
    for b in backends:
        ps = b.params(overrides={k: v for k, v in poll.items() if k in b.params()})
        runs.append(BackendRun(b, ps, b.compile(ps), n_cpus))
        singles.append(BackendRun(b, ps, b.compile(ps), n_cpus))
    group = LaneGroup(runs)
    out = np.empty(n * N_OUT * LANES, dtype=np.int64)
    replay_lanes_nb(cols["ts_ns"], cols["cpu"], cols["kind"], cols["target"], cols["arg"],
                    cols["dur_ns"], group.kind_tables, group.ipi_tables, group.n_cpus,
                    hist.geometry(), flat(group.state), out, flat(group.kind_agg),
                    flat(group.exit_agg), flat(group.lat_counts), flat(group.terr_counts))
    lanes = out.reshape(n, N_OUT, LANES)
    for j, run in enumerate(singles):
        parts = [run.run_chunk({k: v[lo:lo + chunk] for k, v in cols.items()}, hist.geometry())
                 for lo in range(0, n, chunk)]
        single = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        ref = replay_reference(cols, run.model, n_cpus)
        _compare(single, ref)
        for c, name in enumerate(OUT_NAMES):
            assert np.array_equal(lanes[:, c, j], single[name].astype(np.int64)), (j, name)


@pytest.mark.parametrize("advance_ns", [0, 1000, 5000])
def test_timer_advance_on_wake_from_halt(advance_ns):
    """KVM fires a halted vCPU's timer early (lapic_timer_advance_ns, adaptive up to 5 us)
    and waits for the deadline: the timer error of a wake from halt drops from the whole
    wake path to the entry that injects it; 0 turns the advance off."""
    b = get_backend(LEGACY)
    params = {"lapic_timer_advance_ns": advance_ns}
    model = b.compile(b.params(overrides=params))
    deadline = 100_000
    cols = make_cols([(0, 0, "timer_arm", -1, deadline), (10, 0, "idle_enter"),
                      (deadline, 0, "timer_irq"), (deadline, 0, "idle_exit")])
    out, _ = run_kernel(LEGACY, cols, 1, params=params)
    ref, _ = run_reference(LEGACY, cols, 1, params=params)
    terr = int(out["timer_error_ns"][2])
    assert ref.timer_error_ns[2] == terr
    row = model.kind_table[K.TIMER_IRQ]
    path = int(row[3] + row[8])  # host + wake, no advance
    assert terr == max(path - min(int(row[15]), advance_ns), int(row[16]))
    if advance_ns == 5000:
        assert terr == int(row[16]) < 200  # just the injecting entry
    if advance_ns == 0:
        assert terr == path > 10 * int(row[16])  # the whole wake path


@pytest.mark.parametrize("pending", [True, False])
def test_pv_eoi_exits_when_another_interrupt_is_pending(pending):
    """KVM PV EOI: the EOI is a bit in guest memory unless another interrupt is pending at
    the EOI (then the host asks for the exit: the EOI MSR write); APICv's virtual EOI
    never exits."""
    b = get_backend("kvm-pv")
    model = b.compile(b.params())
    sent_at = int(model.ipi_table[IPI_CALL_COST] + model.ipi_table[IPI_TARGET_COST])
    eoi_at = 50_000
    # vCPU 1 handles a device interrupt; vCPU 0's IPI to it arrives before or after its EOI
    send_at = eoi_at - sent_at - 5000 if pending else eoi_at + 10
    cols = make_cols([(0, 1, "device_irq"), (send_at, 0, "ipi_send", 1), (eoi_at, 1, "eoi"),
                      (eoi_at + 20_000, 1, "ipi_irq")])
    cols = {k: v[[0, 1, 2, 3] if pending else [0, 2, 1, 3]] for k, v in cols.items()}
    out, _ = _same_as_reference("kvm-pv", cols, 2)
    eoi = _row(out, 2 if pending else 1)
    assert eoi["exits"] == (1 if pending else 0)
    if pending:
        assert eoi["exit_reason"] == R.MSR_WRITE
    apicv, _ = _same_as_reference("apicv", cols, 2)
    assert apicv["exits"][2 if pending else 1] == 0
