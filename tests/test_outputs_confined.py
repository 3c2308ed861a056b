"""Issue 18, writing where it must not: every output is confined, --force replaces only
tracebench's own outputs, symlinks are never written through, stale temporaries are
cleaned, and a failing disk is one line with the previous output intact."""

from __future__ import annotations

import errno
import json
import os
import subprocess

import pytest

from tests.reliability_helpers import cli, mounted_tmpfs, one_line_error, remount, temporaries
from tracebench.atomic import MARKER, atomic_dir, atomic_path, clean_stale, read_marker
from tracebench.errors import TracebenchError
from tracebench.scenarios import generate
from tracebench.trace import write_trace


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("confined") / "t.parquet"
    cols, meta = generate("hz-tick", n_cpus=2, duration_ns=20_000_000, seed=3)
    write_trace(path, cols, meta)
    return path


def replay(trace, out, *extra):
    return cli("replay", trace, "-b", "native", "-q", "-o", out, *extra)


def test_force_replaces_own_results_and_marks_them(trace, tmp_path):
    out = tmp_path / "res"
    assert replay(trace, out).exit_code == 0
    assert read_marker(out)["kind"] == "results"
    assert replay(trace, out, "--force").exit_code == 0
    assert (out / "run.json").exists() and not temporaries(tmp_path)


def test_force_never_deletes_a_folder_tracebench_did_not_write(trace, tmp_path):
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("years of work\n")
    one_line_error(replay(trace, other, "--force"), 1, "not a tracebench output")
    assert (other / "chapter1.tex").read_text() == "years of work\n"
    assert sorted(p.name for p in other.iterdir()) == ["chapter1.tex"]
    # a forged marker of another kind is not enough either
    (other / MARKER).write_text(json.dumps({"kind": "dataset"}))
    one_line_error(replay(trace, other, "--force"), 1, "of kind 'results'")
    assert (other / "chapter1.tex").exists() and not temporaries(tmp_path)


def test_force_never_replaces_an_arbitrary_file(tmp_path):
    notes = tmp_path / "notes.parquet"
    notes.write_text("not a trace\n")
    r = cli("synth", "hz-tick", "-o", notes, "--duration", "10ms", "--force")
    one_line_error(r, 1, "not a tracebench output")
    assert notes.read_text() == "not a trace\n" and not temporaries(tmp_path)


def test_force_replaces_own_trace_file(tmp_path):
    out = tmp_path / "t.parquet"
    args = ("synth", "hz-tick", "-o", out, "--duration", "10ms")
    assert cli(*args).exit_code == 0
    assert cli(*args, "--seed", "2", "--force").exit_code == 0
    assert not temporaries(tmp_path)


@pytest.mark.parametrize("spelling", [".", "a/b/..", "", "a/.."])
def test_output_that_names_no_new_entry_is_a_usage_error(trace, tmp_path, spelling,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "sub").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    one_line_error(replay(trace, spelling, "--force"), 2)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not temporaries(tmp_path)


def test_output_symlink_is_never_written_through(trace, tmp_path):
    real = tmp_path / "real"
    assert replay(trace, real).exit_code == 0
    before = sorted(str(p.relative_to(real)) for p in real.rglob("*"))
    link = tmp_path / "link"
    link.symlink_to(real)
    one_line_error(replay(trace, link, "--force"), 1, "output is a symlink")
    assert link.is_symlink() and sorted(str(p.relative_to(real)) for p in real.rglob("*")) \
        == before
    dangling = tmp_path / "dangling.parquet"
    dangling.symlink_to(tmp_path / "elsewhere.parquet")
    one_line_error(cli("synth", "hz-tick", "-o", dangling, "--duration", "10ms"), 1,
                   "output is a symlink")
    assert not (tmp_path / "elsewhere.parquet").exists() and not temporaries(tmp_path)


