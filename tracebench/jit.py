"""Numba configured in one place: every kernel is cached on disk and releases the GIL.

``NUMBA_DISABLE_JIT=1`` runs the same functions as plain Python (the test suite passes both ways).
"""

import os

import numpy as np
from numba import config, njit

# LLVM's SLP vectorizer packs straight-line lane arithmetic into vector instructions (the
# four-lane kernel in ``backends/kernel.py`` relies on it: 1.5x there). Numba leaves it off
# by default; this turns it on for every compile in the process unless NUMBA_SLP_VECTORIZE
# says otherwise.
if "NUMBA_SLP_VECTORIZE" not in os.environ:
    config.SLP_VECTORIZE = 1

#: decorator for all compiled kernels
kernel = njit(cache=True, nogil=True, boundscheck=False, fastmath=False)

if config.DISABLE_JIT:

    def bit_length(v):
        """``int.bit_length`` of a non-negative int64 (plain Python when the JIT is off)."""
        return int(v).bit_length()

    def lowest_bit(v):
        """Index of the lowest set bit of a non-zero uint64."""
        v = int(v)
        return (v & -v).bit_length() - 1

    def popcount(v):
        """Set bits of a uint64."""
        return int(v).bit_count()

else:
    from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

    @kernel
    def bit_length(v):
        """``int.bit_length`` of a non-negative int64: one LZCNT instead of a branch ladder."""
        return 64 - leading_zeros(np.int64(v))

    @kernel
    def lowest_bit(v):
        """Index of the lowest set bit of a non-zero uint64: one TZCNT."""
        return trailing_zeros(np.uint64(v))

    @kernel
    def popcount(v):
        """Set bits of a uint64. LLVM turns this bit-slicing form into one POPCNT (a loop
        over the bits was vectorized into a block that cost the replay loop registers)."""
        v = np.uint64(v)
        m1, m2, m4 = (np.uint64(0x5555555555555555), np.uint64(0x3333333333333333),
                      np.uint64(0x0F0F0F0F0F0F0F0F))
        v = v - ((v >> np.uint64(1)) & m1)
        v = (v & m2) + ((v >> np.uint64(2)) & m2)
        v = (v + (v >> np.uint64(4))) & m4
        return np.int64((v * np.uint64(0x0101010101010101)) >> np.uint64(56))
