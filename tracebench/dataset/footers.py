"""Results files as tracebench writes them: footers, versions, parameter digests.

What :mod:`~tracebench.dataset.sources` (packing) and :mod:`~tracebench.dataset.verify`
share about a results file: its ``tracebench`` footer JSON, which results schema version
it follows, its partition keys, whether a parameter set matches its digest, and how a
version-1 file becomes a version-2 one.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracebench.dataset.safety import DatasetError, parse_json
from tracebench.schema import METADATA_KEY, RESULTS_SCHEMA_VERSION

#: largest tracebench footer / config JSON read from an input
META_MAX_BYTES = 4 << 20
#: the results tables a dataset may hold (``replay -o`` writes them)
TABLES = ("summary", "exits", "events", "vcpus", "checkpoints")


def sha256_bytes(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def file_meta(fh, where: str) -> tuple[pa.Schema, dict | None]:
    """Arrow schema (without metadata) and the ``tracebench`` footer JSON of a Parquet file."""
    try:
        pf = pq.ParquetFile(fh)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{where}: not a readable Parquet file "
                           f"({' '.join(str(exc).split())[:120]})") from None
    raw = (pf.metadata.metadata or {}).get(METADATA_KEY)
    meta = None
    if raw is not None:
        if len(raw) > META_MAX_BYTES:
            raise DatasetError(f"{where}: tracebench footer metadata larger than "
                               f"{META_MAX_BYTES} bytes; refused")
        meta = parse_json(raw, f"{where} (tracebench footer)")
        if not isinstance(meta, dict):
            raise DatasetError(f"{where}: tracebench footer metadata is not a JSON object")
    return schema.remove_metadata(), meta


def results_version(rel: str, schema: pa.Schema, meta: dict) -> int:
    """Results schema version of one results file: the footer's ``results_schema_version``,
    or for files written before that key, what the layout tells (1: no ``params=``
    level; 2: a summary without ``max_lag_ns``; 3: a ``vcpus`` file or a summary with it).
    Exit and event files did not change from 2 to 3: they answer 2."""
    v = meta.get("results_schema_version")
    if v is not None:
        return v if isinstance(v, int) and not isinstance(v, bool) else -1
    if "/params=" not in rel:
        return 1
    table = rel.split("/", 1)[0]
    if table == "vcpus" or (table == "summary" and "max_lag_ns" in schema.names):
        return 3
    return 2


def partition_keys(rel: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in rel.split("/")[1:-1] if "=" in p)


def params_digest(values: dict) -> str:
    """SHA-256 of a parameter set as ``ParamSet.digest`` computes it (canonical JSON)."""
    blob = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def config_problem(doc: object) -> str | None:
    """What is wrong with a ``configs/*.json`` document, or ``None``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict) or \
            not isinstance(doc.get("params_sha256"), str) or \
            not isinstance(doc.get("backend"), str):
        return "not a tracebench parameter set (needs backend, params, params_sha256)"
    if params_digest(doc["params"]) != doc["params_sha256"]:
        return (f"params_sha256 {doc['params_sha256'][:12]}... is not the sha256 of its "
                "parameters (edited by hand, or a forged hash)")
    return None


def upgrade(rel: str, version: int, phash: str, path: Path, schema: pa.Schema,
            meta: dict, digest: str) -> tuple[str, bytes | None, str]:
    """An older results file as the current version lays it out: ``(path, bytes, sha256)``.

    Version 1 files move under ``params=HASH``. Summary and exit files missing current
    columns gain them -- ``params`` from the footer's digest, the others (``max_lag_ns``,
    ``saturated_vcpus``: not measured by the tracebench that wrote the file) as nulls --
    and are rewritten deterministically, their footers marked
    ``upgraded_from_results_schema_version``. ``bytes`` is ``None`` when the file is
    current as it is (it is then copied unchanged).
    """
    from tracebench.replayer.results import EXITS_SCHEMA, SUMMARY_SCHEMA

    parts = rel.split("/")
    if version == 1:
        rel = "/".join(parts[:2] + [f"params={phash}"] + parts[2:])
    target = {"summary": SUMMARY_SCHEMA, "exits": EXITS_SCHEMA}.get(parts[0])
    if target is None or not set(target.names) - set(schema.names):
        return rel, None, digest
    t = pq.read_table(str(path))
    columns = []
    for field in target:
        if field.name in t.column_names:
            columns.append(t[field.name].cast(field.type))
        elif field.name == "params":
            columns.append(pa.array([phash] * t.num_rows, pa.string()))
        else:
            columns.append(pa.nulls(t.num_rows, field.type))
    meta = {**meta, "results_schema_version": RESULTS_SCHEMA_VERSION,
            "upgraded_from_results_schema_version": version}
    out = pa.Table.from_arrays(columns, schema=target).replace_schema_metadata(
        {METADATA_KEY: json.dumps(meta, sort_keys=True)})
    buf = io.BytesIO()
    pq.write_table(out, buf)
    data = buf.getvalue()
    return rel, data, sha256_bytes(data)
