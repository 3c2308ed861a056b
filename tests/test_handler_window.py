"""Interrupts off inside a handler (issue 14, model v2): each rule pinned at its boundary.

Linux runs hard-irq handlers with interrupts off until IRET. An interrupt the vCPU would
take (its start on its delivery path) between the start and the return of its latest
handler (``dur_ns`` after its start) is held until the return and delivered through the
interrupt window: under legacy injection (``full-virt``, ``svm``) a PENDING_INTERRUPT
(VINTR) exit, under posted delivery (``apicv``) and natively no exit. ``dur_ns`` = 0
(unknown) opens no window. Kernel and reference are compared on every trace.
"""

from __future__ import annotations

import pytest

from tests.helpers import make_cols, run_kernel, run_reference
from tests.test_kernel_reference import _compare
from tracebench.backends import get_backend
from tracebench.backends.layout import (
    ACT_COST,
    IRQ_HOST,
    IRQ_INJECT,
    IRQ_RUN,
    IRQ_RUN_EXITS,
    IRQ_WINDOW,
    IRQ_WINDOW_EXITS,
    State,
)
from tracebench.schema import EventKind as K
from tracebench.schema import ExitReason as R

#: exact times the model composes: every cost at its mean (conftest.constant_costs)
pytestmark = pytest.mark.usefixtures("constant_costs")

D = 10_000  # the first handler's run time, ns
LEGACY = ("full-virt", "svm")


def _replay(backend: str, rows: list[tuple], n_cpus: int = 1):
    """Kernel outputs (checked against the reference) and the kernel's final state."""
    cols = make_cols(rows)
    out, run = run_kernel(backend, cols, n_cpus)
    ref, _ = run_reference(backend, cols, n_cpus)
    _compare(out, ref)
    return {k: v.tolist() for k, v in out.items()}, run.state


def _table(backend: str, kind: K):
    b = get_backend(backend)
    return [int(v) for v in b.compile(b.params()).kind_table[kind]]


def _handler_end(backend: str, dur: int = D) -> int:
    """When a device interrupt at t = 0 on a running vCPU returns: its start + ``dur``."""
    out, _ = _replay(backend, [(0, 0, "device_irq", -1, 0, dur)])
    return out["start_ns"][0] + dur


@pytest.mark.parametrize("backend", [*LEGACY, "apicv", "native"])
@pytest.mark.parametrize("gap", [-1, 0, 1])
@pytest.mark.parametrize("dur", [D, 0])
def test_interrupt_inside_a_handler_waits_for_its_return(backend, gap, dur):
    """A second device interrupt due ``gap`` ns from the first one's return: 1 ns before it
    is held and takes the window; at or after it, or without a run time, it is delivered as
    if no handler ran."""
    row = _table(backend, K.DEVICE_IRQ)
    end = _handler_end(backend)
    t2 = end + gap - row[IRQ_HOST] - row[IRQ_RUN]
    out, _ = _replay(backend, [(0, 0, "device_irq", -1, 0, dur), (t2, 0, "device_irq")])
    if gap < 0 and dur:
        assert out["start_ns"][1] == end + row[IRQ_WINDOW]
        assert out["exits"][1] == row[IRQ_WINDOW_EXITS] == (1 if backend in LEGACY else 0)
        if backend in LEGACY:
            assert out["exit_reason"][1] == R.PENDING_INTERRUPT
    else:
        assert out["start_ns"][1] == end + gap
        assert out["exits"][1] == row[IRQ_RUN_EXITS]
        if backend in LEGACY:  # a kick, as for any running vCPU
            assert out["exit_reason"][1] == R.EXTERNAL_INTERRUPT


@pytest.mark.parametrize("backend", ["full-virt", "apicv"])
def test_pending_together_the_later_one_waits(backend):
    """Two interrupts due together: the one later in trace order waits for the first's
    return (KVM injects one and asks for a window for the other)."""
    row = _table(backend, K.DEVICE_IRQ)
    out, _ = _replay(backend, [(0, 0, "device_irq", -1, 0, D), (1, 0, "device_irq")])
    assert out["start_ns"][1] == out["start_ns"][0] + D + row[IRQ_WINDOW]
    assert out["exits"][1] == row[IRQ_WINDOW_EXITS]


