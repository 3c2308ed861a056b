"""Sweep benchmark (issue 17): a 1,000-task sweep on small traces, kernels already compiled.

Prints one JSON line per measurement. The machine may be shared: local_1, local_2 and
threads_2 run ``--repeat`` times, interleaved, and the best run of each is compared (the
summary lines carry the median too). Measurements:

replay_only   the same 1,000 (trace, backend, parameter set) replays in this process, no
              executor, no files: ``replay_file`` aggregates only, one configuration at a
              time (what the tasks must cost at least); wall and CPU time.
local_1       ``tracebench.sweep`` on the local process pool, 1 worker, into a new folder;
              ``per_task_ms`` is wall time / tasks, ``overhead_ms`` the worker-seconds per
              task beyond replay_only's (executor, batching, trace reads and hashing,
              writing and renaming the results), the pool's start-up (spawn + import +
              kernel load, ``pool_start_s``, measured alone) excluded.
              ``worker_cpu_ms_per_task``: CPU time the workers spent per task, and
              ``cpu_overhead_ms`` the same beyond replay_only's CPU time: on a shared
              machine CPU time is what stays put when other jobs take the cores.
local_2       the same with 2 workers; ``speedup`` = local_1 wall / local_2 wall.
threads_2     one process, ``run_batch`` on 2 threads (the kernels release the GIL): the
              alternative to processes.
resume        the local sweep again when every task is done: verifying 1,000 footers.
dask_2        ``--executor dask`` on a LocalCluster of 2 processes (start-up included).

Examples::

    python scripts/bench_sweep.py                 # 10 traces x 4 backends x 25 points
    python scripts/bench_sweep.py --duration 10ms --points 5      # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BACKENDS = ["full-virt", "apicv", "kvm-pv", "xen-evtchn"]


def make_traces(work: Path, n: int, duration: str) -> list[Path]:
    import tracebench

    scen = ["mixed-server", "timer-heavy", "ipi-storm", "net-rr", "hz-tick"]
    return [tracebench.synth(scen[i % len(scen)], work / f"t{i:02d}.parquet", n_cpus=2,
                             duration=duration, seed=i, force=True) for i in range(n)]


def emit(rows: list[dict], **row) -> None:
    row["loadavg_1m"] = round(os.getloadavg()[0], 2)  # other jobs on the machine
    rows.append(row)
    print(json.dumps(row), flush=True)


def replay_only(plan) -> float:
    from tracebench.backends.configure import Configured
    from tracebench.replayer.driver import replay_file
    from tracebench.trace import TraceFile

    files = {t.path: TraceFile(t.path) for t in plan.traces}
    configured = []
    for task in plan.tasks:
        b = plan.backends[task.backend]
        ps = b.params(overrides=dict(task.overrides))
        configured.append((task.trace.path, Configured(b, ps, b.compile(ps))))
    t0 = time.perf_counter()
    for path, cfg in configured:
        replay_file(files[path], [cfg], None, threads=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=10)
    ap.add_argument("--points", type=int, default=25, help="grid points per backend")
    ap.add_argument("--duration", default="20ms", help="length of each synthetic trace")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each configuration")
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()

    from tracebench.backends import resolve_backends
    from tracebench.sweep import sweep
    from tracebench.sweep.grid import grid_from_mapping
    from tracebench.sweep.local import local_executor
    from tracebench.sweep.tasks import batches, plan_sweep, read_traces
    from tracebench.sweep.worker import BatchJob, run_batch, warm_up

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    traces = make_traces(work, args.traces, args.duration)
    grid = grid_from_mapping({"params": {"exit_roundtrip_cyc": {
        "from": 800, "to": 4000, "num": args.points}}})
    plan = plan_sweep(read_traces(traces), resolve_backends(BACKENDS), grid, None)
    n = len(plan.tasks)
    rows_per_trace = sum(t.rows for t in plan.traces) / len(plan.traces)
    warm_up()  # compiled kernels on disk before anything is timed
    rows: list[dict] = []
    emit(rows, stage="setup", tasks=n, traces=len(traces), rows_per_trace=rows_per_trace,
         backends=BACKENDS, points=args.points)

    c0 = time.process_time()
    base = replay_only(plan)
    base_cpu = time.process_time() - c0
    emit(rows, stage="replay_only", tasks=n, seconds=base, per_task_ms=1e3 * base / n,
         cpu_ms_per_task=1e3 * base_cpu / n)

    # The machine is shared: each configuration runs --repeat times, interleaved, and the
    # fastest run of each is compared (the least disturbed one).
    walls: dict[str, list[float]] = {"local_1": [], "local_2": [], "threads_2": []}
    starts: dict[int, list[float]] = {1: [], 2: []}
    cpus: dict[int, list[float]] = {1: [], 2: []}
    for rep in range(args.repeat):
        for w in (1, 2):
            t0 = time.perf_counter()
            pool, _ = local_executor(w)
            list(pool.map(abs, range(w)))  # every worker up and warm
            pool.shutdown()
            starts[w].append(time.perf_counter() - t0)
            out = work / f"local{w}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            res = sweep(traces, BACKENDS, grid, out, workers=w)
            walls[f"local_{w}"].append(time.perf_counter() - t0)
            assert res.ok and res.ran == n, res.summary_row()
            cpus[w].append(res.cpu_seconds)
            emit(rows, stage=f"local_{w}", repeat=rep, seconds=walls[f"local_{w}"][-1],
                 worker_cpu_ms_per_task=1e3 * res.cpu_seconds / n)
        out = work / "threads2"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        jobs = [BatchJob(b, plan.backends, None, False, str(out))
                for b in batches(plan.tasks, 2)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as tp:
            results = list(tp.map(run_batch, jobs))
        walls["threads_2"].append(time.perf_counter() - t0)
        assert sum(len(r.done) for r in results) == n
        emit(rows, stage="threads_2", repeat=rep, seconds=walls["threads_2"][-1])
    best = {k: min(v) for k, v in walls.items()}
    for w in (1, 2):
        wall, start = best[f"local_{w}"], min(starts[w])
        # overhead: worker-seconds per task beyond the bare replay, pool start-up excluded
        emit(rows, stage=f"local_{w}", tasks=n, workers=w, best_s=wall,
             median_s=statistics.median(walls[f"local_{w}"]), pool_start_s=start,
             per_task_ms=1e3 * wall / n, overhead_ms=1e3 * ((wall - start) * w - base) / n,
             worker_cpu_ms_per_task=1e3 * min(cpus[w]) / n,
             cpu_overhead_ms=1e3 * (min(cpus[w]) - base_cpu) / n,
             speedup=best["local_1"] / wall)
    emit(rows, stage="threads_2", tasks=n, best_s=best["threads_2"],
         median_s=statistics.median(walls["threads_2"]),
         per_task_ms=1e3 * best["threads_2"] / n,
         versus_local_2=best["threads_2"] / best["local_2"])

    t0 = time.perf_counter()
    res = sweep(traces, BACKENDS, grid, work / "local2", workers=2)
    wall = time.perf_counter() - t0
    assert res.skipped == n
    emit(rows, stage="resume", tasks=n, seconds=wall, per_task_ms=1e3 * wall / n)

    if not args.no_dask:
        out = work / "dask2"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        res = sweep(traces, BACKENDS, grid, out, executor="dask", workers=2)
        wall = time.perf_counter() - t0
        emit(rows, stage="dask_2", tasks=n, ran=res.ran, failed=len(res.failed),
             first_failure=res.failed[0][1] if res.failed else None, seconds=wall,
             per_task_ms=1e3 * wall / n, worker_cpu_ms_per_task=1e3 * res.cpu_seconds / n,
             versus_local_2=wall / best["local_2"])
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
