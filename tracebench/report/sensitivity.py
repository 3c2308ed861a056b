"""Which assumptions a conclusion rests on: how each result moves with each swept parameter.

Reads a sweep dataset (``tracebench sweep -o``): the summary table, and ``sweep.json`` for
the parameter values behind each parameter-set hash (or, in a packed or merged dataset
without it, ``configs/``: what differs between one backend's parameter sets). For every
swept parameter, backend, trace and metric, the *main effect* is the metric's mean at each
value of the parameter, taken over every other axis of the grid; the parameter's weight on
a metric is the range of that main effect relative to the metric's mean (``spread_pct``),
at the backend and trace where it is largest. A parameter a backend's model does not read
has no effect on it and is left out for that backend.

Metrics (the comparison table's headline figures): ``exits_per_s``, ``overhead_pct``,
``irq_p50_us``, ``irq_p99_us`` (interrupt delivery latency), ``timer_err_p99_us``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import polars as pl

from tracebench.errors import TracebenchError

METRICS = ("exits_per_s", "overhead_pct", "irq_p50_us", "irq_p99_us", "timer_err_p99_us")
_KEYS = ["backend", "params", "trace"]
#: a value range wider than this ratio is drawn on a log axis
LOG_AXIS_RATIO = 20.0


@dataclasses.dataclass
class Sensitivity:
    """``effects``: main effects, one row per (param, value, backend, trace, metric);
    ``ranking``: one row per (metric, param), rank 1 = moves that metric most."""

    effects: pl.DataFrame
    ranking: pl.DataFrame

    def charts(self) -> dict[str, dict]:
        """One Vega-Lite spec per swept parameter (Altair): each metric's main effect
        against the parameter's value, a line per backend (and trace), one row per metric."""
        import altair as alt

        out = {}
        for param in self.effects["param"].unique(maintain_order=True).to_list():
            df = self.effects.filter(pl.col("param") == param)
            vals = df["value"]
            log = vals.min() > 0 and vals.max() / vals.min() >= LOG_AXIS_RATIO
            x = alt.X("value:Q", title=param,
                      scale=alt.Scale(type="log" if log else "linear", zero=False))
            chart = (alt.Chart(df).mark_line(point=True)
                     .encode(x=x, y=alt.Y("mean:Q", title=None, scale=alt.Scale(zero=False)),
                             color=alt.Color("backend:N"), strokeDash=alt.StrokeDash("trace:N"),
                             tooltip=["backend", "trace", "value", "mean", "min", "max"])
                     .properties(width=320, height=110)
                     .facet(row=alt.Row("metric:N", title=None, sort=list(METRICS)))
                     .resolve_scale(y="independent")
                     .properties(title=f"main effect of {param}"))
            out[param] = chart.to_dict()
        return out


def _metric_frame(summary: pl.DataFrame) -> pl.DataFrame:
    """The five metrics per (backend, params, trace), long: metric, y."""
    lat = summary.filter(pl.col("metric") == "latency_ns")
    allrow = lat.filter(pl.col("kind") == "all").select(*_KEYS, "exits_per_s", "overhead_pct")
    irq = lat.filter(pl.col("kind") == "interrupts").select(
        *_KEYS, irq_p50_us=pl.col("p50_ns") / 1000, irq_p99_us=pl.col("p99_ns") / 1000)
    terr = summary.filter(pl.col("metric") == "timer_error_ns").select(
        *_KEYS, timer_err_p99_us=pl.col("p99_ns") / 1000)
    wide = allrow.join(irq, on=_KEYS, how="left").join(terr, on=_KEYS, how="left")
    return (wide.unpivot(on=list(METRICS), index=_KEYS, variable_name="metric", value_name="y")
            .with_columns(pl.col("y").cast(pl.Float64)).drop_nulls("y"))


_VALUES_SCHEMA = {"backend": pl.String, "params": pl.String, "param": pl.String,
                  "value": pl.Float64}


