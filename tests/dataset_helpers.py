"""Builders shared by the dataset tests: small replayed traces and tampering helpers."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import tracebench
from tracebench.scenarios import generate
from tracebench.trace import write_trace

BACKENDS = ["native", "full-virt", "apicv"]


def make_inputs(d: Path) -> dict[str, Path]:
    """Two small traces, their results (with per-event rows), and a second parameter set."""
    cols, meta = generate("timer-heavy", n_cpus=2, duration_ns=20_000_000, seed=4)
    write_trace(d / "timers.parquet", cols, meta)
    cols, meta = generate("ipi-storm", n_cpus=4, duration_ns=10_000_000, seed=7)
    write_trace(d / "ipis.parquet", cols, meta)
    traces = [d / "timers.parquet", d / "ipis.parquet"]
    tracebench.replay(traces, BACKENDS, out=d / "res", events=True)
    tracebench.replay(traces[:1], ["apicv"], out=d / "res2", events=False,
                      params={"exit_roundtrip_cyc": 3000})
    return {"timers": traces[0], "ipis": traces[1], "res": d / "res", "res2": d / "res2"}


def reseal(ds: Path, changed: list[str] | None = None, doc: dict | None = None) -> None:
    """Rewrite the manifest's bytes/hash of ``changed`` files (or write ``doc`` as the
    manifest) and SHA256SUMS, as a careful forger would: verify then sees only what the
    checks beyond checksums catch."""
    if doc is None:
        doc = json.loads((ds / "datapackage.json").read_text())
    for res in doc["resources"] if changed else []:
        if changed and res["path"] in changed:
            data = (ds / res["path"]).read_bytes()
            res["bytes"] = len(data)
            res["hash"] = "sha256:" + hashlib.sha256(data).hexdigest()
    raw = json.dumps(doc, indent=1, sort_keys=True).encode()
    (ds / "datapackage.json").write_bytes(raw)
    resources = doc.get("resources") if isinstance(doc, dict) else None
    lines = {r["path"]: r["hash"][7:] for r in resources or []
             if isinstance(r, dict) and isinstance(r.get("path"), str)
             and isinstance(r.get("hash"), str)}
    lines["datapackage.json"] = hashlib.sha256(raw).hexdigest()
    (ds / "SHA256SUMS").write_text("".join(f"{h}  {p}\n" for p, h in sorted(lines.items())))


def copy(ds: Path, to: Path) -> Path:
    shutil.copytree(ds, to, symlinks=True)
    return to


def a_results_file(ds: Path, table: str = "summary") -> str:
    return sorted(str(p.relative_to(ds)) for p in (ds / table).glob("**/part-0.parquet"))[0]
