"""HdrHistogram in bulk: kernels count into plain arrays, ``hdrh`` only encodes.

``hdrh``'s ``record_value`` costs ~5 us per value in Python (PEERS.md section 3).
The kernels compute the same counts-array index as the library
(:func:`tracebench.backends.kernel.hdr_index`, from the geometry named by
``tracebench.backends.layout.Hdr``) and add into an int64 array; this
module copies such an array into an ``HdrHistogram`` to encode it (base64 V2,
mergeable across shards and traces) and computes percentiles with the library's
own definition, vectorised.
"""

from __future__ import annotations

import numpy as np

from tracebench.backends.layout import Hdr

#: latency histograms track 1 ns .. 1000 s with 3 significant digits
LOWEST_NS = 1
HIGHEST_NS = 1_000_000_000_000
SIG_FIGS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)


def new_histogram():
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIG_FIGS)


_TEMPLATE = None


def _template():
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = new_histogram()
    return _TEMPLATE


def geometry() -> np.ndarray:
    """The int64 geometry array the kernels take: ``layout.Hdr``'s attributes in its order."""
    h = _template()
    return np.array([getattr(h, m.attr) for m in Hdr], dtype=np.int64)


def counts_len() -> int:
    return int(_template().counts_len)


def to_histogram(counts: np.ndarray):
    """An ``HdrHistogram`` holding ``counts`` (a kernel's counts array)."""
    h = new_histogram()
    view = np.ctypeslib.as_array(h.counts)
    view += counts.astype(view.dtype, copy=False)
    nz = np.flatnonzero(counts)
    if len(nz):
        h.set_internal_tacking_values(int(nz[0]), int(nz[-1]), int(counts.sum()))
    return h


_SCRATCH = None


def encode(counts: np.ndarray) -> str:
    """Base64 V2 HdrHistogram blob of ``counts`` (interoperable with Java/C/Rust hdrh).

    Fills one reused histogram: building a new one costs about as much as encoding it,
    and a replay encodes a dozen per backend."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = new_histogram()
    h = _SCRATCH
    view = np.ctypeslib.as_array(h.counts)
    view[:] = counts
    nz = np.flatnonzero(counts)
    if len(nz):
        h.set_internal_tacking_values(int(nz[0]), int(nz[-1]), int(counts.sum()))
    else:
        h.reset()
    return h.encode().decode()


def decode_counts(blob: str) -> np.ndarray:
    """Counts array of an encoded histogram (for merging encoded summaries)."""
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram.decode(blob)
    return np.ctypeslib.as_array(h.counts).astype(np.int64)


def percentiles(counts: np.ndarray, pcts=PERCENTILES) -> list[int | None]:
    """``hdrh.get_value_at_percentile`` for each of ``pcts``, without a Python loop over bins."""
    total = int(counts.sum())
    if total == 0:
        return [None] * len(pcts)
    h = _template()
    cum = np.cumsum(counts)
    out = []
    for p in pcts:
        target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
        idx = int(np.searchsorted(cum, target, side="left"))
        value = h.get_value_from_index(idx)
        out.append(int(h.get_highest_equivalent_value(value) if p else
                       h.get_lowest_equivalent_value(value)))
    return out


def merge_encoded(blobs) -> np.ndarray:
    """Counts array of the sum of encoded histograms (merging traces or shards: percentiles
    of the merged counts, never an average of percentiles). Empty ``blobs`` give zeros."""
    total = np.zeros(counts_len(), dtype=np.int64)
    for blob in blobs:
        if blob:
            c = decode_counts(blob)
            if len(c) != len(total):
                from tracebench.errors import TracebenchError

                raise TracebenchError(f"histogram of {len(c)} buckets, expected {len(total)} "
                                 f"(written with another geometry)")
            total += c
    return total


def bucket_values(indices: np.ndarray) -> np.ndarray:
    """The highest value (ns) each counts-array index stands for (what percentiles report)."""
    h = _template()
    return np.array([h.get_highest_equivalent_value(h.get_value_from_index(int(i)))
                     for i in indices], dtype=np.int64)


def cdf_points(counts: np.ndarray, max_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A cumulative distribution of ``counts`` as (value_ns, fraction <= value) at most
    ``max_points`` long, whatever the number of recorded values: one point per non-empty
    bucket, thinned evenly in rank when there are more (the last point, 1.0, is kept)."""
    nz = np.flatnonzero(counts)
    if len(nz) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    frac = np.cumsum(counts[nz]) / counts.sum()
    if len(nz) > max_points:
        # keep the buckets where the cumulative fraction crosses evenly spaced levels
        levels = np.linspace(0, 1, max_points)
        keep = np.unique(np.minimum(np.searchsorted(frac, levels), len(nz) - 1))
        nz, frac = nz[keep], frac[keep]
    return bucket_values(nz), frac
