"""Drive backend kernels over a trace, chunk by chunk, with per-vCPU state carried across.

Built-in backends run four to a pass (``LaneGroup``: ``backends/kernel.py`` at lane width
4), plug-in kernels alone; each such unit takes the chunks in order on a pool of threads
(the kernels release the GIL) and hands its backends' per-event rows to the sink;
aggregates (per kind, per exit reason and vCPU, HdrHistogram counts) accumulate in arrays,
so memory is flat whatever the trace length. ``results.py`` turns the aggregates into the
results dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tracebench import hist
from tracebench.backends import layout
from tracebench.backends.base import Backend
from tracebench.backends.configure import Configured
from tracebench.backends.kernel import replay_chunk_nb, replay_lanes_nb
from tracebench.backends.layout import COLUMN_DTYPES, LANES, N_OUT
from tracebench.backends.model import CompiledModel, kernel_tables
from tracebench.backends.params import ParamSet
from tracebench.schema import N_KINDS
from tracebench.signals import quiet_thread
from tracebench.trace import TraceFile

#: rows per block when per-event rows are discarded: 64 B/row of kernel outputs stay in L2
BLOCK_ROWS = 1 << 13


#: bytes between the page offsets of consecutive output columns (a multiple of the 64-byte
#: line, coprime with the 64 lines of a 4 KiB page). Columns allocated alone all start at
#: the same offset in a page; a row's 28 stores in a lane group then fall in one set of the
#: 8-way L1 and L2, and ran at a quarter of the speed (BENCHMARKS.md).
COLUMN_STAGGER = 5 * 64
PAGE = 4096


def output_columns(n: int, sets: int = 1) -> list[dict[str, np.ndarray]]:
    """``sets`` sets of per-event output columns for ``n`` rows (``COLUMN_DTYPES``, from
    ``layout.Out``), carved from one buffer so that no two of the columns start at the
    same offset within a page."""
    widths = [np.dtype(dt).itemsize for dt in COLUMN_DTYPES.values()] * sets
    starts, end = [], 0
    for j, width in enumerate(widths):
        end += (j * COLUMN_STAGGER - end) % PAGE
        starts.append(end)
        end += n * width
    buf = np.empty(end + PAGE, dtype=np.uint8)
    base = -buf.ctypes.data % PAGE
    columns = [buf[base + lo:base + lo + n * w].view(dt) for lo, w, dt in
               zip(starts, widths, list(COLUMN_DTYPES.values()) * sets, strict=True)]
    return [dict(zip(COLUMN_DTYPES, columns[s * len(COLUMN_DTYPES):(s + 1) * len(COLUMN_DTYPES)],
                     strict=True)) for s in range(sets)]


def flat(a: np.ndarray) -> np.ndarray:
    """The 1-D view kernels take; raises rather than hand them a copy they would write to."""
    return np.reshape(a, -1, copy=False)


@dataclasses.dataclass
class BackendRun:
    """One backend's configuration and running aggregates over one trace."""

    backend: Backend
    params: ParamSet
    model: CompiledModel
    n_cpus: int
    state: np.ndarray = None  # [cpu, layout.State]
    kind_agg: np.ndarray = None  # [kind, layout.KindAgg]
    exit_agg: np.ndarray = None  # [cpu, reason, layout.ExitAgg]
    lat_counts: np.ndarray = None  # [kind, hdr counts]
    terr_counts: np.ndarray = None  # [hdr counts] timer error of matched timer interrupts
    _columns: dict[str, np.ndarray] | None = dataclasses.field(default=None, repr=False)
    _block: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _tables: tuple[np.ndarray, np.ndarray] = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        self.state = layout.new_state(self.n_cpus)
        self.kind_agg = layout.new_kind_agg()
        self.exit_agg = layout.new_exit_agg(self.n_cpus)
        self.lat_counts = np.zeros((N_KINDS, hist.counts_len()), dtype=np.int64)
        self.terr_counts = np.zeros(hist.counts_len(), dtype=np.int64)
        self._tables = kernel_tables([self.model])

    def run_chunk(self, cols: Mapping[str, np.ndarray], hdr: np.ndarray,
                  reuse: bool = False) -> dict[str, np.ndarray]:
        """Run the kernel over one chunk; per-event outputs as typed columns by name.

        ``reuse``: write into this run's own columns, overwritten by the next call, instead
        of fresh ones (fresh arrays cost a page fault per 4 KiB: ~15 ns per row at 43 B of
        outputs a row, more than the kernel itself).
        """
        n = len(cols["ts_ns"])
        if reuse:
            if self._columns is None or len(self._columns["start_ns"]) < n:
                self._columns = output_columns(n)[0]
            out = {k: v[:n] for k, v in self._columns.items()}
        else:
            out = output_columns(n)[0]
        self.backend.get_kernel()(*self._kernel_args(cols, hdr, tuple(out.values())))
        return out

    def run_aggregates(self, cols: Mapping[str, np.ndarray], hdr: np.ndarray) -> None:
        """Run a chunk for its aggregates only: outputs overwrite one cache-sized block."""
        if lane_capable(self):  # all blocks in one compiled call
            if self._block is None:
                self._block = np.empty(BLOCK_ROWS * N_OUT, dtype=np.int64)
            replay_chunk_nb(*self._kernel_args(cols, hdr, self._block))
            return
        for lo in range(0, len(cols["ts_ns"]), BLOCK_ROWS):  # a plug-in's kernel
            self.run_chunk({k: v[lo:lo + BLOCK_ROWS] for k, v in cols.items()}, hdr, reuse=True)

    def _kernel_args(self, cols: Mapping[str, np.ndarray], hdr: np.ndarray, out) -> tuple:
        return kernel_args(cols, *self._tables, self.n_cpus, hdr, self.state, out,
                           self.kind_agg, self.exit_agg, self.lat_counts, self.terr_counts)