@pytest.mark.parametrize("eoi_at, inside", [(D - 1, True), (D, False)])
def test_an_exit_inside_the_handler_delays_its_return(eoi_at, inside):
    """The handler's own EOI exit (full-virt: an APIC_ACCESS trap) stalls the guest, and its
    IRET with it; an exit at the return's trace time is after it and moves nothing."""
    end = _handler_end("full-virt")
    eoi = _table("full-virt", K.EOI)[ACT_COST]
    rows = [(0, 0, "device_irq", -1, 0, D), (eoi_at, 0, "eoi")]
    _, state = _replay("full-virt", rows)
    assert state[0, State.IRQ_ON_AT] == (end + eoi if inside else end)
    if inside:  # an interrupt host-ready 1 ns before the delayed return is held
        row = _table("full-virt", K.DEVICE_IRQ)
        t2 = end + eoi - 1 - row[IRQ_HOST] - row[IRQ_RUN]
        out, _ = _replay("full-virt", [*rows, (t2, 0, "device_irq")])
        assert out["start_ns"][2] == end + eoi + row[IRQ_WINDOW]
        assert out["exit_reason"][2] == R.PENDING_INTERRUPT


@pytest.mark.parametrize("backend", ["full-virt", "apicv"])
@pytest.mark.parametrize("gap", [-1, 0])
def test_back_to_back_the_held_handler_has_its_own_window(backend, gap):
    """B, held by A, starts at A's return and runs 3 us with interrupts off: C due 1 ns
    before B returns waits for B; C due at B's return does not."""
    row = _table(backend, K.DEVICE_IRQ)
    end_a = _handler_end(backend)
    t_b = end_a - 5000 - row[IRQ_HOST] - row[IRQ_RUN]
    rows = [(0, 0, "device_irq", -1, 0, D), (t_b, 0, "device_irq", -1, 0, 3000)]
    out, _ = _replay(backend, rows)
    end_b = out["start_ns"][1] + 3000
    assert out["start_ns"][1] == end_a + row[IRQ_WINDOW]
    t_c = end_b + gap - row[IRQ_HOST] - row[IRQ_RUN]
    out, _ = _replay(backend, [*rows, (t_c, 0, "device_irq")])
    assert out["start_ns"][2] == (end_b + row[IRQ_WINDOW] if gap < 0 else end_b + gap)


@pytest.mark.parametrize("dur", [D, 0])
def test_self_ipi_from_a_handler_takes_the_window_not_the_reentry(dur):
    """irq_work's self-IPI sent inside a handler (legacy injection): the ICR write exits,
    but the guest still has interrupts off on its re-entry, so KVM asks for a window and
    the IPI comes at the IRET; with no run time known it is injected on the re-entry."""
    b = "x2apic-tscdeadline"
    row = _table(b, K.IPI_IRQ)
    rows = [(0, 0, "device_irq", -1, 0, dur), (D // 2, 0, "ipi_send", 0), (D + 100, 0, "ipi_irq")]
    out, state = _replay(b, rows)
    sent = out["start_ns"][1] + out["stall_ns"][1]
    if dur:
        assert out["start_ns"][2] == state[0, State.IRQ_ON_AT] + row[IRQ_WINDOW]
        assert state[0, State.IRQ_ON_AT] == out["start_ns"][0] + D + out["stall_ns"][1]
        assert (out["exits"][2], out["exit_reason"][2]) == (1, R.PENDING_INTERRUPT)
    else:
        assert out["start_ns"][2] == sent + row[IRQ_INJECT]
        assert out["exits"][2] == 0


@pytest.mark.parametrize("backend", ["full-virt", "apicv"])
def test_due_before_the_handler_started_is_not_held(backend):
    """An IPI sent long before a device handler that the trace shows first: the vCPU would
    take it before that handler starts, so it is delivered then (replay order, as without
    run times), not held behind the handler."""
    rows = [(0, 1, "ipi_send", 0), (5000, 0, "device_irq", -1, 0, D), (5001, 0, "ipi_irq")]
    out, _ = _replay(backend, rows, n_cpus=2)
    plain, _ = _replay(backend, [r[:5] for r in rows], n_cpus=2)
    assert out["start_ns"][2] < out["start_ns"][1]
    assert out == plain
