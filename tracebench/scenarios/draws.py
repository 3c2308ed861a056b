"""Counter-based random draws: every random quantity is a pure function of where it is used.

A scenario never consumes a random *stream*; it asks for draw number ``i`` of a named
stream, ``u01(key, i)``, where ``key`` names (seed, scenario part, vCPU, quantity). The
value is SplitMix64's finaliser of ``key + i * golden``: the counter-based use of the
generator Java's ``SplittableRandom`` is built on (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014), which passes BigCrush. So a trace can be
generated window by window, in any window size, and draw ``i`` is the same number: the
bytes of a trace do not depend on how it was cut into chunks.

Time is kept in integer nanoseconds throughout, and sums of random gaps are integer
cumulative sums (floating-point sums would depend on where a sum was restarted).
"""

from __future__ import annotations

import numpy as np

from tracebench.jit import kernel

GOLDEN = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1


def mix64(z: int) -> int:
    """SplitMix64's finaliser on a Python int (key derivation; the kernels use the same)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def stream_key(*path: int) -> int:
    """The key of a named stream: ``stream_key(seed, part, cpu, quantity)``, a uint64 int."""
    key = 0
    for item in path:
        key = mix64(key * GOLDEN + int(item) + 1)
    return key


@kernel
def _u01_nb(keys, idx, out):
    golden = np.uint64(GOLDEN)
    for i in range(len(out)):
        z = keys[i] + np.uint64(idx[i]) * golden
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        # 53 random bits, centred in their interval: strictly inside (0, 1)
        out[i] = (np.float64(z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


def u01(key, idx) -> np.ndarray:
    """Uniform floats in (0, 1): draw ``idx`` of stream ``key`` (each broadcast to the other).

    ``key`` is one stream key (an int) or an array of them (uint64), ``idx`` int64 draw
    numbers. Never 0 or 1, so ``log(u)`` is finite.
    """
    keys = np.asarray(key, dtype=np.uint64) if not isinstance(key, int) else np.uint64(key)
    idx = np.asarray(idx, dtype=np.int64)
    shape = np.broadcast_shapes(keys.shape, idx.shape)
    keys = np.ascontiguousarray(np.broadcast_to(keys, shape)) if keys.shape != shape else keys
    idx = np.ascontiguousarray(np.broadcast_to(idx, shape)) if idx.shape != shape else idx
    out = np.empty(shape, dtype=np.float64)
    _u01_nb(np.ascontiguousarray(keys).ravel(), np.ascontiguousarray(idx).ravel(), out.ravel())
    return out


def exponential_ns(key, idx, mean_ns: float) -> np.ndarray:
    """Exponential durations with mean ``mean_ns``, rounded to whole ns (int64)."""
    return np.rint(-np.log(u01(key, idx)) * mean_ns).astype(np.int64)


def uniform_around(key, idx, mean_ns: int, spread: float) -> np.ndarray:
    """int64 times uniform in ``mean * [1 - spread, 1 + spread]`` (at least 1 ns)."""
    u = u01(key, idx)
    return np.maximum(1, np.rint(mean_ns * (1 - spread + 2 * spread * u))).astype(np.int64)


def integers(key, idx, low, high) -> np.ndarray:
    """int64 uniform in ``[low, high)`` (``high - low`` well below 2**53)."""
    low = np.asarray(low, dtype=np.int64)
    span = np.asarray(high, dtype=np.int64) - low
    return low + np.minimum((u01(key, idx) * span).astype(np.int64), span - 1)


def geometric(key, idx, p: float) -> np.ndarray:
    """Trials to the first success (>= 1), success probability ``p`` (inverse transform)."""
    if p >= 1:
        return np.ones(np.shape(idx), dtype=np.int64)
    return 1 + np.floor(np.log(u01(key, idx)) / np.log1p(-p)).astype(np.int64)
