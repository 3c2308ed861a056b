"""The bulk HdrHistogram path agrees with the ``hdrh`` library value by value.

The kernels never call ``hdrh``: they compute the counts index themselves
(``kernel.hdr_index``), and ``hist.py`` fills a histogram from the counts to encode it.
If the index formula drifted, a decoded histogram would still be self-consistent, so
these tests compare against the library recording the same values one by one.
"""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from tracebench import hist
from tracebench.backends.kernel import hdr_index


def _values(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    log_uniform = np.exp(rng.uniform(0, np.log(hist.HIGHEST_NS), n)).astype(np.int64)
    edges = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, hist.HIGHEST_NS]
    return np.concatenate([log_uniform, np.array(edges, dtype=np.int64)])


def _bulk(values: np.ndarray) -> np.ndarray:
    geo = hist.geometry()
    counts = np.zeros(hist.counts_len(), dtype=np.int64)
    for v in values.tolist():
        counts[hdr_index(v, geo)] += 1
    return counts


def _library(values: np.ndarray) -> HdrHistogram:
    h = hist.new_histogram()
    for v in values.tolist():
        assert h.record_value(max(v, 0))
    return h


@pytest.mark.parametrize("seed", [1, 2])
def test_index_formula_is_the_librarys(seed):
    h = hist.new_histogram()
    geo = hist.geometry()
    for v in _values(seed, 3000).tolist():
        assert hdr_index(v, geo) == h._counts_index_for(v), v


def test_out_of_range_values_are_clamped():
    geo = hist.geometry()
    assert hdr_index(-5, geo) == hdr_index(0, geo)
    assert hdr_index(hist.HIGHEST_NS * 10, geo) == hdr_index(hist.HIGHEST_NS, geo)


def test_encoded_counts_decode_to_the_librarys_histogram():
    values = _values(3, 5000)
    ours = HdrHistogram.decode(hist.encode(_bulk(values)))
    ref = _library(values)
    assert ours.get_total_count() == ref.get_total_count() == len(values)
    for p in (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0):
        assert ours.get_value_at_percentile(p) == ref.get_value_at_percentile(p), p
    assert ours.get_min_value() == ref.get_min_value()
    assert ours.get_max_value() == ref.get_max_value()


def test_percentiles_are_the_librarys():
    values = _values(4, 4000)
    ref = _library(values)
    got = hist.percentiles(_bulk(values))
    assert got == [ref.get_value_at_percentile(p) for p in hist.PERCENTILES]
    assert hist.percentiles(np.zeros(hist.counts_len(), dtype=np.int64)) == [None] * 5


def test_encode_reuses_nothing_between_calls():
    """Encoding fills one scratch histogram: each blob depends only on its own counts."""
    a, b = _bulk(_values(5, 500)), _bulk(_values(6, 50))
    empty = np.zeros(hist.counts_len(), dtype=np.int64)
    fresh = {id(c): hist.to_histogram(c).encode().decode() for c in (a, b)}
    blobs = [hist.encode(c) for c in (a, b, empty, a)]
    assert blobs[0] == blobs[3] == fresh[id(a)] and blobs[1] == fresh[id(b)]
    assert HdrHistogram.decode(blobs[2]).get_total_count() == 0
    assert HdrHistogram.decode(blobs[1]).get_total_count() == 61
