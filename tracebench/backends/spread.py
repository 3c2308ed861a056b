"""Cost distributions: a parameter given as a distribution, and the per-event draw.

A parameter's plain value is its median (p50). Facets give it a spread (``NAME.FACET`` in
``--param``, TOML dotted keys, profiles, sweep grids, results metadata):

* ``NAME.p99``: its 99th percentile; with ``NAME.min`` (the floor it never goes below,
  default 0) the three fix a shifted log-normal, ``min + (p50 - min) * exp(sigma * z)``,
  the shape exit-handling and wake-up times take (a hard floor, a long right tail);
* ``NAME.sigma``: the same log-normal by its shape parameter instead of its p99.

A published figure is usually a mean (kvm-unit-tests' cycles per iteration, ``perf kvm
stat``'s Avg time): :func:`median_for_mean` gives the median that makes a shape's mean that
figure (the default costs are made so, costs.py). ``spread_scale`` multiplies every sigma
about the same mean (:meth:`Spread.scaled`): 0 is the constant at the mean.

How a replay samples it. A backend's cost tables are compositions of parameters
(``mechanisms.py``), so the model is composed again with every distributed parameter at
one quantile ``u``: :data:`LEVELS` tables, level ``j`` at ``u = (j + 0.5) / LEVELS``. The
parameters inside one event move together (comonotonic: a cold cache or a busy host slows
every part of one exit), so a table entry's level-``j`` value is exactly the ``u``
quantile of that entry's cost. Each event draws its level from a counter-based generator,
SplitMix64's finaliser of (``cost_seed``, the event's trace time, vCPU and kind)
(:func:`cost_level`): a pure function of the event, so chunking, lane groups, checkpoints
and replaying a window of the trace cannot change a draw; backends with the same seed draw
the same level for the same event (common random numbers: their differences are not noise).
Two events of one vCPU and kind at one trace nanosecond draw the same level.

Composing :data:`LEVELS` times per backend would cost ~60 ms a backend; the tables are
composed at :data:`GRID` points evenly spaced in ``z`` and interpolated between them, in
``log`` (exact for an entry with one log-normal term; tests/test_cost_spread.py bounds the
error at 0.05 % with a floor and sigma 0.76).
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np
from numba import config
from numba.extending import overload, register_jitable

#: quantile levels per table; the top one is u = 0.99951, so p99.9 is still resolved
LEVELS = 1024
#: points in z at which the model is composed
GRID = 65
#: facets a parameter may take, with what each means
FACETS = {
    "p99": "99th percentile (with the value as p50: a log-normal above NAME.min)",
    "min": "floor of the distribution (default 0)",
    "sigma": "log-normal shape parameter of NAME - NAME.min (instead of NAME.p99)",
}
_Z99 = NormalDist().inv_cdf(0.99)
LEVEL_Z = np.array([NormalDist().inv_cdf((j + 0.5) / LEVELS) for j in range(LEVELS)])
GRID_Z = np.linspace(LEVEL_Z[0], LEVEL_Z[-1], GRID)


@dataclasses.dataclass(frozen=True)
class Spread:
    """A shifted log-normal: ``floor + (p50 - floor) * exp(sigma * z)``, z standard normal."""

    p50: float
    sigma: float
    floor: float = 0.0

    @classmethod
    def of(cls, name: str, p50: float, facets: dict[str, float], where: str) -> Spread | None:
        """The distribution the facets describe (None: a constant); bad facets raise
        ``ValueError`` with a one-line message naming ``where`` and the parameter."""
        floor = facets.get("min", 0.0)
        if "p99" in facets and "sigma" in facets:
            raise ValueError(f"{where}: {name}.p99 and {name}.sigma both given; one fixes "
                             "the other")
        if "p99" not in facets and "sigma" not in facets:
            if "min" in facets:
                raise ValueError(f"{where}: {name}.min needs {name}.p99 or {name}.sigma")
            return None
        if floor > p50 or (floor == p50 and facets.get("p99", p50) != p50):
            raise ValueError(f"{where}: {name}.min={floor:g} must be below the median "
                             f"{name}={p50:g}")
        if "sigma" in facets:
            sigma = facets["sigma"]
            if not 0 <= sigma <= 5:
                raise ValueError(f"{where}: {name}.sigma={sigma:g} is outside [0, 5]")
        else:
            p99 = facets["p99"]
            if p99 < p50:
                raise ValueError(f"{where}: {name}.p99={p99:g} is below the median "
                                 f"{name}={p50:g}")
            sigma = math.log((p99 - floor) / (p50 - floor)) / _Z99 if p99 > p50 else 0.0
        return cls(p50, sigma, floor) if sigma > 0 else None

    def at(self, z: np.ndarray | float) -> np.ndarray | float:
        """The quantile at standard-normal ``z``."""
        return self.floor + (self.p50 - self.floor) * np.exp(self.sigma * np.asarray(z))

    @property
    def p99(self) -> float:
        return float(self.at(_Z99))

    @property
    def mean(self) -> float:
        """The mean a replay draws: the average of the :data:`LEVELS` quantiles (the
        log-normal's own mean, ``exp(sigma**2 / 2)``, less the tail beyond the top level:
        1.2 % less at sigma 1.04, the widest default). Rounded to 1e-6 so that a median
        derived from a published mean (:func:`median_for_mean`) gives that mean back
        exactly."""
        return round(self._mean, 6)

    @property
    def _mean(self) -> float:
        return self.floor + (self.p50 - self.floor) * _level_mean(self.sigma)

    def scaled(self, k: float) -> Spread | None:
        """The shape (sigma) times ``k`` about the same mean and floor, a mean-preserving
        spread: the median moves so the mean stays; ``k = 0`` is the constant at the mean
        (None)."""
        if k == 1:
            return self
        if k <= 0:
            return None
        sigma = self.sigma * k
        p50 = self.floor + (self.mean - self.floor) / _level_mean(sigma)
        return Spread(p50, sigma, self.floor)


def _level_mean(sigma: float) -> float:
    """Mean of ``exp(sigma * z)`` over the levels' quantiles (1 for sigma 0)."""
    return float(np.mean(np.exp(sigma * LEVEL_Z))) if sigma else 1.0


