import pytest


@pytest.fixture
def tmp_trace(tmp_path):
    return tmp_path / "trace.parquet"


@pytest.fixture
def constant_costs(monkeypatch):
    """Every cost the constant at its mean (``spread_scale`` defaults to 0), for tests that
    pin exact times the model composes: the published kvm-unit-tests figures are means of
    quiet loops (the defaults' means), and a boundary test needs one known cost.
    Distributions are tested in test_cost_spread.py."""
    import dataclasses

    from tracebench.backends import base

    monkeypatch.setattr(base, "CYCLE_PARAMS", tuple(
        dataclasses.replace(p, default=0) if p.name == "spread_scale" else p
        for p in base.CYCLE_PARAMS))
