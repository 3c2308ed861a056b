"""``tracebench dataset pack``: traces and results folders into one verifiable dataset.

A dataset is a results folder with extra files at its top, so ``tracebench stat``,
``compare``, sweeps and DuckDB read it like any other::

    DIR/summary/backend=NAME/params=HASH12/trace=ID/part-0.parquet   (and exits/, events/, vcpus/)
    DIR/{summary,exits,events,vcpus}/_common_metadata                  Arrow schema, no rows
    DIR/configs/NAME-HASH12.json                                       full parameter sets
    DIR/traces/ID.parquet                                              canonical traces
    DIR/README.md  DIR/datapackage.json  DIR/SHA256SUMS

Data files are copied byte for byte (a trace keeps the sha256 its results name), so
packing the same inputs twice gives the same bytes except the manifest's volatile
``created`` field (``SOURCE_DATE_EPOCH`` fixes it). The folder is built under a
temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracebench.atomic import atomic_path
from tracebench.dataset import card, manifest
from tracebench.dataset.footers import TABLES, file_meta
from tracebench.dataset.safety import DatasetError, load_manifest
from tracebench.dataset.sources import Collector, Member, same_path
from tracebench.schema import METADATA_KEY, RESULTS_SCHEMA_VERSION, SCHEMA_VERSION

#: SPDX licence expression: ids joined by AND / OR / WITH, optional parentheses
_SPDX = re.compile(r"[()]*[A-Za-z0-9.+-]+[()]*(\s+(AND|OR|WITH)\s+[()]*[A-Za-z0-9.+-]+[()]*)*")
GENERATED = ("README.md", "datapackage.json", "SHA256SUMS")


def licence_entries(spdx: str | None) -> list[dict] | None:
    if spdx is None:
        return None
    if not _SPDX.fullmatch(spdx.strip()):
        raise DatasetError(f"--license {spdx!r} is not an SPDX licence expression "
                           "(e.g. CC-BY-4.0, Apache-2.0, CC0-1.0)")
    ids = [w for w in re.split(r"[\s()]+", spdx) if w and w not in ("AND", "OR", "WITH")]
    return [{"name": i, "path": f"https://spdx.org/licenses/{i}.html"} for i in ids]


def pack(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
         license: str | None = None, title: str | None = None, description: str | None = None,
         force: bool = False) -> Path:
    """Pack traces, results folders and datasets into the dataset folder ``out``.

    Parameters
    ----------
    inputs : canonical trace files, results folders (``replay -o``) and/or datasets.
        The traces a results folder was made from are included when found (at the path
        its files name, checked by sha256) or given; the card says which are missing.
    out : the dataset folder, written atomically. An existing one is replaced only with
        ``force`` and only if it is a previous tracebench output.
    license : SPDX expression; default: the licences of input datasets, else none.
    title, description : for the manifest and the card.
    """
    if not inputs:
        raise DatasetError("nothing to pack: give trace files, results folders or datasets")
    out = Path(out)
    for i in inputs:
        p = Path(i)
        if same_path(p, out) or Path(os.path.realpath(out)).is_relative_to(os.path.realpath(p)):
            raise DatasetError(f"{out}: is (inside) the input {p}; pack into a new folder")
    _check_replaceable(out, force)
    col = Collector()
    for i in inputs:
        col.add(Path(i))
    members, facts = col.plan()
    licenses = licence_entries(license)
    if licenses is None:
        licenses = col.licenses
    names = sorted(Path(i).name for i in inputs)  # input order does not change the bytes
    title = title or f"tracebench dataset: {', '.join(names)}"[:200]
    return write_dataset(members, facts, out, title=title, description=description or "",
                         licenses=licenses, force=force)


def _replaceable(out: Path) -> bool:
    try:
        _check_replaceable(out, True)
    except DatasetError:
        return False
    return True


def _check_replaceable(out: Path, force: bool) -> None:
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise DatasetError(f"{out}: already exists (use --force to replace a previous dataset)")
    if out.is_symlink() or not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder; --force replaces only a "
                           "dataset tracebench wrote")
    if not any(out.iterdir()):
        return
    try:
        doc = load_manifest(out)
        ours = doc["tracebench"].get("format") == manifest.PROFILE
    except DatasetError:
        ours = False
    if not ours and not (out / "run.json").is_file():
        raise DatasetError(f"{out}: exists and is not a tracebench dataset or results folder; "
                           "refusing to replace it even with --force")


def write_dataset(members: dict[str, Member], facts: dict, out: Path, *, title: str,
                  description: str, licenses: list[dict], force: bool) -> Path:
    """Write planned members, shared schemas, card, manifest and checksums atomically."""
    for rel in members:
        if rel in GENERATED or rel.endswith("/_common_metadata"):
            raise DatasetError(f"{rel}: an input file would overwrite a generated file")
    facts = {**facts, "trace_schema_version": SCHEMA_VERSION,
             "results_schema_version": RESULTS_SCHEMA_VERSION}
    # a dataset lists every file it holds: no marker file; _check_replaceable decided
    with atomic_path(out, force=force, owned=_replaceable) as tmp:
        tmp.mkdir(parents=True)
        entries: dict[str, tuple[int, str, pa.Schema | None]] = {}
        for rel in sorted(members):
            entries[rel] = _place(members[rel], tmp)
        for table in TABLES:
            shared = _common_schema(table, entries)
            if shared is not None:
                rel = f"{table}/_common_metadata"
                buf = io.BytesIO()
                pq.write_metadata(shared, buf)
                entries[rel] = _write(tmp, rel, buf.getvalue(), shared)
        doc = manifest.package([], facts, title, description, licenses, manifest.created_utc())
        entries["README.md"] = _write(tmp, "README.md", card.render(doc).encode())
        taken: set[str] = set()
        doc["resources"] = [manifest.resource(rel, n, digest, manifest.resource_name(rel, taken),
                                              schema)
                            for rel, (n, digest, schema) in sorted(entries.items())]
        raw = manifest.dumps(doc)
        (tmp / "datapackage.json").write_bytes(raw)
        sums = [(rel, digest) for rel, (_, digest, _) in entries.items()]
        sums.append(("datapackage.json", hashlib.sha256(raw).hexdigest()))
        (tmp / "SHA256SUMS").write_bytes(manifest.sha256sums(sums))
    return out


def _place(m: Member, root: Path) -> tuple[int, str, pa.Schema | None]:
    """Copy (or write) one member, hashing what is written; the source must not have
    changed since it was planned."""
    dest = root / m.rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if m.data is not None:
        data = m.data
    else:
        with open(m.src, "rb") as fh:
            data = None
            h = hashlib.sha256()
            with open(dest, "wb") as w:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
                    w.write(block)
            if h.hexdigest() != m.digest:
                raise DatasetError(f"{m.src}: changed while being packed")
    if data is not None:
        dest.write_bytes(data)
    schema = None
    if m.rel.endswith(".parquet"):
        with open(dest, "rb") as fh:
            schema, _ = file_meta(fh, m.rel)
    return dest.stat().st_size, m.digest, schema


def _write(root: Path, rel: str, data: bytes, schema: pa.Schema | None = None):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest(), schema


def _common_schema(table: str, entries: dict) -> pa.Schema | None:
    """The one schema every file of ``table`` has (else a DatasetError naming the first file
    that differs and how), tagged with the table's name and schema versions."""
    files = [(rel, s) for rel, (_, _, s) in sorted(entries.items())
             if rel.startswith(f"{table}/") and s is not None]
    if not files:
        return None
    first_rel, first = files[0]
    for rel, s in files[1:]:
        if not s.equals(first):
            a, b = set(first.names), set(s.names)
            diff = (f"columns {sorted(a ^ b)} in only one" if a != b else
                    ", ".join(f"{f.name}: {f.type} vs {s.field(f.name).type}"
                              for f in first if s.field(f.name).type != f.type) or "nullability")
            raise DatasetError(f"{rel}: schema differs from {first_rel} ({diff}); these "
                               "results are not compatible (different tracebench versions?)")
    meta = {"table": table, "results_schema_version": RESULTS_SCHEMA_VERSION,
            "schema_version": SCHEMA_VERSION}
    return first.with_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True)})


