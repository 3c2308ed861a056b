"""A dataset from a stranger: every refusal, its message, and nothing read outside it.

Each test tampers with a copy of a real packed dataset the way an attacker or a broken
download would, runs ``tracebench dataset verify`` through the CLI, and checks the exit
code and the file-naming message. The last test runs every tampered copy in a subprocess
that records each file Python opens (audit hook) and checks that nothing outside the
dataset folder was opened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.dataset_helpers import a_results_file, copy, make_inputs, reseal
from tracebench import dataset
from tracebench.cli import app
from tracebench.dataset import safety

runner = CliRunner()
SECRET = "outside-secret.parquet"


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("safe")
    inp = make_inputs(d)
    ds = dataset.pack([inp["res"]], d / "ds", license="CC0-1.0")
    (d / SECRET).write_bytes(b"PAR1 secret bytes that no verify may read PAR1")
    return d, ds


def _manifest(ds: Path) -> dict:
    return json.loads((ds / "datapackage.json").read_text())


def _verify(ds: Path, *expected: str) -> str:
    out = runner.invoke(app, ["dataset", "verify", str(ds)])
    assert out.exit_code == 1, out.output
    for text in expected:
        assert text in out.stderr, out.stderr
    assert "problem(s); do not trust this dataset" in out.stderr
    return out.stderr


def _tampered(packed, tmp_path, name: str) -> Path:
    return copy(packed[1], tmp_path / name)


def test_path_with_dotdot(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "dotdot")
    doc = _manifest(ds)
    doc["resources"][1]["path"] = f"../{SECRET}"
    reseal(ds, doc=doc)
    _verify(ds, f"resource path '../{SECRET}' escapes or is not normalised")


def test_absolute_path(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "absolute")
    doc = _manifest(ds)
    doc["resources"][1]["path"] = str(packed[0] / SECRET)
    reseal(ds, doc=doc)
    _verify(ds, f"resource path '{packed[0] / SECRET}' is absolute")


def test_symlink_out(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "symlink")
    rel = a_results_file(ds, "exits")
    (ds / rel).unlink()
    os.symlink(packed[0] / SECRET, ds / rel)
    _verify(ds, f"{rel}: is a symlink (or under one) that points outside the dataset folder")


def test_symlinked_folder_out(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "symdir")
    outside = tmp_path / "elsewhere"
    copy(ds / "configs", outside)
    import shutil

    shutil.rmtree(ds / "configs")
    os.symlink(outside, ds / "configs")
    _verify(ds, "configs/", "points outside the dataset folder")


def test_flipped_byte(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "flip")
    rel = a_results_file(ds, "summary")
    data = bytearray((ds / rel).read_bytes())
    data[len(data) // 2] ^= 0x01
    (ds / rel).write_bytes(bytes(data))
    _verify(ds, f"{rel}: sha256 ", "differs from the manifest's", "(corrupted or altered)")


def test_truncated_file(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "trunc")
    rel = a_results_file(ds, "events")
    size = (ds / rel).stat().st_size
    with open(ds / rel, "r+b") as fh:
        fh.truncate(size - 100)
    _verify(ds, f"{rel}: size {size - 100} bytes, the manifest declares {size} (truncated)")


def test_size_lie(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "lie")
    doc = _manifest(ds)
    res = next(r for r in doc["resources"] if r["path"].startswith("events/backend="))
    real = res["bytes"]
    res["bytes"] = 10**12
    reseal(ds, doc=doc)
    _verify(ds, f"{res['path']}: size {real} bytes, the manifest declares {10**12} (truncated)")


def test_fifo_and_device_refused_unread(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "fifo")
    rel = a_results_file(ds, "exits")
    (ds / rel).unlink()
    os.mkfifo(ds / rel)  # reading it would block forever
    (ds / "traces" / "null").symlink_to("/dev/null")
    err = _verify(ds, f"{rel}: is a FIFO, not a regular file; refused")
    assert "traces/null: is a symlink (or under one) that points outside" in err


def test_unlisted_file(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "extra")
    (ds / "summary" / "evil.parquet").write_bytes(b"x")
    _verify(ds, "summary/evil.parquet: present but not listed in datapackage.json")


def test_edited_manifest_is_caught_by_sha256sums(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "edited")
    doc = _manifest(ds)
    doc["title"] = "something else"
    (ds / "datapackage.json").write_text(json.dumps(doc))
    _verify(ds, "datapackage.json: sha256 differs from SHA256SUMS (manifest altered)")


def test_footer_partition_mismatch(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "moved")
    rel = a_results_file(ds, "summary")
    parts = rel.split("/")
    other = [p.name for p in (ds / "summary").iterdir() if p.name not in (parts[1],
                                                                           "_common_metadata")]
    new = "/".join([parts[0], other[0]] + parts[2:])
    (ds / new).parent.mkdir(parents=True, exist_ok=True)
    (ds / rel).rename(ds / new)
    doc = _manifest(ds)
    next(r for r in doc["resources"] if r["path"] == rel)["path"] = new
    reseal(ds, doc=doc)
    _verify(ds, f"{new}: partition", "disagrees with the file's footer")


@pytest.mark.parametrize("case, content, message", [
    ("deep", b"[" * 100_000 + b"]" * 100_000, "JSON nested deeper than 32 levels; refused"),
    ("types", json.dumps({"resources": [{"path": "README.md", "bytes": "12",
                                         "hash": "sha256:" + "0" * 64}],
                          "tracebench": {}}).encode(),
     "resources[0].bytes (README.md) is str, expected int"),
    ("toplevel", b'"just a string"', "the top level is str, expected dict"),
    ("notjson", b"{'python': True}", "not valid JSON"),
    ("nan", b'{"resources": [], "tracebench": {"x": NaN}}', "non-standard JSON constant NaN"),
    ("resources", b'{"resources": {"a": 1}, "tracebench": {}}', "resources is dict, expected list"),
])
def test_hostile_manifest(packed, tmp_path, case, content, message):
    ds = _tampered(packed, tmp_path, case)
    (ds / "datapackage.json").write_bytes(content)
    err = _verify(ds, message)
    assert "Traceback" not in err
    info = runner.invoke(app, ["dataset", "info", str(ds)])
    assert info.exit_code == 1 and message in info.stderr


def test_huge_manifest_refused_unread(packed, tmp_path, monkeypatch):
    ds = _tampered(packed, tmp_path, "huge")
    monkeypatch.setattr(safety, "MANIFEST_MAX_BYTES", 4096)
    (ds / "datapackage.json").write_bytes(b" " * 5000 + b"{}")
    _verify(ds, "datapackage.json: 5002 bytes, more than the 4096 this file may have; "
            "refused unread")


def test_nothing_outside_the_folder_is_opened(packed, tmp_path):
    """Every tampered copy verified in one subprocess that logs what Python opens."""
    cases = []
    for name, make in (("a", test_path_with_dotdot), ("b", test_absolute_path),
                       ("c", test_symlink_out), ("d", test_size_lie),
                       ("e", test_symlinked_folder_out)):
        sub = tmp_path / name
        sub.mkdir()
        make(packed, sub)
        cases += [str(p) for p in sub.iterdir() if (p / "datapackage.json").exists()]
    script = f"""
