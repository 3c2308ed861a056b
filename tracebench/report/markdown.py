"""The Markdown report: the HTML report's content as text, figures as files beside it.

``report.md`` links its figures in ``report-figures/`` (SVG or PNG rendered by vl-convert,
no browser needed), ready to paste into a paper draft, a cover letter or a pull request.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from tracebench.atomic import atomic_path, mentions
from tracebench.errors import TracebenchError
from tracebench.report.figures import ReportData, chart_specs, report_data

FIGURE_FORMATS = ("svg", "png")


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def table_md(df: pl.DataFrame) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table."""
    if df.height == 0:
        return "(none)\n"
    text = {c for c, t in df.schema.items() if t == pl.String}
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" if c in text else "---:" for c in df.columns) + "|"
    body = ["| " + " | ".join(_cell(r[c]) for c in df.columns) + " |"
            for r in df.iter_rows(named=True)]
    return "\n".join([head, rule, *body]) + "\n"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def render_figure(spec: dict, fmt: str) -> bytes:
    """One chart as SVG or PNG (vl-convert: no browser, no network)."""
    import vl_convert as vlc

    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode()
    return vlc.vegalite_to_png(spec, scale=2)


def render_markdown(data: ReportData, figures_dir: str, title: str,
                    figure_format: str = "svg") -> str:
    """The Markdown text; figures are referenced as ``figures_dir/NAME.EXT``."""
    prov = data.provenance
    out = [f"# {title}\n", f"Runs: {', '.join(data.runs)}. Latency percentiles merge the "
           "stored HdrHistograms across traces.\n", "## Summary per backend\n",
           table_md(data.summary)]
    for name, path in _figure_names(data, figure_format).items():
        out.append(f"## {name}\n")
        out.append(f"![{name}]({figures_dir}/{path})\n")
        if name == "Overhead per vCPU":
            out.append(f"_{data.vcpu_overhead_source}_\n")
    if len(data.runs) > 1:
        out += [f"## A/B: each run against {data.runs[0]}\n", "### Parameters that differ\n",
                table_md(data.param_diffs), *[f"**{n}**\n" for n in data.notes],
                "### Deltas (ratio = b / a)\n",
                table_md(data.deltas.drop("versus") if data.deltas.height else data.deltas)]
    out += ["## Provenance\n", f"tracebench {prov['tracebench_version']}; made by: "
            f"`{prov['command'] or '(Python API)'}`\n", "### Traces\n",
            table_md(pl.DataFrame([{k: t[k] for k in ("trace", "sha256", "file", "method",
                                                      "n_cpus", "duration_ns")}
                                   for t in prov["traces"]])),
            "### Parameter sets\n",
            table_md(pl.DataFrame([{"run": p["run"], "backend": p["backend"],
                                    "params": p["params"], "params_sha256": p["params_sha256"]}
                                   for p in prov["parameter_sets"]])),
            "<details><summary>Parameter values</summary>\n\n```json\n"
            + json.dumps({f"{p['run']}/{p['backend']}/{p['params']}": p["values"]
                          for p in prov["parameter_sets"]}, indent=1, sort_keys=True)
            + "\n```\n</details>\n"]
    return "\n".join(out)


def _figure_names(data: ReportData, fmt: str = "svg") -> dict[str, str]:
    return {name: f"{_slug(name)}.{fmt}" for name in chart_specs(data)}


def write_markdown(results: list[str | Path], out: str | Path, *, command: str | None = None,
                   force: bool = False, figure_format: str = "svg",
                   title: str = "tracebench report") -> ReportData:
    """Write ``out`` (Markdown) and its figures in ``<out stem>-figures/`` beside it.

    Both are written to temporary names and renamed into place; ``force`` replaces them.
    """
    if figure_format not in FIGURE_FORMATS:
        raise TracebenchError(f"figure format must be svg or png, not {figure_format!r}")
    out = Path(out)
    figdir = out.with_name(out.stem + "-figures")
    if not force:
        for p in (out, figdir):
            if p.exists():
                raise TracebenchError(f"{p}: already exists (use --force to overwrite)")
    data = report_data(results, command)
    specs = chart_specs(data)
    text = render_markdown(data, figdir.name, title, figure_format)
    with atomic_path(figdir, force=True, kind="report-figures") as tmp:
        tmp.mkdir(parents=True)
        for name, spec in specs.items():
            (tmp / f"{_slug(name)}.{figure_format}").write_bytes(
                render_figure(spec, figure_format))
    with atomic_path(out, force=True, owned=mentions(b"; made by: ")) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return data