def _values_frame(root: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    """(backend, params, param, value) of every swept value, and each name's grid axis.

    From ``sweep.json`` when the folder has one; otherwise (a packed or merged dataset)
    from ``configs/*.json``: a parameter whose value differs between one backend's
    parameter sets counts as swept for that backend."""
    path = root / "sweep.json"
    if not path.is_file():
        return _values_from_configs(root), {}
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise TracebenchError(f"{path}: unreadable ({exc})") from None
    axis_of = {}
    for axis in doc.get("grid", {}).get("axes", []):
        for name in axis["names"]:
            axis_of[name] = "+".join(axis["names"])
    rows = {(t["backend"], t["params"], k, float(v))
            for t in doc.get("tasks", []) for k, v in t.get("values", {}).items()}
    return pl.DataFrame(sorted(rows), schema=_VALUES_SCHEMA, orient="row"), axis_of


def _values_from_configs(root: Path) -> pl.DataFrame:
    configs = sorted((root / "configs").glob("*.json"))
    if not configs:
        raise TracebenchError(f"{root}: not a sweep dataset (no sweep.json, no configs/)")
    sets: dict[str, dict[str, dict]] = {}  # backend -> params hash -> values
    for cfg in configs:
        try:
            doc = json.loads(cfg.read_text())
            sets.setdefault(doc["backend"], {})[doc["params_sha256"][:12]] = doc["params"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TracebenchError(f"{cfg}: not a parameter-set file ({exc})") from None
    rows = []
    for backend, by_hash in sets.items():
        names = {n for values in by_hash.values() for n in values}
        swept = [n for n in sorted(names)
                 if len({values.get(n) for values in by_hash.values()}) > 1]
        # a cost's facets (NAME.p99, NAME.min) follow its swept median: not an axis
        swept = [n for n in swept if "." not in n or n.partition(".")[0] not in swept]
        rows += [(backend, h, n, float(values[n]))
                 for h, values in by_hash.items() for n in swept if n in values]
    return pl.DataFrame(sorted(rows), schema=_VALUES_SCHEMA, orient="row")


def sensitivity(results: str | Path) -> Sensitivity:
    """Main effects and the parameter ranking of a sweep dataset (see module docstring)."""
    from tracebench.report import load_table

    root = Path(results)
    values, axis_of = _values_frame(root)
    if values.height == 0:
        raise TracebenchError(f"{root}: no swept parameter (every backend has one "
                              "parameter set)")
    metrics = _metric_frame(load_table(root, "summary"))
    joined = metrics.join(values, on=["backend", "params"], how="inner")
    if joined.height == 0:
        raise TracebenchError(f"{root}: no results for the sweep's tasks yet")
    effects = (joined.group_by("param", "value", "backend", "trace", "metric")
               .agg(mean=pl.col("y").mean(), min=pl.col("y").min(), max=pl.col("y").max(),
                    n=pl.len())
               .sort("param", "metric", "backend", "trace", "value"))
    per = (effects.group_by("param", "backend", "trace", "metric")
           .agg(lo=pl.col("mean").min(), hi=pl.col("mean").max(),
                level=pl.col("mean").mean(), steps=pl.len())
           .filter(pl.col("steps") > 1)
           .with_columns(spread=pl.col("hi") - pl.col("lo"))
           .with_columns(spread_pct=pl.when(pl.col("spread") == 0).then(0.0)
                         .when(pl.col("level") != 0)
                         .then(100 * pl.col("spread") / pl.col("level").abs())
                         .otherwise(None)))
    ranking = (per.sort("spread_pct", descending=True, nulls_last=True)
               .group_by("metric", "param", maintain_order=True)
               .agg(spread_pct=pl.col("spread_pct").first(),
                    spread=pl.col("spread").first(), low=pl.col("lo").first(),
                    high=pl.col("hi").first(), backend=pl.col("backend").first(),
                    trace=pl.col("trace").first())
               .with_columns(axis=pl.col("param").replace(axis_of),
                             rank=pl.col("spread_pct").rank("min", descending=True)
                             .over("metric").cast(pl.Int64))
               .with_columns(metric=pl.col("metric").cast(pl.Enum(list(METRICS))))
               .sort("metric", "rank", "param")
               .with_columns(pl.col("metric").cast(pl.String))
               .select("metric", "rank", "param", "axis", "spread_pct", "spread", "low",
                       "high", "backend", "trace"))
    return Sensitivity(effects, ranking)


def render_sensitivity_html(s: Sensitivity, title: str) -> str:
    """A self-contained page: the ranking table, then one chart per swept parameter. The
    page is assembled from the HTML report's own parts (styles, offline Vega bundle,
    chart blocks), so it renders like ``tracebench report`` does."""
    from html import escape

    from tracebench.report.html import CSS, RENDER_JS, _json_block, table_html, vega_bundle

    charts, blocks = [], []
    for i, (param, spec) in enumerate(s.charts().items()):
        charts.append(f'<h2>{escape(param)}</h2><div class="chart" id="chart-{i}"></div>')
        blocks.append(f'<script type="application/json" data-chart="chart-{i}">'
                      f"{_json_block(spec)}</script>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{CSS}</style>"
            f"<script>{vega_bundle()}</script></head><body><h1>{escape(title)}</h1>"
            "<p class='note'>For each swept parameter and metric: the metric's mean at each "
            "value of the parameter over every other axis of the grid (main effect), per "
            "backend and trace. Rank 1 = the parameter whose main effect spans the widest "
            "range, as % of the metric's mean, at the backend and trace where it is widest. "
            "A parameter a backend does not read is left out for it.</p>"
            f"<h2>Ranking</h2><div class='wide'>{table_html(s.ranking)}</div>"
            + "".join(charts) + "".join(blocks)
            + f"<script>{RENDER_JS}</script></body></html>")


def write_sensitivity_html(results: str | Path, out: str | Path, *, force: bool = False,
                           title: str | None = None) -> Sensitivity:
    """Write :func:`render_sensitivity_html` to ``out`` atomically."""
    from tracebench.atomic import atomic_path

    s = sensitivity(results)
    page = render_sensitivity_html(s, title or f"sensitivity of {Path(results).name}")
    with atomic_path(out, force=force) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return s
