"""From chosen backends and user overrides to what a replay runs: (backend, parameters, model).

Parameter overrides are global (``--param NAME=VALUE``, a TOML file): each backend takes the
ones it declares, and a name that no selected backend declares is an error naming the
valid ones, so a typo never silently leaves a default in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from tracebench.backends.base import Backend
from tracebench.backends.model import CompiledModel
from tracebench.backends.params import ParamSet, base_name
from tracebench.errors import ParamError


class Configured(NamedTuple):
    """One backend ready to replay: its full parameter set and the compiled cost tables."""

    backend: Backend
    params: ParamSet
    model: CompiledModel


def split_overrides(backends: list[Backend], overrides: Mapping[str, float],
                    where: str) -> dict[str, dict[str, float]]:
    """Give each backend the overrides it has; a name no selected backend has is an error."""
    per: dict[str, dict[str, float]] = {b.name: {} for b in backends}
    valid: set[str] = set()
    for b in backends:
        names = {p.name for p in b.param_specs()}
        valid |= names
        per[b.name] = {k: v for k, v in overrides.items() if base_name(k) in names}
    unknown = sorted(k for k in overrides if base_name(k) not in valid)
    if unknown:
        raise ParamError(f"{where}: unknown parameter {unknown[0]!r} for the selected backends; "
                         f"valid: {', '.join(sorted(valid))}")
    return per


def configure(backends: list[Backend], overrides: Mapping[str, float] | None = None,
              profile: str | None = None, where: str = "--param") -> list[Configured]:
    """Every backend with its parameters (profile, then overrides) and compiled model."""
    per = split_overrides(backends, overrides or {}, where)
    out = []
    for b in backends:
        ps = b.params(profile=profile, overrides=per[b.name], where=where)
        out.append(Configured(b, ps, b.compile(ps)))
    return out
