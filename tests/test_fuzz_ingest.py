"""Fuzzing every ingest format with mutated real lines (issue 18): a valid trace or a
one-line error (exit 1/2), never a traceback, a hang or a write beside the output.
Kept regression inputs (``tests/data/fuzz/*.txt``) are run first, every time."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import FUZZ, FUZZ_DATA, listing, mutated_lines, run_clean
from tests.reliability_helpers import ROOT
from tracebench.limits import MAX_CPUS
from tracebench.trace import TraceFile

DATA = ROOT / "tests" / "data"
#: one real, attributed sample per input format (see each folder's SOURCE.md / README.md)
SEEDS = {
    "ftrace": (DATA / "local-dual" / "ftrace.txt", 70),
    "perf-script": (DATA / "local-dual" / "perf-script.txt", 60),
    "trace-cmd": (DATA / "realtraces" / "guest-nohz-local-timer-sysjitter" / "trace_excerpt.txt",
                  60),
    "kvm-host": (DATA / "realtraces" / "kvm-svm-selfipi-eoi-idlehlt" / "trace_idle_hlt_off.txt",
                 60),
    "kvm-host-perf": (DATA / "realtraces" / "kvm-perfscript-irq-injection" /
                      "perf_script_apic.txt", 60),
}


def _lines(fmt: str) -> list[bytes]:
    path, n = SEEDS[fmt]
    return path.read_bytes().splitlines()[:n]


def check_ingest(data: bytes, strict: bool, fmt: str = "auto") -> None:
    with tempfile.TemporaryDirectory(prefix="tb-fuzz-") as d:
        folder = Path(d)
        src = folder / "in.txt"
        src.write_bytes(data)
        out = folder / "out" / "t.parquet"
        args = ["ingest", src, "-o", out, "--format", fmt] + (["--strict"] if strict else [])
        r = run_clean(*args)
        written = listing(folder) - {"in.txt"}
        if r.exit_code == 0:
            tf = TraceFile(out)  # the trace written reads back, every row valid
            tf.read_all()
            assert 1 <= tf.meta.n_cpus <= MAX_CPUS and tf.meta.duration_ns >= 0
            assert written <= {"out", "out/t.parquet", "out/t.exits.parquet"}, written
        else:
            assert written <= {"out"}, written  # no partial output, no temporary


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_fuzz_ingest_format(fmt):
    lines = _lines(fmt)

    @FUZZ
    @given(data=mutated_lines(lines), strict=st.booleans())
    def run(data, strict):
        check_ingest(data, strict)

    run()


@FUZZ
@given(data=st.binary(max_size=2000), strict=st.booleans())
def test_fuzz_ingest_random_bytes(data, strict):
    check_ingest(data, strict)


@pytest.mark.parametrize("case", sorted(p.name for p in FUZZ_DATA.glob("*.txt")))
def test_fuzz_regressions(case):
    """Inputs that once broke the property, kept (see tests/data/fuzz/README.md)."""
    check_ingest((FUZZ_DATA / case).read_bytes(), strict=False)


@pytest.mark.parametrize("case", sorted(p.name for p in FUZZ_DATA.glob("bad-*.txt")))
def test_bad_line_is_an_error_under_strict_and_a_counted_skip_otherwise(case, tmp_path):
    src = FUZZ_DATA / case
    last = len(src.read_bytes().splitlines())
    r = run_clean("ingest", src, "-o", tmp_path / "s.parquet", "--strict")
    assert r.exit_code == 1 and f"{case}:{last}: " in r.stderr, r.output
    assert not (tmp_path / "s.parquet").exists()
    r = run_clean("ingest", src, "-o", tmp_path / "t.parquet")
    assert r.exit_code == 0, r.output
    meta = TraceFile(tmp_path / "t.parquet").meta
    assert meta.source["malformed_lines"] == 1 and meta.source["malformed_first"] == [last]
    assert meta.n_cpus == 2  # the good lines' vCPUs only
