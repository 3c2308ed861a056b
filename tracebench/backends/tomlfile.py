"""User backend files (TOML): read, type-checked and confined before anything is built.

Everything in such a file comes from someone else's hands: the name becomes a results
partition and a file name, ``base`` can point at another file (and so at itself), and any
value can have any TOML type. Each of those is refused here in one line that names the
file and the key, before a :class:`~tracebench.backends.base.Backend` is made.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from pathlib import Path

from tracebench.backends.spread import FACETS
from tracebench.errors import ParamError

#: a backend name becomes one path component (``backend=NAME``, ``configs/NAME-...``)
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")
#: keys a backend file may have, and the TOML type each must be
KEYS = {"name": str, "description": str, "base": str, "mechanisms": dict, "params": dict}
#: a backend file is a few lines; anything this big is not one
MAX_BYTES = 1 << 20
_TOML_TYPE = {str: "a string", dict: "a table", bool: "true/false", int: "a number",
              float: "a number", list: "an array"}


def check_name(name, where: str) -> str:
    """A backend name that is safe as a path component, or a :class:`ParamError`."""
    if not isinstance(name, str):
        raise ParamError(f"{where}: name must be a string, got {_type_name(name)}")
    if not NAME_RE.fullmatch(name):
        raise ParamError(f"{where}: backend name {name!r} is not allowed (1-64 of letters, "
                         "digits, _ . + -, not starting with '.', '-' or '+')")
    return name


def _type_name(value) -> str:
    return _TOML_TYPE.get(type(value), type(value).__name__) + f" ({value!r})"[:60]


def read_toml(path: str | os.PathLike, what: str = "TOML file") -> dict:
    """Parse a TOML file; every way it can fail is one line naming the file."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ParamError(f"{p}: is a folder, expected a {what}")
        with p.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ParamError(f"{p}: no such file") from None
    except OSError as exc:
        raise ParamError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise ParamError(f"{p}: larger than {MAX_BYTES >> 20} MiB, not a {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParamError(f"{p}: {' '.join(str(exc).split())}") from None
    except RecursionError:  # deeply nested arrays exhaust tomllib's recursion
        raise ParamError(f"{p}: nested too deeply") from None


def backend_spec(path: str | os.PathLike) -> dict:
    """The checked content of a backend file: ``name``, ``description``, ``base`` (or
    ``None``), ``mechanisms`` (axis -> option names) and ``params`` (name or
    ``name.facet`` -> number)."""
    p = Path(path)
    where = str(p)
    data = read_toml(p, "backend .toml file")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ParamError(f"{where}: unknown key {unknown[0]!r}; expected name, description, "
                         "base, [mechanisms], [params]")
    for key, want in KEYS.items():
        if key in data and not isinstance(data[key], want):
            raise ParamError(f"{where}: {key} must be {_TOML_TYPE[want]}, got "
                             f"{_type_name(data[key])}")
    name = check_name(data["name"], where) if "name" in data else \
        check_name(p.name.removesuffix(".toml"), f"{where} (name taken from the file name)")
    mech = data.get("mechanisms", {})
    for axis, option in mech.items():
        if not isinstance(option, str):
            raise ParamError(f"{where}: [mechanisms] {axis} must be a string, got "
                             f"{_type_name(option)}")
    params = flat_params(data.get("params", {}), where, label="[params]")
    for k, v in params.items():
        if not math.isfinite(v):
            raise ParamError(f"{where}: [params] {k}={v} is outside the finite numbers")
    base = data.get("base")
    if base is not None and not base.strip():
        raise ParamError(f"{where}: base is empty")
    return {"name": name, "description": data.get("description", f"user backend from {p}"),
            "base": base, "mechanisms": dict(mech), "params": dict(params)}


def flat_params(table: dict, where: str, explicit: bool = True, label: str = "parameter"
                ) -> dict[str, float]:
    """A TOML parameter table as flat ``NAME`` / ``NAME.FACET`` keys: an inline table or
    dotted keys (``NAME = {p50 = 4800, p99 = 7200}``, ``NAME.p99 = 7200``) give facets,
    ``p50`` the median. Other tables are left out where the parameters are the file's top
    level (``explicit`` false) and none of their keys is a facet. Errors read
    ``WHERE: LABEL NAME must be a number``."""
    out: dict[str, float] = {}
    for k, v in table.items():
        if isinstance(v, dict):
            if not explicit and not set(v) & {"p50", *FACETS}:
                continue
            for f, fv in v.items():
                key = k if f == "p50" else f"{k}.{f}"
                if f != "p50" and f not in FACETS:
                    raise ParamError(f"{where}: unknown facet {k}.{f}; a parameter's facets "
                                     f"are p50, {', '.join(FACETS)}")
                out[key] = _number(fv, f"{label} {key}", where)
            continue
        out[k] = _number(v, f"{label} {k}", where)
    return out


def _number(v, what: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ParamError(f"{where}: {what} must be a number, got {_type_name(v)}"[:200])
    return v
