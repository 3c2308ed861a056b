"""Backend registry: built-in presets, user TOML compositions, and entry-point plug-ins.

A user backend in TOML::

    name = "apicv-pveoi"
    description = "APICv host, guest also uses PV EOI"
    base = "apicv"              # optional: start from a registered backend
    [mechanisms]                # override any axis (all axes required without base)
    eoi = "pv_eoi"
    [params]                    # override cost defaults (cycles, tsc_ghz)
    exit_roundtrip_cyc = 1200

A plug-in package declares ``[project.entry-points."tracebench.backends"]``
``name = "pkg.module:BACKEND"`` pointing at a :class:`Backend` (or a callable returning one).
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from tracebench.backends.base import Backend
from tracebench.backends.params import load_toml
from tracebench.errors import ParamError

ENTRY_POINT_GROUP = "tracebench.backends"

_BUILTIN_MODULES = (
    "native", "full_virt", "apic_hooks", "pv_clock", "irqchip",  # the 2007 design space
    "x2apic_tscdeadline", "apicv", "apicv_ipiv", "kvm_pv", "xen_evtchn", "eli", "vmi_2007",
    "apicv_xapic", "svm", "avic",  # APIC-mode and AMD variants
)
#: the seed's four designs and the bare-metal floor
SEED_BACKENDS = ("native", "full-virt", "apic-hooks", "pv-clock", "irqchip")


@cache
def builtin_backends() -> dict[str, Backend]:
    out = {}
    for mod in _BUILTIN_MODULES:
        b = importlib.import_module(f"tracebench.backends.presets.{mod}").BACKEND
        out[b.name] = b
    return out


@cache
def plugin_backends() -> dict[str, Backend]:
    out = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            backend = obj() if callable(obj) and not isinstance(obj, Backend) else obj
        except Exception as exc:  # a broken plug-in must not break the tool
            raise ParamError(f"backend plug-in {ep.name!r} ({ep.value}) failed to load: "
                             f"{exc}") from None
        if not isinstance(backend, Backend):
            raise ParamError(f"backend plug-in {ep.name!r} ({ep.value}) is not a Backend")
        if backend.name in builtin_backends():
            raise ParamError(f"backend plug-in {ep.name!r} reuses built-in name {backend.name!r}")
        out[backend.name] = backend
    return out


def registered_backends() -> dict[str, Backend]:
    """Built-in backends, then plug-ins, by name."""
    return {**builtin_backends(), **plugin_backends()}


def backend_from_toml(path: str | Path) -> Backend:
    """Compose a backend from a TOML file (see module docstring)."""
    p = Path(path)
    data = load_toml(p)
    where = str(p)
    unknown = set(data) - {"name", "description", "base", "mechanisms", "params"}
    if unknown:
        raise ParamError(f"{where}: unknown key {sorted(unknown)[0]!r}; expected name, "
                         "description, base, [mechanisms], [params]")
    name = data.get("name") or p.stem
    mech: dict = {}
    params: dict = {}
    if "base" in data:
        base = get_backend(str(data["base"]))
        mech.update(base.mechanisms)
        params.update(base.param_defaults)
    mech.update(data.get("mechanisms", {}))
    for k, v in data.get("params", {}).items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ParamError(f"{where}: parameter {k} must be a number, got {v!r}")
        params[k] = v
    try:
        return Backend(name=name, description=data.get("description", f"user backend from {p}"),
                       mechanisms=mech, param_defaults=params, origin=where)
    except ParamError as exc:
        raise ParamError(f"{where}: {exc}") from None


def get_backend(spec: str) -> Backend:
    """A registered name, or the path of a ``.toml`` backend file."""
    if spec.endswith(".toml"):
        return backend_from_toml(spec)
    found = registered_backends().get(spec)
    if found is None:
        raise ParamError(f"unknown backend {spec!r}; known: {', '.join(registered_backends())} "
                         "(or a path to a .toml backend)")
    return found


def resolve_backends(specs: list[str] | None) -> list[Backend]:
    """Backends for ``-b`` options; none given means every registered backend."""
    if not specs:
        return list(registered_backends().values())
    out, seen = [], set()
    for s in specs:
        b = get_backend(s)
        if b.name in seen:
            raise ParamError(f"backend {b.name!r} given twice")
        seen.add(b.name)
        out.append(b)
    return out
