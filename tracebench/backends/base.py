"""The backend contract: a named composition of mechanisms, its parameters, its kernel.

Built-in backends are presets of one composed model and share one compiled
kernel; a plug-in may bring its own kernel with the same signature and calling
convention (the trace columns ``ts_ns``, ``cpu``, ``kind``, ``target``, ``arg`` and
``dur_ns``, flat arrays named by ``layout.py``, seven typed output columns: see
``kernel.py``'s docstring and the README's plug-in contract) as
:func:`tracebench.backends.kernel.replay_chunk_nb` and its own Python reference
with the signature of :func:`tracebench.backends.reference.replay_reference` (which is
given every trace column by name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from tracebench.backends.costs import CYCLE_PARAMS, profile_values
from tracebench.backends.mechanisms import check_mechanisms, compose
from tracebench.backends.model import COST_MASK, SETTLED_MASK, CompiledModel
from tracebench.backends.params import Param, ParamSet, base_name
from tracebench.backends.spread import level_tables, rescaled
from tracebench.errors import ParamError

_ALL_PARAMS = {p.name: p for p in CYCLE_PARAMS}


@dataclasses.dataclass(frozen=True)
class Backend:
    """One point in the design space.

    Attributes
    ----------
    name : stable registry name (``full-virt``).
    description : one paragraph: which real system it stands for.
    mechanisms : the option chosen on every axis of ``mechanisms.AXES``.
    param_defaults : backend-specific overrides of the cost defaults (cycles).
    origin : ``built-in``, a TOML path, or an entry-point name.
    kernel, reference : the compiled loop and its plain-Python twin.
    """

    name: str
    description: str
    mechanisms: Mapping[str, str]
    param_defaults: Mapping[str, float] = dataclasses.field(default_factory=dict)
    origin: str = "built-in"
    kernel: Callable | None = None
    reference: Callable | None = None

    def __post_init__(self):
        object.__setattr__(self, "mechanisms",
                           check_mechanisms(self.mechanisms, f"backend {self.name}"))
        unknown = {base_name(k) for k in self.param_defaults} - set(_ALL_PARAMS)
        if unknown:
            raise ParamError(f"backend {self.name}: unknown parameter {sorted(unknown)[0]!r}; "
                             f"valid: {', '.join(sorted(_ALL_PARAMS))}")

    def param_specs(self) -> list[Param]:
        """The parameters this backend's model reads (plus ``tsc_ghz``), in declaration order."""
        _, used = compose(self.mechanisms, {p.name: p.default for p in CYCLE_PARAMS})
        used |= {"tsc_ghz", "cost_seed", "spread_scale"}
        specs = []
        for p in CYCLE_PARAMS:
            if p.name in used:
                if p.name in self.param_defaults:
                    median = float(self.param_defaults[p.name])
                    spread = p.spread
                    if spread and f"{p.name}.p99" not in self.param_defaults:
                        # the backend's own median keeps the default spread's shape
                        spread = rescaled(spread, median / p.default) if p.default else {}
                    p = dataclasses.replace(p, default=median, spread=spread,
                                            source=f"backend {self.name} ({self.origin})")
                specs.append(p)
        return specs

    def params(self, profile: str | None = None, overrides: Mapping[str, float] | None = None,
               where: str = "parameters") -> ParamSet:
        """Defaults < CPU profile < backend's own defaults < ``overrides`` (user)."""
        ps = ParamSet(self.param_specs())
        ps.update({k: v for k, v in profile_values(profile).items()
                   if base_name(k) in ps.specs}, where)
        ps.update(self.param_defaults, f"backend {self.name}")
        if overrides:
            ps.update(overrides, where)
        return ps

    def compile(self, params: ParamSet) -> CompiledModel:
        """The cost tables: one level, or ``spread.LEVELS`` where a cost is a distribution."""
        model, _ = compose(self.mechanisms, params.model_values())
        ghz, seed = params["tsc_ghz"], int(params["cost_seed"])
        spreads = params.spreads()

        def at(values):
            return compose(self.mechanisms, {**params, **values})[0].ns_tables(ghz)

        try:
            if not spreads:
                return model.to_ns(ghz, seed)
            levels = level_tables(at, spreads, COST_MASK | SETTLED_MASK)
            median = model.ns_tables(ghz)
            levels[:, SETTLED_MASK] = median[SETTLED_MASK]
            return CompiledModel.from_flat(levels, seed, median=median)
        except ValueError as exc:
            raise ParamError(f"backend {self.name}: {exc} ({', '.join(spreads)})"
                             if spreads else f"backend {self.name}: {exc}") from None

    def get_kernel(self) -> Callable:
        if self.kernel is not None:
            return self.kernel
        from tracebench.backends.kernel import replay_chunk_nb

        return replay_chunk_nb

    def get_reference(self) -> Callable:
        if self.reference is not None:
            return self.reference
        from tracebench.backends.reference import replay_reference

        return replay_reference