def median_for_mean(name: str, mean: float, facets: dict[str, float]) -> tuple[
        float, dict[str, float]]:
    """The median and facets of the distribution with the shape ``facets`` describe (given
    at a median of ``mean``) whose mean is ``mean``: for a published figure that is a mean
    (kvm-unit-tests' cycles per iteration, ``perf kvm stat``'s Avg time). The shape, sigma
    and the floor's place relative to the median, is kept (:func:`rescaled`)."""
    s = Spread.of(name, mean, facets, name)
    if s is None:
        return mean, dict(facets)
    ratio = mean / s._mean
    return mean * ratio, rescaled(facets, ratio)


def rescaled(facets: dict[str, float], ratio: float) -> dict[str, float]:
    """``facets`` for a median ``ratio`` times the old one, the shape kept: the p99 and the
    floor scale with the median, sigma is the shape itself."""
    return {f: v if f == "sigma" else v * ratio for f, v in facets.items()}


def level_tables(compose_at, spreads: dict[str, Spread], cost_mask: np.ndarray
                 ) -> np.ndarray:
    """``(LEVELS, ...)`` float tables: ``compose_at(values)`` (a float table composed with
    the distributed parameters at ``values``) at each level's quantile. Entries where
    ``cost_mask`` is false (exit counts, reasons, flags) must not depend on the values."""
    grid = np.stack([compose_at({n: float(s.at(z)) for n, s in spreads.items()})
                     for z in GRID_Z])
    if not (grid[:, ~cost_mask] == grid[0, ~cost_mask]).all():
        raise ValueError("a distributed parameter changes which exits the model takes, not "
                         "only what they cost")
    # interpolation in z between grid points, entry by entry: of the logarithm where an
    # entry is positive at every point (exact for one log-normal term), else linear
    pos = np.interp(LEVEL_Z, GRID_Z, np.arange(GRID))
    lo = np.minimum(pos.astype(np.int64), GRID - 2)
    frac = (pos - lo).reshape((-1,) + (1,) * (grid.ndim - 1))
    positive = (grid > 0).all(axis=0)
    logs = np.log(np.where(positive, grid, 1.0))
    out = np.where(positive, np.exp(logs[lo] * (1 - frac) + logs[lo + 1] * frac),
                   grid[lo] * (1 - frac) + grid[lo + 1] * frac)
    out[:, ~cost_mask] = grid[0, ~cost_mask]
    return out


_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def cost_level(seed, ts, cpu, kind, levels):
    """The cost level, in ``[0, levels)``, that an event at trace time ``ts`` on ``cpu`` of
    ``kind`` draws under ``seed`` (see the module docstring). Python ints here (the
    reference and ``NUMBA_DISABLE_JIT``); the kernel's compiled twins are below."""
    return seeded_level(seed_hash(seed), ts, cpu, kind, levels)


def seed_hash(seed):
    """The first of :func:`cost_level`'s three rounds, the seed's alone: a replay loop
    computes it once (:func:`seeded_level` takes it)."""
    return _mix64((int(seed) * _GOLDEN + _GOLDEN) & _MASK64)


def seeded_level(h, ts, cpu, kind, levels):
    """:func:`cost_level` from ``h = seed_hash(seed)``."""
    h = _mix64(h ^ (int(ts) & _MASK64))
    h = _mix64(h ^ ((int(cpu) << 8) | int(kind)))
    # the top 32 bits scaled to [0, levels): a multiply and a shift, no division
    return ((h >> 32) * int(levels)) >> 32


if not config.DISABLE_JIT:

    @register_jitable(inline="always")
    def _mix_nb(z):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    @overload(seed_hash)
    def _seed_hash_nb(seed):
        def first(seed):
            golden = np.uint64(_GOLDEN)
            return _mix_nb(np.uint64(seed) * golden + golden)
        return first

    @overload(seeded_level)
    def _seeded_level_nb(h, ts, cpu, kind, levels):
        def level(h, ts, cpu, kind, levels):
            h = _mix_nb(h ^ np.uint64(ts))
            h = _mix_nb(h ^ ((np.uint64(cpu) << np.uint64(8)) | np.uint64(kind)))
            return np.int64(((h >> np.uint64(32)) * np.uint64(levels)) >> np.uint64(32))
        return level

    @overload(cost_level)
    def _cost_level_nb(seed, ts, cpu, kind, levels):
        return lambda seed, ts, cpu, kind, levels: seeded_level(seed_hash(seed), ts, cpu, kind,
                                                                levels)
