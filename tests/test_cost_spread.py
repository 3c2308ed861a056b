"""Cost distributions: parsing, the level tables, the per-event draw, and kernel = lanes =
reference with distributions on (issue 14, item 4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import make_cols, run_kernel, run_reference
from tests.test_kernel_reference import _compare, traces
from tracebench import hist
from tracebench.backends import get_backend, registered_backends
from tracebench.backends import layout as L
from tracebench.backends.costs import DEFAULT_SPREADS
from tracebench.backends.params import ParamSet, param_values_from_toml, parse_assignments
from tracebench.backends.spread import LEVEL_Z, LEVELS, Spread, cost_level
from tracebench.errors import ParamError
from tracebench.replayer.driver import BackendRun, LaneGroup, replay_units
from tracebench.schema import EventKind as K

BACKENDS = sorted(registered_backends())
#: costs most backends read, with p99/p50 ratios wide enough to move every table entry
SPREAD_PARAMS = ("exit_roundtrip_cyc", "halt_wakeup_cyc", "inject_cyc", "timer_expiry_cyc",
                 "posted_notify_cyc", "host_irq_route_cyc", "icr_handler_cyc")


@st.composite
def spreads(draw, backend: str):
    """Random facets for the distributed costs ``backend`` reads, and a seed."""
    b = get_backend(backend)
    names = [p.name for p in b.param_specs() if p.spreadable and p.default > 0]
    chosen = draw(st.lists(st.sampled_from(names), max_size=4, unique=True))
    out: dict[str, float] = {"cost_seed": draw(st.integers(0, 2**31 - 1))}
    defaults = {p.name: p.default for p in b.param_specs()}
    for name in chosen:
        ratio = draw(st.sampled_from([1.0, 1.01, 1.5, 3.0, 10.0]))
        out[f"{name}.p99"] = defaults[name] * ratio
        if draw(st.booleans()):
            out[f"{name}.min"] = defaults[name] * draw(st.sampled_from([0.0, 0.5, 0.9]))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces(), chunk=st.sampled_from([None, 1, 7]), st_data=st.data())
def test_kernel_equals_reference_with_distributions(backend, data, chunk, st_data):
    cols, n_cpus = data
    if len(cols["ts_ns"]) == 0:
        return
    params = st_data.draw(spreads(backend))
    out, run = run_kernel(backend, cols, n_cpus, chunk=chunk, params=params)
    ref, model = run_reference(backend, cols, n_cpus, params=params)
    _compare(out, ref)
    assert run.lat_counts.sum() == len(cols["ts_ns"])


def _runs(names, n_cpus, params):
    out = []
    for name in names:
        b = get_backend(name)
        ps = b.params(overrides={k: v for k, v in params.items()
                                 if k.partition(".")[0] in {p.name for p in b.param_specs()}})
        out.append(BackendRun(b, ps, b.compile(ps), n_cpus))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces(), names=st.lists(st.sampled_from(BACKENDS), min_size=3, max_size=4,
                                     unique=True), seed=st.integers(0, 2**31 - 1))
def test_lanes_equal_single_kernel_with_distributions(data, names, seed):
    cols, n_cpus = data
    if len(cols["ts_ns"]) == 0:
        return
    params = {"cost_seed": seed, "exit_roundtrip_cyc.p99": 4000, "halt_wakeup_cyc.p99": 12000,
              "inject_cyc.p99": 1500}
    single = _runs(names, n_cpus, params)
    grouped = _runs(names, n_cpus, params)
    group = LaneGroup(grouped)
    outs = group.run_chunk(cols, hist.geometry())
    for run, lane_out in zip(single, outs, strict=True):
        alone = run.run_chunk(cols, hist.geometry())
        for col in alone:
            assert np.array_equal(alone[col], lane_out[col]), (run.backend.name, col)


def test_same_seed_same_bytes_other_seed_other_draws(tmp_path):
    from tracebench import api

    trace = "traces/fc-guest-mixed.parquet"
    runs = {}
    for tag, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / tag
        api.replay([trace], ["full-virt", "apicv"], out=out,
                   params={"cost_seed": seed, "halt_wakeup_cyc.p99": 9600})
        runs[tag] = sorted((p.relative_to(out), p.read_bytes())
                           for p in out.rglob("*.parquet") if "summary" in str(p))
    assert runs["a"] and runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_draw_is_a_function_of_the_event_only():
    """Chunks, lanes and windows cannot change a draw: it reads nothing but the event."""
    levels = [cost_level(7, t, 1, 3, LEVELS) for t in range(0, 200000, 7)]
    assert levels == [cost_level(7, t, 1, 3, LEVELS) for t in range(0, 200000, 7)]
    counts = np.bincount(levels, minlength=LEVELS)
    expected = len(levels) / LEVELS
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < LEVELS + 5 * np.sqrt(2 * LEVELS)  # uniform over the levels
    assert cost_level(7, 100, 1, 3, LEVELS) != cost_level(8, 100, 1, 3, LEVELS) or \
        cost_level(7, 101, 1, 3, LEVELS) != cost_level(8, 101, 1, 3, LEVELS)


def test_compiled_draw_equals_python_draw():
    from numba import njit

    compiled = njit(lambda s, t, c, k, n: cost_level(s, t, c, k, n))
    rng = np.random.default_rng(1)
    for _ in range(500):
        args = (int(rng.integers(0, 2**31)), int(rng.integers(0, 2**62)),
                int(rng.integers(0, 64)), int(rng.integers(0, 16)), LEVELS)
        assert compiled(*args) == cost_level(*args)


def test_a_levels_cost_is_that_quantile_of_the_composed_cost():
    """One distributed parameter: level j of an entry that is a sum of it and constants is
    the (j + 0.5) / LEVELS quantile of that sum, to the ns."""
    b = get_backend("full-virt")
    reads = {p.name for p in b.param_specs()}
    only = {f"{n}.sigma": 0 for n in DEFAULT_SPREADS if n != "exit_roundtrip_cyc" and n in reads}
    ps = b.params(overrides={**only, "exit_roundtrip_cyc.p99": 4590,
                             "exit_roundtrip_cyc.min": 900})
    model = b.compile(ps)
    assert model.levels == LEVELS
    # sigma 0: every cost a constant at its median (spread_scale 0 puts each at its mean)
    flat = b.params(overrides={**only, "exit_roundtrip_cyc.sigma": 0})
    base = b.compile(flat)
    assert base.levels == 1
    s = ps.spread("exit_roundtrip_cyc")
    col = (K.TIMER_ARM, L.ACT_COST)
    for j in (0, 10, 511, 1013, LEVELS - 1):
        x = float(s.at(LEVEL_Z[j]))
        ps_j = b.params(overrides={**only, "exit_roundtrip_cyc": x,
                                   "exit_roundtrip_cyc.sigma": 0})
        want = b.compile(ps_j).kind_table[col]
        assert abs(int(model.kind_levels[j][col]) - int(want)) <= 1, j
    costs = model.kind_levels[:, col[0], col[1]]
    assert (np.diff(costs) >= 0).all() and costs[-1] > costs[0]
    assert int(model.kind_table[col]) == int(base.kind_table[col])  # the median table
    # exits and reasons never change with a level
    assert (model.kind_levels[:, :, L.ACT_EXITS] == base.kind_table[:, L.ACT_EXITS]).all()


def test_spread_scale_zero_is_the_constant_model_at_the_means():
    """spread_scale 0 makes every distributed cost the constant at its mean (the published
    figure, for the defaults); the same costs given as constants by hand agree."""
    cols = make_cols([(0, 0, "timer_arm", -1, 5000), (0, 1, "idle_enter"),
                      (5000, 0, "timer_irq"), (6000, 0, "ipi_send", 1), (7000, 1, "ipi_irq")])
    spread = {"halt_wakeup_cyc.p99": 20000, "exit_roundtrip_cyc.p99": 5000}
    b = get_backend("full-virt")
    ps = b.params(overrides=spread)
    means = {n: s.mean for n, s in ps.spreads().items()}
    assert means["exit_roundtrip_cyc"] > ps["exit_roundtrip_cyc"]  # a right tail
    by_hand = {**spread, **means, **{f"{n}.sigma": 0 for n in means}}
    by_hand = {k: v for k, v in by_hand.items() if not k.endswith(".p99")}
    off, _ = run_kernel("full-virt", cols, 2, params={**spread, "spread_scale": 0})
    const, _ = run_kernel("full-virt", cols, 2, params=by_hand)
    on, _ = run_kernel("full-virt", cols, 2, params=spread)
    for col in off:
        assert np.array_equal(off[col], const[col])
    assert any(not np.array_equal(off[c], on[c]) for c in off)


@pytest.mark.parametrize("name", sorted(DEFAULT_SPREADS))
def test_a_default_spreads_mean_is_its_published_figure(name):
    """The published figures are means (kvm-unit-tests' cycles per iteration, perf kvm
    stat's Avg): the default median is below the figure, the mean the replay draws is it."""
    from tracebench.backends.costs import CYCLE_PARAMS

    figure = {p.name: p for p in CYCLE_PARAMS}[name]
    ps = ParamSet(CYCLE_PARAMS)
    s = ps.spread(name)
    mean = float(np.mean(s.at(LEVEL_Z)))
    published = round(mean)  # every default figure is a whole number of cycles
    assert mean == pytest.approx(published, rel=1e-9) and s.p50 < published
    assert f"mean {published:,}" in figure.source
    # the levels a replay draws average to the figure; spread_scale keeps it
    half = ParamSet(CYCLE_PARAMS, {"spread_scale": 0.5}).spread(name)
    assert float(np.mean(half.at(LEVEL_Z))) == pytest.approx(mean, rel=1e-9)
    assert half.p50 > s.p50 and half.p99 < s.p99
    assert ParamSet(CYCLE_PARAMS, {"spread_scale": 0}).model_values()[name] == published


def test_a_profiles_published_mean_stays_its_mean():
    ps = get_backend("full-virt").params(profile="modern-2024")
    assert ps.spread("exit_roundtrip_cyc").mean == 1050  # cpuid exit, Dec 2024
    assert ps["exit_roundtrip_cyc"] < 1050


def test_lane_groups_keep_seeds_apart():
    names = ["full-virt", "apicv", "svm", "avic", "eli", "kvm-pv"]
    runs = _runs(names[:3], 2, {"cost_seed": 1}) + _runs(names[3:], 2, {"cost_seed": 2})
    units = replay_units(runs)
    groups = [u for u in units if isinstance(u, LaneGroup)]
    assert len(groups) == 2
    assert {frozenset(r.backend.name for r in g.runs) for g in groups} == \
        {frozenset(names[:3]), frozenset(names[3:])}
    with pytest.raises(ValueError, match="share"):
        LaneGroup(runs[:2] + runs[3:4])


# ------------------------------------------------------------------------------ parsing


def test_facets_from_the_command_line_and_toml(tmp_path):
    assert parse_assignments(["halt_wakeup_cyc.p99=7200", "halt_wakeup_cyc.p50=4000"]) == \
        {"halt_wakeup_cyc.p99": 7200.0, "halt_wakeup_cyc": 4000.0}
    inline = tmp_path / "inline.toml"
    inline.write_text("[params]\nhalt_wakeup_cyc = {p50 = 4000, p99 = 9000, min = 1000}\n")
    dotted = tmp_path / "dotted.toml"
    dotted.write_text("[params]\nhalt_wakeup_cyc.p50 = 4000\nhalt_wakeup_cyc.p99 = 9000\n"
                      "halt_wakeup_cyc.min = 1000\n")
    want = {"halt_wakeup_cyc": 4000, "halt_wakeup_cyc.p99": 9000, "halt_wakeup_cyc.min": 1000}
    assert param_values_from_toml(inline) == want
    assert param_values_from_toml(dotted) == want
    b = get_backend("full-virt")
    ps = b.params(overrides=want)
    s = ps.spread("halt_wakeup_cyc")
    assert s == Spread.of("halt_wakeup_cyc", 4000, {"p99": 9000, "min": 1000}, "x")
    assert abs(s.p99 - 9000) < 1e-6 and s.floor == 1000
    assert ps.as_dict()["halt_wakeup_cyc.p99"] == 9000
    # a result's recorded parameters rebuild the same set (digest included)
    again = b.params(overrides=ps.as_dict())
    assert again.digest() == ps.digest()


def test_a_new_median_keeps_the_shape():
    ps = get_backend("full-virt").params(overrides={"halt_wakeup_cyc.p99": 9600})
    ps.update({"halt_wakeup_cyc": ps["halt_wakeup_cyc"] / 2})
    assert ps["halt_wakeup_cyc.p99"] == pytest.approx(4800)


@pytest.mark.parametrize("values, message", [
    ({"halt_wakeup_cyc.p90": 1}, "unknown facet 'halt_wakeup_cyc.p90'"),
    ({"halt_wakeup_cyc.p99": 100}, "halt_wakeup_cyc.p99=100 is below the median"),
    ({"halt_wakeup_cyc.p99": 9000, "halt_wakeup_cyc.sigma": 0.3}, "both given"),
    ({"halt_wakeup_cyc.min": 9000, "halt_wakeup_cyc.p99": 9900}, "must be below the median"),
    ({"insn_emulation_cyc.min": 10}, "needs insn_emulation_cyc.p99"),
    ({"tsc_ghz.p99": 3}, "tsc_ghz is not a cost"),
    ({"cost_seed": 1.5}, "must be a whole number"),
    ({"nosuch.p99": 3}, "unknown parameter 'nosuch'"),
])
def test_bad_facets_are_one_line_errors(values, message):
    with pytest.raises(ParamError, match=message) as exc:
        ParamSet(get_backend("full-virt").param_specs(), values, where="--param")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("--param")


def test_bad_facet_in_toml_names_the_file(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[params]\nhalt_wakeup_cyc = {p50 = 4000, p95 = 9000}\n")
    with pytest.raises(ParamError, match=f"{f}: unknown facet halt_wakeup_cyc.p95"):
        param_values_from_toml(f)


# ------------------------------------------------------------------------------ the pins


@pytest.mark.parametrize("scenario, seconds", [("timer-heavy", 0.05), ("idle-nohz", 2)])
def test_timer_latency_percentiles_spread_on_every_virtualized_backend(scenario, seconds):
    """Issue 14: with constant costs p50 = p99 on these scenarios (a timer's path is one
    sum); with the default distributions p99 > p50 on every backend but bare metal."""
    from tracebench.scenarios import generate

    cols, meta = generate(scenario, n_cpus=2, duration_ns=int(seconds * 1e9), seed=3)
    timers = cols["kind"] == K.TIMER_IRQ
    assert timers.sum() > 100
    flat = []
    for backend in BACKENDS:
        if backend == "native":
            continue
        lat = run_kernel(backend, cols, meta.n_cpus)[0]["latency_ns"][timers]
        p50, p99 = np.percentile(lat, [50, 99])
        assert p99 > p50, (backend, p50, p99)
        const = run_kernel(backend, cols, meta.n_cpus, params={"spread_scale": 0})[0]
        c50, c99 = np.percentile(const["latency_ns"][timers], [50, 99])
        flat.append(c99 == c50)
    assert any(flat)  # the constant model collapses them: the pin can fail


def test_timer_heavy_apicv_timer_latency_is_below_full_virt_with_distributions():
    from tracebench.scenarios import generate

    cols, meta = generate("timer-heavy", n_cpus=2, duration_ns=20_000_000, seed=3)
    errs = {}
    for b in ("apicv", "full-virt"):
        terr = run_kernel(b, cols, 2)[0]["timer_error_ns"]
        errs[b] = terr[terr >= 0]
    for q in (50, 90, 99):
        assert np.percentile(errs["apicv"], q) < np.percentile(errs["full-virt"], q), q
