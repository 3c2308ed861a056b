"""Declarative scenario specs: each parameter is declared once with its unit, default and doc.

A :class:`Scenario` pairs a stable name with its :class:`Param` list and its generator
(a class that ``stream.py`` drives window by window); :func:`Scenario.resolve` turns user
values (strings from the command line or typed values from Python) into the full, checked
parameter set that is also written into the trace metadata, so a trace says exactly how it
was made.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping

from tracebench.errors import ParamError, TracebenchError
from tracebench.units import parse_count, parse_duration_ns

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class Param:
    """One scenario parameter.

    Attributes
    ----------
    name : stable identifier used with ``--param name=value``; unit-suffixed where it has one.
    default : default value; its Python type (bool, int, float, str) is the parameter's type.
    unit : unit of the value: ``ns``, ``Hz``, ``1/s``, ``count``, ``fraction``, ``weight``,
        ``bool`` or ``choice``.
    doc : one line: what it is and why the default (the realistic figure it stands for).
    choices : allowed values of a ``str`` parameter.
    low, high : inclusive bounds of a numeric parameter (``None``: unbounded).
    """

    name: str
    default: bool | int | float | str
    unit: str
    doc: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    def parse(self, value, where: str) -> bool | int | float | str:
        """Convert ``value`` (str from the CLI, or a typed value) and check it.

        Integer ``ns`` parameters accept durations (``50us``); other integers accept
        counts (``100k``), so the command line reads like the docs.
        """
        kind = type(self.default)
        try:
            if kind is bool:
                out = _parse_bool(value)
            elif kind is int:
                if isinstance(value, bool):
                    raise ValueError("expected a number")
                if isinstance(value, str):
                    out = (
                        parse_duration_ns(value, default_unit="ns")
                        if self.unit == "ns"
                        else parse_count(value)
                    )
                elif isinstance(value, float) and value != int(value):
                    raise ValueError("expected a whole number")
                else:
                    out = int(value)
            elif kind is float:
                out = float(value)
                if out != out:  # NaN compares unequal to itself
                    raise ValueError("not a number")
            else:
                out = str(value).strip().lower()
        except (ValueError, TypeError, TracebenchError) as exc:
            raise ParamError(f"{where}: parameter {self.name}={value!r}: {exc}") from None
        if self.choices and out not in self.choices:
            raise ParamError(
                f"{where}: parameter {self.name}={value!r} is not one of {', '.join(self.choices)}"
            )
        if self.low is not None and out < self.low:
            raise ParamError(f"{where}: parameter {self.name}={value!r} is below {self.low:g}")
        if self.high is not None and out > self.high:
            raise ParamError(f"{where}: parameter {self.name}={value!r} is above {self.high:g}")
        return out

    def describe(self) -> dict:
        """A JSON-ready description (for ``tracebench synth --list`` and the docs)."""
        d = {"name": self.name, "default": self.default, "unit": self.unit, "doc": self.doc}
        if self.choices:
            d["choices"] = list(self.choices)
        if self.low is not None or self.high is not None:
            d["bounds"] = [self.low, self.high]
        return d


def _parse_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true/false (or 1/0)")


#: ``part(key, cpus, params, shape)`` makes a scenario's generator for the vCPUs in ``cpus``:
#: an object whose ``advance(out, until_ns)`` adds every event before ``until_ns`` (stream.py)
PartFactory = Callable[..., object]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named, parameterised generator of guest behaviour.

    Attributes
    ----------
    name : stable string name (``hz-tick``); what ``tracebench synth NAME`` takes.
    summary : one line for listings.
    params : the parameter spec, in display order.
    part : ``part(key, cpus, params, shape)``, the generator of the scenario's events on
        ``cpus`` (a class; its docstring is the scenario's full doc). ``key`` is the root
        of its random streams (``draws.stream_key``).
    min_cpus : fewest vCPUs it can run on (an IPI storm needs two).
    check : optional ``check(params, n_cpus, where)`` for constraints across parameters;
        raises :class:`ParamError`.
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    part: PartFactory
    min_cpus: int = 1
    check: Callable[[dict, int, str], None] | None = None

    def __post_init__(self):
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"scenario {self.name}: duplicate parameter names {names}")
        for p in self.params:
            # A default that fails its own spec is a bug in the spec, caught at import.
            p.parse(p.default, f"scenario {self.name} default")

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.part.__doc__ or self.summary)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def resolve(self, values: Mapping | None = None, n_cpus: int | None = None) -> dict:
        """Full parameter set: defaults overridden by ``values``, each parsed and checked.

        Raises
        ------
        ParamError
            for an unknown name (the message lists the valid ones) or a bad value.
        """
        where = f"scenario {self.name}"
        by_name = {p.name: p for p in self.params}
        out = self.defaults()
        for name, value in (values or {}).items():
            key = str(name).strip().replace("-", "_")
            if key not in by_name:
                valid = ", ".join(by_name) or "(none)"
                raise ParamError(f"{where}: unknown parameter {name!r} (valid: {valid})")
            out[key] = by_name[key].parse(value, where)
        if n_cpus is not None and self.check is not None:
            self.check(out, n_cpus, where)
        return out

    def describe(self) -> dict:
        return {
            "name": self.name,
            "summary": self.summary,
            "min_cpus": self.min_cpus,
            "doc": self.doc,
            "params": [p.describe() for p in self.params],
        }


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """``["hz=250", "mode=periodic"]`` -> ``{"hz": "250", "mode": "periodic"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParamError(f"--param {item!r}: expected name=value")
        out[name.strip()] = value.strip()
    return out
