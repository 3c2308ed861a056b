"""The dataset's manifests: Frictionless ``datapackage.json`` and ``SHA256SUMS``.

``datapackage.json`` lists every file of the dataset except itself and ``SHA256SUMS``
(path, bytes, ``sha256:<hex>``, format, media type, description and, for Parquet, the
columns with their Frictionless and Arrow types); the dataset's facts (traces, backends,
parameter sets, versions) sit under its ``tracebench`` key. ``SHA256SUMS`` covers every
file but itself, ``datapackage.json`` included, in the format ``sha256sum -c`` reads.

Volatile fields (the only bytes that differ when the same inputs are packed twice):
``created`` (the packing time; fixed by ``SOURCE_DATE_EPOCH``) and, through it, the
card's ``created`` line and the two checksums of those files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re

import pyarrow as pa

from tracebench._version import __version__
from tracebench.dataset.safety import DatasetError

#: the dataset layout's own version (files at the top, manifest keys); docs/schema.md
DATASET_FORMAT_VERSION = 1
PROFILE = "tracebench-dataset"
FRICTIONLESS_PROFILE = "https://datapackage.org/profiles/2.0/datapackage.json"
#: fields of the manifest that change between two packings of the same inputs
VOLATILE_FIELDS = ("created",)

_MEDIA = {"parquet": "application/vnd.apache.parquet", "json": "application/json",
          "md": "text/markdown", "txt": "text/plain"}


def sha256_file(fh) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def created_utc() -> str:
    """Packing time in ISO 8601 UTC, or ``SOURCE_DATE_EPOCH`` when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        try:
            when = dt.datetime.fromtimestamp(int(epoch), dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise DatasetError(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in "
                               "seconds") from None
    else:
        when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def frictionless_type(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return frictionless_type(t.value_type)
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    return "any"


def schema_fields(schema: pa.Schema) -> list[dict]:
    """Frictionless table-schema fields of an Arrow schema (the Arrow type kept beside)."""
    return [{"name": f.name, "type": frictionless_type(f.type), "arrowType": str(f.type),
             **({} if f.nullable else {"constraints": {"required": True}})}
            for f in schema]


_TABLE_TEXT = {
    "summary": "per event kind (+ interrupts, all) and metric: count, exits, exits/s, stall, "
               "overhead %, p50/p90/p99/p99.9/max and the HdrHistogram (base64 V2, column hdr)",
    "exits": "per vCPU x exit reason: count, samples %, time %, total/min/max/mean ns "
             "(perf kvm stat report columns)",
    "events": "per input event (row: its row in the trace file, to join on): start, latency, "
              "stall, exits, exit reason, exit time, timer error (ns)",
    "checkpoints": "replay state (every vCPU's, kernel layout) at chunk starts: what "
                   "tracebench.read_events replays a window again from",
    "vcpus": "per vCPU: exits, exit time, overhead %, final lag behind the trace, lag %, "
             "saturated flag",
}


def describe(rel: str) -> str:
    """The one-line description of a member file, from its path alone."""
    parts = rel.split("/")
    if parts[0] in _TABLE_TEXT:
        if parts[-1] == "_common_metadata":
            return f"Arrow schema shared by every {parts[0]}/ file (no rows)"
        keys = dict(p.split("=", 1) for p in parts[1:-1] if "=" in p)
        return (f"{parts[0]} of trace {keys.get('trace')} replayed under backend "
                f"{keys.get('backend')} with parameter set {keys.get('params')}: "
                f"{_TABLE_TEXT[parts[0]]}")
    if parts[0] == "traces":
        return (f"canonical trace {parts[-1].removesuffix('.parquet')} (tracebench trace "
                "schema; provenance in the Parquet footer under the 'tracebench' key)")
    if parts[0] == "configs":
        return f"full parameter set and mechanisms of {parts[-1].removesuffix('.json')}"
    if rel == "README.md":
        return "dataset card: contents, provenance, licence, how to load"
    return "file of the dataset"


def resource_name(rel: str, taken: set[str]) -> str:
    """A Frictionless resource name (lower case, ``[a-z0-9._-]``) unique in the package."""
    base = re.sub(r"[^a-z0-9._-]+", "-", rel.lower().replace("/", "-")).strip("-") or "file"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def resource(rel: str, size: int, digest: str, name: str,
             schema: pa.Schema | None = None) -> dict:
    ext = rel.rsplit(".", 1)[-1] if "." in rel.rsplit("/", 1)[-1] else ""
    fmt = "parquet" if rel.endswith("_common_metadata") else ext
    res = {"name": name, "path": rel, "format": fmt or "bin", "bytes": size,
           "hash": f"sha256:{digest}", "description": describe(rel)}
    if fmt in _MEDIA:
        res["mediatype"] = _MEDIA[fmt]
    if schema is not None:
        res["type"] = "table"
        res["schema"] = {"fields": schema_fields(schema)}
    return res


def package(resources: list[dict], facts: dict, title: str, description: str,
            licenses: list[dict], created: str) -> dict:
    """The whole ``datapackage.json`` document (keys sorted when written)."""
    return {
        "$schema": FRICTIONLESS_PROFILE,
        "name": re.sub(r"[^a-z0-9._-]+", "-", title.lower()).strip("-") or "tracebench-dataset",
        "title": title,
        "description": description,
        "licenses": licenses,
        "created": created,
        "keywords": ["tracebench", "virtualization", "interrupts", "timers", "trace"],
        "resources": sorted(resources, key=lambda r: r["path"]),
        "tracebench": {**facts, "format": PROFILE, "format_version": DATASET_FORMAT_VERSION,
                       "tracebench_version": __version__},
    }


def dumps(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def sha256sums(entries: list[tuple[str, str]]) -> bytes:
    """``SHA256SUMS`` text from ``(path, hex digest)`` pairs, sorted by path."""
    return "".join(f"{digest}  {rel}\n" for rel, digest in sorted(entries)).encode()


def parse_sha256sums(raw: bytes) -> dict[str, str]:
    """``path -> hex digest`` of a ``SHA256SUMS`` file; DatasetError on a malformed line."""
    out: dict[str, str] = {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DatasetError("SHA256SUMS: not UTF-8 text") from None
    for n, line in enumerate(text.splitlines(), 1):
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if not m:
            raise DatasetError(f"SHA256SUMS: line {n} is not '<sha256>  <path>'")
        out[m.group(2)] = m.group(1)
    return out
