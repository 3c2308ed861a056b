"""A/B of the replay kernel between two source trees, by thread CPU time as well as wall time.

On a shared machine the wall time of one kernel pass drifts by 2x with the other guests'
load; the CPU time of the replaying thread (``time.thread_time``) drifts far less, so a
change of a few percent shows. Each tree runs in its own process (the trees' packages have
the same name), alternately, ``--rounds`` times; every unit (each backend alone, and the
backends as one lane group) and mode (rows kept in typed columns, or discarded into the
block) is timed ``--repeats`` times per process on the same synthesized chunks as
``bench_replay.py --stages kernel``. Prints, per unit and mode, the best M events/s per
backend of each tree (wall, CPU) and the CPU ratio B/A.

    python scripts/kernel_ab.py /tmp/kernel-before . --events 4M --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def child(root: str, n: int, names: list[str], repeats: int) -> dict:
    sys.path.insert(0, root)
    sys.path.insert(0, str(Path(root) / "scripts"))
    import bench_replay as br

    from tracebench import hist
    from tracebench.backends import resolve_backends
    from tracebench.replayer.driver import BackendRun, LaneGroup
    try:  # where the tree keeps it: backends/configure.py since the replayer API split
        from tracebench.backends.configure import configure
    except ImportError:
        from tracebench.replayer.driver import configure

    cols = br.synth_columns(n, 1)
    keep = ("ts_ns", "cpu", "kind", "target", "arg", "dur_ns")
    chunks = [{k: cols[k][lo:lo + br.CHUNK_ROWS] for k in keep}
              for lo in range(0, n, br.CHUNK_ROWS)]
    hdr = hist.geometry()
    conf = configure(resolve_backends(names))
    units = {b.name: (lambda b=b, ps=ps, m=m: BackendRun(b, ps, m, br.N_CPUS), 1)
             for b, ps, m in conf}
    units["lanes"] = (lambda: LaneGroup([BackendRun(b, ps, m, br.N_CPUS)
                                         for b, ps, m in conf]), len(conf))
    warm = {k: make() for k, (make, _) in units.items()}
    for u in warm.values():  # compiled, output columns faulted in
        u.run_chunk(chunks[0], hdr, reuse=True)
        u.run_aggregates(chunks[0], hdr)
    best: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, (make, width) in units.items():
            for mode in ("rows", "discard"):
                u = make()
                u._columns = warm[name]._columns
                t0, c0 = time.perf_counter(), time.thread_time()
                for c in chunks:
                    if mode == "rows":
                        u.run_chunk(c, hdr, reuse=True)
                    else:
                        u.run_aggregates(c, hdr)
                wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
                b = best.setdefault(f"{name}/{mode}", [0.0, 0.0])
                b[0] = max(b[0], n * width / wall / 1e6)
                b[1] = max(b[1], n * width / cpu / 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--events", default="4M")
    ap.add_argument("--backends", default="native,full-virt,apicv,kvm-pv")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        root, n, names, repeats = a.child
        print(json.dumps(child(root, int(n), names.split(","), int(repeats))))
        return
    n = int(float(a.events.rstrip("M")) * 1e6) if a.events.endswith("M") else int(a.events)
    best: dict[str, dict[str, list[float]]] = {"a": {}, "b": {}}
    for _ in range(a.rounds):
        for side in ("a", "b"):
            root = str(Path(getattr(a, side)).resolve())
            out = subprocess.run([sys.executable, __file__, "x", "y", "--child", root, str(n),
                                  a.backends, str(a.repeats)], capture_output=True, text=True,
                                 cwd=root, env={**os.environ, "PYTHONPATH": root}, check=True)
            for k, (wall, cpu) in json.loads(out.stdout.splitlines()[-1]).items():
                w = best[side].setdefault(k, [0.0, 0.0])
                w[0], w[1] = max(w[0], wall), max(w[1], cpu)
    print("| unit/mode | A wall | A CPU | B wall | B CPU | B/A (CPU) |")
    print("|---|---|---|---|---|---|")
    for k, (aw, ac) in best["a"].items():
        bw, bc = best["b"][k]
        print(f"| {k} | {aw:.1f} | {ac:.1f} | {bw:.1f} | {bc:.1f} | {bc / ac:.3f} |")


if __name__ == "__main__":
    main()
