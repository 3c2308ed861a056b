"""Percentiles over many traces: adding the stored HdrHistograms gives the percentile of
the concatenated raw latencies, within HdrHistogram's precision (3 significant digits)."""

from __future__ import annotations

import numpy as np
import pytest

import tracebench
from tracebench import hist
from tracebench.backends.kernel import hdr_index
from tracebench.errors import TracebenchError
from tracebench.scenarios import generate
from tracebench.trace import write_trace


def _raw_percentile(values: np.ndarray, pct: float) -> int:
    """The same rank definition as HdrHistogram: the value at rank round(p/100 * n)."""
    s = np.sort(values)
    rank = max(int(pct * len(s) / 100 + 0.5), 1)
    return int(s[rank - 1])


def _check(merged_value: int, true_value: int) -> None:
    h = hist.new_histogram()
    # the reported value is the top of the bucket holding the true one ...
    assert h.get_lowest_equivalent_value(merged_value) <= true_value <= merged_value
    # ... which is HdrHistogram's stated precision: 3 significant digits
    assert abs(merged_value - true_value) <= max(true_value, 1) * 1e-3 + 1


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    d = tmp_path_factory.mktemp("hm")
    paths = []
    for name, cpus, dur, seed in (("timer-heavy", 2, 20_000_000, 4), ("ipi-storm", 4,
                                  10_000_000, 7), ("net-rr", 2, 10_000_000, 2)):
        cols, meta = generate(name, n_cpus=cpus, duration_ns=dur, seed=seed)
        write_trace(d / f"{name}.parquet", cols, meta)
        paths.append(d / f"{name}.parquet")
    return tracebench.replay(paths, ["full-virt", "apicv"], events=True)


@pytest.mark.parametrize("backend", ["full-virt", "apicv"])
def test_merged_percentiles_match_concatenated_raw_latencies(replayed, backend):
    s = replayed.summary.filter(kind="all", metric="latency_ns", backend=backend)
    assert s.height == 3 and len(set(s["count"])) == 3  # traces of different sizes
    merged = hist.merge_encoded(s["hdr"].to_list())
    raw = replayed.events.filter(backend=backend)["latency_ns"].to_numpy()
    assert int(merged.sum()) == len(raw) == int(s["count"].sum())
    for pct, got in zip(hist.PERCENTILES, hist.percentiles(merged), strict=True):
        _check(got, _raw_percentile(raw, pct))


def test_merge_of_shards_equals_the_whole_on_random_values():
    rng = np.random.default_rng(11)
    geo = hist.geometry()
    shards = [np.exp(rng.uniform(0, np.log(5e6), n)).astype(np.int64) for n in
              (10, 3_000, 40_000)]
    shards.append(rng.integers(1, 100, 5_000))  # a fast mode the others do not have
    blobs = []
    for values in shards:
        counts = np.zeros(hist.counts_len(), np.int64)
        np.add.at(counts, [hdr_index(int(v), geo) for v in values], 1)
        blobs.append(hist.encode(counts))
    merged = hist.merge_encoded(blobs)
    whole = np.concatenate(shards)
    for pct in (50.0, 90.0, 99.0, 99.9, 100.0):
        _check(hist.percentiles(merged, (pct,))[0], _raw_percentile(whole, pct))
    averaged = np.mean([hist.percentiles(hist.decode_counts(b), (50.0,))[0] for b in blobs])
    assert abs(averaged - _raw_percentile(whole, 50.0)) > 0.01 * _raw_percentile(whole, 50.0)


def test_merge_refuses_other_geometry():
    from hdrh.histogram import HdrHistogram

    other = HdrHistogram(1, 1000, 2)
    other.record_value(5)
    with pytest.raises(TracebenchError, match="written with another geometry"):
        hist.merge_encoded([other.encode().decode()])
    assert hist.merge_encoded([]).sum() == 0
