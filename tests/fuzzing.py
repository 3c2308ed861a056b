"""What the fuzz tests share: the property every run must have, the hypothesis budget,
mutation strategies for text lines, and the regression corpus under ``tests/data/fuzz``.

The property (issue 18): a valid result, or a one-line error with exit 1 or 2; never a
traceback, never a hang (a per-run alarm), never a write outside the output.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.reliability_helpers import ROOT, cli

FUZZ_DATA = ROOT / "tests" / "data" / "fuzz"
#: examples per fuzz test: small in CI, ``TRACEBENCH_FUZZ_EXAMPLES=500`` for a long hunt
EXAMPLES = int(os.environ.get("TRACEBENCH_FUZZ_EXAMPLES", "25"))
#: seconds one run may take before it counts as a hang
HANG_S = 60

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("TRACEBENCH_FUZZ_RANDOM") is None,  # CI: same cases each run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
    database=None,
)


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: int = HANG_S):
    def on_alarm(signum, frame):
        raise Hang(f"no answer in {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_clean(*args):
    """Run the CLI in-process; assert the property; return the result."""
    with no_hang():
        r = cli(*args)
    exc = r.exception
    assert exc is None or isinstance(exc, SystemExit), (
        f"traceback for {args}: {type(exc).__name__}: {exc}\n{r.output[-3000:]}")
    assert "Traceback" not in r.output, r.output[-3000:]
    assert r.exit_code in (0, 1, 2), (r.exit_code, r.output[-2000:])
    if r.exit_code:
        err = r.stderr.strip()
        assert err.startswith("tracebench: error:") or "Usage:" in err, err[-2000:]
        if err.startswith("tracebench: error:"):
            assert "\n" not in err, err
    return r


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --------------------------------------------------------------------------- mutations

HUGE = st.sampled_from(["9" * 19, "9" * 25, "18446744073709551616", "99999999999999999999999",
                        "-1", "-9223372036854775808", "1e400", "0x" + "f" * 20, "nan", "inf",
                        "65535", "65536", "4294967296", "-0", "00000000000000000000001",
                        "9223372036.854775808", "-1275.538071"])
JUNK = st.sampled_from([b"\0", b"\xff\xfe", b"\xc3\x28", b"\r", b"\t", b"[", b"]", b":", b" ",
                        b"=", b",", b"\x1b[31m", "é".encode(), "٣".encode(), b"\\n"])


@st.composite
def mutated_lines(draw, lines: list[bytes]) -> bytes:
    """A real trace with a few lines damaged the ways tracers, editors and pipes damage
    them: truncated, fields swapped, numbers made huge or negative, random or invalid
    bytes, NULs, very long lines, lines dropped, doubled or out of order."""
    out = list(lines)
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(out) - 1))
        line = out[i]
        op = draw(st.integers(0, 9))
        if op == 0:  # truncated (a killed tracer, a partial pipe read)
            out[i] = line[: draw(st.integers(0, max(len(line) - 1, 0)))]
        elif op == 1:  # two whitespace fields swapped
            parts = line.split(b" ")
            if len(parts) > 2:
                a, b = draw(st.integers(0, len(parts) - 1)), draw(st.integers(0, len(parts) - 1))
                parts[a], parts[b] = parts[b], parts[a]
            out[i] = b" ".join(parts)
        elif op == 2:  # a number replaced by a huge / negative / odd one
            parts = line.split(b" ")
            nums = [k for k, p in enumerate(parts) if any(48 <= c <= 57 for c in p)]
            if nums:
                k = draw(st.sampled_from(nums))
                token = parts[k]
                digits = b"".join(bytes([c]) for c in token if 48 <= c <= 57 or c == 46)
                parts[k] = token.replace(digits, draw(HUGE).encode(), 1) if digits else token
            out[i] = b" ".join(parts)
        elif op == 3:  # junk bytes inserted
            at = draw(st.integers(0, len(line)))
            out[i] = line[:at] + draw(JUNK) + line[at:]
        elif op == 4:  # random bytes
            out[i] = draw(st.binary(min_size=0, max_size=80))
        elif op == 5:  # a very long line
            out[i] = line + b"x" * draw(st.sampled_from([70_000, 200_000]))
        elif op == 6:  # dropped
            out[i] = b""
        elif op == 7:  # doubled
            out.insert(i, line)
        elif op == 8:  # moved (out of order)
            j = draw(st.integers(0, len(out) - 1))
            out.insert(j, out.pop(i))
        else:  # the [CPU] column spoiled
            s, e = line.find(b"["), line.find(b"]")
            if 0 <= s < e:
                out[i] = line[: s + 1] + draw(st.sampled_from(
                    [b"", b"abc", b"0x1", b"99999", b"-1", b"65535", b"1 2", b"\xff"])) + line[e:]
    tail = draw(st.sampled_from([b"\n", b"", b"\r\n"]))
    return b"\n".join(out) + tail


def keep_case(name: str, data: bytes) -> Path:
    """Store an input worth keeping as a regression case (used when hunting)."""
    FUZZ_DATA.mkdir(parents=True, exist_ok=True)
    path = FUZZ_DATA / name
    path.write_bytes(data)
    return path
