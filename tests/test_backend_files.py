"""Issue 18, backend files: a user's TOML is checked (types, keys, names, base chains)
before anything is built, and names from files never become unchecked path components."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability_helpers import cli, one_line_error, temporaries
from tracebench.backends import backend_from_toml
from tracebench.errors import ParamError, TracebenchError
from tracebench.replayer.results import partition_dir
from tracebench.scenarios import generate
from tracebench.trace import write_trace

CASES = {
    # file name: (content, words in the one-line error)
    "self.toml": ('base = "self.toml"\n', "refers back to itself"),
    "dots.toml": ('name = "../escape"\nbase = "apicv"\n', "backend name '../escape'"),
    "slash.toml": ('name = "a/b"\nbase = "apicv"\n', "backend name 'a/b'"),
    "empty_name.toml": ('name = ""\nbase = "apicv"\n', "backend name ''"),
    "ctrl.toml": ('name = "a\\u0007b\\nc"\nbase = "apicv"\n', "is not allowed"),
    "dot.toml": ('name = "."\nbase = "apicv"\n', "backend name '.'"),
    "int_name.toml": ("name = 5\n", "name must be a string"),
    "mech_str.toml": ('mechanisms = "x"\n', "mechanisms must be a table"),
    "mech_val.toml": ('base = "apicv"\n[mechanisms]\neoi = 3\n', "[mechanisms] eoi must be"),
    "params_list.toml": ("params = [1, 2]\n", "params must be a table"),
    "params_str.toml": ('base = "apicv"\n[params]\nexit_roundtrip_cyc = "fast"\n',
                        "[params] exit_roundtrip_cyc must be a number"),
    "params_bool.toml": ('base = "apicv"\n[params]\nexit_roundtrip_cyc = true\n',
                         "must be a number"),
    "params_inf.toml": ('base = "apicv"\n[params]\nexit_roundtrip_cyc = inf\n', "outside"),
    "params_nan.toml": ('base = "apicv"\n[params]\nexit_roundtrip_cyc = nan\n', "outside"),
    "unknown_key.toml": ('base = "apicv"\ncolour = "red"\n', "unknown key 'colour'"),
    "base_int.toml": ("base = 7\n", "base must be a string"),
    "base_empty.toml": ('base = ""\n', "base is empty"),
    "base_missing.toml": ('base = "nosuch.toml"\n', "no such file"),
    "syntax.toml": ('name = "x\n', "syntax.toml"),
    "deep.toml": ("x = " + "[" * 5000 + "]" * 5000 + "\n", "deep.toml"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("toml")
    for name, (text, _) in CASES.items():
        (d / name).write_text(text)
    (d / "cycle_a.toml").write_text('base = "cycle_b.toml"\n')
    (d / "cycle_b.toml").write_text('base = "cycle_a.toml"\n')
    (d / "folder.toml").mkdir()
    (d / "latin1.toml").write_bytes(b'name = "caf\xe9"\n')
    (d / "unreadable.toml").write_bytes(b"\xff\xfe\x00\x00")
    (d / "good.toml").write_text('name = "my-apicv"\nbase = "apicv"\n[params]\n'
                                 "exit_roundtrip_cyc = 1200\n")
    return d


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_backend_file_is_one_line_usage_error(files, name, monkeypatch):
    monkeypatch.chdir(files)
    one_line_error(cli("backends", name), 2, name, CASES[name][1])
    with pytest.raises(ParamError):
        backend_from_toml(files / name)


@pytest.mark.parametrize(("name", "words"), [
    ("cycle_a.toml", "refers back to itself"), ("folder.toml", "is a folder"),
    ("latin1.toml", "not UTF-8"), ("unreadable.toml", "not UTF-8")])
def test_cycles_folders_and_bad_bytes(files, name, words, monkeypatch):
    monkeypatch.chdir(files)
    one_line_error(cli("backends", name), 2, name, words)


def test_hostile_name_never_reaches_the_results_folder(files, tmp_path):
    trace = tmp_path / "t.parquet"
    cols, meta = generate("hz-tick", n_cpus=2, duration_ns=10_000_000, seed=1)
    write_trace(trace, cols, meta)
    out = tmp_path / "out" / "res"
    one_line_error(cli("replay", trace, "-b", files / "dots.toml", "-o", out), 2, "../escape")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "escape").exists() and not temporaries(tmp_path)
    good = cli("replay", trace, "-b", files / "good.toml", "-o", out, "-q")
    assert good.exit_code == 0, good.output
    assert (out / "summary" / "backend=my-apicv").is_dir()


@pytest.mark.parametrize("value", ["../x", "a/b", "", ".", "..", "x\0y", "-rf", ".hidden",
                                   "a" * 200])
def test_partition_values_are_checked_where_they_become_paths(value):
    """The results writer checks every partition value itself, whoever validated it."""
    with pytest.raises(TracebenchError, match="cannot name a results partition"):
        partition_dir(Path("/r"), "events", value, "0" * 64, "t")
    with pytest.raises(TracebenchError, match="cannot name a results partition"):
        partition_dir(Path("/r"), "events", "native", "0" * 64, value)


def test_params_file_with_wrong_types(tmp_path):
    trace = tmp_path / "t.parquet"
    cols, meta = generate("hz-tick", n_cpus=2, duration_ns=10_000_000, seed=1)
    write_trace(trace, cols, meta)
    for text, words in (("params = [1, 2]\n", "params must be a table"),
                        ('exit_roundtrip_cyc = "x"\n', "must be a number")):
        (tmp_path / "p.toml").write_text(text)
        one_line_error(cli("replay", trace, "--params", tmp_path / "p.toml"), 2, words)
    one_line_error(cli("replay", trace, "--params", tmp_path), 2, "is a folder")
