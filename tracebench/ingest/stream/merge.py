"""Candidate rows as numpy columns, kept sorted by (ts, seq) without full sorts.

Records arrive nearly in time order (ftrace merges its per-CPU buffers by time;
perf script too), so the rows of a chunk are usually already sorted: a check, and a
merge with the few rows the polars rules made, replaces a sort of the whole window.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tracebench.ingest.rules.base import ROW_DTYPES
from tracebench.jit import kernel


def empty_rows() -> dict:
    return {k: np.empty(0, t) for k, t in ROW_DTYPES.items()}


def from_frame(df: pl.DataFrame) -> dict:
    """Rows a polars rule made, as numpy columns."""
    return {k: df[k].to_numpy().astype(t, copy=False) for k, t in ROW_DTYPES.items()}


@kernel
def _is_sorted_nb(ts, seq):
    for i in range(1, len(ts)):
        if ts[i] < ts[i - 1] or (ts[i] == ts[i - 1] and seq[i] < seq[i - 1]):
            return False
    return True


@kernel
def _merge_nb(ts_a, seq_a, ts_b, seq_b, out):
    """Merge order of two sorted runs: out[k] = index into a, or len(a) + index into b."""
    na = len(ts_a)
    nb = len(ts_b)
    i = 0
    j = 0
    k = 0
    while i < na and j < nb:
        # ties (same line of two inputs) take ``a`` first
        if ts_b[j] < ts_a[i] or (ts_b[j] == ts_a[i] and seq_b[j] < seq_a[i]):
            out[k] = na + j
            j += 1
        else:
            out[k] = i
            i += 1
        k += 1
    while i < na:
        out[k] = i
        i += 1
        k += 1
    while j < nb:
        out[k] = na + j
        j += 1
        k += 1


def _sorted(rows: dict) -> dict:
    if _is_sorted_nb(rows["ts"], rows["seq"]):
        return rows
    order = np.lexsort((rows["seq"], rows["ts"]))
    return {k: v[order] for k, v in rows.items()}


def merge_sorted(a: dict, b: dict) -> dict:
    """Two row sets, each sorted by (ts, seq), as one sorted set."""
    if len(b["ts"]) == 0:
        return a
    if len(a["ts"]) == 0:
        return b
    order = np.empty(len(a["ts"]) + len(b["ts"]), np.int64)
    _merge_nb(a["ts"], a["seq"], b["ts"], b["seq"], order)
    return {k: np.concatenate([a[k], b[k]])[order] for k in a}


def sort_new(fast: dict, parts: list[dict]) -> dict:
    """One chunk's rows, sorted: the compiled path's (in line order) and the rules' ones."""
    rows = _sorted(fast)
    if parts:
        slow = {k: np.concatenate([p[k] for p in parts]) for k in ROW_DTYPES}
        rows = merge_sorted(rows, _sorted(slow))
    return rows
