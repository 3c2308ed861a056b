"""Numba configured in one place: every kernel is cached on disk and releases the GIL.

``NUMBA_DISABLE_JIT=1`` runs the same functions as plain Python (the test suite passes both ways).
"""

from numba import njit

#: decorator for all compiled kernels
kernel = njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
