"""Lane-wise arithmetic for the one kernel source: a value is one int64 (lane width 1) or a
tuple of four (one lane per backend), and every operation picks its form at compile time.

The kernel (``kernel.py``) is written once over these operations; numba compiles it once
per lane width. On tuples each operation is written out per lane (no loop over a tuple
index), so it is straight-line code that LLVM's SLP vectorizer packs into one AVX2
instruction (``jit.py`` enables it); on plain values it is the scalar operation itself.
With ``NUMBA_DISABLE_JIT=1`` the same functions run as plain Python on ints and tuples.

``load`` and ``splat`` make values and take the lane width (a compile-time constant in the
kernel); the others take their width from their arguments' type.
"""

from __future__ import annotations

import operator

import numpy as np
from numba import config, types
from numba.extending import overload

#: the vector width: four int64 fill one AVX2 register
QUAD = 4


def _width(w) -> int:
    """The lane width a compile-time argument stands for (1 or QUAD)."""
    if not isinstance(w, types.IntegerLiteral) or w.literal_value not in (1, QUAD):
        raise TypeError(f"lane width must be a constant 1 or {QUAD}, not {w}")
    return w.literal_value


def load(a, o, w):
    """``w`` lanes of ``a`` from flat offset ``o``: ``a[o]``, or ``(a[o], ..., a[o + 3])``,
    as int64 whatever ``a`` stores (the cost draws are narrower)."""
    return np.int64(a[o]) if w == 1 else tuple(np.int64(x) for x in a[o:o + w])


def store(a, o, v):
    """``v``'s lanes into ``a`` from flat offset ``o``."""
    if isinstance(v, tuple):
        a[o:o + len(v)] = v
    else:
        a[o] = v


def splat(x, w):
    """``x`` in each of ``w`` lanes."""
    return x if w == 1 else (x,) * w


def select(m, a, b):
    """``a`` where the mask ``m`` is true, else ``b``, lane by lane."""
    if isinstance(m, tuple):
        return tuple(x if c else y for c, x, y in zip(m, a, b, strict=True))
    return a if m else b


def lane(v, j):
    """Lane ``j`` of ``v`` (``v`` itself at width 1)."""
    return v[j] if isinstance(v, tuple) else v


def may(m):
    """Whether a block whose every effect is a ``select`` on the mask ``m`` (or on a part
    of it) can change anything: at width 1 the mask itself, so a branch skips the block as
    scalar code would; at width 4 always, so the selects do the work (a branch on four
    lanes' masks is taken as often as not, and mispredicted as often)."""
    return any(m) if isinstance(m, tuple) else bool(m)


def _binary(op):
    def apply(a, b):
        if isinstance(a, tuple):
            return tuple(op(x, y) for x, y in zip(a, b, strict=True))
        return op(a, b)

    apply.__name__ = apply.__qualname__ = getattr(op, "__name__", "op")
    apply.__doc__ = f"``{apply.__name__}`` lane by lane."
    if not config.DISABLE_JIT:

        @overload(apply)
        def _apply_nb(a, b):
            if isinstance(a, types.BaseTuple):
                return lambda a, b: (op(a[0], b[0]), op(a[1], b[1]), op(a[2], b[2]),
                                     op(a[3], b[3]))
            return lambda a, b: op(a, b)

    return apply


add = _binary(operator.add)
sub = _binary(operator.sub)
mul = _binary(operator.mul)
vmax = _binary(max)
eq = _binary(operator.eq)
ne = _binary(operator.ne)
gt = _binary(operator.gt)
ge = _binary(operator.ge)
both = _binary(operator.and_)
either = _binary(operator.or_)


if not config.DISABLE_JIT:

    @overload(load, prefer_literal=True)
    def _load_nb(a, o, w):
        if _width(w) == 1:
            return lambda a, o, w: np.int64(a[o])
        return lambda a, o, w: (np.int64(a[o]), np.int64(a[o + 1]), np.int64(a[o + 2]),
                                np.int64(a[o + 3]))

    @overload(store)
    def _store_nb(a, o, v):
        if isinstance(v, types.BaseTuple):
            def quad(a, o, v):
                a[o] = v[0]
                a[o + 1] = v[1]
                a[o + 2] = v[2]
                a[o + 3] = v[3]
            return quad

        def one(a, o, v):
            a[o] = v
        return one

    @overload(splat, prefer_literal=True)
    def _splat_nb(x, w):
        if _width(w) == 1:
            return lambda x, w: x
        return lambda x, w: (x, x, x, x)

    @overload(select)
    def _select_nb(m, a, b):
        if isinstance(m, types.BaseTuple):
            return lambda m, a, b: (a[0] if m[0] else b[0], a[1] if m[1] else b[1],
                                    a[2] if m[2] else b[2], a[3] if m[3] else b[3])
        return lambda m, a, b: a if m else b

    @overload(lane)
    def _lane_nb(v, j):
        if isinstance(v, types.BaseTuple):
            return lambda v, j: v[j]
        return lambda v, j: v

    @overload(may)
    def _may_nb(m):
        if isinstance(m, types.BaseTuple):
            return lambda m: True
        return lambda m: m
