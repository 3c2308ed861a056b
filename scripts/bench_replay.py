"""Replay benchmark (issue 5): synthesizes its own traces, prints one JSON line per measurement.

Every measurement runs in its own subprocess, so its peak RSS (``resource.getrusage``)
is its own and start-up effects do not leak between stages. Lines look like::

    {"stage": "kernel", "backend": "apicv", "events": 10000000, "seconds": 0.16,
     "events_per_s": 6.1e7, "peak_rss_mb": 612.3, ...}

Stages (``--stages``, comma-separated):

kernel    steady state of each backend's compiled kernel on in-memory columns, in
          replay-sized chunks, with histogram counting and every per-event output
          written: to its typed column (``kernel``, per-event rows kept) and to a reused
          L2-sized block (``kernel_discard``, rows not kept); the same for the built-in
          backends four to a pass (``kernel_lanes``, ``kernel_lanes_discard``: events/s
          per backend); plus ``jit_compile`` (first call with an empty numba cache) and
          ``jit_cached`` (first call of a fresh process with that cache on disk).
e2e       ``tracebench.replay`` of a synthesized Parquet trace through all backends to a
          Parquet results folder, with and without per-event rows; ``e2e_backend`` the
          same, one backend at a time (per-event rows on), at the smallest size.
memory    ``--memory-events`` (default 1 B) without per-event rows: wall time and peak
          RSS, which must not grow with the trace.
startup   ``tracebench --help`` and a second ``tracebench replay`` of a small trace
          (numba cache warm), each as a subprocess.

The synthesized traces mix what a guest does (timer_arm / timer_irq / eoi / ipi_send /
ipi_irq / idle_enter / idle_exit / clock_read / device_irq) in episodes interleaved over
8 vCPUs; they are written in 1 Mi-row chunks with :class:`tracebench.trace.TraceWriter`,
so a billion events are written with flat memory. Files are cached in ``--workdir``
(keyed by size and seed) and large ones deleted at the end unless ``--keep``.

Examples::

    python scripts/bench_replay.py                       # everything (~30 min, ~6 GB disk)
    python scripts/bench_replay.py --stages kernel --sizes 10M
    python scripts/bench_replay.py --quick               # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
N_CPUS = 8
CHUNK_ROWS = 1 << 20

# ----------------------------------------------------------------------------- synthesis

# Episode templates: rows of (kind label, vCPU role, time offset). Roles: 0 the episode's
# vCPU, 1 and 2 the IPI targets. Offsets are ns after the episode start; "D", "D+400",
# "D+1500" are the timer deadline and just after it.
TEMPLATES = (
    # (weight, rows)
    (
        0.30,
        (
            ("timer_arm", 0, 0),
            ("idle_enter", 0, 900),
            ("timer_irq", 0, "D"),
            ("idle_exit", 0, "D+400"),
            ("eoi", 0, "D+1500"),
        ),
    ),
    (
        0.20,
        (("timer_arm", 0, 0), ("clock_read", 0, 1500), ("timer_irq", 0, "D"), ("eoi", 0, "D+1500")),
    ),
    (0.13, (("ipi_send", 0, 0), ("ipi_irq", 1, 2500), ("eoi", 1, 3900))),
    (
        0.02,
        (
            ("ipi_send", 0, 0),
            ("ipi_irq", 1, 2600),
            ("ipi_irq", 2, 2700),
            ("eoi", 1, 4000),
            ("eoi", 2, 4100),
        ),
    ),
    (0.10, (("device_irq", 0, 0), ("eoi", 0, 1800))),
    (0.25, (("clock_read", 0, 0), ("clock_read", 0, 700))),
)
MAX_DEADLINE_NS = 2_000_000
EPISODE_GAP_NS = 6_000  # mean gap between episode starts (all vCPUs): ~400 k events/s
IRQ_VECTOR = {"timer_irq": 236, "device_irq": 35, "ipi_irq": 251}


def synth_chunk(rng: np.random.Generator, n_episodes: int, t0: int):
    """``n_episodes`` episodes starting after ``t0``: sorted columns and the next ``t0``."""
    from tracebench.schema import EventKind
    from tracebench.trace import empty_columns

    weights = np.array([w for w, _ in TEMPLATES])
    which = rng.choice(len(TEMPLATES), size=n_episodes, p=weights / weights.sum())
    start = t0 + np.cumsum(rng.exponential(EPISODE_GAP_NS, n_episodes).astype(np.int64) + 1)
    cpu = rng.integers(0, N_CPUS, n_episodes)
    # two distinct targets, both different from the sender
    t1 = (cpu + rng.integers(1, N_CPUS, n_episodes)) % N_CPUS
    t2 = (t1 + rng.integers(1, N_CPUS - 1, n_episodes)) % N_CPUS
    t2 = np.where(t2 == cpu, (t2 + 1) % N_CPUS, t2)
    t2 = np.where(t2 == t1, (t2 + 1) % N_CPUS, t2)
    deadline = rng.integers(20_000, MAX_DEADLINE_NS, n_episodes)
    parts = []
    for ti, (_, rows) in enumerate(TEMPLATES):
        sel = np.flatnonzero(which == ti)
        m = len(sel)
        if m == 0:
            continue
        s, d = start[sel], deadline[sel]
        role_cpu = (cpu[sel], t1[sel], t2[sel])
        two_targets = sum(1 for r in rows if r[0] == "ipi_irq") == 2
        for label, role, off in rows:
            cols = empty_columns(m)
            at = {"D": d, "D+400": d + 400, "D+1500": d + 1500}.get(off, off)
            cols["ts_ns"] = s + at
            cols["cpu"] = role_cpu[role].astype(np.uint16)
            cols["kind"][:] = int(EventKind.from_label(label))
            if label == "timer_arm":
                cols["arg"] = s + d
            elif label == "ipi_send" and two_targets:
                cols["target"][:] = -2  # destination mask
                cols["arg"] = (np.int64(1) << role_cpu[1]) | (np.int64(1) << role_cpu[2])
            elif label == "ipi_send":
                cols["target"] = role_cpu[1].astype(np.int32)
            if label in IRQ_VECTOR:
                cols["vector"][:] = IRQ_VECTOR[label]
            if label == "device_irq":
                cols["dur_ns"] = rng.integers(2_000, 10_000, m)
            parts.append(cols)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(out["ts_ns"], kind="stable")
    out = {k: np.ascontiguousarray(v[order]) for k, v in out.items()}
    # The next chunk starts after every event of this one: a gap longer than any episode.
    return out, int(start[-1]) + MAX_DEADLINE_NS + 10_000


def synth_iter(n_events: int, seed: int, chunk_rows: int = CHUNK_ROWS):
    """Yield sorted column chunks of ``chunk_rows`` rows totalling exactly ``n_events``."""
    rng = np.random.default_rng(seed)
    per_episode = sum(w * len(r) for w, r in TEMPLATES) / sum(w for w, _ in TEMPLATES)
    t0, done = 0, 0
    while done < n_events:
        want = min(chunk_rows, n_events - done)
        cols, t0 = synth_chunk(rng, int(want / per_episode * 1.05) + 64, t0)
        while len(cols["ts_ns"]) < want:  # rare: too few rows drawn, top up
            more, t0 = synth_chunk(rng, 1024, t0)
            cols = {k: np.concatenate([cols[k], more[k]]) for k in cols}
        done += want
        yield {k: v[:want] for k, v in cols.items()}


def synth_columns(n_events: int, seed: int) -> dict[str, np.ndarray]:
    parts = list(synth_iter(n_events, seed))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def synth_file(path: Path, n_events: int, seed: int) -> Path:
    """Write (or reuse) a synthesized trace of ``n_events`` rows."""
    from tracebench.trace import TraceFile, TraceMeta, TraceWriter

    if path.exists():
        try:
            tf = TraceFile(path)
            if tf.num_rows == n_events and tf.meta.source.get("seed") == seed:
                return path
        except Exception:  # unreadable leftovers are rewritten
            pass
    meta = TraceMeta(
        n_cpus=N_CPUS,
        duration_ns=0,
        method="synth",
        source={"generator": "scripts/bench_replay.py", "seed": seed, "events": n_events},
        clock="synthetic",
        environment={"platform": "synthetic"},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with TraceWriter(path, meta, force=True) as w:
        last = 0
        for cols in synth_iter(n_events, seed):
            w.write(cols)
            last = int(cols["ts_ns"][-1])
        w.meta.duration_ns = last + 1
    return path


# ----------------------------------------------------------------------------- children


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def record(stage: str, backend: str, events: int, seconds: float, rss: float, **extra) -> dict:
    return {
        "stage": stage,
        "backend": backend,
        "events": events,
        "seconds": round(seconds, 4),
        "events_per_s": round(events / seconds, 1) if seconds > 0 else None,
        "peak_rss_mb": round(rss, 1),
        **extra,
    }


def best_of_modes(fresh, chunks, hdr, repeat: int) -> dict[str, float]:
    """Best seconds over the chunks of a unit (``BackendRun`` or ``LaneGroup``) made by
    ``fresh()``, per mode: ``rows``, every per-event output written to its typed column
    (what Parquet gets), and ``discard``, the same outputs written to one L2-sized block.
    Modes are interleaved in each repeat, so a slow spell of the VM hits both."""
    best = {"rows": float("inf"), "discard": float("inf")}
    for _ in range(repeat):
        for mode in best:
            unit = fresh()
            t0 = time.perf_counter()
            for c in chunks:
                if mode == "rows":
                    unit.run_chunk(c, hdr, reuse=True)
                else:
                    unit.run_aggregates(c, hdr)
            best[mode] = min(best[mode], time.perf_counter() - t0)
    return best


def child_kernel(
    n_events: int, seed: int, backends: list[str], repeat: int, tiled: str = ""
) -> list[dict]:
    """Steady-state kernel throughput per backend, in replay-sized chunks."""
    from tracebench import hist
    from tracebench.backends import resolve_backends
    from tracebench.backends.configure import configure
    from tracebench.replayer.driver import BackendRun

    n_cpus, stage, extra = N_CPUS, "kernel", {}
    if tiled:
        cols, n_cpus = tile_trace(tiled, n_events)
        stage, extra = "kernel_tiled", {"tiled_from": tiled}
    else:
        cols = synth_columns(n_events, seed)
    keep = ("ts_ns", "cpu", "kind", "target", "arg", "dur_ns")
    chunks = [
        {k: cols[k][lo : lo + CHUNK_ROWS] for k in keep} for lo in range(0, n_events, CHUNK_ROWS)
    ]
    hdr = hist.geometry()
    out = []
    configured = configure(resolve_backends(backends or None))
    for b, ps, m in configured:
        warm = BackendRun(b, ps, m, n_cpus)
        warm.run_chunk(chunks[0], hdr, reuse=True)  # JIT loaded, output arrays faulted in
        warm.run_aggregates(chunks[0], hdr)

        def fresh(b=b, ps=ps, m=m, warm=warm):
            run = BackendRun(b, ps, m, n_cpus)
            run._columns, run._block = warm._columns, warm._block  # steady state
            return run

        best = best_of_modes(fresh, chunks, hdr, repeat)
        for mode, seconds in best.items():
            out.append(
                record(
                    stage if mode == "rows" else stage + "_discard",
                    b.name,
                    n_events,
                    seconds,
                    peak_rss_mb(),
                    repeats=repeat,
                    chunk_rows=CHUNK_ROWS,
                    **extra,
                )
            )
    out += lanes_kernel(chunks, configured, n_cpus, hdr, repeat, stage, extra)
    return out


def lanes_kernel(chunks, configured, n_cpus, hdr, repeat, stage, extra) -> list[dict]:
    """Four backends per pass (``backends/kernel.py`` at lane width 4), rows kept
    (``<stage>_lanes``: each member's typed columns) and discarded
    (``<stage>_lanes_discard``); ``events_per_s`` is per backend (events x lanes /
    seconds), comparable with ``kernel``/``kernel_discard``."""
    from tracebench.backends.layout import LANES
    from tracebench.replayer.driver import BackendRun, LaneGroup, lane_capable

    runs = [BackendRun(b, ps, m, n_cpus) for b, ps, m in configured]
    runs = [r for r in runs if lane_capable(r)]
    n_events = sum(len(c["ts_ns"]) for c in chunks)
    out = []
    for lo in range(0, len(runs), LANES):
        members = runs[lo : lo + LANES]
        if len(members) < LANES:
            break
        warm = LaneGroup(members)
        warm.run_chunk(chunks[0], hdr, reuse=True)  # JIT loaded, columns faulted in
        warm.run_aggregates(chunks[0], hdr)  # and the block

        def fresh(members=members, warm=warm):
            group = LaneGroup([BackendRun(r.backend, r.params, r.model, n_cpus)
                               for r in members])
            group._columns = warm._columns  # steady state
            return group

        best = best_of_modes(fresh, chunks, hdr, repeat)
        names = "+".join(r.backend.name for r in members)
        for mode, seconds in best.items():
            name = stage + "_lanes" + ("" if mode == "rows" else "_discard")
            out.append(record(name, names, n_events, seconds / len(members), peak_rss_mb(),
                              repeats=repeat, chunk_rows=CHUNK_ROWS, lanes=len(members),
                              pass_seconds=round(seconds, 4), **extra))
    return out


def tile_trace(path: str, n_events: int) -> tuple[dict[str, np.ndarray], int]:
    """A recorded trace repeated end to end (timestamps and armed deadlines shifted)."""
    from tracebench.schema import EventKind
    from tracebench.trace import read_trace

    cols, meta = read_trace(path)
    span = int(cols["ts_ns"][-1] - cols["ts_ns"][0]) + 1_000_000
    reps = -(-n_events // len(cols["ts_ns"]))
    shift = np.repeat(np.arange(reps, dtype=np.int64) * span, len(cols["ts_ns"]))[:n_events]
    out = {k: np.resize(v, n_events) for k, v in cols.items()}
    out["ts_ns"] = out["ts_ns"] + shift
    arm = out["kind"] == EventKind.TIMER_ARM
    out["arg"] = np.where(arm & (out["arg"] >= 0), out["arg"] + shift, out["arg"])
    return out, meta.n_cpus


def child_jit(stage: str) -> list[dict]:
    """Time from a fresh interpreter to the end of the first kernel call."""
    t0 = time.perf_counter()
    from tracebench import hist
    from tracebench.backends import get_backend
    from tracebench.backends.configure import configure
    from tracebench.replayer.driver import BackendRun

    cols = synth_columns(1000, 1)
    t1 = time.perf_counter()
    b, ps, m = configure([get_backend("apicv")])[0]
    BackendRun(b, ps, m, N_CPUS).run_chunk(cols, hist.geometry())
    t2 = time.perf_counter()
    return [
        record(
            stage,
            "apicv",
            1000,
            t2 - t1,
            peak_rss_mb(),
            import_s=round(t1 - t0, 3),
            numba_cache_dir=os.environ.get("NUMBA_CACHE_DIR"),
        )
    ]


def child_e2e(stage: str, path: str, out: str, backends: list[str], events: bool) -> list[dict]:
    import tracebench
    from tracebench.trace import TraceFile

    n = TraceFile(path).num_rows
    t0 = time.perf_counter()
    tracebench.replay([path], backends or None, out=out, force=True, events=events)
    dt = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    shutil.rmtree(out, ignore_errors=True)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return [
        record(
            stage,
            ",".join(backends) if backends else "all",
            n,
            dt,
            peak_rss_mb(),
            per_event_rows=events,
            out_mb=round(size / 2**20, 1),
            threads=os.cpu_count(),
            cpu_s=round(ru.ru_utime + ru.ru_stime, 1),
        )
    ]


def child_command(stage: str, argv: list[str], runs: int, events: int) -> list[dict]:
    """Wall time of a command (best and median of ``runs``), peak RSS of its processes."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr[-2000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return [
        record(
            stage,
            "all" if "replay" in argv else "-",
            events,
            min(times),
            rss,
            median_s=round(statistics.median(times), 4),
            runs=runs,
            command=" ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv)),
        )
    ]


