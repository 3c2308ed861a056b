"""The self-contained HTML report: one file, no network request of any kind.

Vega, Vega-Lite and Vega-Embed come from vl-convert's own bundle
(``vl_convert.javascript_bundle``, the same libraries it renders static images with, pinned
to the Vega-Lite version Altair writes), inlined in a ``<script>``; styles are inlined;
chart specs travel as JSON data blocks, so nothing in the page is fetched. The bundle is
~0.9 MB whatever the results; the data is pre-aggregated (:mod:`.figures`), so the page
does not grow with the trace length.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path

import polars as pl

from tracebench.atomic import atomic_path, mentions
from tracebench.report.figures import ReportData, chart_specs, report_data

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#1b1b1b}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right}
th{background:#f5f5f5}td.t,th.t{text-align:left;white-space:nowrap}
.chart{margin:1em 0}.err{color:#b00020;font-weight:bold}
.note{color:#555;font-size:.92em}pre{background:#f7f7f7;padding:.6em;overflow-x:auto}
details{margin:.4em 0}code{font-size:.92em}.wide{overflow-x:auto}
"""

RENDER_JS = """
(function(){
  var blocks = document.querySelectorAll('script[type="application/json"][data-chart]');
  var pending = blocks.length;
  document.body.setAttribute('data-charts-expected', String(pending));
  var done = 0, failed = 0;
  function finish(){ if (done + failed === pending) {
    document.body.setAttribute('data-charts-rendered', String(done));
    document.body.setAttribute('data-charts-failed', String(failed));
    console.log('tracebench-report: ' + done + ' charts rendered, ' + failed + ' failed'); } }
  blocks.forEach(function(block){
    var target = document.getElementById(block.getAttribute('data-chart'));
    var spec = JSON.parse(block.textContent);
    vegaEmbed(target, spec, {actions: false, renderer: 'svg'}).then(function(){
      done += 1; finish();
    }).catch(function(err){
      failed += 1; target.innerHTML = '<p class="err">chart failed: ' + String(err) + '</p>';
      console.error('tracebench-report: chart ' + block.getAttribute('data-chart')
                    + ' failed: ' + err); finish();
    });
  });
  if (pending === 0) finish();
})();
"""


def _esc(v) -> str:
    return html.escape("" if v is None else str(v))


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return _esc(v)


def table_html(df: pl.DataFrame) -> str:
    """A DataFrame as an HTML table (text left, numbers right)."""
    if df.height == 0:
        return '<p class="note">(none)</p>'
    text = {c for c, t in df.schema.items() if t == pl.String}
    head = "".join(f'<th class="{"t" if c in text else ""}">{_esc(c)}</th>' for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"t" if c in text else ""}">{_cell(r[c])}</td>'
                         for c in df.columns) + "</tr>"
        for r in df.iter_rows(named=True))
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            f"</table></div>")


def _json_block(obj) -> str:
    # JSON inside <script> ends at the first "</": escape "<" so user text cannot close it
    return json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c")


@functools.cache
def vega_bundle() -> str:
    """The Vega + Vega-Lite + Vega-Embed JavaScript bundle from vl-convert, for the
    Vega-Lite version Altair writes, safe to inline in a ``<script>``. Bundling takes
    1-7 s, so a process makes it once."""
    import altair as alt
    import vl_convert as vlc

    version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    known = vlc.get_vegalite_versions()
    bundle = vlc.javascript_bundle(vl_version=version if version in known else None)
    return bundle.replace("</script", "<\\/script")


def provenance_html(prov: dict) -> str:
    runs = pl.DataFrame(prov["runs"]) if prov["runs"] else pl.DataFrame()
    traces = pl.DataFrame([{k: t[k] for k in ("trace", "sha256", "file", "method", "n_cpus",
                                              "duration_ns")} for t in prov["traces"]])
    sets = pl.DataFrame([{"run": p["run"], "backend": p["backend"], "params": p["params"],
                          "params_sha256": p["params_sha256"]}
                         for p in prov["parameter_sets"]])
    details = "".join(
        f"<details><summary>{_esc(p['run'])}: {_esc(p['backend'])} "
        f"(params {_esc(p['params'])})</summary><pre>"
        f"{_esc(json.dumps({'mechanisms': p['mechanisms'], 'params': p['values']}, indent=1))}"
        f"</pre></details>" for p in prov["parameter_sets"])
    sources = "".join(
        f"<details><summary>trace {_esc(t['trace'])}: source</summary><pre>"
        f"{_esc(json.dumps(t['source'], indent=1))}</pre>"
        f"<p class='note'>{_esc(t['attribution'])}</p></details>" for t in prov["traces"])
    return (f"<p>tracebench {_esc(prov['tracebench_version'])}; made by: "
            f"<code>{_esc(prov['command'] or '(Python API)')}</code></p>"
            f"<h3>Results</h3>{table_html(runs)}<h3>Traces</h3>{table_html(traces)}{sources}"
            f"<h3>Parameter sets</h3>{table_html(sets)}{details}")


def render_html(data: ReportData, title: str = "tracebench report") -> str:
    """The report page as a string (see :func:`write_html`)."""
    specs = chart_specs(data)
    charts, blocks = [], []
    for i, (name, spec) in enumerate(specs.items()):
        cid = f"chart-{i}"
        charts.append(f'<h2>{_esc(name)}</h2><div class="chart" id="{cid}"></div>')
        if name == "Overhead per vCPU":
            charts.append(f'<p class="note">{_esc(data.vcpu_overhead_source)}</p>')
        blocks.append(f'<script type="application/json" data-chart="{cid}">'
                      f"{_json_block(spec)}</script>")
    sat = data.summary.filter(pl.col("saturated_vcpus") > 0)
    warn = "" if sat.height == 0 else (
        "<p class='err'>Saturated: " + _esc(", ".join(
            f"{r['run']}: {r['backend']} ({r['saturated_vcpus']} vCPUs)"
            for r in sat.iter_rows(named=True)))
        + " could not keep up with the trace; their latencies grow with the trace "
        "length and are not a steady state.</p>")
    ab = ""
    if len(data.runs) > 1:
        ab = (f"<h2>A/B: each run against {_esc(data.runs[0])}</h2>"
              f"<h3>Parameters that differ</h3>{table_html(data.param_diffs)}"
              + "".join(f"<p class='err'>{_esc(n)}</p>" for n in data.notes)
              + "<h3>Deltas (ratio = b / a)</h3>"
              + table_html(data.deltas.drop("versus") if data.deltas.height
                           else data.deltas))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_esc(title)}</title><style>{CSS}</style>"
        f"<script>{vega_bundle()}</script></head><body>"
        f"<h1>{_esc(title)}</h1><p class='note'>runs: {_esc(', '.join(data.runs))}. "
        "Latency percentiles merge the stored HdrHistograms across traces.</p>"
        f"<h2>Summary per backend</h2>{table_html(data.summary)}{warn}"
        + "".join(charts) + ab
        + f"<h2>Provenance</h2>{provenance_html(data.provenance)}"
        + "".join(blocks) + f"<script>{RENDER_JS}</script></body></html>")


def write_html(results: list[str | Path], out: str | Path, *, command: str | None = None,
               force: bool = False, title: str = "tracebench report") -> ReportData:
    """Write the self-contained HTML report of ``results`` to ``out`` (atomically).

    Returns the :class:`~tracebench.report.figures.ReportData` it was drawn from.
    """
    data = report_data(results, command)
    page = render_html(data, title)
    with atomic_path(out, force=force, owned=mentions(b"tracebench-report")) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return data
