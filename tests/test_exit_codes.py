"""Issue 18, exit codes as the README documents them, verb by verb: 0 ok, 1 data/runtime
error, 2 usage error (a bad option value, an unknown backend / profile / parameter /
scenario / key), 3 regression gate; every error one line, never a traceback."""

from __future__ import annotations

import pytest

from tests.reliability_helpers import cli, one_line_error
from tracebench.scenarios import generate
from tracebench.trace import write_trace


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("codes")
    cols, meta = generate("mixed-server", n_cpus=2, duration_ns=20_000_000, seed=2)
    write_trace(d / "t.parquet", cols, meta)
    for name, trace, extra in (("a", "t", ()), ("b", "t", ("-p", "exit_roundtrip_cyc=9000"))):
        r = cli("replay", d / f"{trace}.parquet", "-b", "native", "-b", "full-virt", "-q",
                "-o", d / name, *extra)
        assert r.exit_code == 0, r.output
    (d / "bad.parquet").write_text("not parquet\n")
    (d / "bad.txt").write_text("this is not a trace at all\n" * 3)
    (d / "ok.txt").write_text(
        "# tracer: nop\n"
        "          <idle>-0       [000] d.h1.   100.000001: local_timer_entry: vector=236\n"
        "          <idle>-0       [000] d.h1.   100.000009: local_timer_exit: vector=236\n")
    return d


CASES = [
    # (verb arguments, expected exit code, fragment of the one-line error)
    (("synth", "hz-tick", "-o", "{d}/s.parquet", "--duration", "10ms"), 0, None),
    (("synth", "nosuch", "-o", "{d}/s2.parquet"), 2, "unknown scenario"),
    (("synth", "hz-tick", "-o", "{d}/s2.parquet", "-p", "nosuch=1"), 2, "unknown parameter"),
    (("synth", "hz-tick", "-o", "{d}/s2.parquet", "--duration", "1e400s"), 2, "duration"),
    (("synth", "hz-tick", "-o", "{d}/s2.parquet", "--duration", "300y"), 2, "duration"),
    (("synth", "hz-tick", "-o", "{d}/s2.parquet", "--duration", "99999999999h"), 2, "int64"),
    (("synth", "mixed-server", "-o", "{d}/s2.parquet", "--cpus", "65535", "--duration",
      "100000h"), 2, "more than a trace can hold"),
    (("synth", "hz-tick", "-o", "{d}/s2.parquet", "--cpus", "70000"), 2, None),
    (("replay", "{d}/t.parquet", "-b", "native", "-q"), 0, None),
    (("replay", "{d}/bad.parquet"), 1, "not a readable Parquet file"),
    (("replay", "{d}/absent.parquet"), 1, "no such file"),
    (("replay", "{d}/t.parquet", "-b", "nosuch"), 2, "unknown backend 'nosuch'"),
    (("replay", "{d}/t.parquet", "--profile", "pentium4"), 2, "unknown CPU profile"),
    (("replay", "{d}/t.parquet", "-p", "nosuch_cyc=1"), 2, "unknown parameter"),
    (("replay", "{d}/t.parquet", "-p", "exit_roundtrip_cyc=1e30"), 2, "outside"),
    (("replay", "{d}/t.parquet", "-p", "exit_roundtrip_cyc"), 2, "NAME=VALUE"),
    (("replay", "{d}/t.parquet", "--chunk-rows", "99999999999999999999"), 2, None),
    (("replay", "{d}/t.parquet", "--threads", "0"), 2, None),
    (("replay", "{d}/t.parquet", "-o", "{d}/r", "--events-for", "eli", "-b", "native"), 2,
     "'eli'"),
    (("backends", "nosuch"), 2, "unknown backend"),
    (("backends", "--profile", "nosuch", "--params"), 2, "unknown CPU profile"),
    (("backends", "native"), 0, None),
    (("stat", "{d}/a"), 0, None),
    (("stat", "{d}/a", "--key", "color"), 2, "--key must be sample"),
    (("stat", "{d}/a", "-b", "nosuch"), 2, "no backend 'nosuch'"),
    (("stat", "{d}/absent"), 1, "no such results folder"),
    (("stat", "{d}/t.parquet"), 1, None),
    (("compare", "{d}/a"), 0, None),
    (("compare", "{d}/a", "--base", "nosuch"), 2, None),
    (("compare", "{d}/a", "{d}/b", "--fail-above", "5"), 3, "regression"),
    (("compare", "{d}/a", "{d}/a", "--fail-above", "5"), 0, None),
    (("compare", "{d}/a", "--fail-above", "5"), 3, "regression"),  # backends vs the base
    (("ingest", "{d}/ok.txt", "-o", "{d}/i.parquet"), 0, None),
    (("ingest", "{d}/bad.txt", "-o", "{d}/i2.parquet"), 1, "bad.txt"),
    (("ingest", "{d}/absent.txt", "-o", "{d}/i2.parquet"), 1, "no such file"),
    (("ingest", "{d}/ok.txt", "-o", "{d}/i3.parquet", "--format", "nosuch"), 2, None),
    (("record", "-o", "{d}/rec.parquet", "--events", "nosuch"), 2, "not a preset"),
    (("record", "-o", "{d}/rec.parquet", "--duration", "soon"), 2, "cannot parse duration"),
    (("record", "-o", "{d}/rec.parquet", "--buffer-kb", "-5"), 2, None),
]


@pytest.mark.parametrize(("args", "code", "words"), CASES,
                         ids=[" ".join(c[0][:3]) + f"->{c[1]}" for c in CASES])
def test_exit_code(world, args, code, words):
    r = cli(*(a.format(d=world) for a in args))
    if code in (0, 3) and words is None:
        assert r.exit_code == code, r.output
        assert "Traceback" not in r.output
        return
    if code == 3:
        assert r.exit_code == 3 and words in r.stderr and "Traceback" not in r.output
        return
    one_line_error(r, code, *([words] if words else []))
