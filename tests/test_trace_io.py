"""The canonical trace: round trip, metadata, and one-line errors naming row and column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import make_cols
from tracebench.errors import TraceError
from tracebench.schema import METADATA_KEY, TRACE_SCHEMA
from tracebench.trace import TraceFile, TraceMeta, TraceWriter, columns_to_table, write_trace

META = TraceMeta(n_cpus=2, duration_ns=1000, method="synth", source={"seed": 1})


def _good_cols():
    return make_cols([(0, 0, "timer_arm", -1, 500), (10, 1, "ipi_send", 0),
                      (10, 0, "ipi_irq"), (500, 0, "timer_irq"), (600, 1, "ipi_send", -2, 1)])


def test_round_trip_keeps_values_metadata_and_tie_order(tmp_trace):
    cols = _good_cols()
    write_trace(tmp_trace, cols, META)
    tf = TraceFile(tmp_trace)
    back = tf.read_all()
    for k in cols:
        assert back[k].tolist() == cols[k].tolist(), k
    assert tf.meta.n_cpus == 2 and tf.meta.source == {"seed": 1}
    assert tf.meta.schema_version == 1
    # the kind column is readable without tracebench as strings
    import polars as pl

    df = pl.read_parquet(tmp_trace)
    assert df["kind"].cast(pl.String).to_list()[:2] == ["timer_arm", "ipi_send"]


def test_streaming_writer_matches_whole_writer(tmp_path):
    cols = _good_cols()
    write_trace(tmp_path / "a.parquet", cols, META)
    with TraceWriter(tmp_path / "b.parquet", META) as w:
        w.write({k: v[:2] for k, v in cols.items()})
        w.write({k: v[2:] for k, v in cols.items()})
    a, b = TraceFile(tmp_path / "a.parquet"), TraceFile(tmp_path / "b.parquet")
    assert a.meta == b.meta
    for k in cols:
        assert a.read_all()[k].tolist() == b.read_all()[k].tolist()


def test_refuses_to_overwrite_without_force(tmp_trace):
    write_trace(tmp_trace, _good_cols(), META)
    with pytest.raises(Exception, match="already exists"):
        write_trace(tmp_trace, _good_cols(), META)
    write_trace(tmp_trace, _good_cols(), META, force=True)


def _write_raw(path, cols, meta=META, **swap):
    table = columns_to_table(cols, meta)
    for name, array in swap.items():
        idx = table.schema.get_field_index(name)
        table = table.set_column(idx, pa.field(name, array.type), array)
    pq.write_table(table, path)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["ts_ns"].__setitem__(2, 5), "row 2, column 'ts_ns': timestamps not sorted"),
    (lambda c: c["ts_ns"].__setitem__(0, -1), "row 0, column 'ts_ns': negative timestamp"),
    (lambda c: c["cpu"].__setitem__(3, 2), "row 3, column 'cpu': cpu >= declared n_cpus 2"),
    (lambda c: c["target"].__setitem__(1, 5), "row 1, column 'target': IPI target out of range"),
    (lambda c: c["arg"].__setitem__(4, 0b100), "row 4, column 'arg': IPI mask names a vCPU"),
])
def test_bad_rows_are_named(tmp_trace, mutate, message):
    cols = _good_cols()
    mutate(cols)
    _write_raw(tmp_trace, cols)
    with pytest.raises(TraceError, match=message.replace("(", r"\(")):
        TraceFile(tmp_trace).read_all()


def test_wrong_type_missing_column_unknown_kind_truncated(tmp_path):
    cols = _good_cols()
    p = tmp_path / "wrongtype.parquet"
    _write_raw(p, cols, ts_ns=pa.array(cols["ts_ns"].astype(np.float64)))
    with pytest.raises(TraceError, match="column 'ts_ns' has type double, expected int64"):
        TraceFile(p)
    p = tmp_path / "missing.parquet"
    table = columns_to_table(cols, META).drop_columns(["arg"])
    pq.write_table(table, p)
    with pytest.raises(TraceError, match="missing column 'arg'"):
        TraceFile(p)
    p = tmp_path / "kind.parquet"
    kinds = pa.array(["timer_arm", "ipi_send", "ipi_irq", "timer_fire", "ipi_send"])
    _write_raw(p, cols, kind=kinds)
    with pytest.raises(TraceError, match="row 3, column 'kind': unknown event kind 'timer_fire'"):
        TraceFile(p).read_all()
    p = tmp_path / "nometa.parquet"
    pq.write_table(columns_to_table(cols).replace_schema_metadata(None), p)
    with pytest.raises(TraceError, match="no tracebench metadata"):
        TraceFile(p)
    good = tmp_path / "good.parquet"
    write_trace(good, cols, META)
    data = good.read_bytes()
    p = tmp_path / "truncated.parquet"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match="truncated.parquet: not a readable Parquet file"):
        TraceFile(p)
    p = tmp_path / "text.parquet"
    p.write_text("this is not parquet\n")
    with pytest.raises(TraceError, match="not a readable Parquet file"):
        TraceFile(p)
    with pytest.raises(TraceError, match="no such file"):
        TraceFile(tmp_path / "absent.parquet")


def test_schema_is_the_documented_contract():
    assert [f.name for f in TRACE_SCHEMA] == ["ts_ns", "cpu", "kind", "vector", "target",
                                               "arg", "dur_ns"]
    assert METADATA_KEY == b"tracebench"