def test_output_over_or_around_an_input_is_refused(trace, tmp_path):
    folder = trace.parent
    before = sorted(folder.iterdir())
    one_line_error(replay(trace, folder, "--force"), 2, "would replace the input")
    assert sorted(folder.iterdir()) == before
    text = tmp_path / "in.txt"
    text.write_text("# tracer: nop\n")
    one_line_error(cli("ingest", text, "-o", text, "--force"), 2, "would replace the input")
    assert text.read_text() == "# tracer: nop\n"


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_killed_runs_are_cleaned_only_if_ours(trace, tmp_path):
    out = tmp_path / "res"
    dead = _dead_pid()
    ours = tmp_path / f".res.tmp-{dead}-0123abcd"
    (ours / "events").mkdir(parents=True)
    (ours / MARKER).write_text(json.dumps({"kind": "results", "pid": dead}))
    (ours / "events" / "big.parquet").write_bytes(b"x" * 4096)
    empty = tmp_path / f".res.tmp-{dead}-00000000"
    empty.mkdir()  # killed between mkdir and the marker
    half_file = tmp_path / f".res.old-{dead}-ffffffff"
    half_file.write_bytes(b"partial")
    alive = tmp_path / f".res.tmp-{os.getppid()}-0123abcd"  # a run still going
    alive.mkdir()
    (alive / MARKER).write_text(json.dumps({"kind": "results"}))
    foreign = tmp_path / f".res.tmp-{dead}-deadbeef"  # right name, not ours: no marker
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert replay(trace, out).exit_code == 0
    assert not ours.exists() and not empty.exists() and not half_file.exists()
    assert alive.exists() and (foreign / "keep.txt").exists()
    assert clean_stale(out) == []


def test_interrupted_body_leaves_no_temporary(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "o", "results") as tmp:
        (tmp / "x").write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_replace_keeps_the_type_of_the_output(tmp_path):
    out = tmp_path / "o"
    with atomic_dir(out, "results") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(TracebenchError, match="folder with a file"), \
            atomic_path(out, force=True) as tmp:
        tmp.write_text("file")
    assert (out / "a").read_text() == "1" and not temporaries(tmp_path)


# --------------------------------------------------------------------------- disks


def _fill(fs, leave_bytes: int) -> None:
    """Fill the filesystem, then give back ``leave_bytes``."""
    with open(fs / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(fs / "filler", max(0, (fs / "filler").stat().st_size - leave_bytes))


def test_full_disk_is_one_line_and_previous_output_stays(tmp_path):
    big = tmp_path / "big.parquet"
    cols, meta = generate("timer-heavy", n_cpus=2, duration_ns=200_000_000, seed=1)
    write_trace(big, cols, meta)
    with mounted_tmpfs(tmp_path / "small", size="4m") as fs:
        out = fs / "res"
        assert cli("replay", big, "-b", "native", "-q", "-o", out, "--no-events").exit_code \
            == 0
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        _fill(fs, 64 * 1024)
        err = one_line_error(cli("replay", big, "-b", "native", "-b", "full-virt", "-q",
                                 "-o", out, "--force"), 1, str(out))
        assert "No space left" in err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
        assert not temporaries(fs)
        # refused up front when the estimate alone does not fit ...
        synth = cli("synth", "timer-heavy", "-o", fs / "t.parquet", "--duration", "2s")
        assert "GB free on that filesystem" in one_line_error(synth, 1, str(fs / "t.parquet"))
        # ... and a clean error when the disk fills while writing
        synth = cli("synth", "timer-heavy", "-o", fs / "t.parquet", "--duration", "100ms")
        assert "No space left" in one_line_error(synth, 1, str(fs / "t.parquet"))
        assert not (fs / "t.parquet").exists() and not temporaries(fs)


def test_read_only_disk_is_one_line_and_previous_output_stays(trace, tmp_path):
    with mounted_tmpfs(tmp_path / "ro", size="4m") as fs:
        out = fs / "res"
        assert replay(trace, out).exit_code == 0
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        remount(fs, "ro")
        err = one_line_error(replay(trace, out, "--force"), 1, str(fs))
        assert "Read-only file system" in err
        err = one_line_error(replay(trace, fs / "new"), 1, "Read-only file system")
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(("code", "words"), [(errno.EACCES, "Permission denied"),
                                             (errno.EDQUOT, "disk quota exceeded"),
                                             (errno.EIO, "Input/output error")])
def test_failing_rename_is_one_line_and_previous_output_stays(trace, tmp_path, monkeypatch,
                                                              code, words):
    out = tmp_path / "res"
    assert replay(trace, out).exit_code == 0
    stamp = (out / "run.json").read_bytes()
    real_rename = os.rename

    def failing_rename(src, dst, *a, **k):  # the one OS call that fails (root ignores modes)
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(os, "rename", failing_rename)
    import tracebench.atomic as atomic_mod

    monkeypatch.setattr(atomic_mod, "_exchange", lambda a, b: False)
    err = one_line_error(replay(trace, out, "--force"), 1, str(out))
    assert words in err
    monkeypatch.setattr(os, "rename", real_rename)
    assert (out / "run.json").read_bytes() == stamp and not temporaries(tmp_path)
