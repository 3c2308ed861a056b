"""``ingest()``: input files -> reader thread (``records.py``) -> window driver (``window.py``).

Three threads share the work (numba kernels, hashlib and Parquet release the GIL):
the reader frames chunk N+1 and reads its hot fields while the calling thread maps,
relates and writes chunk N, and a scanner hashes the inputs for the metadata and
looks for the events whose presence changes rules. Memory is bounded by the chunk
size: two mapped windows, at most :data:`QUEUE_CHUNKS` framed chunks waiting, and
the window of rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
from pathlib import Path

import numpy as np

from tracebench.atomic import atomic_path
from tracebench.errors import TraceError
from tracebench.ingest.rules.base import MapContext
from tracebench.ingest.stream import exits as exits_mod
from tracebench.ingest.stream.families import PROBED, get_family
from tracebench.ingest.stream.records import Source
from tracebench.ingest.stream.resolve import STEAL_GAP_NS
from tracebench.ingest.stream.routes import Events
from tracebench.ingest.stream.window import CALIB_LINES, MAX_LINE_REPORT, Window
from tracebench.ingest.text import probe
from tracebench.ingest.text.files import CHUNK_BYTES, scan_file
from tracebench.schema import EventKind
from tracebench.trace import TraceMeta, TraceWriter

#: framed chunks the reader thread may hold ahead of the driver (memory bound)
QUEUE_CHUNKS = 2
__all__ = ["IngestResult", "ingest"]


@dataclasses.dataclass
class IngestResult:
    """What :func:`ingest` wrote and what it saw.

    Attributes
    ----------
    path, exits_path : the trace, and its measured-exits table (kvm-host only, else None).
    rows : canonical rows written.
    meta : the trace's metadata (``meta.source`` has the counts below).
    """

    path: Path
    exits_path: Path | None
    rows: int
    meta: TraceMeta

    @property
    def stats(self) -> dict:
        return self.meta.source


class _Stats:
    def __init__(self, strict: bool):
        self.strict = strict
        self.events: dict[str, int] = {}
        self.unmapped: dict[str, int] = {}
        self.kinds = np.zeros(len(EventKind), np.int64)
        self.inferred = 0
        # handler time left out of dur_ns (stream/resolve.py): exits, steal, handlers preempted
        self.handler_host = {"exit_ns": 0, "steal_ns": 0, "preempted": 0}
        self.malformed = 0
        self.bad_lines: list[int] = []
        self.lost = 0
        self.first_ts = None
        self.last_ts = None
        self.max_cpu = -1
        self.no_cpu = 0

    def bad(self, where: str, line: int, why: str, text: str = "") -> None:
        if self.strict:
            raise TraceError(f"{where}:{line}: {why}" + (f": {text!r}" if text else ""))
        self.malformed += 1
        if len(self.bad_lines) < MAX_LINE_REPORT:
            self.bad_lines.append(line)

    def add(self, d: dict, key: str, n: int) -> None:
        d[key] = d.get(key, 0) + int(n)


def ingest(inputs, output, *args, **kwargs) -> IngestResult:
    """Read text traces and write one canonical trace: see :func:`_ingest` for the
    parameters. Pipes and FIFOs among ``inputs`` (``ingest <(cmd)``, ``/dev/stdin``, ``-``)
    are first copied, block by block, beside ``output`` in a hidden temporary folder that
    is removed when the ingest ends (and by the next run, if this one is killed): the
    reader maps and reads its inputs twice, which a pipe cannot give."""
    from tracebench.atomic import scratch_dir
    from tracebench.ingest.text.files import is_stream, spool

    given = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    given = ["/dev/stdin" if str(p) == "-" else p for p in given]
    if not any(is_stream(p) for p in given):
        return _ingest(given, output, *args, **kwargs)
    with scratch_dir(output, "spool") as folder:
        paths = [spool(p, folder) if is_stream(p) else p for p in given]
        return _ingest(paths, output, *args, **kwargs)


def _ingest(
    inputs,
    output,
    fmt: str = "auto",
    strict: bool = False,
    force: bool = False,
    progress=None,
    chunk_bytes: int = CHUNK_BYTES,
    environment: dict | None = None,
    attribution: str = "",
    clock: str = "unknown",
    method: str = "ingest",
    extra_source: dict | None = None,
) -> IngestResult:
    """Read text traces and write one canonical trace (plus exits table for kvm-host input).

    Parameters
    ----------
    inputs : text trace files, consecutive pieces of one recording (same clock).
    output : the ``.parquet`` trace to write (atomically; existing only with ``force``).
    fmt : a registered format name, or ``auto`` to detect each file from its content.
    strict : stop at the first malformed line (``FILE:LINE: what``) instead of counting it.
    progress : ``callback(bytes_done, bytes_total)`` or None.
    chunk_bytes : bytes read per piece (memory bound).
    environment, attribution, clock, method, extra_source : stored in the metadata.
    """
    from tracebench.ingest.formats import detect_format, get_format
    from tracebench.ingest.text.files import check_text_file, head_lines

    paths = [
        check_text_file(p) for p in ([inputs] if isinstance(inputs, str | os.PathLike) else inputs)
    ]
    if not paths:
        raise TraceError("no input files")
    fmts = [detect_format(p) if fmt == "auto" else get_format(fmt) for p in paths]
    if len({f.family for f in fmts}) > 1:
        raise TraceError(
            "inputs mix guest and kvm-host traces: "
            + ", ".join(f"{p.name}={f.name}" for p, f in zip(paths, fmts, strict=True))
        )
    family = get_family(fmts[0].family)
    header: dict = {}
    for p, f in zip(paths, fmts, strict=True):
        header.update(f.header(head_lines(p)))
    stats = _Stats(strict)
    ctx = MapContext(bare_metal=(environment or {}).get("platform") == "bare-metal")
    out_path = Path(output)
    exits_path = family.exits.path_for(out_path) if family.exits is not None else None
    meta = TraceMeta(
        n_cpus=1,
        duration_ns=0,
        method=method,
        clock=clock,
        environment=dict(environment or {}),
        attribution=attribution,
    )
    needles = probe.Needles(PROBED)
    events = Events(family, needles)
    sources = [Source(p, events, chunk_bytes, CALIB_LINES) for p in paths]
    acc = exits_mod.ExitsAccumulator()
    with contextlib.ExitStack() as stack:
        exits_tmp = None
        if exits_path is not None:
            exits_tmp = stack.enter_context(atomic_path(exits_path, force=force))
        writer = stack.enter_context(TraceWriter(out_path, meta, force=force))
        # A thread of its own reads every byte once more: the files' SHA-256 for the
        # metadata, and the probe for events whose presence anywhere changes a rule.
        scanner = _Scanner(paths, needles, events.jit_ready)
        stack.callback(scanner.cancel)

        def settle() -> None:
            """ctx.present before the first rows are mapped: found already, or wait for all."""
            if not family.probed <= needles.found_names():
                scanner.result()
            ctx.present = needles.found_names()

        run = Window(ctx, stats, writer, acc, family, settle)
        with _ReaderThread(sources) as reader:
            run.feed(reader.chunks(progress, sum(p.stat().st_size for p in paths)))
        digests = scanner.result()
        ctx.present = needles.found_names()  # now over every byte of the inputs
        cal = run.calibration
        n_cpus = max(run.max_cpu + 1, int(header.get("n_cpus", 0)) if family.header_cpus else 0, 1)
        meta.n_cpus = n_cpus
        meta.duration_ns = int(stats.last_ts - stats.first_ts) if stats.first_ts is not None else 0
        # rows the rules place after the last record (an injection on the next entry)
        # still lie inside the trace: a duration short of them breaks every rate
        meta.duration_ns = max(meta.duration_ns, writer.last_ts_ns or 0)
        src = {
            "format": ",".join(sorted({f.name for f in fmts})),
            "family": family.name,
            "files": [
                {
                    "name": p.name,
                    "bytes": p.stat().st_size,
                    "sha256": sha,
                    "format": f.name,
                }
                for p, f, sha in zip(paths, fmts, digests, strict=True)
            ],
            "events_seen": dict(sorted(stats.events.items())),
            "unmapped": dict(sorted(stats.unmapped.items(), key=lambda kv: -kv[1])),
            "kinds": {k.label: int(stats.kinds[k]) for k in EventKind if stats.kinds[k]},
            "inferred": {"eoi": stats.inferred} if family.infer_eoi else {},
            "inferred_rule": "eoi rows with arg=1 are implied (one EOI per interrupt that no "
            "traced EOI accounts for)",
            "handler_time": (
                _handler_time(stats.handler_host) if family.infer_eoi and not ctx.bare_metal
                else {}
            ),
            "malformed_lines": stats.malformed,
            "malformed_first": stats.bad_lines,
            "lost_events": stats.lost,
            "events_without_cpu": stats.no_cpu,
            "calibration": cal.to_meta() if cal is not None else None,
            "probed_events": sorted(ctx.present),
        }
        if exits_path is not None:
            src["exits_table"] = exits_path.name
        src.update(extra_source or {})
        meta.source = src
        env = meta.environment
        env.setdefault("platform", family.platform)
        env["detected_features"] = run.features()
        if exits_tmp is not None:
            family.exits.write(exits_tmp, acc, ctx.reasons, meta.to_json())
    return IngestResult(out_path, exits_path, writer.rows, meta)


def _handler_time(host: dict) -> dict:
    return {
        **host,
        "rule": "dur_ns is the guest's own time in a handler: left out are the gaps that end "
        "at one of its WRMSRs (exit_ns: the recording host's exits) and the gaps over "
        f"{STEAL_GAP_NS // 1000} us between traced moments (steal_ns: its host preempted "
        "the vCPU; preempted: handlers with such a gap)",
    }


class _ReaderThread:
    """Runs the sources' chunk generators on a thread; hands chunks over in file order."""

    def __init__(self, sources: list[Source]):
        self.sources = sources
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ingest-reader", daemon=True)

    def __enter__(self) -> _ReaderThread:
        self.thread.start()
        return self

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            with contextlib.suppress(queue.Full):
                self.q.put(item, timeout=0.1)
                return True
        return False

    def _run(self) -> None:
        try:
            for i, src in enumerate(self.sources):
                for ch in src.chunks():
                    if not self._put(("chunk", i, ch)):
                        return
                if not self._put(("file", i, None)):
                    return
            self._put(("end", -1, None))
        except BaseException as exc:  # handed to the driver, raised there
            self._put(("error", -1, exc))

    def chunks(self, progress, total: int):
        """``(chunk, where)`` in order; calls ``progress(bytes done, total)`` after each."""
        done_before = 0
        while True:
            what, i, item = self.q.get()
            if what == "error":
                raise item
            if what == "end":
                return
            src = self.sources[i]
            if what == "file":
                done_before += src.path.stat().st_size
                continue
            yield item, str(src.path)
            if progress is not None:
                progress(done_before + item.done, total)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.q.get(timeout=0.05)
        self.thread.join()


class _Scanner:
    """SHA-256 and probe of the inputs on a thread (numba and hashlib release the GIL):
    one more stage for the scheduler to fit beside the reader and the driver."""

    def __init__(self, paths: list[Path], needles: probe.Needles, ready: threading.Event):
        self._out: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(paths, needles, ready), daemon=True)
        self._thread.start()

    def _run(self, paths: list[Path], needles: probe.Needles, ready: threading.Event) -> None:
        try:
            for p in paths:
                self._out.append(scan_file(p, needles.scan, overlap=needles.OVERLAP,
                                           stop=self._stop.is_set, ready=ready.is_set))  # fmt: skip
        except BaseException as exc:
            self._out[:] = [exc]

    def cancel(self) -> None:
        """Stop early (the ingest failed): no result is wanted any more."""
        self._stop.set()

    def result(self) -> list[str]:
        """The files' digests, once every byte has been scanned."""
        self._thread.join()
        if self._out and isinstance(self._out[0], BaseException):
            raise self._out[0]
        return self._out
