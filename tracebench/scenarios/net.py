"""A request/response network server (``net-rr``): NIC interrupts, wakeup IPIs, idling."""

from __future__ import annotations

import numpy as np

from tracebench.errors import ParamError
from tracebench.scenarios.events import (
    RESCHEDULE_VECTOR,
    STEP_NS,
    Episodes,
    Events,
    poisson_times,
    serve_per_cpu,
    uniform_around,
)
from tracebench.scenarios.spec import Param, Scenario
from tracebench.schema import ClockSource, EventKind

#: IRQ number of NIC queue 0 (virtio-net MSI-X queue IRQs follow the config IRQ 24)
NET_IRQ_BASE = 25
#: a gap shorter than this keeps the vCPU running (the idle loop's own overhead); longer: HLT
IDLE_MIN_NS = 1000
#: TPR value of IRQL DISPATCH_LEVEL (2) as Windows writes it (priority class in bits 7:4)
TPR_DISPATCH = 0x20
HANDLER_SPREAD = 0.25
WORK_SPREAD = 0.5
MAX_LOAD = 0.8
TSC = int(ClockSource.TSC)

NET_PARAMS = (
    Param(
        "requests_per_s",
        50_000,
        "1/s",
        "requests per second over all NIC queues, one "
        "interrupt each (a busy memcached NIC takes ~100k irq/s)",
        low=0,
        high=10_000_000,
    ),
    Param(
        "irq_cpus",
        1,
        "count",
        "vCPUs taking NIC queue interrupts (one queue each); the "
        "rest run the application (with one vCPU it does both)",
        low=1,
        high=65535,
    ),
    Param(
        "burst_mean",
        4,
        "count",
        "mean requests per burst (geometric): clients' requests arrive in clumps",
        low=1,
        high=10_000,
    ),
    Param("burst_gap_ns", 2000, "ns", "gap between requests of one burst", low=0),
    Param("irq_handler_ns", 2000, "ns", "NIC hard-IRQ handler time", low=4 * STEP_NS),
    Param("softirq_ns", 1500, "ns", "receive processing (NAPI poll, TCP) before the wakeup", low=0),
    Param(
        "wake_delivery_ns",
        1000,
        "ns",
        "wakeup IPI send to handler start (bare metal ~1 us)",
        low=4 * STEP_NS,
    ),
    Param("wake_handler_ns", 500, "ns", "reschedule IPI handler time", low=2 * STEP_NS),
    Param("app_ns", 5000, "ns", "application time per request (a memcached get ~ a few us)", low=1),
    Param(
        "clock_reads_per_request",
        3,
        "count",
        "clock reads per request (receive and reply timestamps, latency accounting)",
        low=0,
        high=64,
    ),
    Param(
        "mask_irq",
        False,
        "bool",
        "true: the IO-APIC level-triggered path (a legacy INTx NIC: the line is masked from "
        "the handler until the poll completes, irq_mask ... irq_unmask); default false: "
        "MSI-X (virtio-net), which NAPI quiesces in the device, never at the IO-APIC",
    ),
    Param(
        "tpr_raise",
        True,
        "bool",
        "raise TPR to DISPATCH around the receive processing "
        "and lower it after, as a Windows guest's IRQL does; false for Linux guests",
    ),
)


def _roles(p: dict, m: int) -> tuple[int, bool]:
    """(number of IRQ vCPUs, shared): one vCPU does both jobs when it is alone."""
    return (1, True) if m == 1 else (min(p["irq_cpus"], m - 1), False)


def check_net(p: dict, n_cpus: int, where: str) -> None:
    q, shared = _roles(p, n_cpus)
    irq = p["irq_handler_ns"] * (1 + HANDLER_SPREAD) + p["softirq_ns"] + 6 * STEP_NS
    app = p["wake_handler_ns"] * (1 + HANDLER_SPREAD) + p["app_ns"] + 3 * STEP_NS
    loads = (
        [p["requests_per_s"] * (irq + p["app_ns"]) / 1e9]
        if shared
        else [p["requests_per_s"] / q * irq / 1e9, p["requests_per_s"] / (n_cpus - q) * app / 1e9]
    )
    if max(loads) > MAX_LOAD:
        raise ParamError(
            f"{where}: {p['requests_per_s']} requests/s would keep a vCPU "
            f"{max(loads):.0%} busy (limit {MAX_LOAD:.0%}); lower requests_per_s, "
            "the handler/app times, or give it more vCPUs"
        )


