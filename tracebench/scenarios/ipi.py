"""Inter-processor interrupts between busy vCPUs (``ipi-storm``)."""

from __future__ import annotations

import numpy as np

from tracebench.errors import ParamError, TracebenchError
from tracebench.scenarios.events import (
    APIC_ICR,
    CALL_FUNCTION_SINGLE_VECTOR,
    CALL_FUNCTION_VECTOR,
    RESCHEDULE_VECTOR,
    STEP_NS,
    Episodes,
    Events,
    poisson_times,
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


def _draw_sends(
    rng: np.random.Generator, cpus: np.ndarray, p: dict, duration_ns: int, whole_vm: bool
) -> tuple[dict, dict]:
    """Send operations (one ICR write each) and their recipients, at nominal times."""
    m = len(cpus)
    k = min(p["shootdown_targets"], m - 1)
    mask_ok = int(cpus.max()) <= MAX_MASK_CPU
    ops = {"src": [], "t": [], "vector": [], "target": [], "arg": [], "h": []}
    rec = {"op": [], "dst": [], "rank": []}
    n_ops = 0

    def add_ops(src, t, vector, target, arg, h, dst_rows):
        # dst_rows: (n, r) group indices of each op's recipients
        nonlocal n_ops
        n, r = dst_rows.shape
        for key, val in zip(ops, (src, t, vector, target, arg, h), strict=True):
            ops[key].append(np.broadcast_to(val, (n,)).astype(np.int64))
        rec["op"].append(np.repeat(np.arange(n_ops, n_ops + n), r))
        rec["dst"].append(dst_rows.ravel())
        rec["rank"].append(np.tile(np.arange(r), n))
        n_ops += n

    for i in range(m):
        t = poisson_times(rng, p["resched_per_s"], duration_ns)
        dst = (i + rng.integers(1, m, len(t))) % m
        add_ops(i, t, RESCHEDULE_VECTOR, cpus[dst], 0, p["resched_handler_ns"], dst[:, None])

        t = poisson_times(rng, p["shootdown_per_s"], duration_ns)
        bcast = (rng.random(len(t)) < p["broadcast_fraction"]) & whole_vm
        # k consecutive other vCPUs from a random offset: distinct, never the sender.
        first = i + rng.integers(1, m - k + 1, len(t))
        dst = (first[:, None] + np.arange(k)[None, :]) % m
        h = p["shootdown_handler_ns"]
        others = (i + 1 + np.arange(m - 1)) % m
        tb = t[bcast]
        add_ops(
            i,
            tb,
            CALL_FUNCTION_VECTOR,
            TARGET_ALL_BUT_SELF,
            0,
            h,
            np.broadcast_to(others, (len(tb), m - 1)),
        )
        t, dst = t[~bcast], dst[~bcast]
        if k == 1:
            add_ops(i, t, CALL_FUNCTION_SINGLE_VECTOR, cpus[dst[:, 0]], 0, h, dst)
        elif mask_ok:
            mask = np.bitwise_or.reduce(np.left_shift(1, cpus[dst].astype(np.int64)), axis=1)
            add_ops(i, t, CALL_FUNCTION_VECTOR, TARGET_MASK, mask, h, dst)
        else:
            # No int64 mask can name these vCPUs: one ICR write per target, as
            # xAPIC physical destination mode does.
            for j in range(k):
                add_ops(
                    i,
                    t + j * _send_window(p),
                    CALL_FUNCTION_VECTOR,
                    cpus[dst[:, j]],
                    0,
                    h,
                    dst[:, j : j + 1],
                )
    ops = {key: np.concatenate(v) if v else np.zeros(0, np.int64) for key, v in ops.items()}
    rec = {key: np.concatenate(v) if v else np.zeros(0, np.int64) for key, v in rec.items()}
    return ops, rec


def build_ipi_storm(events: Events, rng: np.random.Generator, cpus: np.ndarray, p: dict) -> None:
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
    waits for its ``eoi``, so the sends and arrivals are settled together.

    Expected per vCPU and second: ``resched_per_s`` + ``shootdown_per_s`` sends
    (more when masks cannot name vCPUs >= 63 and a multicast becomes one send per
    target), and as many ``ipi_irq`` + ``eoi`` pairs as there are targets.
    """
    m = len(cpus)
    if m < 2:
        raise ParamError(f"scenario ipi-storm needs at least 2 vCPUs, got {m}")
    ops, rec = _draw_sends(rng, cpus, p, events.duration_ns, m == events.n_cpus)
    n_ops = len(ops["t"])
    window = _send_window(p)
    send_offset = window - STEP_NS  # the ICR write is the last event of a send
    spread = rng.uniform(1 - HANDLER_SPREAD, 1 + HANDLER_SPREAD, len(rec["op"]))
    h = np.rint(ops["h"][rec["op"]] * spread).astype(np.int64)
    job_cpu = np.concatenate([ops["src"], rec["dst"]])
    service = np.concatenate([np.full(n_ops, window, np.int64), h + STEP_NS])
    sent = ops["t"]
    for _ in range(MAX_ROUNDS):
        arrive = sent[rec["op"]] + send_offset + p["delivery_ns"] + rec["rank"] * STEP_NS
        start = serve_per_cpu(job_cpu, np.concatenate([ops["t"], arrive]), service)
        if np.array_equal(start[:n_ops], sent):
            break
        sent = start[:n_ops]
    else:
        raise TracebenchError(
            "ipi-storm: sends and handlers did not settle; the IPI load is too high for the vCPUs"
        )
    begin = start[n_ops:]

    xapic = p["apic_mode"] == "xapic"
    tx = Episodes(cpus[ops["src"]], n_ops)
    tx.step(sent, EventKind.APIC_READ, arg=APIC_ICR, present=xapic)
    tx.step(
        sent + send_offset,
        EventKind.IPI_SEND,
        vector=ops["vector"],
        target=ops["target"],
        arg=ops["arg"],
    )
    kept = tx.emit(events)
    rx = Episodes(cpus[rec["dst"]], len(begin))
    vector = ops["vector"][rec["op"]]
    rx.step(begin, EventKind.IPI_IRQ, vector=vector, dur_ns=h)
    rx.step(begin + h, EventKind.EOI, vector=vector)
    rx.emit(events, keep=kept[rec["op"]])


IPI_STORM = Scenario(
    name="ipi-storm",
    summary="reschedule and TLB-shootdown IPIs (unicast, mask, all-but-self) across vCPUs",
    params=IPI_PARAMS,
    build=build_ipi_storm,
    min_cpus=2,
    check=check_ipi,
)
