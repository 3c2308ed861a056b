"""Parameter specs: every number a model uses, with unit, default, bounds and published source.

A :class:`ParamSet` is a validated mapping from name to value. Overrides come
from CPU profiles, TOML files and ``--param name=value``; unknown names are
errors that list the valid ones, and values outside bounds are rejected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

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

    def check(self, value: float, where: str) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ParamError(f"{where}: parameter {self.name} must be a number, got {value!r}") \
                from None
        if not (self.lo <= v <= self.hi):
            raise ParamError(f"{where}: parameter {self.name}={value} is outside "
                             f"[{self.lo:g}, {self.hi:g}] {self.unit}")
        return v


class ParamSet(Mapping):
    """Validated values for a fixed list of :class:`Param` specs."""

    def __init__(self, specs: Iterable[Param], values: Mapping[str, float] | None = None,
                 where: str = "parameters"):
        self.specs = {p.name: p for p in specs}
        self._values = {name: float(p.default) for name, p in self.specs.items()}
        if values:
            self.update(values, where)

    def update(self, values: Mapping[str, float], where: str = "parameters") -> None:
        for name, value in values.items():
            spec = self.specs.get(name)
            if spec is None:
                raise ParamError(f"{where}: unknown parameter {name!r}; valid: "
                                 f"{', '.join(sorted(self.specs))}")
            self._values[name] = spec.check(value, where)

    def copy(self) -> ParamSet:
        return ParamSet(self.specs.values(), self._values)

    def __getitem__(self, name: str) -> float:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def as_dict(self) -> dict[str, float]:
        return dict(sorted(self._values.items()))

    def digest(self) -> str:
        """sha256 of the canonical JSON of the values: names a configuration in paths."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def parse_assignments(items: Iterable[str]) -> dict[str, float]:
    """``["exit_roundtrip_cyc=1200", ...]`` -> dict; bad syntax is a :class:`ParamError`."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParamError(f"--param {item!r}: expected NAME=VALUE")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ParamError(f"--param {item!r}: value {value!r} is not a number") from None
    return out


def load_toml(path: str | Path) -> dict:
    """Read a TOML file; every failure (missing, folder, unreadable, not UTF-8, syntax) is
    one line naming the file (and the line, for syntax)."""
    from tracebench.backends.tomlfile import read_toml

    return read_toml(path)


def param_values_from_toml(path: str | Path) -> dict[str, float]:
    """Parameter overrides from a TOML file: top-level keys or a ``[params]`` table."""
    data = load_toml(path)
    table = data.get("params", data)
    if not isinstance(table, dict):
        raise ParamError(f"{path}: params must be a table, got {table!r}"[:200])
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ParamError(f"{path}: parameter {k} must be a number, got {v!r}")
        out[k] = v
    return out
