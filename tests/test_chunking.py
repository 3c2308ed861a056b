"""Streaming in chunks gives exactly the results of one whole-trace pass, for every backend.

Per-vCPU state, aggregates and HdrHistogram counts are carried across chunks, so the
chunk size (down to one row) must not change a single summary cell, exit-table cell or
per-event row. Checked through the public API on random traces (every kind, IPIs to
all target forms, 1 ns gaps and ties) and on structured ones (timer/idle/IPI episodes
interleaved over vCPUs), in memory and through a results folder, where each backend
reuses its output arrays from chunk to chunk; with per-event rows off, the kernels run
in small blocks and must still produce the same aggregates.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import tracebench
from tracebench import hist
from tracebench.backends import builtin_backends
from tracebench.replayer import driver as runner
from tracebench.schema import N_KINDS, EventKind
from tracebench.trace import TraceMeta, empty_columns, write_trace

BACKENDS = sorted(builtin_backends())
K = EventKind


def random_trace(seed: int, n: int, n_cpus: int) -> dict[str, np.ndarray]:
    """Every kind, random vCPUs, gaps from 0 (ties) to 20 us, all IPI target forms,
    handler run times."""
    rng = np.random.default_rng(seed)
    cols = empty_columns(n)
    cols["ts_ns"][:] = np.cumsum(rng.choice([0, 1, 2, 50, 400, 1000, 2500, 20000], n))
    cols["cpu"][:] = rng.integers(0, n_cpus, n)
    cols["kind"][:] = rng.integers(0, N_KINDS, n)
    send = cols["kind"] == K.IPI_SEND
    cols["target"][send] = rng.integers(-2, n_cpus, send.sum())
    masked = send & (cols["target"] == -2)
    cols["arg"][masked] = rng.integers(1, 1 << n_cpus, masked.sum())
    arm = cols["kind"] == K.TIMER_ARM
    cols["arg"][arm] = cols["ts_ns"][arm] + rng.choice([-1, 0, 1, 3000, 50000], arm.sum())
    irq = np.isin(cols["kind"], [K.TIMER_IRQ, K.DEVICE_IRQ, K.IPI_IRQ])
    cols["dur_ns"][irq] = rng.choice([0, 1, 400, 2500, 20000], irq.sum())
    return cols


def structured_trace(n_episodes: int, n_cpus: int) -> dict[str, np.ndarray]:
    """Timer with idle, busy timer, unicast IPI and device episodes, round-robin vCPUs."""
    rows = []
    for e in range(n_episodes):
        c, t = e % n_cpus, 10_000 * e
        other = (c + 1) % n_cpus
        match e % 4:
            case 0:
                rows += [
                    (t, c, K.TIMER_ARM, -1, t + 5000),
                    (t + 900, c, K.IDLE_ENTER, -1, 0),
                    (t + 5000, c, K.TIMER_IRQ, -1, 0),
                    (t + 5400, c, K.IDLE_EXIT, -1, 0),
                    (t + 6500, c, K.EOI, -1, 0),
                ]
            case 1:
                rows += [
                    (t, c, K.TIMER_ARM, -1, t + 3000),
                    (t + 1500, c, K.CLOCK_READ, -1, 0),
                    (t + 3000, c, K.TIMER_IRQ, -1, 0),
                    (t + 4500, c, K.EOI, -1, 0),
                ]
            case 2:
                rows += [
                    (t, c, K.IPI_SEND, other, 0),
                    (t + 2500, other, K.IPI_IRQ, -1, 0),
                    (t + 3900, other, K.EOI, -1, 0),
                ]
            case 3:
                rows += [
                    (t, c, K.DEVICE_IRQ, -1, 0),
                    (t + 1800, c, K.EOI, -1, 0),
                    (t + 1800, c, K.CLOCK_READ, -1, 0),
                ]  # a tie, kept in input order
    rows.sort(key=lambda r: r[0])  # stable: ties keep their order
    cols = empty_columns(len(rows))
    for j, name in enumerate(("ts_ns", "cpu", "kind", "target", "arg")):
        cols[name][:] = [r[j] for r in rows]
    return cols


def write(tmp_path, name: str, cols, n_cpus: int):
    meta = TraceMeta(n_cpus=n_cpus, duration_ns=int(cols["ts_ns"][-1]) + 1, method="synth")
    return write_trace(tmp_path / f"{name}.parquet", cols, meta)


TRACES = {
    "random-a": lambda: (random_trace(1, 400, 3), 3),
    "random-b": lambda: (random_trace(2, 250, 5), 5),
    "structured": lambda: (structured_trace(80, 4), 4),
}


def _sorted_events(frame) -> pl.DataFrame:
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    df = df.with_columns(pl.col("kind", "exit_reason").cast(pl.String))
    return df.sort(["backend", "row"])  # row: the event's row in the trace


def _check_same(a, b) -> None:
    assert_frame_equal(a.summary, b.summary)
    assert_frame_equal(a.exits, b.exits)


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("chunking")
    return {name: write(d, name, *make()) for name, make in TRACES.items()}


@pytest.fixture(scope="module")
def whole(traces):
    """One pass, one chunk per trace, results in memory."""
    return {name: tracebench.replay([p], BACKENDS) for name, p in traces.items()}


@pytest.mark.parametrize("chunk", [1, 7, 1000])
@pytest.mark.parametrize("name", list(TRACES))
def test_chunked_in_memory_equals_whole(traces, whole, name, chunk):
    ref = whole[name]
    got = tracebench.replay([traces[name]], BACKENDS, chunk_rows=chunk)
    _check_same(got, ref)
    assert_frame_equal(_sorted_events(got.events), _sorted_events(ref.events))


@pytest.mark.parametrize("chunk", [1, 7, 1000])
@pytest.mark.parametrize("name", list(TRACES))
def test_chunked_to_folder_equals_whole(traces, whole, tmp_path, name, chunk):
    """Written results (reused output arrays per backend) read back equal to the pass."""
    ref = whole[name]
    got = tracebench.replay([traces[name]], BACKENDS, chunk_rows=chunk, out=tmp_path / "res")
    _check_same(got, ref)
    events = _sorted_events(got.events)
    expected = _sorted_events(ref.events).select(events.columns)
    assert_frame_equal(events, expected, check_dtypes=False)  # hive columns read as strings
    for backend in BACKENDS:  # every backend has its own, complete file
        part = events.filter(backend=backend)
        assert part.height == len(tracebench.read_trace(traces[name])[0]["ts_ns"])


@pytest.mark.parametrize("block", [1, 5, 64])
@pytest.mark.parametrize("name", list(TRACES))
def test_aggregates_only_in_blocks_equal_whole(traces, whole, monkeypatch, name, block):
    """Without per-event rows the kernels run in small blocks: same aggregates."""
    monkeypatch.setattr(runner, "BLOCK_ROWS", block)
    got = tracebench.replay([traces[name]], BACKENDS, events=False, chunk_rows=97)
    _check_same(got, whole[name])
    assert got.events is None


def test_chunk_sizes_change_nothing_they_could(traces, whole):
    """The comparison can fail: a different trace gives different summaries."""
    a = whole["random-a"].summary.filter(kind="all")["p99_ns"].to_list()
    b = whole["structured"].summary.filter(kind="all")["p99_ns"].to_list()
    assert a != b


def test_row_block_and_columns_hold_the_same_outputs():
    """The kernel's two output layouts (typed columns; int64 rows where rows are discarded)
    hold the same values, and the aggregates do not depend on the layout."""
    from tracebench.backends.kernel import replay_chunk_nb
    from tracebench.backends.layout import N_OUT, OUT_NAMES

    cols = random_trace(3, 5000, 4)
    b = builtin_backends()["full-virt"]
    ps = b.params()
    by_columns = runner.BackendRun(b, ps, b.compile(ps), 4)
    got = by_columns.run_chunk(cols, hist.geometry())
    by_rows = runner.BackendRun(b, ps, b.compile(ps), 4)
    rows = np.full((5000, N_OUT), 7, dtype=np.int64)
    f = runner.flat
    replay_chunk_nb(cols["ts_ns"], cols["cpu"], cols["kind"], cols["target"], cols["arg"],
                    cols["dur_ns"], *by_rows._tables, 4,
                    hist.geometry(), f(by_rows.state), f(rows), f(by_rows.kind_agg),
                    f(by_rows.exit_agg), f(by_rows.lat_counts), by_rows.terr_counts)
    assert list(got) == list(runner.COLUMN_DTYPES) == list(OUT_NAMES)
    for j, (name, dt) in enumerate(runner.COLUMN_DTYPES.items()):
        assert got[name].dtype == dt and got[name].flags.c_contiguous
        assert np.array_equal(got[name], rows[:, j].astype(dt)), name
    assert (rows[:, N_OUT - 1] == 7).all()  # the padding column is left alone
    assert (got["exits"] > 0).any() and (got["timer_error_ns"] >= 0).any()  # not trivial
    for a, b_ in ((by_columns.kind_agg, by_rows.kind_agg),
                  (by_columns.lat_counts, by_rows.lat_counts),
                  (by_columns.exit_agg, by_rows.exit_agg), (by_columns.state, by_rows.state)):
        assert np.array_equal(a, b_)


@pytest.mark.parametrize("name", list(TRACES))
def test_lane_groups_equal_backends_replayed_alone(traces, whole, name):
    """All backends at once run four to a pass (rows kept and handed to the sink per
    member); each alone runs the single-backend kernel. Same rows and summaries, so no
    member gets another's columns or aggregates."""
    ref = whole[name]
    assert len(BACKENDS) >= runner.MIN_LANES  # else no group would form
    for backend in BACKENDS:
        alone = tracebench.replay([traces[name]], [backend])
        assert_frame_equal(alone.summary, ref.summary.filter(backend=backend))
        assert_frame_equal(alone.exits, ref.exits.filter(backend=backend))
        assert_frame_equal(_sorted_events(alone.events),
                           _sorted_events(ref.events.filter(backend=backend)))