import sys, os
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.append(os.path.realpath(os.fsdecode(args[0])))
sys.addaudithook(hook)
from tracebench.dataset import verify
for case in {cases!r}:
    rep = verify(case)
    assert not rep.ok, case
secret = os.path.realpath({str(packed[0] / SECRET)!r})
outside = [p for p in opened if p == secret or p.startswith({str(tmp_path / 'e' / 'elsewhere')!r})]
print("OPENED-OUTSIDE", outside)
print("OPENED-INSIDE", sum(1 for p in opened if p.startswith({str(tmp_path)!r})))
"""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "OPENED-OUTSIDE []" in done.stdout
    inside = int(done.stdout.split("OPENED-INSIDE ")[1])
    assert inside > 20  # the hook saw the reads it should: the dataset's own files


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                               max_size=4),
    max_leaves=20)


def _paths(doc, prefix=()):
    """Every (path, value) in a JSON document, for mutating one place at a time."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_manifests_give_problems_never_crashes(packed, tmp_path_factory, data):
    """Any one value of a real manifest replaced by any JSON value: verify reports problems
    (or, for a harmless change, none) and info answers or refuses in one line."""
    good = json.loads((packed[1] / "datapackage.json").read_text())
    places = list(_paths(good))[1:]
    where, _ = data.draw(st.sampled_from(places))
    value = data.draw(_json)
    doc = json.loads(json.dumps(good))
    target = doc
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    ds = tmp_path_factory.mktemp("fuzz") / "ds"
    copy(packed[1], ds)
    reseal(ds, doc=doc)
    rep = dataset.verify(ds)  # must not raise
    assert all(p.path and p.what for p in rep.problems)
    try:
        dataset.info(ds)
    except dataset.DatasetError as exc:
        assert "\n" not in str(exc)


def test_not_a_dataset_is_one_line(tmp_path):
    out = runner.invoke(app, ["dataset", "verify", str(tmp_path / "nope")])
    assert out.exit_code == 1 and out.stderr.strip() == \
        f"tracebench: error: {tmp_path / 'nope'}: no such dataset folder"
    out = runner.invoke(app, ["dataset", "verify", str(tmp_path)])
    assert out.exit_code == 1 and "not a dataset (no datapackage.json" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_verify_and_info_load_no_backend_code(packed):
    """Reading a dataset touches no backend, plug-in registry or compiled kernel."""
    script = f"""
import sys
from tracebench.dataset import info, verify
assert verify({str(packed[1])!r}).ok
info({str(packed[1])!r})
loaded = sorted(m for m in sys.modules if m.startswith(("tracebench.backends", "numba",
                                                        "tracebench.replayer")))
print("LOADED", loaded)
"""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout


def test_missing_file_and_machine_readable_problems(packed, tmp_path):
    ds = _tampered(packed, tmp_path, "missing")
    rel = a_results_file(ds, "vcpus")
    (ds / rel).unlink()
    _verify(ds, f"{rel}: missing (listed in the manifest)")
    out = runner.invoke(app, ["dataset", "verify", str(ds), "-f", "json"])
    assert out.exit_code == 1
    doc = json.loads(out.stdout)
    assert doc["ok"] is False and {"path": rel, "what": "missing (listed in the manifest)"} \
        in doc["problems"]
    out = runner.invoke(app, ["dataset", "verify", str(ds), "-f", "csv"])
    assert out.exit_code == 1
    assert out.stdout.splitlines()[0] == "path,what"
    assert f"{rel},missing (listed in the manifest)" in out.stdout.splitlines()
    good = runner.invoke(app, ["dataset", "verify", str(packed[1]), "-f", "json"])
    assert good.exit_code == 0 and json.loads(good.stdout)["problems"] == []
