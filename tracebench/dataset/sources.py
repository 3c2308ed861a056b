"""What goes into a dataset: inputs (traces, results folders, datasets) turned into a plan.

A plan maps each file of the future dataset to its bytes (a source file copied verbatim,
or bytes made here: results of an older schema version upgraded, missing configs) and its
SHA-256, and carries the facts the manifest and card are made of. Conflicts are refused here, before
anything is written: one trace id with two digests, one parameter hash with two
parameter sets, one (table, backend, parameters, trace) with two different contents.
Identical duplicates collapse into one file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracebench.dataset.footers import (
    META_MAX_BYTES,
    TABLES,
    config_problem,
    file_meta,
    params_digest,
    partition_keys,
    results_version,
    sha256_bytes,
    upgrade,
)
from tracebench.dataset.manifest import sha256_file
from tracebench.dataset.safety import (
    TRACE_KEYS,
    DatasetError,
    check_relpath,
    open_member,
    parse_json,
    walk_files,
)
from tracebench.schema import RESULTS_SCHEMA_VERSION


@dataclasses.dataclass
class Member:
    """One file of the dataset to be: copied from ``src`` or written from ``data``."""

    rel: str
    digest: str
    origin: str
    src: Path | None = None
    data: bytes | None = None
    config: dict | None = None


class Collector:
    """Accumulates inputs; :meth:`plan` gives the members and facts once all are in."""

    def __init__(self):
        self.members: dict[str, Member] = {}
        # (path, sha256, origin, id): the id is fixed for a dataset's traces, else None
        self.trace_files: list[tuple[Path, str, str, str | None]] = []
        self.result_traces: dict[str, dict] = {}   # trace id -> sha256, meta, candidates
        self.param_sets: dict[tuple[str, str], dict] = {}
        self.licenses: list[dict] = []

    # ------------------------------------------------------------------ inputs
    def add(self, path: Path) -> None:
        path = Path(path)
        if path.is_file():
            self._add_trace(path, str(path))
        elif path.is_dir():
            if (path / "datapackage.json").exists():
                self._add_dataset(path)
            elif any((path / t).is_dir() for t in TABLES):
                self._add_results(path, str(path))
            else:
                raise DatasetError(f"{path}: neither a trace file, a results folder "
                                   "(summary/, exits/) nor a dataset (datapackage.json)")
        else:
            raise DatasetError(f"{path}: no such file or folder")

    def _add_trace(self, path: Path, origin: str, fixed_id: str | None = None) -> None:
        from tracebench.trace import TraceFile

        TraceFile(path)  # schema and metadata check: refuses what is not a canonical trace
        with open(path, "rb") as fh:
            self.trace_files.append((path, sha256_file(fh), origin, fixed_id))

    def _add_dataset(self, root: Path) -> None:
        from tracebench.dataset.verify import verify

        report = verify(root)
        if not report.ok:
            first = report.problems[0]
            raise DatasetError(f"{root}: does not verify ({len(report.problems)} problem(s); "
                               f"first: {first.path}: {first.what})")
        from tracebench.dataset.safety import load_manifest

        doc = load_manifest(root)
        for lic in doc.get("licenses") or []:
            if isinstance(lic, dict) and lic not in self.licenses:
                self.licenses.append(lic)
        # a stranger's footers name paths on their machine: never look there
        self._add_results(root, str(root), follow_paths=False)
        for res in doc["resources"]:
            rel = res["path"]
            if rel.startswith("traces/") and rel.endswith(".parquet"):
                self._add_trace(root / rel, f"{root}/{rel}",
                                rel.removeprefix("traces/").removesuffix(".parquet"))

    def _add_results(self, root: Path, origin: str, follow_paths: bool = True) -> None:
        """A results folder; ``follow_paths``: look for its traces where its files say."""
        files = walk_files(root)
        run = {}
        if follow_paths and "run.json" in files:
            with open_member(root, "run.json") as fh:
                run = parse_json(fh.read(META_MAX_BYTES), f"{root}/run.json")
            run = run if isinstance(run, dict) else {}
        traces = run.get("traces")
        listed = [t for t in traces if isinstance(t, str)] if isinstance(traces, list) else []
        for rel in files:
            top = rel.split("/", 1)[0]
            if top in TABLES and rel.endswith(".parquet"):
                self._add_result_file(root, rel, origin, listed, follow_paths)
            elif top == "configs" and rel.endswith(".json") and rel.count("/") == 1:
                self._add_config(root, rel, origin)

    def _add_result_file(self, root: Path, rel: str, origin: str, listed: list[str],
                         follow_paths: bool) -> None:
        where = f"{origin}/{rel}"
        check_relpath(rel, where)
        with open_member(root, rel) as fh:
            schema, meta = file_meta(fh, where)
            fh.seek(0)
            digest = sha256_file(fh)
        if meta is None:
            raise DatasetError(f"{where}: no tracebench metadata (not written by replay -o)")
        table, keys = rel.split("/", 1)[0], partition_keys(rel)
        version = results_version(rel, schema, meta)
        if version < 1 or version > RESULTS_SCHEMA_VERSION:
            found = meta.get("results_schema_version")
            raise DatasetError(f"{where}: results schema version {found!r} is not one this "
                               f"tracebench reads (1..{RESULTS_SCHEMA_VERSION}); it was "
                               f"written by tracebench {meta.get('tracebench_version')}")
        backend, tid = meta.get("backend"), meta.get("trace_id")
        full = meta.get("params_sha256")
        if not (isinstance(backend, str) and isinstance(tid, str) and isinstance(full, str)
                and re.fullmatch(r"[0-9a-f]{64}", full)):
            raise DatasetError(f"{where}: footer lacks backend, trace_id or params_sha256")
        for key in ("trace", "mechanisms", "params"):
            if not isinstance(meta.get(key), dict):
                raise DatasetError(f"{where}: footer {key!r} is not a JSON object")
        if params_digest(meta["params"]) != full:
            raise DatasetError(f"{where}: footer params_sha256 is not the sha256 of its "
                               "parameters")
        phash = _params_hash(full)
        want = {"backend": backend, "trace": tid, **({"params": phash} if version >= 2 else {})}
        if keys != want:
            raise DatasetError(f"{where}: partition {keys} disagrees with the file's metadata "
                               f"{want}")
        src, data = root / rel, None
        if version < RESULTS_SCHEMA_VERSION:
            rel, data, digest = upgrade(rel, version, phash, src, schema, meta, digest)
        self._put(Member(rel, digest, origin, None if data is not None else src, data))
        self._note_result(tid, meta, phash, table, root, listed, where, follow_paths)

    def _note_result(self, tid, meta, phash, table, root, listed, where, follow_paths) -> None:
        sha = meta.get("trace_sha256")
        entry = self.result_traces.setdefault(tid, {"sha256": sha, "meta": meta.get("trace"),
                                                     "candidates": [], "where": where})
        if entry["sha256"] != sha:
            raise DatasetError(f"trace id {tid!r}: {entry['where']} was made from trace sha256 "
                               f"{entry['sha256']}, {where} from {sha}; refusing to merge two "
                               "different traces under one id")
        cand = [meta.get("trace_file")] + listed if follow_paths else []
        for c in cand:
            if isinstance(c, str) and c:
                p = Path(c)
                entry["candidates"] += [p] if p.is_absolute() else [p, root / p, root.parent / p]
        key = (meta["backend"], phash)
        ps = self.param_sets.setdefault(key, {
            "backend": meta["backend"], "params": phash, "params_sha256": meta["params_sha256"],
            "origin": str(meta.get("backend_origin", "")), "mechanisms": meta.get("mechanisms")
            or {}, "values": meta.get("params") or {}, "profiles": set(), "traces": set(),
            "tables": set(), "where": where})
        if ps["params_sha256"] != meta["params_sha256"] or ps["values"] != (meta.get("params")
                                                                            or {}):
            raise DatasetError(f"parameter hash {phash} of backend {meta['backend']}: "
                               f"{ps['where']} and {where} hold different parameter sets; "
                               "refusing to merge them under one hash")
        ps["profiles"].add(str(meta.get("profile") or "default"))
        ps["traces"].add(tid)
        ps["tables"].add(table)

    def _add_config(self, root: Path, rel: str, origin: str) -> None:
        where = f"{origin}/{rel}"
        with open_member(root, rel) as fh:
            raw = fh.read(META_MAX_BYTES + 1)
        if len(raw) > META_MAX_BYTES:
            raise DatasetError(f"{where}: larger than {META_MAX_BYTES} bytes; refused")
        doc = parse_json(raw, where)
        problem = config_problem(doc)
        if problem:
            raise DatasetError(f"{where}: {problem}")
        name = rel.split("/")[1].removesuffix(".json")
        if not name.endswith("-" + _params_hash(doc["params_sha256"])):
            raise DatasetError(f"{where}: file name does not end in the first digits of "
                               "its params_sha256")
        self._put(Member(rel, sha256_bytes(raw), origin, root / rel, config=doc))

    # ------------------------------------------------------------------ merging
    def _put(self, m: Member) -> None:
        old = self.members.get(m.rel)
        if old is None:
            self.members[m.rel] = m
            return
        if old.digest == m.digest:
            return
        if m.config is not None:
            old_cfg = old.config or {}
            if old_cfg.get("params") == m.config.get("params") and \
                    old_cfg.get("params_sha256") == m.config.get("params_sha256"):
                return  # same parameters, other formatting or origin text: keep the first
            raise DatasetError(f"{m.rel}: same parameter hash with different parameters in "
                               f"{old.origin} and {m.origin}; refused")
        if m.rel.endswith(".parquet") and _same_rows(old, m):
            return
        raise DatasetError(f"{m.rel}: {old.origin} and {m.origin} hold different results for "
                           "the same trace, backend and parameter set; refused")

    def plan(self) -> tuple[dict[str, Member], dict]:
        """Members by path and the facts (``traces``, ``results``) for manifest and card."""
        traces = self._place_traces()
        for (backend, phash), ps in self.param_sets.items():
            rel = f"configs/{backend}-{phash}.json"
            if rel not in self.members:  # results without their config file: rebuild it
                raw = (json.dumps({"backend": backend, "origin": ps["origin"],
                                   "mechanisms": ps["mechanisms"], "params": ps["values"],
                                   "params_sha256": ps["params_sha256"]},
                                  indent=2, sort_keys=True) + "\n").encode()
                self.members[rel] = Member(rel, sha256_bytes(raw), ps["where"], data=raw)
        results = [{"backend": ps["backend"], "params": ps["params"],
                    "params_sha256": ps["params_sha256"], "origin": ps["origin"],
                    "mechanisms": ps["mechanisms"], "values": ps["values"],
                    "profiles": sorted(ps["profiles"]),
                    "config": f"configs/{ps['backend']}-{ps['params']}.json",
                    "traces": sorted(ps["traces"]), "tables": sorted(ps["tables"])}
                   for _, ps in sorted(self.param_sets.items())]
        if not self.members and not traces:
            raise DatasetError("nothing to pack: no trace and no results among the inputs")
        return self.members, {"traces": traces, "results": results}

    def _place_traces(self) -> list[dict]:
        from tracebench.trace import TraceFile

        by_sha: dict[str, list[tuple[Path, str]]] = {}
        for path, sha, origin, _ in self.trace_files:
            by_sha.setdefault(sha, []).append((path, origin))
        placed: dict[str, tuple[Path, str, str]] = {}
        for tid, entry in self.result_traces.items():
            found = by_sha.get(entry["sha256"])
            if found:
                placed[tid] = (found[0][0], entry["sha256"], found[0][1])
                continue
            for cand in entry["candidates"]:
                if cand.is_file():
                    with open(cand, "rb") as fh:
                        if sha256_file(fh) == entry["sha256"]:
                            placed[tid] = (cand, entry["sha256"], str(cand))
                            break
        used = {sha for _, sha, _ in placed.values()}
        # a dataset's trace keeps its id (a clash is a conflict); a loose file gets a free one
        for path, sha, origin, tid in sorted(self.trace_files, key=lambda t: t[3] is None):
            if sha in used:
                continue
            used.add(sha)
            if tid is not None:
                other = placed.get(tid) or (None, self.result_traces.get(tid, {}).get("sha256"),
                                            "results")
                if other[1] is not None:
                    raise DatasetError(f"trace id {tid!r}: {other[2]} has sha256 {other[1]}, "
                                       f"{origin} has {sha}; refusing to merge two different "
                                       "traces under one id")
            else:
                from tracebench.replayer.results import trace_id

                tid = trace_id(path, set(placed) | set(self.result_traces))
            placed[tid] = (path, sha, origin)
        facts = []
        for tid in sorted(set(placed) | set(self.result_traces)):
            if tid in placed:
                path, sha, origin = placed[tid]
                tf = TraceFile(path)
                meta, rows = dataclasses.asdict(tf.meta), tf.num_rows
                rel = f"traces/{tid}.parquet"
                self._put(Member(rel, sha, origin, path))
            else:
                sha, meta, rows, rel = (self.result_traces[tid]["sha256"],
                                        self.result_traces[tid]["meta"] or {}, None, None)
            facts.append({"id": tid, "path": rel, "sha256": sha, "rows": rows,
                          "results": tid in self.result_traces, **_trace_facts(meta)})
        return facts


def _trace_facts(meta: dict) -> dict:
    """The trace metadata the manifest keeps; a value of the wrong type becomes ``None``."""
    keys = ("n_cpus", "duration_ns", "method", "source", "clock", "environment",
            "attribution", "schema_version", "tracebench_version")
    types = {**TRACE_KEYS, "schema_version": (int,), "tracebench_version": (str,)}
    return {k: v if isinstance(v := meta.get(k), types[k]) and not
            (isinstance(v, bool) and bool not in types[k]) else None for k in keys}


def _params_hash(digest: str) -> str:
    # imported here: the results module brings the replay stack, which verify never needs
    from tracebench.replayer.results import params_hash

    return params_hash(digest)


def _read_table(m: Member) -> pa.Table:
    src = pa.BufferReader(m.data) if m.data is not None else str(m.src)
    return pq.read_table(src).replace_schema_metadata(None)


def _same_rows(a: Member, b: Member) -> bool:
    """Same columns and values (the footers may differ, e.g. in the trace's file path)."""
    try:
        return _read_table(a).equals(_read_table(b))
    except (pa.ArrowException, OSError):
        return False


def same_path(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
