"""Opening a dataset from a stranger: every path, size and manifest value checked first.

A dataset is data only. Nothing here unpickles, evaluates or imports anything it reads,
and a backend name found in a dataset is a string, never resolved to a plug-in. Every
file is reached through :func:`member_path` / :func:`open_member`, which refuse paths
that leave the folder (``..``, absolute, symlinks resolving outside), anything that is
not a regular file (devices, FIFOs, sockets, folders), and files whose size differs from
the size the manifest declares -- all before a byte of the file is read. The manifest
itself is read with a size cap and its JSON nesting and types are checked.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path, PurePosixPath

from tracebench.errors import TracebenchError

#: largest datapackage.json read (a dataset of 100k files needs ~60 MB; more is hostile)
MANIFEST_MAX_BYTES = 64 << 20
#: deepest JSON nesting accepted in the manifest (ours is < 8 deep)
MANIFEST_MAX_DEPTH = 32
#: most resources one manifest may list
MAX_RESOURCES = 250_000
#: characters a member path may use (no spaces, quotes, backslashes or newlines, which
#: ``sha256sum`` would escape and shells would split)
_SAFE_PATH = re.compile(r"[A-Za-z0-9._=+-]+(/[A-Za-z0-9._=+-]+)*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class DatasetError(TracebenchError):
    """A dataset that is malformed, tampered with, or unsafe to open."""


def check_relpath(rel: object, where: str = "datapackage.json") -> str:
    """``rel`` if it is a safe relative POSIX path inside a dataset, else :class:`DatasetError`."""
    if not isinstance(rel, str):
        raise DatasetError(f"{where}: a resource path is {type(rel).__name__}, not a string")
    if len(rel) > 1024:
        raise DatasetError(f"{where}: resource path {rel[:60]!r}... is longer than 1024 "
                           "characters")
    if rel.startswith("/") or re.match(r"[A-Za-z]:", rel) or rel.startswith("\\"):
        raise DatasetError(f"{where}: resource path {rel!r} is absolute (paths must be "
                           "relative to the dataset folder)")
    parts = PurePosixPath(rel).parts
    if ".." in parts or "." in parts or rel.endswith("/") or "//" in rel:
        raise DatasetError(f"{where}: resource path {rel!r} escapes or is not normalised "
                           "('..' and '.' components are refused)")
    if not _SAFE_PATH.fullmatch(rel):
        raise DatasetError(f"{where}: resource path {rel!r} has characters outside "
                           "[A-Za-z0-9._=+-/]")
    return rel


def member_path(root: Path, rel: str) -> Path:
    """The file ``root/rel`` after checking that it stays in ``root`` and is a regular file.

    Symlinks are followed only if they resolve inside ``root``; the final target must be
    a regular file (a device, FIFO or socket would block or never end when read).
    """
    check_relpath(rel)
    root_real = Path(os.path.realpath(root))
    path = root / rel
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise DatasetError(f"{rel}: missing (listed in the manifest)") from None
    except OSError as exc:
        raise DatasetError(f"{rel}: cannot be examined ({exc.strerror})") from None
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root_real):
        raise DatasetError(f"{rel}: is a symlink (or under one) that points outside the "
                           f"dataset folder, to {real}; refused")
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise DatasetError(f"{rel}: is {_kind(st.st_mode)}, not a regular file; refused")
    return path


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def open_member(root: Path, rel: str, declared_bytes: int | None = None):
    """Open ``root/rel`` for binary reading after :func:`member_path` and the size check.

    ``declared_bytes``: the manifest's size; a file of another size is refused unread
    (truncated, appended to, or a lie meant to make a reader allocate or wait).
    """
    path = member_path(root, rel)
    # O_NONBLOCK: should the file be swapped for a FIFO after the check, open() returns
    # instead of waiting for a writer; the fstat below then refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DatasetError(f"{rel}: is {_kind(st.st_mode)}, not a regular file; refused")
        if declared_bytes is not None and st.st_size != declared_bytes:
            what = "truncated" if st.st_size < declared_bytes else "longer than declared"
            raise DatasetError(f"{rel}: size {st.st_size} bytes, the manifest declares "
                               f"{declared_bytes} ({what})")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_member(root: Path, rel: str, max_bytes: int) -> bytes:
    """A small member file's bytes, refusing anything larger than ``max_bytes``."""
    with open_member(root, rel) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise DatasetError(f"{rel}: {size} bytes, more than the {max_bytes} this file may "
                               "have; refused unread")
        return fh.read(max_bytes + 1)[:max_bytes]


