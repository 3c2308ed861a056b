"""Parameter grids: a small TOML schema expanded into parameter points.

Schema (every value a number; units are the parameters' own, see ``tracebench backends
--params``)::

    # grid.toml
    [params]                                   # each key is one axis; axes are crossed
    exit_roundtrip_cyc = [1000, 1250, 1530]    # a list of values
    timer_expiry_cyc = { from = 300, to = 1200, num = 4 }         # linear, ends included
    host_ipi_cyc = { from = 500, to = 4000, num = 4, scale = "log" }   # geometric
    inject_cyc = { from = 200, to = 600, step = 100 }             # linear by step

    [[zip]]                                    # one axis whose keys move together
    posted_inject_cyc = [530, 400]
    posted_notify_cyc = [2000, 1500]

Every axis (each ``[params]`` key, each ``[[zip]]`` table) is crossed with every other;
the keys of one ``[[zip]]`` table need lists (or ranges) of one length and step together.
A name may appear once in the whole grid. The points come out in a fixed order: axes in
file order, the last axis varying fastest.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from tracebench.backends.tomlfile import read_toml
from tracebench.errors import ParamError

#: a grid larger than this is almost always a typo (a step of 1 cycle)
MAX_POINTS = 1_000_000
_RANGE_KEYS = {"from", "to", "num", "step", "scale"}


@dataclasses.dataclass(frozen=True)
class Axis:
    """One dimension of the grid: the names that move together and their value rows."""

    names: tuple[str, ...]
    rows: tuple[tuple[float, ...], ...]  # one tuple of len(names) per step


@dataclasses.dataclass(frozen=True)
class Grid:
    """Axes crossed with one another; ``source`` names the file in error messages."""

    axes: tuple[Axis, ...]
    source: str = "grid"

    @property
    def names(self) -> list[str]:
        return [n for a in self.axes for n in a.names]

    def __len__(self) -> int:
        return math.prod(len(a.rows) for a in self.axes)

    def points(self) -> list[dict[str, float]]:
        """Every parameter point, as ``name -> value``, in the documented order."""
        out = []
        for combo in itertools.product(*(a.rows for a in self.axes)):
            point: dict[str, float] = {}
            for axis, row in zip(self.axes, combo, strict=True):
                point.update(zip(axis.names, row, strict=True))
            out.append(point)
        return out

    def to_json(self) -> dict:
        """The expanded axes (for ``sweep.json``): each axis' names and value rows."""
        return {"source": self.source,
                "axes": [{"names": list(a.names), "values": [list(r) for r in a.rows]}
                         for a in self.axes]}

    def check_names(self, valid: Iterable[str]) -> None:
        """Unknown names are errors that list the valid ones (as ``--param`` does)."""
        valid = set(valid)
        for name in self.names:
            if name not in valid:
                raise ParamError(f"{self.source}: unknown parameter {name!r} for the selected "
                                 f"backends; valid: {', '.join(sorted(valid))}")


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ParamError(f"{where}: expected a number, got {v!r}")
    return float(v)


def _values(spec, where: str) -> list[float]:
    """A list, or a range table, as a list of floats."""
    if isinstance(spec, list):
        if not spec:
            raise ParamError(f"{where}: empty list of values")
        vals = [_number(v, f"{where}[{i}]") for i, v in enumerate(spec)]
    elif isinstance(spec, Mapping):
        vals = _range(spec, where)
    elif isinstance(spec, int | float) and not isinstance(spec, bool):
        vals = [_number(spec, where)]  # a fixed value: an axis of one step
    else:
        raise ParamError(f"{where}: expected a list of numbers or a range table "
                         f"{{from, to, num|step[, scale]}}, got {spec!r}")
    if len(set(vals)) != len(vals):
        raise ParamError(f"{where}: a value is listed twice")
    return vals


