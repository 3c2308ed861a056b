"""Per-event results: the compact stored layout, rows made again from checkpoints, and the
README's DuckDB and polars join queries all give exactly the rows of an in-memory replay
(the per-event values the full-width writer stored before the compact layout)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import tracebench
from tests.test_chunking import random_trace, write
from tracebench.backends import registered_backends
from tracebench.errors import TracebenchError
from tracebench.replayer.perevent import JOINED_COLUMNS
from tracebench.replayer.results import read_events
from tracebench.scenarios import synthesize_to_file

README = Path(__file__).resolve().parent.parent / "README.md"
ALL = None  # every registered backend: lane groups and single kernels both
KEY = ["backend", "row"]


def _plain(frame: pl.DataFrame) -> pl.DataFrame:
    """Same values, comparable types (categoricals as strings, hive columns as strings)."""
    return frame.with_columns(pl.col("kind", "exit_reason").cast(pl.String),
                              pl.col("row").cast(pl.Int64)).sort(KEY)


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("perevent")
    mixed = synthesize_to_file(d / "mixed.parquet", "mixed-server", 6, 30_000_000, 3)[0]
    return {"random": write(d, "random", random_trace(5, 600, 4), 4), "mixed": mixed}


@pytest.fixture(scope="module")
def in_memory(traces):
    """Today's rows: the kernels' outputs beside the trace's columns, nothing written."""
    return {name: tracebench.replay([p], ALL) for name, p in traces.items()}


@pytest.mark.parametrize("name", ["random", "mixed"])
def test_stored_compact_rows_are_todays_rows(traces, in_memory, tmp_path, name):
    out = tmp_path / "res"
    tracebench.replay([traces[name]], ALL, out=out, events=True, chunk_rows=53)
    files = sorted((out / "events").rglob("*.parquet"))
    assert len(files) == len(registered_backends())
    # the files do not repeat the trace, and read without tracebench
    for f in files:
        assert pq.read_schema(f).names == ["row", "start_ns", "latency_ns", "stall_ns", "exits",
                                           "exit_reason", "exit_ns", "timer_error_ns"]
    ref = _plain(in_memory[name].events)
    assert_frame_equal(_plain(tracebench.read_events(out)), ref)
    assert_frame_equal(_plain(tracebench.replay([traces[name]], ALL, out=tmp_path / "b",
                                                events=True).events), ref)


