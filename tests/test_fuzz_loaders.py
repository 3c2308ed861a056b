"""Fuzzing the trace and results loaders and backend files (issue 18): missing and extra
columns, wrong types, nulls, unsorted rows, corrupted footers, hostile metadata, random
TOML. Property: a valid result or a one-line error (exit 1/2), never a traceback."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import FUZZ, run_clean
from tests.reliability_helpers import cli
from tracebench.scenarios import generate
from tracebench.schema import METADATA_KEY
from tracebench.trace import write_trace

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12,
)
META_KEYS = ["n_cpus", "duration_ns", "method", "source", "clock", "environment",
             "attribution", "schema_version", "tracebench_version"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("loaders")
    cols, meta = generate("mixed-server", n_cpus=2, duration_ns=20_000_000, seed=4)
    write_trace(d / "t.parquet", cols, meta, row_group=1 << 12)
    r = cli("replay", d / "t.parquet", "-b", "native", "-b", "apicv", "-q", "-o", d / "res")
    assert r.exit_code == 0, r.output
    return d


def _table_mutation(draw, table: pa.Table) -> pa.Table:
    names = table.column_names
    op = draw(st.integers(0, 6))
    col = draw(st.sampled_from(names))
    i = names.index(col)
    if op == 0:  # a column missing
        return table.drop_columns([col])
    if op == 1:  # an extra column
        return table.append_column(draw(st.sampled_from(["extra", "ts_ns2", col + "_"])),
                                   pa.array(range(table.num_rows), pa.int64()))
    if op == 2:  # a column of another type
        typ = draw(st.sampled_from([pa.float64(), pa.string(), pa.int8(), pa.uint64(),
                                    pa.bool_()]))
        try:
            arr = table.column(col).cast(typ, safe=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arr = pa.array([str(v) for v in table.column(col).to_pylist()], pa.string())
        return table.set_column(i, pa.field(col, arr.type), arr)
    if op == 3:  # nulls
        mask = pa.array([k % draw(st.integers(2, 50)) == 0 for k in range(table.num_rows)])
        arr = pa.compute.if_else(mask, pa.scalar(None, table.column(col).type),
                                 table.column(col))
        return table.set_column(i, pa.field(col, arr.type, nullable=True), arr)
    if op == 4:  # rows out of order
        idx = list(range(table.num_rows))
        draw(st.randoms()).shuffle(idx)
        return table.take(pa.array(idx[: draw(st.integers(0, len(idx)))], pa.int64()))
    if op == 5:  # hostile values in an integer column
        v = draw(st.sampled_from([-1, -(2**63), 2**63 - 1, 65535, 2**31]))
        typ = table.column(col).type
        if pa.types.is_integer(typ):
            try:
                arr = pa.array([v] * table.num_rows).cast(typ, safe=False)
                return table.set_column(i, pa.field(col, typ), arr)
            except pa.ArrowInvalid:
                pass
        return table
    return table.slice(0, 0)  # no rows


@st.composite
def hostile_trace(draw, src: Path, out: Path) -> None:
    table = pq.read_table(src)
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    for _ in range(draw(st.integers(0, 2))):
        table = _table_mutation(draw, table)
    if draw(st.booleans()):  # hostile metadata
        if draw(st.booleans()):
            meta[draw(st.sampled_from(META_KEYS))] = draw(JSON)
            raw = json.dumps(meta, allow_nan=True).encode()
        else:
            raw = json.dumps(draw(JSON), allow_nan=True).encode()
    else:
        raw = json.dumps(meta).encode()
    table = table.replace_schema_metadata({METADATA_KEY: raw})
    pq.write_table(table, out, row_group_size=draw(st.sampled_from([7, 1000, 1 << 20])))
    if draw(st.integers(0, 3)) == 0:  # a corrupted footer or a truncated file
        data = bytearray(out.read_bytes())
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
        else:
            for _ in range(draw(st.integers(1, 8))):
                k = draw(st.integers(max(len(data) - 2048, 0), len(data) - 1))
                data[k] = draw(st.integers(0, 255))
        out.write_bytes(bytes(data))


def test_fuzz_trace_loader(world):
    @FUZZ
    @given(st.data())
    def run(data):
        with tempfile.TemporaryDirectory(prefix="tb-fuzz-") as d:
            path = Path(d) / "hostile.parquet"
            data.draw(hostile_trace(world / "t.parquet", path))
            r = run_clean("replay", path, "-b", "native", "-f", "json")
            if r.exit_code == 0:  # accepted: the figures are finite and sane
                for row in json.loads(r.stdout):
                    assert 0 <= row["overhead_pct"] <= 100, row

    run()


@st.composite
def hostile_results(draw, src: Path, out: Path) -> None:
    shutil.copytree(src, out)
    parts = sorted(p for p in out.rglob("*.parquet"))
    for _ in range(draw(st.integers(1, 3))):
        part = draw(st.sampled_from(parts))
        op = draw(st.integers(0, 3))
        if op == 0:
            part.unlink(missing_ok=True)
        elif op == 1 and part.exists():
            data = part.read_bytes()
            part.write_bytes(data[: draw(st.integers(0, len(data)))])
        elif op == 2:
            part.write_bytes(draw(st.binary(max_size=64)))
        elif part.exists():
            try:
                table = pq.read_table(part)
            except (pa.ArrowException, OSError):
                continue
            pq.write_table(_table_mutation(draw, table), part)


@pytest.mark.parametrize("verb", ["stat", "compare"])
def test_fuzz_results_loader(world, verb):
    @FUZZ
    @given(st.data())
    def run(data):
        with tempfile.TemporaryDirectory(prefix="tb-fuzz-") as d:
            res = Path(d) / "res"
            data.draw(hostile_results(world / "res", res))
            args = [verb, res] + (["--base", "native"] if verb == "compare" else [])
            run_clean(*args)

    run()


TOML_KEYS = st.sampled_from(["name", "description", "base", "mechanisms", "params", "colour"])
TOML_SCALARS = (st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True) | st.booleans()
                | st.text(max_size=12) | st.sampled_from(["apicv", "native", "x.toml", "../x",
                                                          "", "self.toml"]))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else
                                    "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)  # a TOML basic string is a JSON string


@st.composite
def toml_docs(draw) -> bytes:
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    top, tables = [], []
    for key in draw(st.lists(TOML_KEYS, max_size=5, unique=True)):
        if key in ("mechanisms", "params") and draw(st.booleans()):
            body = [f"{k} = {_toml_value(draw(TOML_SCALARS))}" for k in draw(st.lists(
                st.sampled_from(["eoi", "timer", "exit_roundtrip_cyc", "tsc_ghz", "bogus"]),
                max_size=3, unique=True))]
            tables.append(f"[{key}]\n" + "\n".join(body))
        else:
            value = draw(TOML_SCALARS | st.lists(TOML_SCALARS, max_size=3))
            top.append(f"{key} = {_toml_value(value)}")
    return ("\n".join(top) + "\n" + "\n".join(tables) + "\n").encode()


@FUZZ
@given(doc=toml_docs())
def test_fuzz_backend_files(doc):
    with tempfile.TemporaryDirectory(prefix="tb-fuzz-") as d:
        path = Path(d) / "self.toml"
        path.write_bytes(doc)
        r = run_clean("backends", path)
        assert r.exit_code in (0, 2), r.output