def _range(spec: Mapping, where: str) -> list[float]:
    unknown = sorted(set(spec) - _RANGE_KEYS)
    if unknown:
        raise ParamError(f"{where}: unknown range key {unknown[0]!r}; expected from, to, "
                         "num or step, scale")
    for key in ("from", "to"):
        if key not in spec:
            raise ParamError(f"{where}: range needs {key!r}")
    lo, hi = _number(spec["from"], f"{where}.from"), _number(spec["to"], f"{where}.to")
    scale = spec.get("scale", "linear")
    if scale not in ("linear", "log"):
        raise ParamError(f"{where}.scale: expected 'linear' or 'log', got {scale!r}")
    if ("num" in spec) == ("step" in spec):
        raise ParamError(f"{where}: range needs exactly one of 'num' and 'step'")
    if "step" in spec:
        if scale == "log":
            raise ParamError(f"{where}: a log range takes 'num', not 'step'")
        step = _number(spec["step"], f"{where}.step")
        if step <= 0 or hi < lo:
            raise ParamError(f"{where}: a stepped range needs step > 0 and from <= to")
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        if n > MAX_POINTS:
            raise ParamError(f"{where}: {n:,} steps; the limit is {MAX_POINTS:,}")
        return [_tidy(lo + i * step) for i in range(n)]
    num = spec["num"]
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ParamError(f"{where}.num: expected a whole number >= 1, got {num!r}")
    if num > MAX_POINTS:
        raise ParamError(f"{where}.num: {num:,} steps; the limit is {MAX_POINTS:,}")
    if num == 1:
        if lo != hi:
            raise ParamError(f"{where}: num = 1 needs from == to")
        return [lo]
    if scale == "log":
        if lo <= 0 or hi <= 0:
            raise ParamError(f"{where}: a log range needs from > 0 and to > 0")
        a, b = math.log(lo), math.log(hi)
        vals = [math.exp(a + (b - a) * i / (num - 1)) for i in range(num)]
        vals[0], vals[-1] = lo, hi  # the ends exactly as written
    else:
        vals = [lo + (hi - lo) * i / (num - 1) for i in range(num)]
    return [_tidy(v) for v in vals]


def _tidy(v: float) -> float:
    """Round away float noise (0.1 * 3) so that a point's hash does not depend on it:
    12 significant digits are far below any cost's precision."""
    return float(f"{v:.12g}")


def grid_from_mapping(data: Mapping, source: str = "grid") -> Grid:
    """Build a :class:`Grid` from parsed TOML (or an equal dict), checking the schema."""
    unknown = sorted(set(data) - {"params", "zip"})
    if unknown:
        raise ParamError(f"{source}: unknown key {unknown[0]!r}; expected [params] and "
                         "[[zip]] tables")
    params = data.get("params", {})
    zips = data.get("zip", [])
    if not isinstance(params, Mapping):
        raise ParamError(f"{source}: 'params' must be a table")
    if isinstance(zips, Mapping):
        zips = [zips]
    if not isinstance(zips, list) or not all(isinstance(z, Mapping) for z in zips):
        raise ParamError(f"{source}: 'zip' must be an array of tables ([[zip]])")
    seen: set[str] = set()

    def claim(name: str, where: str) -> None:
        if name in seen:
            raise ParamError(f"{where}: parameter {name!r} is already an axis of this grid")
        seen.add(name)

    axes = []
    for name, spec in params.items():
        where = f"{source}: params.{name}"
        claim(name, where)
        axes.append(Axis((name,), tuple((v,) for v in _values(spec, where))))
    for i, table in enumerate(zips):
        if not table:
            raise ParamError(f"{source}: zip[{i}] is empty")
        columns = {}
        for name, spec in table.items():
            where = f"{source}: zip[{i}].{name}"
            claim(name, where)
            columns[name] = _values(spec, where)
        lengths = {n: len(v) for n, v in columns.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{n} has {k}" for n, k in lengths.items())
            raise ParamError(f"{source}: zip[{i}]: zipped keys need equal lengths ({detail})")
        axes.append(Axis(tuple(columns), tuple(zip(*columns.values(), strict=True))))
    if not axes:
        raise ParamError(f"{source}: no parameters to sweep (add a [params] table)")
    grid = Grid(tuple(axes), source)
    if len(grid) > MAX_POINTS:
        raise ParamError(f"{source}: {len(grid):,} parameter points; the limit is "
                         f"{MAX_POINTS:,}")
    return grid


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid TOML file; errors name the file and the key."""
    return grid_from_mapping(read_toml(path), str(path))
