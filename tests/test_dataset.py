"""``tracebench dataset pack|verify|info|merge`` on real replays, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.dataset_helpers import copy, make_inputs, reseal
from tracebench import dataset
from tracebench.cli import app
from tracebench.dataset import DatasetError
from tracebench.replayer.results import params_hash
from tracebench.schema import RESULTS_SCHEMA_VERSION
from tracebench.trace import file_sha256

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    inp = make_inputs(d)
    out = runner.invoke(app, ["dataset", "pack", str(inp["res"]), str(inp["timers"]), "-o",
                              str(d / "ds"), "--license", "CC-BY-4.0", "--title", "small"])
    assert out.exit_code == 0, out.output
    return d, inp, d / "ds"


def test_pack_layout_manifest_and_traces_found_by_digest(built):
    d, inp, ds = built
    doc = json.loads((ds / "datapackage.json").read_text())
    paths = {r["path"] for r in doc["resources"]}
    on_disk = {str(p.relative_to(ds)) for p in ds.rglob("*") if p.is_file()}
    assert on_disk - paths == {"datapackage.json", "SHA256SUMS"}
    # both traces: one given, one found through the results' footers (path + sha256)
    assert {"traces/timers.parquet", "traces/ipis.parquet", "README.md",
            "summary/_common_metadata", "exits/_common_metadata",
            "events/_common_metadata"} <= paths
    assert file_sha256(ds / "traces/ipis.parquet") == file_sha256(inp["ipis"])
    for r in doc["resources"]:
        data = (ds / r["path"]).read_bytes()
        assert r["bytes"] == len(data) and r["hash"].startswith("sha256:")
        assert r["description"]
        if r["path"].endswith(".parquet"):
            names = [f["name"] for f in r["schema"]["fields"]]
            assert names == pq.read_schema(ds / r["path"]).names
    summary = next(r for r in doc["resources"] if r["path"].startswith("summary/backend="))
    types = {f["name"]: f["type"] for f in summary["schema"]["fields"]}
    assert types["count"] == "integer" and types["hdr"] == "string"
    assert doc["licenses"] == [{"name": "CC-BY-4.0",
                                "path": "https://spdx.org/licenses/CC-BY-4.0.html"}]
    facts = doc["tracebench"]
    assert {t["id"]: t["method"] for t in facts["traces"]} == {"ipis": "synth",
                                                               "timers": "synth"}
    assert len(facts["results"]) == 3
    assert facts["results_schema_version"] == RESULTS_SCHEMA_VERSION
    meta = json.loads(pq.read_schema(ds / "summary/_common_metadata").metadata[b"tracebench"])
    assert meta == {"table": "summary", "results_schema_version": RESULTS_SCHEMA_VERSION,
                    "schema_version": 1}
    assert "vcpus/_common_metadata" in paths
    card = (ds / "README.md").read_text()
    assert "synthesized with scenario `ipi-storm`, seed 7" in card
    assert "CC-BY-4.0" in card and "apicv" in card


def test_sha256sum_c_and_verify_pass(built):
    _, _, ds = built
    done = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=ds,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == len((ds / "SHA256SUMS").read_text().splitlines())
    out = runner.invoke(app, ["dataset", "verify", str(ds)])
    assert out.exit_code == 0, out.output
    assert "ok (" in out.stdout


def test_stat_reads_a_dataset_like_a_results_folder(built):
    _, inp, ds = built
    a = runner.invoke(app, ["stat", str(inp["res"]), "-f", "json"])
    b = runner.invoke(app, ["stat", str(ds), "-f", "json"])
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    assert json.loads(a.stdout) == json.loads(b.stdout)


def test_same_inputs_same_bytes_except_created(built, tmp_path, monkeypatch):
    _, inp, _ = built
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    one = dataset.pack([inp["res"], inp["timers"]], tmp_path / "one")
    two = dataset.pack([inp["timers"], inp["res"]], tmp_path / "two")
    files = sorted(str(p.relative_to(one)) for p in one.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(two)) for p in two.rglob("*") if p.is_file())
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    assert json.loads((one / "datapackage.json").read_text())["created"] == \
        "2023-11-14T22:13:20Z"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    three = dataset.pack([inp["res"], inp["timers"]], tmp_path / "three")
    d1 = json.loads((one / "datapackage.json").read_text())
    d3 = json.loads((three / "datapackage.json").read_text())
    volatile = {"created"}
    readme = next(r for r in d1["resources"] if r["path"] == "README.md")
    assert {k: v for k, v in d1.items() if k not in volatile | {"resources"}} == \
        {k: v for k, v in d3.items() if k not in volatile | {"resources"}}
    others = [r for r in d1["resources"] if r is not readme]
    assert others == [r for r in d3["resources"] if r["path"] != "README.md"]


def test_info_formats(built):
    _, _, ds = built
    out = runner.invoke(app, ["dataset", "info", str(ds), "-f", "json"])
    assert out.exit_code == 0, out.output
    facts = json.loads(out.stdout)
    assert facts["dataset"]["traces_included"] == 2 and facts["dataset"]["licenses"] == \
        "CC-BY-4.0"
    assert {r["backend"] for r in facts["results"]} == {"native", "full-virt", "apicv"}
    csv = runner.invoke(app, ["dataset", "info", str(ds), "-f", "csv", "-s", "results"])
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0].startswith("backend,params")
    table = runner.invoke(app, ["dataset", "info", str(ds)])
    assert table.exit_code == 0 and "timer-heavy" in table.stdout
    bad = runner.invoke(app, ["dataset", "info", str(ds), "-s", "nope"])
    assert bad.exit_code == 2 and "--section" in bad.stderr


def test_force_replaces_only_tracebench_output(built, tmp_path):
    _, inp, _ = built
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    out = runner.invoke(app, ["dataset", "pack", str(inp["timers"]), "-o", str(mine)])
    assert out.exit_code == 1 and "already exists" in out.stderr
    out = runner.invoke(app, ["dataset", "pack", str(inp["timers"]), "-o", str(mine), "--force"])
    assert out.exit_code == 1 and "not a tracebench dataset" in out.stderr
    assert (mine / "thesis.tex").read_text() == "precious"
    ds = dataset.pack([inp["timers"]], tmp_path / "ds")
    out = runner.invoke(app, ["dataset", "pack", str(inp["ipis"]), "-o", str(ds), "--force"])
    assert out.exit_code == 0, out.output
    assert [p.name for p in (ds / "traces").iterdir()] == ["ipis.parquet"]
    out = runner.invoke(app, ["dataset", "pack", str(inp["res"]), "-o", str(inp["res"] / "x")])
    assert out.exit_code == 1 and "inside" in out.stderr
    assert not list(tmp_path.glob(".*tmp*"))  # nothing half-written left behind


def test_bad_licence_and_unknown_input(built, tmp_path):
    _, inp, _ = built
    out = runner.invoke(app, ["dataset", "pack", str(inp["timers"]), "-o", str(tmp_path / "x"),
                              "--license", "my licence; rm -rf"])
    assert out.exit_code == 1 and "not an SPDX licence expression" in out.stderr
    (tmp_path / "empty").mkdir()
    out = runner.invoke(app, ["dataset", "pack", str(tmp_path / "empty"), "-o",
                              str(tmp_path / "y")])
    assert out.exit_code == 1 and "neither a trace file" in out.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_results_without_their_traces_say_so(built, tmp_path):
    _, inp, _ = built
    res = copy(inp["res2"], tmp_path / "res2")
    (res / "run.json").unlink()
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    # the trace path in the footers still exists: hide it by packing a results folder whose
    # footers name a trace that is gone
    t = tmp_path / "gone.parquet"
    t.write_bytes(inp["timers"].read_bytes())
    import tracebench

    tracebench.replay([t], ["native"], out=tmp_path / "r3", events=False)
    t.unlink()
    ds = dataset.pack([tmp_path / "r3"], tmp_path / "ds")
    facts = dataset.info(ds)
    assert facts["traces"][0]["file"] is None and facts["traces"][0]["results"]
    assert "Results only (trace file not included" in (ds / "README.md").read_text()
    assert dataset.verify(ds).ok


def _downgrade(res: Path, version: int) -> None:
    """Rewrite a results folder as results schema ``version`` (1 or 2) wrote it: no
    ``vcpus`` table, no ``max_lag_ns``/``saturated_vcpus``; version 1 also without the
    ``params`` level and column; footers without ``results_schema_version``."""
    import shutil

    shutil.rmtree(res / "vcpus")
    for table in ("summary", "exits", "events"):
        for part in sorted((res / table).glob("backend=*/params=*/trace=*/*.parquet")):
            backend, _, trace = part.parts[-4], part.parts[-3], part.parts[-2]
            t = pq.read_table(part)
            meta = json.loads(t.schema.metadata[b"tracebench"])
            meta.pop("results_schema_version")
            drop = {"max_lag_ns", "saturated_vcpus"} | ({"params"} if version == 1 else set())
            t = t.drop_columns([c for c in t.column_names if c in drop])
            t = t.replace_schema_metadata({b"tracebench": json.dumps(meta)})
            if version == 1:
                part.unlink()
                part = res / table / backend / trace / part.name
                part.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(t, part)
        for p in sorted((res / table).glob("backend=*/params=*"), reverse=True):
            if version == 1:
                shutil.rmtree(p)


@pytest.mark.parametrize("version", [1, 2])
def test_older_results_are_upgraded_when_packed(built, tmp_path, version):
    _, inp, ds = built
    old = copy(inp["res"], tmp_path / "old")
    _downgrade(old, version)
    assert bool(list(old.glob("summary/*/params=*"))) == (version == 2)
    up = dataset.pack([old], tmp_path / "ds")
    out = runner.invoke(app, ["stat", str(up), "-f", "json"])  # the upgraded folder: stat
    assert out.exit_code == 0 and json.loads(out.stdout) == json.loads(
        runner.invoke(app, ["stat", str(inp["res"]), "-f", "json"]).stdout)
    assert dataset.verify(up).ok, dataset.verify(up).problems
    s = pl.read_parquet(sorted(up.glob("summary/backend=*/params=*/trace=*/*.parquet")))
    ref = pl.read_parquet(sorted(inp["res"].glob("summary/**/*.parquet")))
    assert s.columns == ref.columns  # the current schema, params included
    assert s["max_lag_ns"].null_count() == s.height  # not measured then: null, not 0
    cols = ["backend", "params", "trace", "kind", "metric", "count", "p99_ns", "hdr"]
    assert s.select(cols).sort(cols[:5]).equals(ref.select(cols).sort(cols[:5]))
    meta = json.loads(pq.read_schema(sorted(up.glob("summary/**/*.parquet"))[0])
                      .metadata[b"tracebench"])
    assert meta["upgraded_from_results_schema_version"] == version
    assert meta["results_schema_version"] == RESULTS_SCHEMA_VERSION
    n_events = len(list(up.glob("events/backend=*/params=*/trace=*/part-0.parquet")))
    assert n_events == len(list(inp["res"].glob("events/**/part-0.parquet")))
    # an upgraded dataset merges with a current one: the schemas agree
    merged = dataset.merge([up, dataset.pack([inp["res2"]], tmp_path / "new")], tmp_path / "m")
    assert dataset.verify(merged).ok
    # the same run, upgraded (nulls) and current (values), is not silently collapsed
    with pytest.raises(DatasetError, match="hold different results for the same trace"):
        dataset.merge([up, ds], tmp_path / "m2")


def test_newer_versions_are_named(built, tmp_path):
    _, _, ds = built
    bad = copy(ds, tmp_path / "new")
    doc = json.loads((bad / "datapackage.json").read_text())
    doc["tracebench"]["results_schema_version"] = 9
    doc["tracebench"]["tracebench_version"] = "7.0.0"
    reseal(bad, doc=doc)
    out = runner.invoke(app, ["dataset", "verify", str(bad)])
    assert out.exit_code == 1
    assert ("tracebench.results_schema_version 9 is newer than this tracebench (0.1.0) reads "
            f"(up to {RESULTS_SCHEMA_VERSION}); it was written by tracebench 7.0.0") in out.stderr


def test_merge_deduplicates_and_combines(built, tmp_path):
    _, inp, ds = built
    other = dataset.pack([inp["res2"]], tmp_path / "b", license="CC0-1.0")
    out = runner.invoke(app, ["dataset", "merge", str(ds), str(other), str(ds), "-o",
                              str(tmp_path / "c")])
    assert out.exit_code == 0, out.output
    c = tmp_path / "c"
    assert dataset.verify(c).ok
    facts = dataset.info(c)
    assert len(facts["results"]) == 4  # 3 of ds + apicv under other parameters
    assert facts["dataset"]["licenses"] == "CC-BY-4.0, CC0-1.0"
    apicv = {r["params"] for r in facts["results"] if r["backend"] == "apicv"}
    assert len(apicv) == 2
    n = {p: len(list((x / "summary").glob("**/*.parquet"))) for p, x in
         (("a", ds), ("b", other), ("c", c))}
    assert n["c"] == n["a"] + n["b"]
    assert (c / "traces/timers.parquet").read_bytes() == (ds / "traces/timers.parquet") \
        .read_bytes()


def test_merge_refuses_one_trace_id_with_two_digests(built, tmp_path):
    _, inp, ds = built
    import tracebench

    cols, meta = __import__("tracebench.scenarios", fromlist=["generate"]).generate(
        "timer-heavy", n_cpus=2, duration_ns=20_000_000, seed=5)
    from tracebench.trace import write_trace

    (tmp_path / "x").mkdir()
    write_trace(tmp_path / "x" / "timers.parquet", cols, meta)
    tracebench.replay([tmp_path / "x" / "timers.parquet"], ["native"], out=tmp_path / "r",
                      events=False)
    other = dataset.pack([tmp_path / "r"], tmp_path / "b")
    out = runner.invoke(app, ["dataset", "merge", str(ds), str(other), "-o",
                              str(tmp_path / "c")])
    assert out.exit_code == 1
    assert "trace id 'timers'" in out.stderr and "two different traces under one id" in \
        out.stderr
    assert not (tmp_path / "c").exists()


def test_merge_refuses_one_parameter_hash_with_two_parameter_sets(built, tmp_path):
    _, inp, ds = built
    other = copy(dataset.pack([inp["res2"]], tmp_path / "b0"), tmp_path / "b")
    cfg = next((other / "configs").glob("apicv-*.json"))
    doc = json.loads(cfg.read_text())
    doc["params"]["exit_roundtrip_cyc"] = 1.0
    cfg.write_text(json.dumps(doc))
    reseal(other, [f"configs/{cfg.name}"])
    out = runner.invoke(app, ["dataset", "merge", str(ds), str(other), "-o",
                              str(tmp_path / "c")])
    assert out.exit_code == 1
    assert f"configs/{cfg.name}: params_sha256" in out.stderr
    assert "is not the sha256 of its parameters" in out.stderr
    # a genuine collision of the 12-digit name (different sets, same file) is refused too
    from tracebench.dataset.sources import Collector, Member

    col = Collector()
    col._put(Member("configs/x-aaaaaaaaaaaa.json", "1" * 64, "A", config={"params": {"a": 1},
                                                                          "params_sha256": "a"}))
    with pytest.raises(DatasetError, match="same parameter hash with different parameters"):
        col._put(Member("configs/x-aaaaaaaaaaaa.json", "2" * 64, "B",
                        config={"params": {"a": 2}, "params_sha256": "b"}))


def test_api_round_trip_and_params_partition(built):
    _, inp, ds = built
    s = pl.read_parquet(sorted(ds.glob("summary/**/*.parquet")))
    cfgs = {json.loads(p.read_text())["backend"]: json.loads(p.read_text())
            for p in (ds / "configs").glob("*.json")}
    for backend, cfg in cfgs.items():
        assert set(s.filter(backend=backend)["params"]) == {params_hash(cfg["params_sha256"])}
    assert os.path.exists(ds / "SHA256SUMS")


def test_manifest_facts_must_match_the_files(built, tmp_path):
    _, _, ds = built
    bad = copy(ds, tmp_path / "facts")
    doc = json.loads((bad / "datapackage.json").read_text())
    gone = doc["tracebench"]["results"].pop(0)
    reseal(bad, doc=doc)
    out = runner.invoke(app, ["dataset", "verify", str(bad)])
    assert out.exit_code == 1
    assert f"under {gone['backend']}/{gone['params']} exist, but tracebench.results does " \
        "not list them" in out.stderr


def _add_column_everywhere(ds: Path, table: str) -> None:
    """Make ``ds`` look written by a tracebench whose ``table`` has one more column."""
    import pyarrow as pa

    from tracebench.dataset.manifest import schema_fields

    changed = []
    doc = json.loads((ds / "datapackage.json").read_text())
    for res in doc["resources"]:
        if res["path"].startswith(f"{table}/"):
            path = ds / res["path"]
            if res["path"].endswith("_common_metadata"):
                s = pq.read_schema(path)
                s = s.append(pa.field("new_col", pa.int64()))
                pq.write_metadata(s, path)
            else:
                t = pq.read_table(path)
                t = t.append_column("new_col", pa.array([0] * t.num_rows, pa.int64()))
                pq.write_table(t, path)
            res["schema"]["fields"] = schema_fields(pq.read_schema(path).remove_metadata())
            changed.append(res["path"])
    reseal(ds, changed, doc)


def test_merge_refuses_incompatible_table_schemas(built, tmp_path):
    _, inp, ds = built
    other = copy(dataset.pack([inp["res2"]], tmp_path / "b0"), tmp_path / "b")
    _add_column_everywhere(other, "summary")
    assert dataset.verify(other).ok, dataset.verify(other).problems
    out = runner.invoke(app, ["dataset", "merge", str(ds), str(other), "-o",
                              str(tmp_path / "c")])
    assert out.exit_code == 1
    assert "schema differs from" in out.stderr and "columns ['new_col'] in only one" in \
        out.stderr and "not compatible" in out.stderr
    assert not (tmp_path / "c").exists()


def test_backend_origin_in_a_dataset_is_never_loaded(built, tmp_path):
    """A config may name a plug-in file as its origin: it is text, never imported."""
    _, inp, ds = built
    marker = tmp_path / "pwned"
    plugin = tmp_path / "evil_backend.py"
    plugin.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    toml = tmp_path / "evil.toml"
    toml.write_text(f'name = "evil"\nplugin = "{plugin}"\n')
    bad = copy(ds, tmp_path / "evil")
    for cfg in (bad / "configs").glob("*.json"):
        doc = json.loads(cfg.read_text())
        doc["origin"] = str(toml)
        doc["backend_module"] = str(plugin)
        cfg.write_text(json.dumps(doc))
    reseal(bad, [f"configs/{c.name}" for c in (bad / "configs").glob("*.json")])
    assert dataset.verify(bad).ok
    for args in (["dataset", "info", str(bad)], ["stat", str(bad)],
                 ["compare", str(bad), "--base", "native"],
                 ["dataset", "merge", str(bad), str(ds), "-o", str(tmp_path / "m")]):
        out = runner.invoke(app, args)
        assert out.exit_code == 0, (args, out.output)
    assert not marker.exists()


def test_merge_refuses_traces_only_datasets_with_one_id_two_digests(built, tmp_path):
    _, inp, _ = built
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "timers.parquet"
    twin.write_bytes(inp["ipis"].read_bytes())  # same name, other content
    a = dataset.pack([inp["timers"]], tmp_path / "a")
    b = dataset.pack([twin], tmp_path / "b")
    with pytest.raises(DatasetError, match=r"trace id 'timers': .* has sha256 .* refusing to "
                       "merge two different traces under one id"):
        dataset.merge([a, b], tmp_path / "c")
    same = dataset.merge([a, dataset.pack([inp["timers"]], tmp_path / "a2")], tmp_path / "d")
    assert [t["id"] for t in dataset.info(same)["traces"]] == ["timers"]