# ----------------------------------------------------------------------------- driver


def run_child(args: list[str], env: dict | None = None) -> list[dict]:
    """Run this script as a child for one measurement; relay and return its JSON lines."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child {args} failed with exit code {proc.returncode}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def parse_count(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def tracebench_cli() -> list[str]:
    exe = Path(sys.executable).parent / "tracebench"
    probe = subprocess.run([str(exe), "--help"], capture_output=True) if exe.exists() else None
    if probe is not None and probe.returncode == 0:
        return [str(exe)]
    return [sys.executable, "-m", "tracebench.cli"]  # noted in the output's "command"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", default="kernel,e2e,memory,startup")
    ap.add_argument("--sizes", default="10M,100M", help="event counts for kernel and e2e")
    ap.add_argument("--memory-events", default="1B")
    ap.add_argument("--backends", default="", help="comma-separated; default: all built-in")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "tracebench-bench"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep synthesized traces")
    ap.add_argument(
        "--tile",
        default="",
        help="canonical trace (e.g. an ingested recording) "
        "to repeat for a kernel_tiled measurement",
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        rows = CHILDREN[a.child[0]](*a.child[1:])
        for row in rows:
            print(json.dumps(row), flush=True)
        return

    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    sizes = [parse_count(s) for s in a.sizes.split(",")]
    mem_events = parse_count(a.memory_events)
    if a.quick:
        sizes, mem_events = [200_000, 1_000_000], 3_000_000
    backends = a.backends
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []

    def trace(n: int) -> Path:
        p = work / f"synth-{n}-s{a.seed}.parquet"
        fresh = not p.exists()
        t0 = time.perf_counter()
        synth_file(p, n, a.seed)
        if fresh:
            made.append(p)
            sys.stderr.write(
                f"synthesized {p} ({n:,} events, "
                f"{p.stat().st_size / 2**20:.0f} MiB) in "
                f"{time.perf_counter() - t0:.0f} s\n"
            )
        return p

    try:
        if "kernel" in stages:
            cache = tempfile.mkdtemp(prefix="numba-cache-")
            run_child(["jit", "jit_compile"], env={"NUMBA_CACHE_DIR": cache})
            run_child(["jit", "jit_cached"], env={"NUMBA_CACHE_DIR": cache})
            shutil.rmtree(cache, ignore_errors=True)
            for n in sizes:
                run_child(["kernel", str(n), str(a.seed), backends, "5" if n <= 10**7 else "2"])
            if a.tile:  # the same, on a recorded trace repeated to the smallest size
                run_child(["kernel", str(min(sizes)), str(a.seed), backends, "5", a.tile])
        if "e2e" in stages:
            for n in sizes:
                p = trace(n)
                for ev in ("1", "0"):
                    run_child(["e2e", "e2e", str(p), str(work / "out"), backends, ev])
            p = trace(min(sizes))
            names = backends.split(",") if backends else _builtin_names()
            for name in names:
                run_child(["e2e", "e2e_backend", str(p), str(work / "out"), name, "1"])
        if "memory" in stages:
            p = trace(mem_events)
            run_child(["e2e", "memory", str(p), str(work / "out"), backends, "0"])
        if "startup" in stages:
            cli = tracebench_cli()
            run_child(["command", "help", json.dumps(cli + ["--help"]), "7", "0"])
            small = trace(100_000)
            cmd = cli + ["replay", str(small), "-q", "--format", "json"]
            subprocess.run(cmd, capture_output=True)  # first run: fills the numba cache
            run_child(["command", "replay_second", json.dumps(cmd), "3", "100000"])
    finally:
        if not a.keep:
            for p in made:
                if p.stat().st_size > 50 * 2**20 or a.quick:
                    p.unlink(missing_ok=True)


def _builtin_names() -> list[str]:
    from tracebench.backends import builtin_backends

    return list(builtin_backends())


CHILDREN = {
    "kernel": lambda n, seed, backends, repeat, tiled="": child_kernel(
        int(n), int(seed), [b for b in backends.split(",") if b], int(repeat), tiled
    ),
    "jit": child_jit,
    "e2e": lambda stage, path, out, backends, ev: child_e2e(
        stage, path, out, [b for b in backends.split(",") if b], ev == "1"
    ),
    "command": lambda stage, argv, runs, events: child_command(
        stage, json.loads(argv), int(runs), int(events)
    ),
}

if __name__ == "__main__":
    main()
