"""Inter-processor interrupts between busy vCPUs (``ipi-storm``)."""

from __future__ import annotations

import numpy as np

from tracebench.errors import ParamError, TracebenchError
from tracebench.scenarios import draws
from tracebench.scenarios.events import (
    APIC_ICR,
    CALL_FUNCTION_SINGLE_VECTOR,
    CALL_FUNCTION_VECTOR,
    RESCHEDULE_VECTOR,
    STEP_NS,
    Episodes,
    Out,
    Poisson,
    serve_per_cpu,
)
from tracebench.scenarios.spec import Param, Scenario
from tracebench.schema import TARGET_ALL_BUT_SELF, TARGET_MASK, EventKind

HANDLER_SPREAD = 0.25
#: a vCPU's interrupt path must stay below this busy fraction, or the queue of
#: pending IPIs grows without bound (and the trace stops looking like a guest)
MAX_LOAD = 0.8
#: bound on the rounds of the send/receive settling loop (a few suffice at sane loads)
MAX_ROUNDS = 200
#: highest vCPU number an int64 destination mask can name (bit 63 is the sign)
MAX_MASK_CPU = 62

IPI_PARAMS = (
    Param(
        "resched_per_s",
        10_000,
        "1/s",
        "reschedule IPIs sent per vCPU per second: a "
        "scheduler-heavy load (hackbench, thread pools) waking tasks on other vCPUs",
        low=0,
        high=10_000_000,
    ),
    Param(
        "shootdown_per_s",
        1_000,
        "1/s",
        "TLB shootdowns started per vCPU per second (munmap/mprotect in a multi-threaded process)",
        low=0,
        high=10_000_000,
    ),
    Param(
        "shootdown_targets",
        3,
        "count",
        "vCPUs a multicast shootdown reaches (the other "
        "vCPUs the mm ran on); 1 is a call-function-single IPI",
        low=1,
        high=65535,
    ),
    Param(
        "broadcast_fraction",
        0.2,
        "fraction",
        "shootdowns sent to all-but-self (flush_tlb_all, kernel mapping changes)",
        low=0.0,
        high=1.0,
    ),
    Param(
        "delivery_ns", 1000, "ns", "send to handler start on the target (bare metal ~1 us)", low=0
    ),
    Param("resched_handler_ns", 500, "ns", "reschedule IPI handler time", low=2 * STEP_NS),
    Param("shootdown_handler_ns", 1500, "ns", "TLB flush handler time", low=2 * STEP_NS),
    Param(
        "apic_mode",
        "xapic",
        "choice",
        "xapic: each IPI polls ICR (apic_read, wait idle) "
        "before its ICR2 + ICR writes, as an MMIO LAPIC guest does (ICR2 is part of "
        "ipi_send, as ingest records it); x2apic: a single ICR MSR write, no poll",
        choices=("xapic", "x2apic"),
    ),
)


def _send_window(p: dict) -> int:
    """Time one send holds its vCPU (interrupts off), first event to ``ipi_send`` + a step."""
    return 3 * STEP_NS if p["apic_mode"] == "xapic" else STEP_NS


def check_ipi(p: dict, n_cpus: int, where: str) -> None:
    k = min(p["shootdown_targets"], n_cpus - 1)
    fanout = p["broadcast_fraction"] * (n_cpus - 1) + (1 - p["broadcast_fraction"]) * k
    send = (p["resched_per_s"] + p["shootdown_per_s"] * (1 if k > 1 else k)) * _send_window(p)
    recv = p["resched_per_s"] * (p["resched_handler_ns"] + STEP_NS) + p[
        "shootdown_per_s"
    ] * fanout * (p["shootdown_handler_ns"] + STEP_NS)
    load = (send + recv) * (1 + HANDLER_SPREAD) / 1e9
    if load > MAX_LOAD:
        raise ParamError(
            f"{where}: IPI sending and handling would keep each vCPU "
            f"{load:.0%} busy with interrupts off (limit {MAX_LOAD:.0%}); "
            "lower the rates or handler times"
        )


