"""``tracebench dataset verify``: is this folder exactly what its manifest says?

Checks, each reported with the file it concerns: the manifest itself (size, nesting,
types, paths); every listed file (inside the folder, a regular file, the declared size --
all before reading it -- then its sha256); Parquet footers against the manifest's
columns and the table's ``_common_metadata``; schema versions this tracebench reads;
partition keys against each file's footer; each results file's trace digest against
the trace file packed with it; ``SHA256SUMS`` against the manifest; files present but
not listed (symlinks and special files included).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from tracebench._version import __version__
from tracebench.dataset import manifest
from tracebench.dataset.footers import (
    META_MAX_BYTES,
    TABLES,
    config_problem,
    file_meta,
    partition_keys,
    results_version,
)
from tracebench.dataset.safety import (
    DatasetError,
    load_manifest,
    member_path,
    open_member,
    parse_json,
    read_member,
    walk_files,
)
from tracebench.schema import RESULTS_SCHEMA_VERSION, SCHEMA_VERSION

SUMS_MAX_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with one file of a dataset."""

    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


@dataclasses.dataclass
class Verification:
    """What :func:`verify` found: files and bytes checked, and every problem."""

    root: Path
    files: int = 0
    bytes: int = 0
    problems: list[Problem] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: str, what: str) -> None:
        self.problems.append(Problem(path, what))


def _too_new(what: str, found, known: int, written_by) -> str:
    return (f"{what} {found!r} is newer than this tracebench ({__version__}) reads (up to "
            f"{known}); it was written by tracebench {written_by}: read it with that "
            "version or later")


