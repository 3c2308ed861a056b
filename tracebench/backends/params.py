"""Parameter specs: every number a model uses, with unit, default, bounds and published source.

A :class:`ParamSet` is a validated mapping from name to value. Overrides come
from CPU profiles, TOML files and ``--param name=value``; unknown names are
errors that list the valid ones, and values outside bounds are rejected.

A cost may be a distribution: ``NAME`` is its median and facets ``NAME.p99``, ``NAME.min``
or ``NAME.sigma`` give its spread (``spread.py``). They are keys of the same flat mapping,
so ``--param NAME.p99=7200``, TOML (``NAME = {p50 = 4800, p99 = 7200}``, or dotted keys
``NAME.p50 = 4800`` and ``NAME.p99 = 7200``), sweep grids and results metadata need nothing
else. ``NAME.p50`` is another name for ``NAME``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from tracebench.backends.spread import FACETS, Spread, rescaled
from tracebench.backends.tomlfile import flat_params, read_toml
from tracebench.errors import ParamError


@dataclasses.dataclass(frozen=True)
class Param:
    """One model parameter.

    Attributes
    ----------
    name : identifier with its unit as suffix (``_cyc`` TSC cycles, ``_ghz``).
    default : value used when nothing overrides it.
    unit : unit in words, for listings.
    source : where the default comes from; ``[C]`` read in a primary source,
        ``[D]`` derived from such figures, ``[U]`` an assumption still to be anchored.
    doc : one line saying what the number is.
    lo, hi : inclusive bounds.
    """

    name: str
    default: float
    unit: str
    source: str
    doc: str
    lo: float = 0.0
    hi: float = 1e7
    #: default facets (``{"p99": ...}``): the spread the default comes with, if any
    spread: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: where the default spread comes from
    spread_source: str = ""
    #: whether the value may be a distribution (not for clock rates or seeds)
    spreadable: bool = True
    integer: bool = False

    def check(self, value: float, where: str, name: str | None = None) -> float:
        name = name or self.name
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ParamError(f"{where}: parameter {name} must be a number, got {value!r}") \
                from None
        if not (self.lo <= v <= self.hi):
            raise ParamError(f"{where}: parameter {name}={value} is outside "
                             f"[{self.lo:g}, {self.hi:g}] {self.unit}")
        if self.integer and v != int(v):
            raise ParamError(f"{where}: parameter {name}={value} must be a whole number")
        return v


class ParamSet(Mapping):
    """Validated values for a fixed list of :class:`Param` specs, plus the facets
    (``NAME.p99``, ...) of those given as distributions."""

    def __init__(self, specs: Iterable[Param], values: Mapping[str, float] | None = None,
                 where: str = "parameters"):
        self.specs = {p.name: p for p in specs}
        self._values = {name: float(p.default) for name, p in self.specs.items()}
        self._facets: dict[str, dict[str, float]] = {
            name: {f: float(v) for f, v in p.spread.items()}
            for name, p in self.specs.items() if p.spread}
        if values:
            self.update(values, where)

    def update(self, values: Mapping[str, float], where: str = "parameters") -> None:
        """Set values and facets. A new median scales the p99 and floor it is not given
        with in the same update: the distribution keeps its shape."""
        given: dict[str, dict[str, float]] = {}
        for key, value in values.items():
            name, dot, facet = key.partition(".")
            if facet == "p50":  # another name for the value itself
                dot = facet = ""
            spec = self.specs.get(name)
            if spec is None:
                raise ParamError(f"{where}: unknown parameter {name!r}; valid: "
                                 f"{', '.join(sorted(self.specs))}")
            if dot and facet not in FACETS:
                raise ParamError(f"{where}: unknown facet {key!r}; a parameter's facets are "
                                 f"{', '.join(f'{name}.{f}' for f in FACETS)}")
            if dot and not spec.spreadable:
                raise ParamError(f"{where}: {name} is not a cost and takes no distribution "
                                 f"({key})")
            given.setdefault(name, {})[facet if dot else ""] = spec.check(value, where, key)
        for name, new in given.items():
            facets = dict(self._facets.get(name, {}))
            if "" in new:
                old, median = self._values[name], new.pop("")
                if facets and old > 0:  # facets not given keep their place in the shape
                    facets = rescaled(facets, median / old)
                self._values[name] = median
            if "p99" in new and "sigma" not in new:
                facets.pop("sigma", None)
            if "sigma" in new and "p99" not in new:
                facets.pop("p99", None)
            facets.update(new)
            try:
                Spread.of(name, self._values[name], facets, where)
            except ValueError as exc:
                raise ParamError(str(exc)) from None
            self._facets[name] = facets
            if not facets:
                del self._facets[name]

    def copy(self) -> ParamSet:
        return ParamSet(self.specs.values(), self.as_dict())

    def _given(self, name: str) -> Spread | None:
        facets = self._facets.get(name)
        return Spread.of(name, self._values[name], facets, name) if facets else None

    def spread(self, name: str) -> Spread | None:
        """The distribution of ``name`` (None: a constant), its shape times
        ``spread_scale`` where the set has one, about the same mean (``Spread.scaled``)."""
        s = self._given(name)
        return s.scaled(self._values.get("spread_scale", 1.0)) if s is not None else None

    def spreads(self) -> dict[str, Spread]:
        """Every distributed parameter's distribution."""
        return {n: s for n in self._facets if (s := self.spread(n)) is not None}

    def model_values(self) -> dict[str, float]:
        """The values a one-level model composes: each distributed cost at its median as
        ``spread_scale`` places it, and where that makes it a constant (``spread_scale``
        0), at its mean: the constant model keeps every cost's mean."""
        out = dict(self)
        for name in self._facets:
            given = self._given(name)
            if given is not None:
                s = self.spread(name)
                out[name] = s.p50 if s is not None else given.mean
        return out

    def __getitem__(self, key: str) -> float:
        if key in self._values:
            return self._values[key]
        name, _, facet = key.partition(".")
        return self._facets.get(name, {})[facet]

    def __iter__(self):
        yield from self._values
        for name, facets in self._facets.items():
            for f in facets:
                yield f"{name}.{f}"

    def __len__(self) -> int:
        return len(self._values) + sum(len(f) for f in self._facets.values())

    def as_dict(self) -> dict[str, float]:
        return dict(sorted(self.items()))

    def digest(self) -> str:
        """sha256 of the canonical JSON of the values: names a configuration in paths."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def base_name(key: str) -> str:
    """The parameter a key names: ``halt_wakeup_cyc`` for ``halt_wakeup_cyc.p99``."""
    return key.partition(".")[0]


def parse_assignments(items: Iterable[str]) -> dict[str, float]:
    """``["exit_roundtrip_cyc=1200", ...]`` -> dict; bad syntax is a :class:`ParamError`."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParamError(f"--param {item!r}: expected NAME=VALUE")
        try:
            out[name.strip().removesuffix(".p50")] = float(value)
        except ValueError:
            raise ParamError(f"--param {item!r}: value {value!r} is not a number") from None
    return out


def param_values_from_toml(path: str | Path) -> dict[str, float]:
    """Parameter overrides from a TOML file: top-level keys or a ``[params]`` table."""
    data = read_toml(path)
    table = data.get("params", data)
    if not isinstance(table, dict):
        raise ParamError(f"{path}: params must be a table, got {table!r}"[:200])
    return flat_params(table, str(path), explicit="params" in data)