# random streams (draws.stream_key(part key, sender position, stream))
_RESCHED, _SHOOTDOWN, _R_DST, _S_BCAST, _S_FIRST, _SPREAD = 1, 2, 3, 4, 5, 6
#: draw index of recipient ``rank`` of op ``j``: ``j << RANK_BITS | rank``
RANK_BITS = 16


def _cat(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(d: dict, sel) -> dict:
    return {k: v[sel] for k, v in d.items()}


class IpiStorm:
    """Reschedule and TLB-shootdown IPIs among busy vCPUs.

    Every vCPU sends reschedule IPIs (vector 0xfd) to a random other vCPU and
    starts TLB shootdowns (vector 0xfc): to ``shootdown_targets`` vCPUs as one
    ``ipi_send`` with ``target=-2`` and the destination bit mask in ``arg``, or,
    for ``broadcast_fraction`` of them, to all-but-self (``target=-1``; only when
    this scenario owns every vCPU of the trace). A single-target shootdown is a
    call-function-single IPI (vector 0xfb) to that vCPU. In ``apic_mode=xapic``
    each send is preceded by ``apic_read`` of ICR (wait for idle); its ICR2 write
    (the destination) is part of the ``ipi_send``, as ingest folds it, so that each
    backend charges the writes of its own APIC mode.

    Each target runs ``ipi_irq`` (same vector) ``delivery_ns`` after the send (a
    step later per extra target of a multicast) and ``eoi`` at the end of its
    handler. Handlers do not nest: an IPI that arrives during another handler or
    during a send (interrupts off) waits, and a send that falls inside a handler
    waits for its ``eoi``, so the sends and arrivals are settled together. Each vCPU
    serves its jobs (sends, handlers) in order of arrival; ties: sends first, then by
    sender, kind (reschedule, shootdown), op number and recipient rank.

    Expected per vCPU and second: ``resched_per_s`` + ``shootdown_per_s`` sends
    (more when masks cannot name vCPUs >= 63 and a multicast becomes one send per
    target), and as many ``ipi_irq`` + ``eoi`` pairs as there are targets.

    Random streams, per sender position ``i``: reschedule and shootdown times are
    Poisson processes (gap ``j`` = draw ``j`` of streams ``(i, 1)``, ``(i, 2)``); op
    ``j``'s recipient of a reschedule ``(i, 3)``, broadcast choice ``(i, 4)``, first
    target of a multicast ``(i, 5)``; the handler time of its recipient ``r`` is draw
    ``j << 16 | r`` of ``(i, 6 + kind)``.
    """

    def __init__(self, key: int, cpus: np.ndarray, p: dict, shape):
        m = len(cpus)
        if m < 2:
            raise ParamError(f"scenario ipi-storm needs at least 2 vCPUs, got {m}")
        self.cpus, self.p, self.m = cpus, p, m
        self.whole_vm = m == shape.n_cpus
        self.k = min(p["shootdown_targets"], m - 1)
        self.mask_ok = int(cpus.max()) <= MAX_MASK_CPU
        self.window = _send_window(p)
        key_of = [[draws.stream_key(key, i, q) for q in range(8)] for i in range(m)]
        self.keys = np.array(key_of, dtype=np.uint64)  # [sender, stream]
        self.streams = [(Poisson(key_of[i][_RESCHED], p["resched_per_s"]),
                         Poisson(key_of[i][_SHOOTDOWN], p["shootdown_per_s"]))
                        for i in range(m)]
        self.free_ns = np.zeros(m, dtype=np.int64)  # when each vCPU is done with its jobs
        self.ops: dict | None = None  # ops drawn whose send arrives in a later window
        self.recs: dict | None = None  # their recipients, and handlers arriving later

    def _draw_ops(self, until_ns: int) -> tuple[dict, dict]:
        """Send operations (one ICR write each) nominally before ``until_ns``, and their
        recipients (group positions), at nominal times."""
        p, m, k = self.p, self.m, self.k
        ops, recs = [], []

        def add(src, t, j, kind, vector, target, arg, h, dst_rows, rank0=0):
            n, r = dst_rows.shape
            if n == 0:
                return
            base = sum(len(o["t"]) for o in ops)
            ops.append({"src": np.full(n, src), "t": t, "j": j, "kind": np.full(n, kind),
                        "vector": np.broadcast_to(vector, (n,)).astype(np.int64),
                        "target": np.broadcast_to(target, (n,)).astype(np.int64),
                        "arg": np.broadcast_to(arg, (n,)).astype(np.int64),
                        "h": np.full(n, h), "done": np.zeros(n, bool)})
            recs.append({"op": np.repeat(np.arange(base, base + n), r), "dst": dst_rows.ravel(),
                         "rank": np.tile(np.arange(r) + rank0, n)})

        for i in range(m):
            keys = self.keys[i]
            t, j = self.streams[i][0].until(until_ns)
            dst = (i + draws.integers(keys[_R_DST], j, 1, m)) % m
            add(i, t, j, 0, RESCHEDULE_VECTOR, self.cpus[dst], 0, p["resched_handler_ns"],
                dst[:, None])

            t, j = self.streams[i][1].until(until_ns)
            bcast = (draws.u01(keys[_S_BCAST], j) < p["broadcast_fraction"]) & self.whole_vm
            # k consecutive other vCPUs from a random offset: distinct, never the sender.
            first = i + draws.integers(keys[_S_FIRST], j, 1, m - k + 1)
            dst = (first[:, None] + np.arange(k)[None, :]) % m
            h = p["shootdown_handler_ns"]
            others = (i + 1 + np.arange(m - 1)) % m
            add(i, t[bcast], j[bcast], 1, CALL_FUNCTION_VECTOR, TARGET_ALL_BUT_SELF, 0, h,
                np.broadcast_to(others, (int(bcast.sum()), m - 1)))
            t, j, dst = t[~bcast], j[~bcast], dst[~bcast]
            if k == 1:
                add(i, t, j, 1, CALL_FUNCTION_SINGLE_VECTOR, self.cpus[dst[:, 0]], 0, h, dst)
            elif self.mask_ok:
                mask = np.bitwise_or.reduce(np.left_shift(1, self.cpus[dst].astype(np.int64)),
                                            axis=1)
                add(i, t, j, 1, CALL_FUNCTION_VECTOR, TARGET_MASK, mask, h, dst)
            else:
                # No int64 mask can name these vCPUs: one ICR write per target, as
                # xAPIC physical destination mode does.
                for r in range(k):
                    add(i, t + r * self.window, j, 1, CALL_FUNCTION_VECTOR,
                        self.cpus[dst[:, r]], 0, h, dst[:, r:r + 1], rank0=r)
        if not ops:
            return None, None
        return _cat(ops), _cat(recs)

    def advance(self, out: Out, until_ns: int) -> None:
        new_ops, new_recs = self._draw_ops(until_ns)
        ops, recs = self.ops, self.recs
        if new_ops is not None:
            # handler times: fixed by the op's identity, whenever it is drawn
            kind, j = new_ops["kind"][new_recs["op"]], new_ops["j"][new_recs["op"]]
            src = new_ops["src"][new_recs["op"]]
            u = draws.u01(self.keys[src, _SPREAD + kind], j << RANK_BITS | new_recs["rank"])
            spread = 1 - HANDLER_SPREAD + 2 * HANDLER_SPREAD * u
            new_recs["h"] = np.rint(new_ops["h"][new_recs["op"]] * spread).astype(np.int64)
            new_recs["arrive"] = np.full(len(u), -1, np.int64)  # not sent yet
            new_recs["kept"] = np.zeros(len(u), bool)
            if ops is None:
                ops, recs = new_ops, new_recs
            else:
                new_recs["op"] += len(ops["t"])
                ops, recs = _cat([ops, new_ops]), _cat([recs, new_recs])
        if ops is None:
            return
        self._settle(out, ops, recs, until_ns)

    def _settle(self, out: Out, ops: dict, recs: dict, until_ns: int) -> None:
        """Serve every job arriving before ``until_ns``; keep the later ones for next time."""
        p, cpus, window = self.p, self.cpus, self.window
        send_offset = window - STEP_NS  # the ICR write is the last event of a send
        active = ~ops["done"] & (ops["t"] < until_ns)  # sends served now; others arrive later
        n_ops = len(ops["t"])
        waiting = recs["arrive"] >= 0  # handlers whose send was served in an earlier window
        sent = ops["t"].copy()
        job_cpu = np.concatenate([ops["src"], recs["dst"]])
        service = np.concatenate([np.full(n_ops, window, np.int64), recs["h"] + STEP_NS])
        tie = np.concatenate([ops["src"] << 40 | ops["kind"] << 38 | ops["j"],
                              1 << 62 | ops["src"][recs["op"]] << 40
                              | ops["kind"][recs["op"]] << 38 | ops["j"][recs["op"]]])
        rank = np.concatenate([np.zeros(n_ops, np.int64), recs["rank"]])
        for _ in range(MAX_ROUNDS):
            arrive = np.where(waiting, recs["arrive"], sent[recs["op"]] + send_offset
                              + p["delivery_ns"] + recs["rank"] * STEP_NS)
            arrival = np.concatenate([ops["t"], arrive])
            now = np.concatenate([active, waiting | (active[recs["op"]] & (arrive < until_ns))])
            idx = np.flatnonzero(now)
            free = self.free_ns.copy()
            order = np.lexsort((rank[idx], tie[idx], arrival[idx], job_cpu[idx]))
            start = np.empty_like(arrival)
            start[idx] = serve_per_cpu(job_cpu[idx], arrival[idx], service[idx], free, order)
            new_sent = np.where(active, start[:n_ops], ops["t"])
            if np.array_equal(new_sent, sent):
                break
            sent = new_sent
        else:
            raise TracebenchError("ipi-storm: sends and handlers did not settle; the IPI "
                                  "load is too high for the vCPUs")
        self.free_ns = free
        served = now[n_ops:]
        xapic = p["apic_mode"] == "xapic"
        tx = Episodes(cpus[ops["src"][active]], int(active.sum()))
        t = sent[active]
        tx.step(t, EventKind.APIC_READ, arg=APIC_ICR, present=xapic)
        tx.step(t + send_offset, EventKind.IPI_SEND, vector=ops["vector"][active],
                target=ops["target"][active], arg=ops["arg"][active])
        kept = np.zeros(n_ops, bool)
        kept[active] = tx.emit(out, 0)
        # handlers of sends served now keep their send's fate, also when they arrive later
        fresh = active[recs["op"]] & ~waiting
        recs["kept"] = np.where(fresh, kept[recs["op"]], recs["kept"])
        recs["arrive"] = np.where(fresh, arrive, recs["arrive"])
        begin = start[n_ops:][served]
        h = recs["h"][served]
        vector = ops["vector"][recs["op"][served]]
        rx = Episodes(cpus[recs["dst"][served]], len(begin))
        rx.step(begin, EventKind.IPI_IRQ, vector=vector, dur_ns=h)
        rx.step(begin + h, EventKind.EOI, vector=vector)
        rx.emit(out, 1, keep=recs["kept"][served])
        # what is left: sends arriving later, and handlers not served yet
        left_recs = _take(recs, ~served)
        ops["done"] |= active
        referenced = np.zeros(n_ops, bool)
        referenced[left_recs["op"]] = True
        left_ops = np.flatnonzero(~ops["done"] | referenced)
        if len(left_ops) == 0:
            self.ops = self.recs = None
            return
        renumber = np.full(n_ops, -1, np.int64)
        renumber[left_ops] = np.arange(len(left_ops))
        left_recs["op"] = renumber[left_recs["op"]]
        self.ops, self.recs = _take(ops, left_ops), left_recs


IPI_STORM = Scenario(
    name="ipi-storm",
    summary="reschedule and TLB-shootdown IPIs (unicast, mask, all-but-self) across vCPUs",
    params=IPI_PARAMS,
    part=IpiStorm,
    min_cpus=2,
    check=check_ipi,
)