@pytest.mark.parametrize("name", ["random", "mixed"])
@pytest.mark.parametrize("chunk", [1, 29, None])
def test_rows_made_again_from_checkpoints_are_todays_rows(traces, in_memory, tmp_path, name,
                                                          chunk):
    out = tmp_path / "res"
    res = tracebench.replay([traces[name]], ALL, out=out, chunk_rows=chunk)
    assert not (out / "events").exists() and (out / "checkpoints").is_dir()
    ref = in_memory[name].events
    assert_frame_equal(_plain(res.events), _plain(ref))  # the whole trace, every backend
    ts = ref["ts_ns"].unique().sort().to_numpy()
    rng = np.random.default_rng(chunk or 0)
    windows = [(0, 1), (int(ts[-1]), int(ts[-1]) + 1), (int(ts[len(ts) // 2]), 10**18)]
    windows += [tuple(sorted(int(x) for x in rng.choice(ts, 2))) for _ in range(3)]
    for lo, hi in windows:
        for backend in ("apicv", "native", "xen-evtchn"):
            got = read_events(out, backend=backend, window=(lo, hi))
            want = ref.filter(pl.col("backend") == backend, pl.col("ts_ns") >= lo,
                              pl.col("ts_ns") < hi)
            assert got.columns == list(JOINED_COLUMNS)
            assert_frame_equal(_plain(got), _plain(want))


def test_a_checkpoint_the_replay_does_not_reach_changes_the_rows(traces, in_memory, tmp_path):
    """Mutation check: the comparison above can fail (state of row 0 used for a later row)."""
    out = tmp_path / "res"
    tracebench.replay([traces["mixed"]], ["apicv"], out=out, chunk_rows=100)
    ck = next((out / "checkpoints").rglob("*.parquet"))
    table = pq.read_table(ck)
    assert table.num_rows >= 3  # (fewer since model v2: a larger state, spaced wider)
    first_state = table.column("state")[0]
    forged = table.set_column(1, "state", [[first_state] * table.num_rows])
    pq.write_table(forged.replace_schema_metadata(table.schema.metadata), ck)
    want = in_memory["mixed"].events.filter(pl.col("backend") == "apicv")
    late = int(want["ts_ns"][want.height * 3 // 4])  # past the second checkpoint
    want = want.filter(pl.col("ts_ns") >= late)
    got = read_events(out, window=(late, 10**18))
    assert got.height == want.height
    assert not _plain(got).equals(_plain(want))


def _readme_block(lang: str, marker: str) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)
    return next(b for b in blocks if marker in b)


def test_readme_duckdb_and_polars_joins_give_the_rows(traces, in_memory, tmp_path):
    out = tmp_path / "res"
    tracebench.replay([traces["mixed"]], ALL, out=out, events=["apicv", "full-virt"])
    want = _plain(in_memory["mixed"].events.filter(
        pl.col("backend").is_in(["apicv", "full-virt"])))

    sql = _readme_block("sql", "per-event rows joined")
    sql = sql.replace("'OUT/", f"'{out}/").replace("'T.parquet'", f"'{traces['mixed']}'")
    got = duckdb.connect().sql(sql).pl()
    assert got.columns == list(JOINED_COLUMNS)
    assert_frame_equal(_plain(got), want, check_dtypes=False)  # DuckDB: uint16 -> int32 ...

    code = _readme_block("python", "per-event rows joined")
    code = code.replace('"OUT/', f'"{out}/').replace('"T.parquet"', f'"{traces["mixed"]}"')
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    got = scope["joined"].select(JOINED_COLUMNS)
    assert_frame_equal(_plain(got), want, check_dtypes=False)


def test_drill_down_errors_name_the_cause(traces, tmp_path):
    out = tmp_path / "res"
    tracebench.replay([traces["random"]], ["apicv"], out=out, events=False)
    with pytest.raises(TracebenchError, match="--no-events"):
        read_events(out)
    with pytest.raises(TracebenchError, match="no results for backend=native"):
        read_events(out, backend="native")
    with pytest.raises(TracebenchError, match="not a results folder"):
        read_events(tmp_path)

    out = tmp_path / "moved"
    tracebench.replay([traces["random"]], ["apicv"], out=out)
    moved = tmp_path / "elsewhere.parquet"
    shutil.copy(traces["random"], moved)
    assert_frame_equal(read_events(out, trace_file=moved), read_events(out))
    with pytest.raises(TracebenchError, match="not the trace these results were made from"):
        read_events(out, trace_file=traces["mixed"])
    cfg = next((out / "configs").glob("apicv-*.json"))
    cfg.write_text(cfg.read_text().replace('"exit_roundtrip_cyc": ', '"exit_roundtrip_cyc": 1'))
    # the edited median no longer fits the recorded spread, or gives other parameters
    with pytest.raises(TracebenchError, match="other parameters than the recorded ones|"
                                              "below the median"):
        read_events(out)


def test_checkpoints_of_an_older_model_state_are_refused_by_name(traces, tmp_path):
    """Model v2 grew the per-vCPU state: a version-4 checkpoint (10 words per vCPU) must
    be refused with both shapes named, never reshaped into a traceback or wrong rows."""
    import json

    out = tmp_path / "res"
    tracebench.replay([traces["random"]], ["apicv"], out=out)
    ck = next((out / "checkpoints").rglob("*.parquet"))
    table = pq.read_table(ck)
    meta = json.loads(table.schema.metadata[b"tracebench"])
    n_cpus = meta["state_shape"][0]
    old = {**meta, "state_shape": [n_cpus, 10], "results_schema_version": 4}
    pq.write_table(table.replace_schema_metadata({"tracebench": json.dumps(old)}), ck)
    with pytest.raises(TracebenchError, match=r"results version 4 hold a replay state of "
                                              rf"shape \({n_cpus}, 10\)"):
        read_events(out, made_again=True)
