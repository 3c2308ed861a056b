"""The compiled kernel and the plain-Python reference agree exactly on random traces.

Hypothesis builds traces dense in the cases the model distinguishes: ties and
1 ns gaps, interrupts arriving while a vCPU is stalled, halted or inside a handler,
IPIs to unicast / all-but-self / mask targets, re-armed and cancelled timers. Every
registered backend is checked, in one chunk and in tiny chunks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import make_cols, run_kernel, run_reference
from tracebench.backends import get_backend, registered_backends
from tracebench.backends.layout import IPI_CALL_COST, IPI_TARGET_COST
from tracebench.schema import INTERRUPT_KINDS, N_KINDS, EventKind
from tracebench.trace import empty_columns

BACKENDS = sorted(registered_backends())


@st.composite
def traces(draw, kinds=None):
    """Random traces; ``kinds``: the kind codes to draw from (repeat one to weight it),
    default every kind alike."""
    n_cpus = draw(st.integers(1, 5))
    n = draw(st.integers(0, 120))
    gaps = draw(st.lists(st.sampled_from([0, 1, 2, 50, 400, 1000, 2500, 20000]),
                         min_size=n, max_size=n))
    cols = empty_columns(n)
    cols["ts_ns"][:] = np.cumsum(np.array(gaps, dtype=np.int64)) if n else []
    cols["cpu"][:] = draw(st.lists(st.integers(0, n_cpus - 1), min_size=n, max_size=n))
    kind = st.integers(0, N_KINDS - 1) if kinds is None else st.sampled_from(kinds)
    kinds = draw(st.lists(kind, min_size=n, max_size=n))
    cols["kind"][:] = kinds
    # handler run times on interrupts: none, and on both sides of the gaps above
    durs = draw(st.lists(st.sampled_from([0, 0, 1, 400, 2500, 20000]), min_size=n, max_size=n))
    irq = np.isin(cols["kind"], [int(k) for k in INTERRUPT_KINDS])
    cols["dur_ns"][:] = np.where(irq, np.array(durs, dtype=np.int64), 0) if n else []
    for i, k in enumerate(kinds):
        if k == EventKind.IPI_SEND:
            tg = draw(st.integers(-2, n_cpus - 1))
            cols["target"][i] = tg
            if tg == -2:  # mostly vCPUs of the trace; sometimes stray bits past n_cpus
                cols["arg"][i] = draw(st.one_of(st.integers(1, (1 << n_cpus) - 1),
                                                st.integers(-(1 << 63), (1 << 63) - 1)))
        elif k == EventKind.TIMER_ARM:
            cols["arg"][i] = cols["ts_ns"][i] + draw(st.sampled_from([-1, 0, 1, 3000, 50000]))
    return cols, n_cpus


def _compare(out, ref):
    assert out["start_ns"].tolist() == ref.start_ns
    assert out["latency_ns"].tolist() == ref.latency_ns
    assert out["stall_ns"].tolist() == ref.stall_ns
    assert out["exit_ns"].tolist() == ref.exit_ns
    assert out["exits"].tolist() == ref.exits
    assert out["exit_reason"].tolist() == ref.reason
    terr = [None if v == -1 else v for v in out["timer_error_ns"].tolist()]
    assert terr == ref.timer_error_ns


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces(), chunk=st.sampled_from([None, 1, 3, 17]))
def test_kernel_equals_reference(backend, data, chunk):
    cols, n_cpus = data
    if len(cols["ts_ns"]) == 0:
        return
    out, run = run_kernel(backend, cols, n_cpus, chunk=chunk)
    ref, _ = run_reference(backend, cols, n_cpus)
    _compare(out, ref)
    # The aggregates the kernel keeps agree with its own per-event rows.
    assert run.kind_agg[:, 0].sum() == len(cols["ts_ns"])
    assert run.kind_agg[:, 1].sum() == out["exits"].sum()
    assert run.kind_agg[:, 2].sum() == out["stall_ns"].sum()
    assert run.exit_agg[:, :, 0].sum() == out["exits"].sum()
    assert run.lat_counts.sum() == len(cols["ts_ns"])


def test_reference_is_not_trivially_equal():
    """A changed cost must change the reference's answer (the comparison can fail)."""
    from tests.helpers import make_cols

    cols = make_cols([(0, 0, "eoi"), (10, 0, "clock_read")])
    a, _ = run_reference("full-virt", cols, 1)
    b, _ = run_reference("full-virt", cols, 1, params={"exit_roundtrip_cyc": 3000})
    assert a.latency_ns != b.latency_ns


@pytest.mark.parametrize("backend", ["full-virt", "apicv-ipiv", "kvm-pv"])
@pytest.mark.usefixtures("constant_costs")  # exact sums of one known cost
def test_masks_on_a_guest_wider_than_64_vcpus(backend):
    """A destination mask names vCPUs 0..63 whatever the guest's size; broadcasts reach all."""
    rows = [(0, 70, "ipi_send", -2, -(1 << 63) | 0b101),  # vCPUs 0, 2 and 63
            (10, 71, "ipi_send", -1), (20, 3, "ipi_send", 65)]
    rows += [(3000 + 10 * d, d, "ipi_irq") for d in (0, 2, 63, 64, 65, 69)]
    cols = make_cols(rows)
    out, _ = run_kernel(backend, cols, 72)
    ref, _ = run_reference(backend, cols, 72)
    _compare(out, ref)
    # the mask IPI counted three targets: its cost is call + 3 x target
    m = get_backend(backend).compile(get_backend(backend).params()).ipi_table
    assert out["stall_ns"][0] == m[IPI_CALL_COST] + 3 * m[IPI_TARGET_COST]
