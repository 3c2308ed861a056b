"""The four-lane kernel (``backends/kernel.py`` at lane width 4) equals the single-backend
kernel and the plain-Python reference, lane by lane, on random traces.

Lanes hold different backends (and, past the members of a group, repeats of the last
one), so a lane that read another lane's tables or state would show here.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import run_kernel, run_reference
from tests.test_kernel_reference import _compare, traces
from tracebench import hist
from tracebench.backends import builtin_backends
from tracebench.backends.kernel import replay_lanes_nb
from tracebench.backends.layout import LANES, N_OUT, OUT_NAMES
from tracebench.replayer.driver import (
    COLUMN_DTYPES,
    PAGE,
    BackendRun,
    LaneGroup,
    flat,
    output_columns,
    replay_units,
)

BUILTIN = sorted(builtin_backends())


def _group(names: list[str], n_cpus: int) -> tuple[list[BackendRun], LaneGroup]:
    runs = []
    for name in names:
        b = builtin_backends()[name]
        ps = b.params()
        runs.append(BackendRun(b, ps, b.compile(ps), n_cpus))
    return runs, LaneGroup(runs)


def _lane_outputs(group: LaneGroup, cols) -> np.ndarray:
    """One call over the whole trace; outputs as (rows, N_OUT, LANES)."""
    n = len(cols["ts_ns"])
    out = np.full(max(n, 1) * N_OUT * LANES, 12345, dtype=np.int64)
    replay_lanes_nb(cols["ts_ns"], cols["cpu"], cols["kind"], cols["target"], cols["arg"],
                    cols["dur_ns"], group.kind_tables, group.ipi_tables, group.n_cpus,
                    hist.geometry(), flat(group.state), out, flat(group.kind_agg),
                    flat(group.exit_agg), flat(group.lat_counts), flat(group.terr_counts))
    return out[:n * N_OUT * LANES].reshape(n, N_OUT, LANES)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces(), names=st.lists(st.sampled_from(BUILTIN), min_size=1, max_size=LANES))
def test_lanes_equal_kernel_and_reference(data, names):
    cols, n_cpus = data
    if len(cols["ts_ns"]) == 0:
        return
    runs, group = _group(names, n_cpus)
    got = _lane_outputs(group, cols)
    for lane, name in enumerate(names):
        out, single = run_kernel(name, cols, n_cpus)
        lane_out = {col: got[:, j, lane] for j, col in enumerate(OUT_NAMES)}
        ref, _ = run_reference(name, cols, n_cpus)
        _compare(lane_out, ref)
        for col in OUT_NAMES:
            assert np.array_equal(lane_out[col], out[col].astype(np.int64)), (name, col)
        run = runs[lane]  # the member's arrays are views of its lane
        assert np.array_equal(run.kind_agg, single.kind_agg), name
        assert np.array_equal(run.exit_agg, single.exit_agg), name
        assert np.array_equal(run.lat_counts, single.lat_counts), name
        assert np.array_equal(run.terr_counts, single.terr_counts), name
        assert np.array_equal(run.state, single.state), name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces(), chunk=st.sampled_from([1, 3, 17]))
def test_lanes_in_chunks_equal_one_pass(data, chunk):
    """State carried across chunks and blocks: chunked aggregates equal one pass."""
    cols, n_cpus = data
    names = BUILTIN[:LANES]
    one_pass_runs, one_pass = _group(names, n_cpus)
    one_pass.run_aggregates(cols, hist.geometry())
    chunked_runs, chunked = _group(names, n_cpus)
    n = len(cols["ts_ns"])
    for lo in range(0, n, chunk):
        chunked.run_aggregates({k: v[lo:lo + chunk] for k, v in cols.items()}, hist.geometry())
    for a, b in zip(one_pass_runs, chunked_runs, strict=True):
        assert np.array_equal(a.kind_agg, b.kind_agg)
        assert np.array_equal(a.exit_agg, b.exit_agg)
        assert np.array_equal(a.lat_counts, b.lat_counts)
        assert np.array_equal(a.state, b.state)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces(), names=st.lists(st.sampled_from(BUILTIN), min_size=1, max_size=LANES),
       chunk=st.sampled_from([1, 5, 64]), reuse=st.booleans())
def test_lanes_typed_columns_equal_kernel(data, names, chunk, reuse):
    """Rows kept: each member's typed columns, chunk by chunk (reused or fresh), equal the
    single-backend kernel's, dtype included; lanes past the members write the last one's
    columns and must leave them right."""
    cols, n_cpus = data
    n = len(cols["ts_ns"])
    if n == 0:
        return
    runs, group = _group(names, n_cpus)
    parts = []
    for lo in range(0, n, chunk):
        outs = group.run_chunk({k: v[lo:lo + chunk] for k, v in cols.items()},
                               hist.geometry(), reuse=reuse)
        parts.append([{k: v.copy() for k, v in o.items()} for o in outs])
    for lane, name in enumerate(names):
        got = {k: np.concatenate([p[lane][k] for p in parts]) for k in OUT_NAMES}
        want, single = run_kernel(name, cols, n_cpus)
        for col in OUT_NAMES:
            assert got[col].dtype == COLUMN_DTYPES[col], col
            assert np.array_equal(got[col], want[col]), (name, col)
        assert np.array_equal(runs[lane].lat_counts, single.lat_counts), name
        assert np.array_equal(runs[lane].exit_agg, single.exit_agg), name


def test_output_columns_are_separate_and_staggered():
    sets = output_columns(1000, LANES)
    columns = [c for s in sets for c in s.values()]
    assert [c.dtype for c in sets[1].values()] == list(COLUMN_DTYPES.values())
    assert all(len(c) == 1000 and c.flags.c_contiguous for c in columns)
    offsets = [c.ctypes.data % PAGE for c in columns]
    assert len(set(offsets)) == len(columns)  # no two share a page offset
    assert all(o % 64 == 0 for o in offsets)  # whole cache lines: aligned for Arrow too
    for j, c in enumerate(columns):  # no overlap: each keeps what was written to it
        c[:] = j
    assert all((c == j).all() for j, c in enumerate(columns))


def test_lanes_hold_different_backends():
    """The comparison can fail: the lanes of a mixed group give different answers."""
    from tests.test_chunking import random_trace

    cols = random_trace(4, 3000, 4)
    runs, group = _group(["full-virt", "apicv", "native", "kvm-pv"], 4)
    got = _lane_outputs(group, cols)
    stall = OUT_NAMES.index("stall_ns")
    assert len({tuple(got[:, stall, lane]) for lane in range(LANES)}) == LANES
    assert runs[0].exit_agg[:, :, 0].sum() > runs[2].exit_agg[:, :, 0].sum() == 0


def test_groups_take_built_in_backends_by_four():
    b = builtin_backends()
    runs = [BackendRun(b[n], b[n].params(), b[n].compile(b[n].params()), 2) for n in BUILTIN]
    units = replay_units(runs)
    groups = [u for u in units if isinstance(u, LaneGroup)]
    singles = [u for u in units if isinstance(u, BackendRun)]
    assert sum(len(g.runs) for g in groups) + len(singles) == len(runs)
    assert all(3 <= len(g.runs) <= LANES for g in groups)
    assert len(singles) == len(runs) % LANES if len(runs) % LANES < 3 else not singles
    with pytest.raises(ValueError):
        LaneGroup(runs[:LANES + 1])
