"""The dataset card (``README.md``): generated from the manifest's facts, nothing else.

The loading commands in it run from inside the dataset folder; a test executes each of
them on a packed dataset, without tracebench installed on the import path.
"""

from __future__ import annotations

import json


def made_how(t: dict) -> str:
    """One sentence on how a trace was made, from its metadata (``TraceMeta``)."""
    src = t.get("source") if isinstance(t.get("source"), dict) else {}
    env = t.get("environment") if isinstance(t.get("environment"), dict) else {}
    where = ", ".join(str(x) for x in (env.get("platform"), env.get("hypervisor"),
                                       env.get("kernel") and f"Linux {env['kernel']}")
                      if x)
    files = [f"{f.get('name')} ({f.get('format')}, sha256 {str(f.get('sha256'))[:12]}...)"
             for f in src.get("files", []) if isinstance(f, dict)]
    method = t.get("method")
    if method == "synth":
        params = src.get("params") or {}
        return (f"synthesized with scenario `{src.get('scenario')}`, seed {src.get('seed')}"
                + (f", parameters {json.dumps(params, sort_keys=True)}" if params else ""))
    if method == "record":
        return (f"recorded with `tracebench record` on {where or 'an unnamed machine'}"
                + (f" (from {', '.join(files)})" if files else "")
                + f", clock `{t.get('clock')}`")
    if method == "ingest":
        return (f"ingested from {src.get('format', 'text')} "
                + (", ".join(files) if files else "input")
                + (f" taken on {where}" if where else "") + f", clock `{t.get('clock')}`")
    return f"made by method {method!r} (source: {json.dumps(src, sort_keys=True)[:200]})"


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
    traces, results = facts["traces"], facts["results"]
    tables = sorted({t for r in results for t in r["tables"]})
    backends = sorted({r["backend"] for r in results})
    with_results = [t for t in traces if t["results"]]
    spdx = [lic.get("name") for lic in doc.get("licenses") or []]
    out = ["---", f"pretty_name: {json.dumps(doc['title'])}",
           f"license: {json.dumps(spdx[0].lower() if len(spdx) == 1 else 'other')}",
           "tags: [tracebench, virtualization, interrupts, timers]", "configs:"]
    for name in tables + (["traces"] if any(t["path"] for t in traces) else []):
        pattern = "traces/*.parquet" if name == "traces" else f"{name}/**/*.parquet"
        out += [f"- config_name: {name}", "  data_files:",
                f"  - split: train\n    path: \"{pattern}\""]
    out += ["---", "", f"# {doc['title']}", ""]
    if doc.get("description"):
        out += [doc["description"], ""]
    out += [f"Packed by tracebench {facts['tracebench_version']} on {doc['created']} "
            f"(dataset format {facts['format_version']}, trace schema "
            f"{facts['trace_schema_version']}, results schema {facts['results_schema_version']}"
            "; see the project's docs/schema.md).", "",
            "## What is inside", "",
            f"- {len(traces)} trace(s), {len(with_results)} with replay results; "
            f"{sum(1 for t in traces if t['path'])} included as canonical trace files "
            "under `traces/`.",
            f"- {len(results)} (backend, parameter set) pair(s) over {len(backends)} "
            f"backend(s): {', '.join(backends) or 'none'}.",
            f"- Result tables: {', '.join(f'`{t}/`' for t in tables) or 'none'} "
            "(Hive partitions `backend=NAME/params=HASH12/trace=ID/part-0.parquet`).",
            "- `datapackage.json` (Frictionless) lists every file with its size, sha256, "
            "columns and description; `SHA256SUMS` works with `sha256sum -c SHA256SUMS`.",
            "", "## Traces", "",
            "| id | events | vCPUs | duration | results | file | how it was made |",
            "|---|---:|---:|---:|---|---|---|"]
    for t in traces:
        rows = f"{t['rows']:,}" if isinstance(t["rows"], int) else "?"
        out.append(f"| `{t['id']}` | {rows} | {t.get('n_cpus')} | {_dur(t.get('duration_ns'))}"
                   f" | {'yes' if t['results'] else 'no'} | "
                   f"{'`' + t['path'] + '`' if t['path'] else 'not included'} | "
                   f"{made_how(t)} |")
    missing = [t["id"] for t in traces if not t["path"]]
    if missing:
        out += ["", f"Results only (trace file not included; its sha256 is in every results "
                f"file's footer): {', '.join(f'`{m}`' for m in missing)}."]
    out += ["", "## Backends and parameter sets", "",
            "| backend | params | mechanisms | profile | traces | config |",
            "|---|---|---|---|---|---|"]
    for r in results:
        mech = ", ".join(f"{k}={v}" for k, v in sorted(r["mechanisms"].items()))
        out.append(f"| {r['backend']} | `{r['params']}` | {mech} | "
                   f"{', '.join(r['profiles'])} | {', '.join(r['traces'])} | "
                   f"`{r['config']}` |")
    out += ["", "Parameter values (cycles / GHz) are in each `configs/` file; `params` is the "
            "first 12 hex digits of the SHA-256 of the full parameter set.", "",
            "## Licence and attribution", "", _licences(doc), ""]
    for t in traces:
        if t.get("attribution"):
            out.append(f"- `{t['id']}`: {t['attribution']}")
    out += ["", "## Loading it", "",
            "Run these from inside this folder. Verify it first:", "",
            "```sh", "sha256sum -c --quiet SHA256SUMS", "tracebench dataset verify .", "```",
            "", "With tracebench: `tracebench stat .`, `tracebench compare . --base native`, "
            "`tracebench dataset info .`.", "",
            "The `summary` and `exits` tables carry `backend`, `params` and `trace` as "
            "columns, so read them without Hive parsing; give partition columns explicit "
            "string types where you need them (a hash or trace id made only of digits would "
            "otherwise be read as a number).", "",
            "polars:", "", "```python", "import polars as pl", "",
            'exits = pl.read_parquet("exits/**/*.parquet", hive_partitioning=False)',
            'stat = (exits.group_by("backend", "reason")',
            '        .agg(samples=pl.col("count").sum(), total_ns=pl.col("total_ns").sum())',
            '        .sort("backend", "samples", descending=[False, True]))',
            "print(stat)",
            'summary = pl.read_parquet("summary/**/*.parquet", hive_partitioning=False)',
            'print(summary.filter(kind="all", metric="latency_ns")',
            '      .select("backend", "params", "trace", "count", "p50_ns", "p99_ns"))']
    if "events" in tables:
        out += ['hive = {"backend": pl.String, "params": pl.String, "trace": pl.String}',
                'events = pl.scan_parquet("events/**/*.parquet", hive_partitioning=True,',
                '                         hive_schema=hive)',
                'print(events.group_by("backend").agg(pl.len(), pl.col("latency_ns").mean())',
                '      .sort("backend").collect())']
    if any(t["path"] for t in traces):
        out += ['traces = pl.scan_parquet("traces/*.parquet", include_file_paths="file")',
                'print(traces.group_by("file", "kind").len().sort("file", "kind").collect())']
    out += ["```", "", "pyarrow:", "", "```python", "import pyarrow as pa",
            "import pyarrow.dataset as ds", "import pyarrow.parquet as pq", "",
            'exits = ds.dataset("exits", format="parquet").to_table()',
            'print(exits.group_by(["backend", "reason"]).aggregate([("count", "sum")]))',
            "# provenance (trace metadata, parameters) is in each file's footer:",
            'first = sorted(ds.dataset("summary", format="parquet").files)[0]',
            'print(pq.read_schema(first).metadata[b"tracebench"][:200])']
    if "events" in tables:
        out += ['part = ds.partitioning(pa.schema([("backend", pa.string()), '
                '("params", pa.string()),',
                '                                 ("trace", pa.string())]), flavor="hive")',
                'events = ds.dataset("events", format="parquet", partitioning=part)',
                'print(events.count_rows())']
    out += ["```", "", "DuckDB:", "", "```python", "import duckdb", "",
            "duckdb.sql(\"\"\"",
            "    SELECT backend, reason, sum(count) AS samples, sum(total_ns) AS total_ns",
            "    FROM read_parquet('exits/**/*.parquet', hive_partitioning = false)",
            "    GROUP BY ALL ORDER BY backend, samples DESC, reason\"\"\").show()"]
    if "events" in tables:
        out += ["duckdb.sql(\"\"\"",
                "    SELECT backend, params, count(*) AS events, avg(latency_ns) AS mean_ns",
                "    FROM read_parquet('events/**/*.parquet', hive_partitioning = true,",
                "         hive_types = {'backend': VARCHAR, 'params': VARCHAR, "
                "'trace': VARCHAR})",
                "    GROUP BY ALL ORDER BY ALL\"\"\").show()"]
    out += ["```", "",
            "Percentiles across traces or shards: decode and add the `hdr` column's "
            "HdrHistograms (any HdrHistogram library reads them; tracebench: "
            "`tracebench.hist.merge_encoded`), never average the stored percentiles.", ""]
    return "\n".join(out) + "\n"