def _idle_before(
    cpu: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per job: did its vCPU idle before it, and since when (end of the previous job)."""
    order = np.lexsort((start, cpu))
    prev_end = np.empty_like(end)
    prev_end[order[1:]] = end[order[:-1]]
    first = np.ones(len(order), dtype=bool)
    first[1:] = cpu[order[1:]] != cpu[order[:-1]]
    prev_end[order[first]] = 0
    return start - prev_end >= IDLE_MIN_NS, prev_end


def _app_steps(ep: Episodes, base, work, p: dict, present=True) -> None:
    """Clock reads spread over the application's work starting at ``base``."""
    c = p["clock_reads_per_request"]
    for j in range(c):
        ep.step(base + (j * work) // max(c - 1, 1), EventKind.CLOCK_READ, arg=TSC, present=present)


def build_net_rr(events: Events, rng: np.random.Generator, cpus: np.ndarray, p: dict) -> None:
    """Request/response serving: NIC interrupt bursts on IRQ vCPUs wake the application.

    Requests arrive in bursts (Poisson bursts of geometric size, ``burst_gap_ns``
    apart) on a NIC queue, one per IRQ vCPU. On the IRQ vCPU each request is
    ``device_irq`` (IRQ 25 + queue, ``dur_ns`` = handler time), ``irq_mask`` of the
    line (``mask_irq``: the IO-APIC level-triggered path; MSI-X by default), ``eoi``,
    ``idle_exit`` if it was idle, ``tpr_write`` to DISPATCH (``tpr_raise``), receive
    processing (``softirq_ns``), a wakeup ``ipi_send`` (reschedule vector, unicast)
    to the application's vCPU, the TPR lowered again and ``irq_unmask``. On the
    application vCPU: ``ipi_irq``, ``eoi``, ``idle_exit`` if idle, then ``app_ns`` of work with
    ``clock_reads_per_request`` clock reads. A vCPU with nothing to do for at
    least 1 us is idle (``idle_enter`` when its previous job ends). Interrupts on a
    vCPU are handled one at a time, in arrival order. With a single vCPU there is
    no IPI: the application runs right after the receive processing.

    Expected: about ``requests_per_s * duration`` ``device_irq`` (and as many
    ``ipi_send``/``ipi_irq`` with two or more vCPUs), ``clock_reads_per_request``
    clock reads, 2 TPR writes and, with ``mask_irq``, one mask/unmask pair per request.
    """
    m = len(cpus)
    q, shared = _roles(p, m)
    app_cpus = cpus if shared else cpus[q:]
    bursts = poisson_times(rng, p["requests_per_s"] / p["burst_mean"], events.duration_ns)
    size = rng.geometric(1 / p["burst_mean"], len(bursts))
    n = int(size.sum())
    index_in_burst = np.arange(n) - np.repeat(np.cumsum(size) - size, size)
    arrive = np.repeat(bursts, size) + index_in_burst * p["burst_gap_ns"]
    queue = np.repeat(rng.integers(0, q, len(bursts)), size)
    app = rng.integers(0, len(app_cpus), n)
    h = uniform_around(rng, p["irq_handler_ns"], n, HANDLER_SPREAD)
    soft = uniform_around(rng, p["softirq_ns"], n, HANDLER_SPREAD) if p["softirq_ns"] else 0
    hw = uniform_around(rng, p["wake_handler_ns"], n, HANDLER_SPREAD)
    work = uniform_around(rng, p["app_ns"], n, WORK_SPREAD)

    irq_len = h + soft + 6 * STEP_NS
    irq_cpu = cpus[queue]
    irq_service = irq_len + (work + STEP_NS if shared else 0)
    s = serve_per_cpu(irq_cpu, arrive, irq_service)
    idle, idle_since = _idle_before(irq_cpu, s, s + irq_service)
    irq = NET_IRQ_BASE + queue
    send = s + h + soft + 3 * STEP_NS
    ep = Episodes(irq_cpu, n)
    ep.step(idle_since, EventKind.IDLE_ENTER, present=idle)
    ep.step(s, EventKind.DEVICE_IRQ, vector=irq, dur_ns=h)
    ep.step(s + STEP_NS, EventKind.IRQ_MASK, vector=irq, present=p["mask_irq"])
    ep.step(s + h, EventKind.EOI, vector=irq)
    ep.step(s + h + STEP_NS, EventKind.IDLE_EXIT, present=idle)
    ep.step(s + h + 2 * STEP_NS, EventKind.TPR_WRITE, arg=TPR_DISPATCH, present=p["tpr_raise"])
    ep.step(
        send, EventKind.IPI_SEND, vector=RESCHEDULE_VECTOR, target=app_cpus[app], present=not shared
    )
    ep.step(send + STEP_NS, EventKind.TPR_WRITE, arg=0, present=p["tpr_raise"])
    ep.step(send + 2 * STEP_NS, EventKind.IRQ_UNMASK, vector=irq, present=p["mask_irq"])
    if shared:
        # Local wakeup: the application thread runs once the receive path is done.
        _app_steps(ep, s + irq_len, work, p)
    kept = ep.emit(events)
    if shared:
        return

    app_cpu = app_cpus[app]
    app_service = hw + work + 3 * STEP_NS
    b = serve_per_cpu(app_cpu, send + p["wake_delivery_ns"], app_service)
    idle, idle_since = _idle_before(app_cpu, b, b + app_service)
    ep = Episodes(app_cpu, n)
    ep.step(idle_since, EventKind.IDLE_ENTER, present=idle)
    ep.step(b, EventKind.IPI_IRQ, vector=RESCHEDULE_VECTOR, dur_ns=hw)
    ep.step(b + hw, EventKind.EOI, vector=RESCHEDULE_VECTOR)
    ep.step(b + hw + STEP_NS, EventKind.IDLE_EXIT, present=idle)
    _app_steps(ep, b + hw + 2 * STEP_NS, work, p)
    ep.emit(events, keep=kept)


NET_RR = Scenario(
    name="net-rr",
    summary="NIC interrupt bursts, request/response: device IRQ, mask/EOI, wakeup IPI, clock reads",
    params=NET_PARAMS,
    build=build_net_rr,
    check=check_net,
)