def _depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text, outside strings (checked before parsing, so a
    ``[[[[...`` bomb never reaches the recursive parser)."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(raw: bytes, where: str, max_depth: int = MANIFEST_MAX_DEPTH) -> object:
    """Parse untrusted JSON: UTF-8, nesting at most ``max_depth``, no NaN/Infinity."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    if _depth(text) > max_depth:
        raise DatasetError(f"{where}: JSON nested deeper than {max_depth} levels; refused")

    def no_constants(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    try:
        return json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError) as exc:
        raise DatasetError(f"{where}: not valid JSON ({' '.join(str(exc).split())[:120]})") \
            from None


def expect(value: object, types, where: str) -> object:
    """``value`` if it is one of ``types`` (bool never counts as int), else DatasetError."""
    types = types if isinstance(types, tuple) else (types,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join(t.__name__ for t in types)
        raise DatasetError(f"datapackage.json: {where} is {type(value).__name__}, "
                           f"expected {names}")
    return value


def check_resource(res: object, i: int) -> dict:
    """One manifest resource with its ``path``, ``bytes`` and ``hash`` type-checked."""
    where = f"resources[{i}]"
    expect(res, dict, where)
    check_relpath(res.get("path"), f"datapackage.json: {where}.path")
    n = expect(res.get("bytes"), int, f"{where}.bytes ({res['path']})")
    if n < 0:
        raise DatasetError(f"datapackage.json: {where}.bytes ({res['path']}) is negative")
    digest = expect(res.get("hash"), str, f"{where}.hash ({res['path']})")
    if not (digest.startswith("sha256:") and _HEX64.fullmatch(digest[7:])):
        raise DatasetError(f"datapackage.json: {where}.hash ({res['path']}) is not "
                           "'sha256:' and 64 lower-case hex digits")
    return res


def load_manifest(root: Path) -> dict:
    """The dataset's ``datapackage.json``, size-capped, depth-checked and type-checked."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    if not (root / "datapackage.json").exists():
        raise DatasetError(f"{root}: not a dataset (no datapackage.json; make one with "
                           "`tracebench dataset pack`)")
    raw = read_member(root, "datapackage.json", MANIFEST_MAX_BYTES)
    doc = parse_json(raw, "datapackage.json")
    expect(doc, dict, "the top level")
    resources = expect(doc.get("resources"), list, "resources")
    if len(resources) > MAX_RESOURCES:
        raise DatasetError(f"datapackage.json: {len(resources)} resources, more than "
                           f"{MAX_RESOURCES}; refused")
    seen: set[str] = set()
    for i, res in enumerate(resources):
        check_resource(res, i)
        if res["path"] in seen:
            raise DatasetError(f"datapackage.json: {res['path']} is listed twice")
        seen.add(res["path"])
    check_facts(expect(doc.get("tracebench"), dict, "tracebench"))
    for i, lic in enumerate(expect(doc.get("licenses", []), list, "licenses")):
        expect(lic, dict, f"licenses[{i}]")
    return doc


_STR, _OPT_STR, _INT = (str,), (str, type(None)), (int, type(None))
#: the type of every key of ``tracebench.traces[]`` / ``results[]`` that readers use
TRACE_KEYS = {"id": _STR, "path": _OPT_STR, "sha256": _OPT_STR, "rows": _INT,
               "results": (bool,), "n_cpus": _INT, "duration_ns": _INT, "method": _OPT_STR,
               "clock": _OPT_STR, "attribution": _OPT_STR, "source": (dict, type(None)),
               "environment": (dict, type(None))}
_RESULT_KEYS = {"backend": _STR, "params": _STR, "params_sha256": _STR, "origin": _STR,
                "config": _STR, "mechanisms": (dict,), "values": (dict,), "profiles": (list,),
                "traces": (list,), "tables": (list,)}


def check_facts(facts: dict) -> None:
    """Type-check the manifest's ``tracebench`` object (what info, verify and merge read)."""
    for section, keys in (("traces", TRACE_KEYS), ("results", _RESULT_KEYS)):
        items = expect(facts.get(section, []), list, f"tracebench.{section}")
        for i, item in enumerate(items):
            expect(item, dict, f"tracebench.{section}[{i}]")
            for key, types in keys.items():
                expect(item.get(key), types, f"tracebench.{section}[{i}].{key}")
            for key in ("profiles", "traces", "tables"):
                for j, v in enumerate(item.get(key, []) if section == "results" else []):
                    expect(v, str, f"tracebench.{section}[{i}].{key}[{j}]")


def walk_files(root: Path) -> list[str]:
    """Relative paths of every entry under ``root`` that is not a folder, without following
    symlinks (a symlink or special file is listed, so that it can be refused by name)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            out.append(rel.replace(os.sep, "/"))
    return sorted(out)
