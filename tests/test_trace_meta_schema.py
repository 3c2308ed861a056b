"""Issue 18, hostile trace metadata: the footer JSON is checked against a schema (types
and ranges) and a bad one is one line naming the field, never a traceback or an absurd
result (an overhead of 30 million percent from a 1 ns "duration")."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.reliability_helpers import cli, one_line_error
from tracebench.errors import TraceError
from tracebench.scenarios import generate
from tracebench.schema import METADATA_KEY
from tracebench.trace import TraceFile, columns_to_table, write_trace


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("meta") / "good.parquet"
    cols, meta = generate("hz-tick", n_cpus=2, duration_ns=50_000_000, seed=1)
    write_trace(path, cols, meta)
    return path


def with_meta(good, tmp_path, raw: bytes):
    table = pq.read_table(good)
    table = table.replace_schema_metadata({METADATA_KEY: raw})
    out = tmp_path / "hostile.parquet"
    pq.write_table(table, out)
    return out


def patched(good, **changes) -> bytes:
    doc = json.loads(pq.read_metadata(good).metadata[METADATA_KEY])
    for k, v in changes.items():
        if v is KeyError:
            doc.pop(k)
        else:
            doc[k] = v
    return json.dumps(doc).encode()


HOSTILE = {
    "list": (b"[1, 2, 3]", "JSON list"),
    "string": (b'"hello"', "JSON str"),
    "not json": (b"{n_cpus: 2", "unreadable tracebench metadata"),
    "deep": (b"[" * 100000 + b"]" * 100000, "unreadable tracebench metadata"),
}
FIELDS = [
    ({"n_cpus": "4"}, "'n_cpus' must be an integer"),
    ({"n_cpus": 4.5}, "'n_cpus' must be an integer"),
    ({"n_cpus": True}, "'n_cpus' must be an integer"),
    ({"n_cpus": 0}, "n_cpus=0 is outside"),
    ({"n_cpus": 65536}, "n_cpus=65536 is outside"),
    ({"n_cpus": 10**30}, "is outside"),
    ({"n_cpus": KeyError}, "no 'n_cpus'"),
    ({"duration_ns": -5}, "duration_ns=-5 is outside"),
    ({"duration_ns": "1s"}, "'duration_ns' must be an integer"),
    ({"duration_ns": 2**63}, "is outside"),
    ({"duration_ns": 1}, "shorter than the last event"),
    ({"method": ["synth"]}, "'method' must be a string"),
    ({"source": "x"}, "'source' must be an object"),
    ({"environment": [1]}, "'environment' must be an object"),
    ({"schema_version": 99}, "schema_version=99 is outside"),
    ({"attribution": None}, "'attribution' must be a string"),
]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_metadata_documents(good, tmp_path, case):
    raw, words = HOSTILE[case]
    path = with_meta(good, tmp_path, raw)
    with pytest.raises(TraceError, match="hostile.parquet"):
        TraceFile(path)
    one_line_error(cli("replay", path, "-b", "native"), 1, words)


@pytest.mark.parametrize(("changes", "words"), FIELDS, ids=[str(c) for c, _ in FIELDS])
def test_hostile_metadata_fields(good, tmp_path, changes, words):
    path = with_meta(good, tmp_path, patched(good, **changes))
    one_line_error(cli("replay", path, "-b", "native"), 1, "hostile.parquet", words)


def test_valid_metadata_still_reads(good):
    tf = TraceFile(good)
    assert tf.meta.n_cpus == 2 and tf.meta.duration_ns == 50_000_000


def test_row_beyond_declared_cpus_is_one_line(good, tmp_path):
    cols = TraceFile(good).read_all()
    cols["cpu"][-1] = 7
    table = columns_to_table(cols).replace_schema_metadata(
        {METADATA_KEY: pq.read_metadata(good).metadata[METADATA_KEY]})
    out = tmp_path / "cpu.parquet"
    pq.write_table(table, out)
    one_line_error(cli("replay", out, "-b", "native"), 1, "cpu >= declared n_cpus 2")


def test_ingested_host_trace_duration_covers_its_rows(tmp_path):
    """Found by scripts/adversarial.py: a kvm-host perf script ingest wrote an injection row
    1 ns past the duration it declared, and replay refused the trace it had just written."""
    from tests.reliability_helpers import ROOT

    src = ROOT / "tests/data/realtraces/kvm-perfscript-irq-injection/perf_script_apic.txt"
    out = tmp_path / "apic.parquet"
    assert cli("ingest", src, "-o", out).exit_code == 0
    tf = TraceFile(out)
    assert int(tf.read_all()["ts_ns"].max()) <= tf.meta.duration_ns
    assert cli("replay", out, "-b", "native", "-q").exit_code == 0
