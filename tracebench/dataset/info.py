"""``tracebench dataset info``: the card's facts, as tables or JSON, from the manifest.

Reads ``datapackage.json`` only (size-capped, type-checked); ``verify`` checks the files.
"""

from __future__ import annotations

from pathlib import Path

from tracebench.dataset.card import made_how
from tracebench.dataset.safety import DatasetError, expect, load_manifest

SECTIONS = ("dataset", "traces", "results")


def _list_of_dicts(value: object, where: str) -> list[dict]:
    expect(value, list, where)
    for i, item in enumerate(value):
        expect(item, dict, f"{where}[{i}]")
    return value


def info(root: str | Path) -> dict:
    """``{"dataset": {...}, "traces": [...], "results": [...]}`` of a dataset folder."""
    doc = load_manifest(Path(root))
    facts = doc["tracebench"]
    traces = _list_of_dicts(facts.get("traces", []), "tracebench.traces")
    results = _list_of_dicts(facts.get("results", []), "tracebench.results")
    lics = _list_of_dicts(doc.get("licenses") or [], "licenses")
    for i, t in enumerate(traces):
        expect(t.get("id"), str, f"tracebench.traces[{i}].id")
    for i, r in enumerate(results):
        for key in ("backend", "params"):
            expect(r.get(key), str, f"tracebench.results[{i}].{key}")
        expect(r.get("mechanisms", {}), dict, f"tracebench.results[{i}].mechanisms")
    resources = doc["resources"]
    dataset = {
        "title": str(doc.get("title", "")), "created": str(doc.get("created", "")),
        "licenses": ", ".join(str(x.get("name")) for x in lics) or None,
        "files": len(resources), "bytes": sum(r["bytes"] for r in resources),
        "traces": len(traces), "traces_included": sum(1 for t in traces if t.get("path")),
        "traces_with_results": sum(1 for t in traces if t.get("results")),
        "backends": len({r["backend"] for r in results}), "parameter_sets": len(results),
        "format_version": facts.get("format_version"),
        "trace_schema_version": facts.get("trace_schema_version"),
        "results_schema_version": facts.get("results_schema_version"),
        "tracebench_version": facts.get("tracebench_version"),
    }
    trace_rows = [{"id": t["id"], "method": t.get("method"), "events": t.get("rows"),
                   "n_cpus": t.get("n_cpus"), "duration_ns": t.get("duration_ns"),
                   "clock": t.get("clock"), "results": bool(t.get("results")),
                   "file": t.get("path"), "sha256": t.get("sha256"), "made": made_how(t),
                   "attribution": t.get("attribution")} for t in traces]
    result_rows = [{"backend": r["backend"], "params": r["params"],
                    "mechanisms": ", ".join(f"{k}={v}" for k, v in
                                            sorted(r.get("mechanisms", {}).items())),
                    "profiles": ", ".join(map(str, r.get("profiles", []))),
                    "traces": ", ".join(map(str, r.get("traces", []))),
                    "tables": ", ".join(map(str, r.get("tables", []))),
                    "config": r.get("config")} for r in results]
    return {"dataset": dataset, "traces": trace_rows, "results": result_rows}


def section_rows(facts: dict, section: str) -> list[dict]:
    if section not in SECTIONS:
        raise DatasetError(f"unknown section {section!r} (one of {', '.join(SECTIONS)})")
    value = facts[section]
    return [value] if isinstance(value, dict) else value
