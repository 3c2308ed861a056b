"""Ingest throughput: synthesize a large ftrace text from the real recording, time ingest.

Prints one JSON line per measurement:
{"stage": "ingest", "format", "lines", "bytes", "seconds", "lines_per_s", "cpu_s", "peak_rss_mb"}
Each measurement runs in a fresh process (as ``tracebench ingest`` does: the numba
cache is loaded, not compiled), so peak RSS is its own; ``seconds`` is the ``ingest()``
call, ``cpu_s`` the CPU time of all its threads. Usage:
    .venv/bin/python scripts/bench_ingest.py [--lines 4000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "tests/data/fc-guest-mixed/trace-head.txt"
SHARED = Path("/work/shared/recorded/fc-guest-mixed/trace.txt")
_TS = re.compile(rb"(\s)(\d+)\.(\d{6}):")


def synthesize(dst: Path, n_lines: int) -> int:
    """Repeat the recording's records, each copy shifted later in time, until ``n_lines``."""
    src = SHARED if SHARED.exists() else SRC
    body = [ln for ln in src.read_bytes().splitlines(keepends=True) if not ln.startswith(b"#")]
    first = int(_TS.search(body[0]).group(2))
    span = int(_TS.search(body[-1]).group(2)) - first + 1
    written = 0
    with open(dst, "wb") as out:
        copy = 0
        while written < n_lines:
            shift = copy * span

            def sub(m, shift=shift):
                return m.group(1) + str(int(m.group(2)) + shift).encode() + b"." + m.group(3) + b":"

            block = b"".join(_TS.sub(sub, ln, count=1) for ln in body[: n_lines - written])
            out.write(block)
            written += min(len(body), n_lines - written)
            copy += 1
        # on disk before timing: writeback of the fresh file slowed the first measurement
        out.flush()
        os.fsync(out.fileno())
    return written


def measure(path: str, out: str) -> None:
    from tracebench.ingest import ingest

    t, cpu = time.perf_counter(), time.process_time()
    ingest([path], out, force=True)
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": dt, "cpu_s": round(cpu, 3), "peak_rss_mb": round(rss, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=4_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure:
        measure(*a.measure)
        return
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "big.txt"
        n = synthesize(text, a.lines)
        # warm the numba cache once so compile time is not measured
        subprocess.run(
            [sys.executable, __file__, "--measure", str(SRC), str(Path(tmp) / "w.parquet")],
            check=True,
            capture_output=True,
        )
        for _ in range(a.repeat):
            r = subprocess.run(
                [sys.executable, __file__, "--measure", str(text), str(Path(tmp) / "o.parquet")],
                check=True,
                capture_output=True,
            )
            m = json.loads(r.stdout.decode().strip().splitlines()[-1])
            print(
                json.dumps(
                    {
                        "stage": "ingest",
                        "format": "ftrace",
                        "lines": n,
                        "bytes": text.stat().st_size,
                        "seconds": round(m["seconds"], 3),
                        "lines_per_s": round(n / m["seconds"]),
                        "cpu_s": m["cpu_s"],
                        "peak_rss_mb": m["peak_rss_mb"],
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
