"""Numba configured in one place: every kernel is cached on disk and releases the GIL.

``NUMBA_DISABLE_JIT=1`` runs the same functions as plain Python (the test suite passes both ways).
"""

import numpy as np
from numba import config, njit

#: decorator for all compiled kernels
kernel = njit(cache=True, nogil=True, boundscheck=False, fastmath=False)

if config.DISABLE_JIT:

    def bit_length(v):
        """``int.bit_length`` of a non-negative int64 (plain Python when the JIT is off)."""
        return int(v).bit_length()

else:
    from numba.cpython.unsafe.numbers import leading_zeros

    @kernel
    def bit_length(v):
        """``int.bit_length`` of a non-negative int64: one LZCNT instead of a branch ladder."""
        return 64 - leading_zeros(np.int64(v))
