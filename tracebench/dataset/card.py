"""The dataset card (``README.md``): generated from the manifest's facts, nothing else.

The loading commands in it run from inside the dataset folder; a test executes each of
them on a packed dataset, without tracebench installed on the import path.
"""

from __future__ import annotations

import json

_PLATFORM = {"guest": "inside a virtual machine", "bare-metal": "on bare metal",
             "host": "on a hypervisor host", "synthetic": "synthetically"}


def _where(env: dict) -> str:
    """``inside a virtual machine (KVM; Linux 6.18; x2apic, tsc-deadline)`` from the
    trace's ``environment``."""
    platform = env.get("platform")
    text = _PLATFORM.get(platform, f"on {platform}" if platform else "")
    details = [str(env["hypervisor"])] if env.get("hypervisor") else []
    if env.get("kernel"):
        details.append(f"Linux {env['kernel']}")
    features = env.get("detected_features") or env.get("features") or []
    if isinstance(features, list) and features:
        details.append(", ".join(map(str, features[:8])))
    return (text + (f" ({'; '.join(details)})" if details else "")).strip()


def made_how(t: dict) -> str:
    """One sentence on how a trace was made, from its metadata (``TraceMeta``)."""
    src = t.get("source") if isinstance(t.get("source"), dict) else {}
    env = t.get("environment") if isinstance(t.get("environment"), dict) else {}
    where = _where(env)
    files = [f"{f.get('name')} ({f.get('format')}, {f.get('bytes')} bytes, sha256 "
             f"{str(f.get('sha256'))[:12]}...)"
             for f in src.get("files", []) if isinstance(f, dict)]
    method, clock = t.get("method"), t.get("clock")
    if method == "synth":
        params = src.get("params") or {}
        return (f"synthesized with scenario `{src.get('scenario')}`, seed {src.get('seed')}"
                + (f", parameters {json.dumps(params, sort_keys=True)}" if params else ""))
    if method == "record":
        return (f"recorded with `tracebench record` {where or 'on an unnamed machine'}"
                + (f", from {', '.join(files)}" if files else "") + f"; clock `{clock}`")
    if method == "ingest":
        return (f"ingested from {src.get('format', 'text')} "
                + (", ".join(files) if files else "input")
                + (f" taken {where}" if where else "") + f"; clock `{clock}`")
    return f"made by method {method!r} (source: {json.dumps(src, sort_keys=True)[:200]})"


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell (a stranger's metadata may hold anything)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _dur(ns) -> str:
    return f"{ns / 1e9:.3f} s" if isinstance(ns, int | float) else "?"


def _licences(doc: dict) -> str:
    lics = doc.get("licenses") or []
    if not lics:
        return ("No licence was given when this dataset was packed: ask its authors before "
                "reusing it.")
    return "; ".join(f"[{lic.get('name')}]({lic.get('path')})" if lic.get("path")
                     else str(lic.get("name")) for lic in lics)


def render(doc: dict) -> str:
    """The card's Markdown for a package document (``manifest.package`` without files)."""
    facts = doc["tracebench"]
    tables = sorted({t for r in facts["results"] for t in r["tables"]})
    has_traces = any(t["path"] for t in facts["traces"])
    out = _front_matter(doc, tables, has_traces) + _inside(doc, tables)
    out += _traces(facts["traces"]) + _results(facts["results"])
    out += ["## Licence and attribution", "", _licences(doc), ""]
    out += [f"- `{t['id']}`: {_cell(t['attribution'])}" for t in facts["traces"]
            if t.get("attribution")]
    out += [""] + _loading(tables, has_traces)
    return "\n".join(out) + "\n"


def _front_matter(doc: dict, tables: list[str], has_traces: bool) -> list[str]:
    """Hugging Face style YAML: the same folder loads with ``datasets.load_dataset``."""
    spdx = [lic.get("name") for lic in doc.get("licenses") or []]
    out = ["---", f"pretty_name: {json.dumps(doc['title'])}",
           f"license: {json.dumps(str(spdx[0]).lower() if len(spdx) == 1 else 'other')}",
           "tags: [tracebench, virtualization, interrupts, timers]", "configs:"]
    for name in tables + (["traces"] if has_traces else []):
        pattern = "traces/*.parquet" if name == "traces" else f"{name}/**/*.parquet"
        out += [f"- config_name: {name}", "  data_files:", "  - split: train",
                f"    path: \"{pattern}\""]
    return out + ["---", ""]


def _inside(doc: dict, tables: list[str]) -> list[str]:
    facts = doc["tracebench"]
    traces, results = facts["traces"], facts["results"]
    backends = sorted({r["backend"] for r in results})
    out = [f"# {_cell(doc['title'])}", ""]
    if doc.get("description"):
        out += [str(doc["description"]), ""]
    return out + [
        f"Packed by tracebench {facts['tracebench_version']} on {doc['created']} (dataset "
        f"format {facts['format_version']}, trace schema {facts['trace_schema_version']}, "
        f"results schema {facts['results_schema_version']}; see tracebench's "
        "docs/schema.md).", "", "## What is inside", "",
        f"- {len(traces)} trace(s), {sum(1 for t in traces if t['results'])} with replay "
        f"results; {sum(1 for t in traces if t['path'])} included as canonical trace files "
        "under `traces/`.",
        f"- {len(results)} (backend, parameter set) pair(s) over {len(backends)} backend(s)"
        f"{': ' + ', '.join(backends) if backends else ''}.",
        f"- Result tables: {', '.join(f'`{t}/`' for t in tables) or 'none'}"
        + (" (Hive partitions `backend=NAME/params=HASH12/trace=ID/part-0.parquet`)."
           if tables else "."),
        "- `datapackage.json` (Frictionless) lists every file with its size, sha256, columns "
        "and description; `SHA256SUMS` works with `sha256sum -c SHA256SUMS`.", ""]


def _traces(traces: list[dict]) -> list[str]:
    out = ["## Traces", "", "| id | events | vCPUs | duration | results | file | how it was "
           "made |", "|---|---:|---:|---:|---|---|---|"]
    for t in traces:
        rows = f"{t['rows']:,}" if isinstance(t["rows"], int) else "?"
        out.append(f"| `{t['id']}` | {rows} | {t.get('n_cpus')} | {_dur(t.get('duration_ns'))}"
                   f" | {'yes' if t['results'] else 'no'} | "
                   f"{'`' + t['path'] + '`' if t['path'] else 'not included'} | "
                   f"{_cell(made_how(t))} |")
    missing = [t["id"] for t in traces if not t["path"]]
    if missing:
        out += ["", "Results only (trace file not included; its sha256 is in every results "
                f"file's footer): {', '.join(f'`{m}`' for m in missing)}."]
    return out + [""]


def _results(results: list[dict]) -> list[str]:
    out = ["## Backends and parameter sets", ""]
    if not results:
        return out + ["No replay results: traces only (replay them with `tracebench replay "
                      "traces/*.parquet`).", ""]
    out += ["| backend | params | mechanisms | profile | traces | config |",
            "|---|---|---|---|---|---|"]
    for r in results:
        mech = ", ".join(f"{k}={v}" for k, v in sorted(r["mechanisms"].items()))
        out.append(f"| {_cell(r['backend'])} | `{r['params']}` | {_cell(mech)} | "
                   f"{_cell(', '.join(r['profiles']))} | {_cell(', '.join(r['traces']))} | "
                   f"`{r['config']}` |")
    return out + ["", "Parameter values (cycles / GHz) are in each `configs/` file; `params` "
                  "is the first 12 hex digits of the SHA-256 of the full parameter set.", ""]


_HIVE_NOTE = ("The `summary`, `exits` and `vcpus` tables carry `backend`, `params` and `trace` as "
              "columns, so read them without Hive parsing; `events` has them only in its "
              "path: give them string types (a hash or trace id made only of digits would "
              "otherwise be read as a number).")


def _loading(tables: list[str], has_traces: bool) -> list[str]:
    """Commands that work on this dataset as packed (a test runs every block)."""
    agg, events = "exits" in tables, "events" in tables
    out = ["## Loading it", "", "Run these from inside this folder. Verify it first:", "",
           "```sh", "sha256sum -c --quiet SHA256SUMS", "tracebench dataset verify .", "```",
           "", "With tracebench: `tracebench dataset info .`"
           + (", `tracebench stat .`, `tracebench compare . --base native`" if agg else "")
           + ".", ""]
    if agg:
        out += [_HIVE_NOTE, ""]
    out += ["polars:", "", "```python", "import polars as pl", ""]
    if agg:
        out += ['exits = pl.read_parquet("exits/**/*.parquet", hive_partitioning=False)',
                'stat = (exits.group_by("backend", "reason")',
                '        .agg(samples=pl.col("count").sum(), total_ns=pl.col("total_ns").sum())',
                '        .sort("backend", "samples", descending=[False, True]))',
                "print(stat)",
                'summary = pl.read_parquet("summary/**/*.parquet", hive_partitioning=False)',
                'print(summary.filter(kind="all", metric="latency_ns")',
                '      .select("backend", "params", "trace", "count", "p50_ns", "p99_ns"))']
    if events:
        out += ['hive = {"backend": pl.String, "params": pl.String, "trace": pl.String}',
                'events = pl.scan_parquet("events/**/*.parquet", hive_partitioning=True,',
                '                         hive_schema=hive)',
                'print(events.group_by("backend").agg(pl.len(), pl.col("latency_ns").mean())',
                '      .sort("backend").collect())']
    if has_traces:
        out += ['traces = pl.scan_parquet("traces/*.parquet", include_file_paths="file")',
                'print(traces.group_by("file", "kind").len().sort("file", "kind").collect())']
    out += ["```", "", "pyarrow:", "", "```python", "import pyarrow as pa",
            "import pyarrow.dataset as ds", "import pyarrow.parquet as pq", ""]
    if agg:
        out += ['exits = ds.dataset("exits", format="parquet").to_table()',
                'print(exits.group_by(["backend", "reason"]).aggregate([("count", "sum")]))']
    if events:
        out += ['part = ds.partitioning(pa.schema([("backend", pa.string()), '
                '("params", pa.string()),',
                '                                 ("trace", pa.string())]), flavor="hive")',
                'events = ds.dataset("events", format="parquet", partitioning=part)',
                'print(events.count_rows())']
    first = "summary" if agg else "traces"
    out += ["# provenance (trace metadata, parameters) is in each file's footer:",
            f'first = sorted(ds.dataset("{first}", format="parquet").files)[0]',
            'print(pq.read_metadata(first).metadata[b"tracebench"][:300])', "```", "",
            "DuckDB:", "", "```python", "import duckdb", ""]
    if agg:
        out += ['duckdb.sql("""',
                "    SELECT backend, reason, sum(count) AS samples, sum(total_ns) AS total_ns",
                "    FROM read_parquet('exits/**/*.parquet', hive_partitioning = false)",
                '    GROUP BY ALL ORDER BY backend, samples DESC, reason""").show()']
    if events:
        out += ['duckdb.sql("""',
                "    SELECT backend, params, count(*) AS events, avg(latency_ns) AS mean_ns",
                "    FROM read_parquet('events/**/*.parquet', hive_partitioning = true,",
                "         hive_types = {'backend': VARCHAR, 'params': VARCHAR, "
                "'trace': VARCHAR})",
                '    GROUP BY ALL ORDER BY ALL""").show()']
    if has_traces:
        out += ['duckdb.sql("""',
                "    SELECT filename, kind, count(*) AS events",
                "    FROM read_parquet('traces/*.parquet', filename = true)",
                '    GROUP BY ALL ORDER BY ALL""").show()']
    out += ["```", ""]
    if agg:
        out += ["Percentiles across traces or shards: decode and add the `hdr` column's "
                "HdrHistograms (any HdrHistogram library reads them; tracebench: "
                "`tracebench.hist.merge_encoded`), never average the stored percentiles.", ""]
    return out