def kernel_args(cols: Mapping[str, np.ndarray], kind_table, ipi_table, n_cpus: int, hdr,
                state, out, kind_agg, exit_agg, lat_counts, terr_counts) -> tuple:
    """A kernel's arguments in the contract's order (``kernel.py``), arrays flattened."""
    return (cols["ts_ns"], cols["cpu"], cols["kind"], cols["target"], cols["arg"],
            cols["dur_ns"], flat(kind_table), flat(ipi_table), n_cpus, hdr, flat(state), out,
            flat(kind_agg), flat(exit_agg), flat(lat_counts), flat(terr_counts))


class LaneGroup:
    """Up to ``LANES`` built-in backends replayed in one pass (``kernel.replay_lanes_nb``).

    The group owns the stacked tables, state and aggregates (the lane axis where
    ``layout.LANE_AXIS`` puts it); each member's state and aggregate arrays become views of
    its lane, so results are read from the members as usual (a member cannot run on its
    own afterwards: its state is a strided view). Lanes past the members repeat the last
    member's tables and state, so they compute its values again: their aggregates are
    ignored and their rows go to its columns.
    """

    #: the members' arrays the group stacks, besides their model tables
    ACCUMULATED = ("state", "kind_agg", "exit_agg", "lat_counts", "terr_counts")

    def __init__(self, runs: list[BackendRun]):
        if not 1 <= len(runs) <= LANES or not all(lane_capable(r) for r in runs):
            raise ValueError("a lane group takes 1 to 4 runs of built-in-kernel backends")
        n_cpus = runs[0].n_cpus
        assert all(r.n_cpus == n_cpus for r in runs)
        lanes = runs + [runs[-1]] * (LANES - len(runs))
        self.runs = runs
        self.n_cpus = n_cpus
        if len({lane_key(r) for r in runs}) != 1:
            raise ValueError("a lane group's backends share the seed of their cost draws")
        # one level drawn per event for every lane: a backend whose costs are all constants
        # has the same costs at every level
        self.kind_tables, self.ipi_tables = kernel_tables([r.model for r in lanes])
        for name in self.ACCUMULATED:
            stacked = layout.stack_lanes(name, [getattr(r, name) for r in lanes])
            setattr(self, name, stacked)
            for lane, run in enumerate(runs):
                setattr(run, name, layout.lane_view(name, stacked, lane))
        # the same 512 KiB as a single backend's block: a quarter of the rows
        self._block = np.empty(max(1, BLOCK_ROWS // LANES) * N_OUT * LANES, dtype=np.int64)
        self._columns: list[dict[str, np.ndarray]] | None = None

    def run_chunk(self, cols: Mapping[str, np.ndarray], hdr: np.ndarray,
                  reuse: bool = False) -> list[dict[str, np.ndarray]]:
        """``BackendRun.run_chunk`` for every member: their outputs, in member order."""
        n = len(cols["ts_ns"])
        if reuse:
            if self._columns is None or len(self._columns[0]["start_ns"]) < n:
                self._columns = output_columns(n, len(self.runs))
            outs = [{k: v[:n] for k, v in c.items()} for c in self._columns]
        else:
            outs = output_columns(n, len(self.runs))
        lanes = outs + [outs[-1]] * (LANES - len(outs))
        replay_lanes_nb(*self._kernel_args(cols, hdr, tuple(tuple(o.values()) for o in lanes)))
        return outs

    def run_aggregates(self, cols: Mapping[str, np.ndarray], hdr: np.ndarray) -> None:
        replay_lanes_nb(*self._kernel_args(cols, hdr, self._block))

    def _kernel_args(self, cols: Mapping[str, np.ndarray], hdr: np.ndarray, out) -> tuple:
        return kernel_args(cols, self.kind_tables, self.ipi_tables, self.n_cpus, hdr,
                           self.state, out, self.kind_agg, self.exit_agg, self.lat_counts,
                           self.terr_counts)


def lane_capable(run: BackendRun) -> bool:
    """Whether ``run``'s backend uses the built-in kernel (its model is tables only)."""
    return run.backend.get_kernel() is replay_chunk_nb


#: the fewest backends worth a lane group: one pass of four lanes costs about three
#: single-backend passes (BENCHMARKS.md), so one or two run alone
MIN_LANES = 3


def lane_key(run: BackendRun) -> int:
    """What the backends of one lane group share: one cost level is drawn per event for
    all lanes, so the seed of their draws."""
    return int(run.model.ipi_table[layout.IPI_COST_SEED])


def replay_units(runs: list[BackendRun]) -> list[BackendRun | LaneGroup]:
    """What replays ``runs``: lane groups of built-in backends with one :func:`lane_key`, the
    rest (plug-in kernels, and remainders too small for a group) one by one."""
    units: list[BackendRun | LaneGroup] = [r for r in runs if not lane_capable(r)]
    alike: dict[int, list[BackendRun]] = {}
    for r in runs:
        if lane_capable(r):
            alike.setdefault(lane_key(r), []).append(r)
    for capable in alike.values():
        for lo in range(0, len(capable), LANES):
            part = capable[lo:lo + LANES]
            if len(part) >= MIN_LANES:
                units.append(LaneGroup(part))
            else:
                units.extend(part)
    return units


ChunkSink = Callable[[BackendRun, Mapping[str, np.ndarray], dict[str, np.ndarray]], None]


def prefetched(chunks: Iterable[dict[str, np.ndarray]], depth: int = 1
               ) -> Iterator[dict[str, np.ndarray]]:
    """Iterate ``chunks`` while a background thread reads ahead (Parquet decoding and
    validation release the GIL, so the next chunk is read while the kernels run)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():  # never block for good: the consumer may have gone
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        quiet_thread()
        try:
            for item in chunks:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # re-raised in the consumer, where it names the file
            put((done, exc))

    reader = threading.Thread(target=produce, name="tracebench-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        reader.join()


def replay_file(trace: TraceFile, configured: list[Configured],
                sink: ChunkSink | None = None, chunk_rows: int | None = None,
                threads: int | None = None,
                progress: Callable[[int], None] | None = None,
                sink_copies: bool = False,
                rows_for: Collection[str] | None = None,
                checkpoint: Callable[[BackendRun, int], None] | None = None
                ) -> list[BackendRun]:
    """Replay one trace through every configured backend; ``sink`` receives each output chunk.

    Parameters
    ----------
    chunk_rows : rows per chunk (default: the reader's row-group size); results do not
        depend on it.
    threads : worker threads (default: CPU count); one unit (lane group or backend)
        per task per chunk.
    progress : called with the number of rows after each chunk.
    sink_copies : the sink is done with the output arrays when it returns (it writes or
        copies them), so each unit reuses one set of arrays for every chunk.
    rows_for : names of the backends whose rows go to the sink (default: all); the
        others keep their aggregates only.
    checkpoint : called with each run and a row number before the run replays the chunk
        that starts at that row (its ``state`` is then the state at that row), so that a
        stretch of the trace can be replayed again exactly from there (``drill.py``).

    Without a sink only the aggregates are kept, and the kernels run in cache-sized
    blocks. The next chunk is read on a background thread while the kernels run.
    """
    runs = [BackendRun(b, ps, m, trace.meta.n_cpus) for b, ps, m in configured]
    hdr = hist.geometry()

    def keeps_rows(run: BackendRun) -> bool:
        return sink is not None and (rows_for is None or run.backend.name in rows_for)

    def rows_kept(unit: BackendRun | LaneGroup) -> Callable[[dict[str, np.ndarray]], None]:
        def run(cols):
            if isinstance(unit, LaneGroup):
                outs = zip(unit.runs, unit.run_chunk(cols, hdr, reuse=sink_copies), strict=True)
            else:
                outs = [(unit, unit.run_chunk(cols, hdr, reuse=sink_copies))]
            for member, out in outs:
                sink(member, cols, out)
        return run

    def checkpointed(unit: BackendRun | LaneGroup, fn):
        if checkpoint is None:
            return fn
        members = unit.runs if isinstance(unit, LaneGroup) else [unit]
        done = [0]  # rows this unit has replayed: it takes the chunks in order

        def run(cols):
            for member in members:
                checkpoint(member, done[0])
            fn(cols)
            done[0] += len(cols["ts_ns"])
        return run

    units: list[Callable[[dict[str, np.ndarray]], None]] = [
        checkpointed(u, rows_kept(u)) for u in replay_units([r for r in runs if keeps_rows(r)])]
    units += [checkpointed(u, lambda cols, u=u: u.run_aggregates(cols, hdr))
              for u in replay_units([r for r in runs if not keeps_rows(r)])]
    workers = max(1, min(len(units), threads or os.cpu_count() or 1))
    with contextlib.closing(prefetched(trace.chunks(chunk_rows))) as chunks:
        if workers == 1:
            for cols in chunks:
                for unit in units:
                    unit(cols)
                if progress is not None:
                    progress(len(cols["ts_ns"]))
        else:
            _pipelined(units, chunks, workers, progress)
    return runs


def _pipelined(units, chunks, workers: int, progress) -> None:
    """Run every unit on every chunk, in order per unit, with two chunks in flight.

    No barrier per chunk: with more units than threads (three lane groups on two cores) a
    barrier would idle a thread at the end of every chunk. A unit's task for chunk N+1
    waits for its task for chunk N, which started earlier (the pool takes tasks in order),
    so waiting cannot deadlock.
    """
    def after(previous, unit, cols):
        if previous is not None:
            previous.result()
        unit(cols)

    in_flight: list[tuple[int, list]] = []
    last = [None] * len(units)
    with ThreadPoolExecutor(max_workers=workers, initializer=quiet_thread) as pool:
        try:
            for cols in chunks:
                last = [pool.submit(after, prev, unit, cols) for prev, unit in
                        zip(last, units, strict=True)]
                in_flight.append((len(cols["ts_ns"]), last))
                while len(in_flight) > 1:
                    _finish(in_flight.pop(0), progress)
            while in_flight:
                _finish(in_flight.pop(0), progress)
        finally:
            for _, futures in in_flight:  # on an error: stop what has not started
                for f in futures:
                    f.cancel()


def _finish(entry: tuple[int, list], progress) -> None:
    rows, futures = entry
    for f in futures:
        f.result()
    if progress is not None:
        progress(rows)
