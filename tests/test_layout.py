"""The layout (``backends/layout.py``) is the one place the model's numbers live: the dtype
table, the histogram geometry, the array constructors and the plain ints the kernels read
all follow its enums."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tracebench import hist
from tracebench.backends import get_backend, kernel
from tracebench.backends import layout as L
from tracebench.replayer import driver
from tracebench.schema import N_KINDS, N_REASONS, ExitReason

#: each enum and the prefix of the plain ints derived from it
DERIVED = [(L.State, "S_"), (L.Out, "OUT_"), (L.KindAgg, "A_"), (L.ExitAgg, "E_"),
           (L.Hdr, "H_"), (L.KindCol, ""), (L.IpiCol, "IPI_")]


@pytest.mark.parametrize(("enum", "prefix"), DERIVED, ids=[e.__name__ for e, _ in DERIVED])
def test_plain_ints_follow_the_enums(enum, prefix):
    """Every member has its plain int, of the same name and value; members index a row
    densely (0 .. n-1), so the ``N_*`` widths are their counts."""
    assert sorted(int(m) for m in enum) == list(range(len(enum)))
    for m in enum:
        value = getattr(L, prefix + m.name)
        assert type(value) is int and value == int(m), m


def test_dtype_table_follows_out():
    assert list(L.COLUMN_DTYPES) == list(L.OUT_NAMES) == [m.label for m in L.Out]
    assert list(L.COLUMN_DTYPES.values()) == [m.dtype for m in L.Out]
    assert driver.COLUMN_DTYPES is L.COLUMN_DTYPES  # the runner's table is the layout's
    cols = driver.output_columns(10)[0]
    assert [(k, v.dtype) for k, v in cols.items()] == [(m.label, m.dtype) for m in L.Out]
    assert len(L.Out) <= L.N_OUT and L.N_OUT * 8 % 64 == 0  # block rows: whole cache lines


def test_hist_geometry_follows_hdr():
    geo = hist.geometry()
    h = hist.new_histogram()
    assert geo.dtype == np.int64 and len(geo) == len(L.Hdr) == L.N_HDR
    for m in L.Hdr:
        assert geo[m] == getattr(h, m.attr), m
    assert geo[L.H_HIGHEST] == hist.HIGHEST_NS
    assert geo[L.H_COUNTS_LEN] == hist.counts_len()


def test_constructors_follow_initial_values():
    state = L.new_state(3)
    assert state.shape == (3, L.N_STATE)
    for m in L.State:
        assert (state[:, m] == m.initial).all(), m
    assert {m for m in L.State if m.initial == L.NO_TIME} == {
        L.State.DEADLINE, L.State.IPI_ARRIVE, L.State.IDLE_SINCE, L.State.WOKE_AT,
        L.State.DEADLINE_TRACE, L.State.IRQ_OFF_AT}
    agg = L.new_exit_agg(2)
    assert agg.shape == (2, N_REASONS, L.E_COLS)
    assert (agg[..., L.E_MIN] == np.iinfo(np.int64).max).all()
    assert (agg[..., [L.E_COUNT, L.E_TOTAL, L.E_MAX]] == 0).all()
    assert L.new_kind_agg().shape == (N_KINDS, L.A_COLS)


def test_model_tables_follow_columns():
    b = get_backend("full-virt")
    model = b.compile(b.params())
    assert model.kind_table.shape == (N_KINDS, L.N_KIND_COLS)
    assert model.ipi_table.shape == (L.N_IPI_COLS,)
    described = model.describe()
    assert list(described["ipi"]) == list(L.IPI_COL_NAMES)
    assert all(set(row) <= set(L.KIND_COL_NAMES) for row in described["kinds"].values())
    reasons = {r.name for r in ExitReason}  # reason columns shown by name
    assert described["ipi"]["reason"] in reasons and described["ipi"]["short_reason"] in reasons


def test_lane_stacking_round_trips():
    """Each lane's part of a stacked array is that lane's array, as a writable view."""
    per_lane = [L.new_exit_agg(2) + j for j in range(L.LANES)]
    for name in L.LANE_AXIS:
        stacked = L.stack_lanes(name, per_lane)
        for j in range(L.LANES):
            view = L.lane_view(name, stacked, j)
            assert np.array_equal(view, per_lane[j]), name
        L.lane_view(name, stacked, 1)[0, 0, 0] = -5
        assert -5 in stacked


def test_vcpu_state_is_a_named_view():
    flat = L.new_state(2).reshape(-1)
    L.vcpu_state(flat, 2)[1, L.State.BUSY] = 42
    assert flat[1 * L.N_STATE + L.S_BUSY] == 42


def test_kernel_cache_key_covers_the_layout():
    """Numba's disk cache checks only the kernel file's time stamp; the kernels close over a
    digest of the other sources compiled into them, which numba hashes into the cache key,
    so editing the layout recompiles rather than loading a stale kernel."""
    sources = b"".join(Path(m.__file__).read_bytes()
                       for m in (L, kernel.lanewise, kernel.aggregates, kernel.D,
                                 kernel.outputs, kernel.jit, kernel.schema))
    assert hashlib.sha256(sources).hexdigest() == kernel.SOURCES
    for k in (kernel.replay_chunk_nb, kernel.replay_lanes_nb):
        py = getattr(k, "py_func", k)
        cells = [c.cell_contents for c in py.__closure__]
        assert kernel.SOURCES in cells
    widths = {c.cell_contents for k in (kernel.replay_chunk_nb, kernel.replay_lanes_nb)
              for c in getattr(k, "py_func", k).__closure__ if isinstance(c.cell_contents, int)}
    assert widths == {1, L.LANES}