def verify(root: str | Path) -> Verification:
    """Check a dataset folder and return its problems (none: it is what it says).

    Raises :class:`DatasetError` only when ``root`` is not a dataset at all."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    if not (root / "datapackage.json").exists() and not (root / "datapackage.json").is_symlink():
        raise DatasetError(f"{root}: not a dataset (no datapackage.json; make one with "
                           "`tracebench dataset pack`)")
    rep = Verification(root)
    try:
        doc = load_manifest(root)
    except DatasetError as exc:
        msg = str(exc)
        path, _, what = msg.partition(": ")
        rep.add(path if what else "datapackage.json", what or msg)
        return rep
    facts = doc["tracebench"]
    by = facts.get("tracebench_version")
    for key, known in (("format_version", manifest.DATASET_FORMAT_VERSION),
                       ("trace_schema_version", SCHEMA_VERSION),
                       ("results_schema_version", RESULTS_SCHEMA_VERSION)):
        v = facts.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            rep.add("datapackage.json", f"tracebench.{key} is {v!r}, not a version number")
        elif v > known:
            rep.add("datapackage.json", _too_new(f"tracebench.{key}", v, known, by))
    if not rep.ok:
        return rep
    traces = {t.get("id"): t for t in facts.get("traces", []) if isinstance(t, dict)}
    listed = {res["path"]: res for res in doc["resources"]}
    schemas: dict = {}
    made: set[tuple] = set()   # (backend, params, trace) of every results file read
    for rel, res in listed.items():
        _check_file(root, rel, res, rep, schemas, traces, made)
    for table in TABLES:
        common = schemas.get(f"{table}/_common_metadata")
        for rel, s in schemas.items():
            if rel.startswith(f"{table}/") and common is not None and not s.equals(common):
                rep.add(rel, f"columns differ from {table}/_common_metadata")
    _check_sums(root, listed, rep)
    for rel in walk_files(root):
        if rel in listed or rel in ("datapackage.json", "SHA256SUMS"):
            continue
        try:
            member_path(root, rel)
            rep.add(rel, "present but not listed in datapackage.json (added after packing?)")
        except DatasetError as exc:
            rep.add(rel, str(exc).split(": ", 1)[-1] + " (not listed in datapackage.json)")
    for t in traces.values():
        if t.get("path") and t["path"] not in listed:
            rep.add("datapackage.json", f"trace {t.get('id')!r} names {t['path']}, which is "
                    "not listed")
    declared = set()
    for r in facts.get("results", []):
        if r["config"] not in listed:
            rep.add("datapackage.json", f"parameter set {r['backend']}/{r['params']} "
                    f"names config {r['config']!r}, which is not listed")
        declared |= {(r["backend"], r["params"], t) for t in r["traces"]}
    for b, p, t in sorted(made - declared) if rep.ok else []:
        rep.add("datapackage.json", f"results of trace {t!r} under {b}/{p} exist, but "
                "tracebench.results does not list them")
    for b, p, t in sorted(declared - made) if rep.ok else []:
        rep.add("datapackage.json", f"tracebench.results lists trace {t!r} under {b}/{p}, "
                "but no results file holds it")
    return rep


def _check_file(root: Path, rel: str, res: dict, rep: Verification, schemas: dict,
                traces: dict, made: set) -> None:
    try:
        fh = open_member(root, rel, res["bytes"])
    except DatasetError as exc:
        rep.add(rel, str(exc).split(": ", 1)[-1])
        return
    with fh:
        digest = manifest.sha256_file(fh)
        rep.files += 1
        rep.bytes += res["bytes"]
        if f"sha256:{digest}" != res["hash"]:
            rep.add(rel, f"sha256 {digest} differs from the manifest's {res['hash'][7:]} "
                    "(corrupted or altered)")
            return
        if rel.startswith("configs/") and rel.endswith(".json"):
            if res["bytes"] > META_MAX_BYTES:
                rep.add(rel, f"{res['bytes']} bytes, more than a parameter set may have")
                return
            fh.seek(0)
            _check_config(rel, fh.read(), rep)
        if res.get("format") != "parquet":
            return
        fh.seek(0)
        try:
            schema, meta = file_meta(fh, rel)
        except DatasetError as exc:
            rep.add(rel, str(exc).split(": ", 1)[-1])
            return
    schemas[rel] = schema
    declared = (res.get("schema") or {}).get("fields") if isinstance(res.get("schema"),
                                                                      dict) else None
    if declared != manifest.schema_fields(schema):
        rep.add(rel, "columns differ from the schema the manifest declares")
    if rel.endswith("/_common_metadata"):
        return
    top = rel.split("/", 1)[0]
    if meta is None:
        rep.add(rel, "no tracebench metadata in the Parquet footer")
        return
    v = meta.get("schema_version")
    if not isinstance(v, int) or v > SCHEMA_VERSION:
        rep.add(rel, _too_new("trace schema_version", v, SCHEMA_VERSION,
                              meta.get("tracebench_version")))
    if top == "traces":
        tid = rel.removeprefix("traces/").removesuffix(".parquet")
        t = traces.get(tid)
        if t is None:
            rep.add(rel, "trace file not described in datapackage.json")
        elif t.get("sha256") != digest:
            rep.add(rel, "sha256 differs from the trace's digest in datapackage.json")
        return
    if top not in TABLES:
        return
    rv = results_version(rel, schema, meta)
    if rv > RESULTS_SCHEMA_VERSION or rv < 1:
        rep.add(rel, _too_new("results_schema_version", meta.get("results_schema_version"),
                              RESULTS_SCHEMA_VERSION, meta.get("tracebench_version")))
    full = meta.get("params_sha256")
    want = {"backend": meta.get("backend"), "params": str(full)[:12],
            "trace": meta.get("trace_id")}
    made.add((want["backend"], want["params"], want["trace"]))
    if partition_keys(rel) != want:
        rep.add(rel, f"partition {partition_keys(rel)} disagrees with the file's footer {want}")
    t = traces.get(meta.get("trace_id"))
    if t is None:
        rep.add(rel, f"trace {meta.get('trace_id')!r} not described in datapackage.json")
    elif t.get("sha256") != meta.get("trace_sha256"):
        rep.add(rel, f"made from trace sha256 {meta.get('trace_sha256')}, but trace "
                f"{t.get('id')!r} in this dataset has {t.get('sha256')}")


def _check_config(rel: str, raw: bytes, rep: Verification) -> None:
    try:
        doc = parse_json(raw, rel)
    except DatasetError as exc:
        rep.add(rel, str(exc).split(": ", 1)[-1])
        return
    problem = config_problem(doc)
    if problem is None and not rel.endswith(f"-{doc['params_sha256'][:12]}.json"):
        problem = "file name does not end in the first 12 digits of its params_sha256"
    if problem:
        rep.add(rel, problem)


def _check_sums(root: Path, listed: dict, rep: Verification) -> None:
    try:
        raw = read_member(root, "SHA256SUMS", SUMS_MAX_BYTES)
        sums = manifest.parse_sha256sums(raw)
        own = hashlib.sha256(read_member(root, "datapackage.json",
                                         SUMS_MAX_BYTES * 4)).hexdigest()
    except DatasetError as exc:
        msg = str(exc)
        rep.add("SHA256SUMS", msg.split(": ", 1)[-1] if msg.startswith("SHA256SUMS") else msg)
        return
    if sums.get("datapackage.json") != own:
        rep.add("datapackage.json", "sha256 differs from SHA256SUMS (manifest altered)")
    for rel, res in listed.items():
        if sums.get(rel) is None:
            rep.add("SHA256SUMS", f"does not list {rel}")
        elif f"sha256:{sums[rel]}" != res["hash"]:
            rep.add("SHA256SUMS", f"digest of {rel} differs from datapackage.json")
    for rel in sums:
        if rel not in listed and rel != "datapackage.json":
            rep.add("SHA256SUMS", f"lists {rel}, which datapackage.json does not")
