"""The kernel tables (``model.kernel_tables``): the median tables, a directory and short
draw rows hold exactly the level tables' values an event reads, in little memory."""

from __future__ import annotations

import numpy as np
import pytest

from tracebench.backends import get_backend, registered_backends
from tracebench.backends import layout as L
from tracebench.backends.model import kernel_tables
from tracebench.backends.spread import LEVELS
from tracebench.errors import ParamError
from tracebench.schema import INTERRUPT_KINDS, N_KINDS

BACKENDS = sorted(registered_backends())


def _model(name: str, **overrides):
    b = get_backend(name)
    return b.compile(b.params(overrides=overrides))


def _draw_row(kind_table: np.ndarray, lanes: int, where: int, level: int, width: int):
    """The ``(width, lanes)`` draw row the directory entry at ``where`` gives ``level``."""
    dr = N_KINDS * L.N_KIND_COLS * lanes
    draws = kind_table[dr + L.N_DIR:].view(L.DRAW_DTYPE)
    row, step = kind_table[dr + where], kind_table[dr + where + 1]
    at = row + level * step
    return draws[at:at + width * lanes].reshape(width, lanes)


@pytest.mark.parametrize("names", [[n] for n in BACKENDS] + [BACKENDS[:L.LANES]],
                         ids=lambda n: "+".join(n))
def test_draw_rows_hold_the_level_tables(names):
    models = [_model(n) for n in names]
    lanes = len(models)
    kind_table, ipi_table = kernel_tables(models)
    dr = N_KINDS * L.N_KIND_COLS * lanes
    levels = max(m.levels for m in models)
    assert kind_table[dr + L.DIR_LEVELS] == levels
    median = kind_table[:dr].reshape(N_KINDS, L.N_KIND_COLS, lanes)
    assert ipi_table.shape == (L.N_IPI_COLS * lanes,)
    for j, m in enumerate(models):
        assert (median[..., j] == m.kind_table).all()
        assert (ipi_table.reshape(L.N_IPI_COLS, lanes)[:, j] == m.ipi_table).all()
    for lv in sorted({0, 1, 511, levels - 1} & set(range(levels))):
        for k in range(N_KINDS):
            cols = L.IRQ_DRAWN if k in INTERRUPT_KINDS else L.ACT_DRAWN
            got = _draw_row(kind_table, lanes, L.DIR_KIND + 2 * k, lv, len(cols))
            for j, m in enumerate(models):
                want = m.kind_levels[lv * m.levels // levels, k, list(cols)]
                assert (got[:, j] == want).all(), (k, lv, j)
        got = _draw_row(kind_table, lanes, L.DIR_IPI, lv, len(L.IPI_DRAWN))
        for j, m in enumerate(models):
            assert (got[:, j] == m.ipi_levels[lv * m.levels // levels, list(L.IPI_DRAWN)]).all()


def test_constant_costs_take_one_row_and_the_draws_stay_small():
    """A kind whose costs no level changes keeps one row (step 0); the draws of a backend
    with the default distributions fit in a fraction of L2 (1,024 full tables took 2 MB)."""
    m = _model("full-virt")
    assert m.levels == LEVELS
    kind_table, _ = kernel_tables([m])
    dr = N_KINDS * L.N_KIND_COLS
    steps = kind_table[dr + L.DIR_KIND + 1:dr + L.DIR_IPI:2]
    varies = [(m.kind_levels[:, k] != m.kind_levels[0, k]).any() for k in range(N_KINDS)]
    assert [s > 0 for s in steps] == varies and any(varies) and not all(varies)
    assert (kind_table.nbytes - dr * 8) < 256 * 1024
    constant, _ = kernel_tables([_model("full-virt", spread_scale=0)])
    assert constant[dr + L.DIR_LEVELS] == 1
    assert (constant[dr + L.DIR_KIND + 1:dr + L.N_DIR:2] == 0).all()


def test_draw_slots_follow_the_columns():
    """The plain ints of the draw rows' slots name the columns they hold, in order."""
    for cols, prefix in ((L.ACT_DRAWN, "D_"), (L.IRQ_DRAWN, "D_"), (L.IPI_DRAWN, "D_IPI_")):
        assert [getattr(L, prefix + c.name) for c in cols] == list(range(len(cols)))
        assert all(c.quantity == L.Q.NS for c in cols)
    drawn = set(L.ACT_DRAWN + L.IRQ_DRAWN)
    assert {c for c in L.KindCol if c.quantity == L.Q.NS} == drawn
    assert {c for c in L.IpiCol if c.quantity == L.Q.NS} == set(L.IPI_DRAWN)


def test_a_cost_past_the_draws_range_is_refused():
    with pytest.raises(ParamError, match="full-virt.*up to 2.15 s"):
        _model("full-virt", **{"exit_roundtrip_cyc.sigma": 5})
