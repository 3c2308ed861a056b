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
import os
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from tracebench.backends.base import Backend
from tracebench.backends.tomlfile import backend_spec, check_name
from tracebench.errors import ParamError

ENTRY_POINT_GROUP = "tracebench.backends"
#: how deep ``base = "other.toml"`` chains may go
MAX_BASE_DEPTH = 16

_BUILTIN_MODULES = (
    "native", "full_virt", "apic_hooks", "pv_clock", "irqchip",  # the 2007 design space
    "x2apic_tscdeadline", "apicv", "apicv_ipiv", "kvm_pv", "xen_evtchn", "eli", "vmi_2007",
    "apicv_xapic", "svm", "avic", "svm_idlehlt",  # APIC-mode and AMD variants
    "full_virt_pic",  # a legacy guest's 8259 PIC EOI
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
        check_name(backend.name, f"backend plug-in {ep.name!r} ({ep.value})")
        if backend.name in builtin_backends():
            raise ParamError(f"backend plug-in {ep.name!r} reuses built-in name {backend.name!r}")
        out[backend.name] = backend
    return out


def registered_backends() -> dict[str, Backend]:
    """Built-in backends, then plug-ins, by name."""
    return {**builtin_backends(), **plugin_backends()}


def backend_from_toml(path: str | Path, _chain: tuple[str, ...] = ()) -> Backend:
    """Compose a backend from a TOML file (see module docstring).

    ``base`` may name a registered backend or another ``.toml`` file (relative to the
    current folder, else to this file's folder); a chain of bases that comes back to a
    file already in it is an error."""
    p = Path(path)
    where = str(p)
    key = os.path.realpath(p)
    if key in _chain:
        loop = " -> ".join([*_chain[_chain.index(key):], key])
        raise ParamError(f"{where}: base refers back to itself ({loop})")
    if len(_chain) >= MAX_BASE_DEPTH:
        raise ParamError(f"{where}: more than {MAX_BASE_DEPTH} nested bases")
    spec = backend_spec(p)
    mech: dict = {}
    params: dict = {}
    if spec["base"] is not None:
        base_spec = spec["base"]
        if base_spec.endswith(".toml") and not Path(base_spec).is_absolute() \
                and not Path(base_spec).exists() and (p.parent / base_spec).exists():
            base_spec = str(p.parent / base_spec)
        try:
            base = get_backend(base_spec, (*_chain, key))
        except ParamError as exc:
            msg = str(exc)
            raise ParamError(msg if msg.startswith(where) else f"{where}: base: {msg}") from None
        mech.update(base.mechanisms)
        params.update(base.param_defaults)
    mech.update(spec["mechanisms"])
    params.update(spec["params"])
    try:
        return Backend(name=spec["name"], description=spec["description"], mechanisms=mech,
                       param_defaults=params, origin=where)
    except ParamError as exc:
        raise ParamError(f"{where}: {exc}") from None


def get_backend(spec: str, _chain: tuple[str, ...] = ()) -> Backend:
    """A registered name, or the path of a ``.toml`` backend file."""
    if spec.endswith(".toml"):
        return backend_from_toml(spec, _chain)
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
