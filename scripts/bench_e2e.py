"""End-to-end benchmark (issue 19): synth -> replay -o -> stat, as a user runs them.

Every step is the real CLI in its own process, timed and measured by ``/usr/bin/time``
(wall, user + system CPU, peak RSS of that process), so each figure includes start-up,
reading, writing and the Parquet encoding a user pays for. Per size (``--sizes``):

synth          ``tracebench synth mixed-server --cpus 8 --duration D --seed 1``
replay_agg     ``tracebench replay T -o OUT --no-events`` (aggregates only: the reference)
replay         ``tracebench replay T -o OUT`` (the default: aggregates + checkpoints)
replay_rows1   ``tracebench replay T -o OUT --events-for apicv`` (one backend's rows stored)
replay_rows    ``tracebench replay T -o OUT --events`` (every backend's rows; ``--all-rows``)
stat           ``tracebench stat OUT``
drill          ``read_events(OUT, backend="apicv", window=1 ms in the middle)`` in a fresh
               process: per-event rows made again from the checkpoints
kernels        the kernels alone: every backend over the trace's chunks already in memory,
               one thread, lane groups as replay forms them (``run_aggregates``)

Each line of output is JSON: ``step``, ``events``, ``wall_s``, ``cpu_s``, ``peak_rss_mb``,
``out_mb`` (bytes the step wrote), ``vs_kernels`` (wall / kernels-only wall) and
``vs_agg`` (wall / ``replay_agg`` wall), and the load average around it (the machine is
shared: ratios within one run are what to compare). Sizes: ``1M`` (0.78 s of trace),
``25M`` (20 s: 25.7 M events, the issue's reference), ``100M`` (78 s), or ``Ns`` seconds.

Examples::

    python scripts/bench_e2e.py                       # 1M only (~1 min)
    python scripts/bench_e2e.py --sizes 1M,25M --workdir /tmp/tb-e2e
    python scripts/bench_e2e.py --sizes 100M --keep
    python scripts/bench_e2e.py --sizes 780s --synth-only   # 1 B events: flat memory?
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: events per second of trace of mixed-server on 8 vCPUs (seed 1: 25.69 M in 20 s)
EVENTS_PER_S = 1.2846e6
SIZES = {"1M": "780ms", "25M": "20s", "100M": "78s"}
CLI = [sys.executable, "-c", "import sys; from tracebench.cli import app; "
       "sys.argv[0] = 'tracebench'; app()"]

KERNELS = """
import json, sys, time
from tracebench import hist
from tracebench.backends import resolve_backends
from tracebench.backends.configure import configure
from tracebench.replayer.driver import BackendRun, replay_units
from tracebench.trace import TraceFile
tf = TraceFile(sys.argv[1])
chunks = list(tf.chunks())
runs = [BackendRun(b, ps, m, tf.meta.n_cpus) for b, ps, m in configure(resolve_backends(None))]
units = replay_units(runs)
hdr = hist.geometry()
for u in units:  # load the compiled kernels from numba's cache before timing
    u.run_aggregates({k: v[:64] for k, v in chunks[0].items()}, hdr)
t = time.perf_counter()
for ch in chunks:
    for u in units:
        u.run_aggregates(ch, hdr)
print(json.dumps({"kernel_wall_s": time.perf_counter() - t}))
"""

DRILL = """
import json, sys, time
from tracebench.replayer.results import read_events
from tracebench.trace import TraceFile
mid = TraceFile(sys.argv[2]).meta.duration_ns // 2
t = time.perf_counter()
ev = read_events(sys.argv[1], backend="apicv", window=(mid, mid + 1_000_000))
print(json.dumps({"drill_s": time.perf_counter() - t, "rows": ev.height}))
"""


def measured(cmd: list[str], workdir: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time; wall, CPU and peak RSS of that process."""
    stats = workdir / "time.txt"
    load = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run(["/usr/bin/time", "-o", str(stats), "-f", "%e %U %S %M", *cmd],
                          capture_output=True, text=True, cwd=workdir, env=env)
    if proc.returncode != 0:
        sys.exit(f"bench_e2e: {' '.join(cmd[3:])} failed:\n{proc.stderr[-2000:]}")
    wall, user, sys_s, rss_kb = stats.read_text().split()[-4:]
    return {"wall_s": float(wall), "cpu_s": round(float(user) + float(sys_s), 2),
            "peak_rss_mb": round(int(rss_kb) / 1024, 1), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2), "stdout": proc.stdout}


