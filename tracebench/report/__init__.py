"""Reading results back: tables, comparisons, reports and timelines (read results only).

One module per report kind: :mod:`.load` (the results layout, the one reader of per-event
rows), :mod:`.stat` (``perf kvm stat``), :mod:`.compare` (A/B and the regression gate),
:mod:`.figures` (pre-aggregated frames and the chart specifications), :mod:`.html` and
:mod:`.markdown` (the documents), :mod:`.export` (Perfetto / Chrome Trace Event JSON).
Everything here returns polars DataFrames (and Vega-Lite specs) for use from Python.
"""

from tracebench.report.compare import compare as compare
from tracebench.report.compare import param_diff as param_diff
from tracebench.report.compare import regressions as regressions
from tracebench.report.load import Results as Results
from tracebench.report.load import event_rows as event_rows
from tracebench.report.load import load_table as load_table
from tracebench.report.stat import kvm_stat as kvm_stat
from tracebench.report.stat import measured_exits as measured_exits
from tracebench.report.stat import totals as totals
from tracebench.report.stat import with_measured as with_measured

__all__ = ["Results", "compare", "event_rows", "kvm_stat", "load_table", "measured_exits",
           "param_diff", "regressions", "totals", "with_measured", "report_data", "chart_specs",
           "write_html", "write_markdown", "export_perfetto"]


def __getattr__(name: str):
    # the document writers import altair / vl-convert (an optional extra): only on use
    if name == "report_data":
        from tracebench.report.figures import report_data

        return report_data
    if name == "chart_specs":
        from tracebench.report.figures import chart_specs

        return chart_specs
    if name == "write_html":
        from tracebench.report.html import write_html

        return write_html
    if name == "write_markdown":
        from tracebench.report.markdown import write_markdown

        return write_markdown
    if name == "export_perfetto":
        from tracebench.report.export import export_perfetto

        return export_perfetto
    raise AttributeError(f"module 'tracebench.report' has no attribute {name!r}")
