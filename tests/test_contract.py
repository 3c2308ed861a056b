"""Contract tests run over every registered backend, built-in or plug-in."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from tests.helpers import run_kernel
from tests.test_kernel_reference import traces
from tracebench.backends import registered_backends
from tracebench.backends.costs import CYCLE_PARAMS, PROFILES
from tracebench.backends.mechanisms import AXES
from tracebench.schema import INTERRUPT_KINDS, ExitReason

BACKENDS = sorted(registered_backends())


@pytest.mark.parametrize("name", BACKENDS)
def test_spec_is_complete(name):
    b = registered_backends()[name]
    assert len(b.description) > 40, "one paragraph saying which real system it stands for"
    assert set(b.mechanisms) == set(AXES)
    for spec in b.param_specs():
        assert spec.unit and spec.source and spec.doc, spec.name
        assert spec.source[:3] in ("[C]", "[D]", "[U]", "[S]") or spec.source.startswith("backend")
    for profile in PROFILES:
        b.compile(b.params(profile=profile))


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces())
def test_invariants(name, data):
    cols, n_cpus = data
    if len(cols["ts_ns"]) == 0:
        return
    out, run = run_kernel(name, cols, n_cpus)
    assert (out["latency_ns"] >= 0).all()
    assert (out["stall_ns"] >= 0).all()
    assert (out["exit_ns"] >= 0).all()
    # exits by reason sum to the total; no exit without a reason and vice versa
    assert run.exit_agg[:, :, 0].sum() == out["exits"].sum() == run.kind_agg[:, 1].sum()
    assert ((out["exits"] > 0) == (out["exit_reason"] != 0)).all()
    # a vCPU's own instruction stream never goes back in time; interrupts are taken
    # at their delivery time, which may precede guest events processed before them
    guest = ~np.isin(cols["kind"], [int(k) for k in INTERRUPT_KINDS])
    for c in range(n_cpus):
        starts = out["start_ns"][(cols["cpu"] == c) & guest]
        assert (np.diff(starts) >= 0).all()
    # timer error only on timer interrupts
    terr_rows = np.flatnonzero(out["timer_error_ns"] >= 0)
    assert all(cols["kind"][r] == INTERRUPT_KINDS[0] for r in terr_rows)
    if name == "native":
        assert out["exits"].sum() == 0
        assert run.exit_agg[:, ExitReason.NONE + 1:, :2].sum() == 0


def test_every_parameter_is_read_by_some_mechanism_option():
    """No dead parameters: each is read by at least one option on some axis."""
    from tracebench.backends.base import Backend
    from tracebench.errors import ParamError

    bases = [dict(b.mechanisms) for b in registered_backends().values()]
    used = {"tsc_ghz"}
    for axis, options in AXES.items():
        for option in options:
            composed = 0
            for base in bases:  # some options go only with some others (check_mechanisms)
                try:
                    b = Backend(name="probe", description="probe",
                                mechanisms={**base, axis: option})
                except ParamError:
                    continue
                used |= {p.name for p in b.param_specs()}
                composed += 1
            assert composed, f"{axis} = {option!r} composes with no registered backend"
    assert used == {p.name for p in CYCLE_PARAMS}