def size_of(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def duration_of(size: str) -> str:
    if size in SIZES:
        return SIZES[size]
    if size.endswith("s"):
        return size
    sys.exit(f"bench_e2e: --sizes: unknown size {size!r} (1M, 25M, 100M or e.g. 5s)")


def run_size(size: str, workdir: Path, all_rows: bool, synth_only: bool = False) -> list[dict]:
    trace = workdir / f"mixed-{size}.parquet"
    out = workdir / "out"
    lines = []

    def emit(step: str, m: dict, wrote: Path | None) -> dict:
        line = {"step": step, "size": size, **{k: v for k, v in m.items() if k != "stdout"}}
        if wrote is not None:
            line["out_mb"] = round(size_of(wrote), 2)
        lines.append(line)
        return line

    m = measured([*CLI, "synth", "mixed-server", "-o", str(trace), "--cpus", "8",
                  "--duration", duration_of(size), "--seed", "1", "--force"], workdir)
    events = int(subprocess.run(
        [sys.executable, "-c", "import sys, pyarrow.parquet as pq; "
         "print(pq.ParquetFile(sys.argv[1]).metadata.num_rows)", str(trace)],
        capture_output=True, text=True, check=True).stdout)
    emit("synth", m, trace)["events_per_s"] = round(events / m["wall_s"])
    if synth_only:  # the memory check of long syntheses: nothing else
        lines[0]["events"] = events
        trace.unlink()
        return lines
    kern = measured([sys.executable, "-c", KERNELS, str(trace)], workdir)
    kernel_s = json.loads(kern["stdout"])["kernel_wall_s"]
    emit("kernels", {**kern, "wall_s": round(kernel_s, 3)}, None)
    steps = [("replay_agg", ["--no-events"]), ("replay", []),
             ("replay_rows1", ["--events-for", "apicv"])]
    if all_rows:
        steps.append(("replay_rows", ["--events"]))
    agg_s = None
    for step, flags in steps:
        shutil.rmtree(out, ignore_errors=True)
        m = measured([*CLI, "replay", str(trace), "-o", str(out), "-q", "--format", "json",
                      *flags], workdir)
        line = emit(step, m, out)
        agg_s = agg_s or m["wall_s"]
        line["vs_agg"] = round(m["wall_s"] / agg_s, 2)
        line["out_vs_trace"] = round(line["out_mb"] / size_of(trace), 3)
        if step == "replay":  # keep the default results for stat and drill-down
            shutil.rmtree(workdir / "default", ignore_errors=True)
            out.rename(workdir / "default")
    emit("stat", measured([*CLI, "stat", str(workdir / "default"), "--format", "json"],
                          workdir), None)
    drill = measured([sys.executable, "-c", DRILL, str(workdir / "default"), str(trace)],
                     workdir)
    emit("drill", {**drill, **json.loads(drill["stdout"])}, None)
    for line in lines:
        line["events"] = events
        line["vs_kernels"] = round(line["wall_s"] / kernel_s, 2)
    shutil.rmtree(out, ignore_errors=True)
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M", help="comma-separated: 1M, 25M, 100M, or Ns")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: temp)")
    ap.add_argument("--all-rows", action="store_true",
                    help="also replay with --events (every backend's rows: slow, large)")
    ap.add_argument("--synth-only", action="store_true",
                    help="only synthesize (peak RSS of long syntheses, e.g. --sizes 780s: 1 B)")
    ap.add_argument("--keep", action="store_true", help="keep the traces and results")
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tb-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for size in args.sizes.split(","):
            for line in run_size(size.strip(), workdir, args.all_rows, args.synth_only):
                print(json.dumps(line), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
