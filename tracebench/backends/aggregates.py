"""What kernels add to the aggregates: exit records per (vCPU, reason) and HdrHistogram
counts. Plain Python functions that numba compiles into each kernel that calls them, so a
plug-in kernel can use them whether it is compiled or not (README, plug-in contract).
"""

from __future__ import annotations

from numba.extending import register_jitable

from tracebench.backends import layout as L
from tracebench.jit import bit_length
from tracebench.schema import N_REASONS


@register_jitable
def hdr_slot(v, unit_mag, half_mag, sub_mask, half_count, highest):
    """HdrHistogram's counts index of ``v`` (clamped to [0, highest]), geometry unpacked."""
    v = min(max(v, 0), highest)
    bucket = bit_length(v | sub_mask) - unit_mag - (half_mag + 1)
    return ((bucket + 1) << half_mag) + (v >> (bucket + unit_mag)) - half_count


@register_jitable
def hdr_index(value, hdr):
    """Counts-array index of ``value`` (clamped to [0, highest]); HdrHistogram's formula."""
    return hdr_slot(value, hdr[L.H_UNIT_MAG], hdr[L.H_HALF_MAG], hdr[L.H_SUB_MASK],
                    hdr[L.H_HALF_COUNT], hdr[L.H_HIGHEST])


@register_jitable
def record_exits(exit_agg, c, reason, n, exit_ns):
    """Add ``n`` exits of ``exit_ns`` in all to the flat ``exit_agg`` row of (vCPU, reason)."""
    if n > 0:
        per = exit_ns if n == 1 else exit_ns // n  # one exit is the common case: no division
        b = (c * N_REASONS + reason) * L.E_COLS
        exit_agg[b + L.E_COUNT] += n
        exit_agg[b + L.E_TOTAL] += exit_ns
        exit_agg[b + L.E_MIN] = min(exit_agg[b + L.E_MIN], per)
        exit_agg[b + L.E_MAX] = max(exit_agg[b + L.E_MAX], per)
