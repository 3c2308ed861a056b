"""A request/response network server (``net-rr``): NIC interrupts, wakeup IPIs, idling."""

from __future__ import annotations

import numpy as np

from tracebench.errors import ParamError
from tracebench.scenarios import draws
from tracebench.scenarios.events import (
    RESCHEDULE_VECTOR,
    STEP_NS,
    Episodes,
    Out,
    Poisson,
    serve_per_cpu,
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


# random streams (draws.stream_key(part key, 0, stream)): per burst b, per request n
_BURSTS, _SIZE, _QUEUE, _APP, _H, _SOFT, _HW, _WORK = range(1, 9)


def _app_steps(ep: Episodes, base, work, p: dict, present=True) -> None:
    """Clock reads spread over the application's work starting at ``base``."""
    c = p["clock_reads_per_request"]
    for j in range(c):
        ep.step(base + (j * work) // max(c - 1, 1), EventKind.CLOCK_READ, arg=TSC, present=present)


def _cat(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class Queue:
    """Jobs of a group of vCPUs served in order of arrival (ties: request number), window by
    window; jobs arriving after the window wait for the next one. Tracks, per vCPU, when
    its last job ended and whether the idle period after it has been written yet."""

    def __init__(self, cpus: np.ndarray):
        self.cpus = cpus
        self.free_ns = np.zeros(len(cpus), dtype=np.int64)
        self.prev_end = np.zeros(len(cpus), dtype=np.int64)
        self.idle_written = np.zeros(len(cpus), dtype=bool)
        self.waiting: dict | None = None

    def serve(self, jobs: dict | None, horizon_ns: int) -> dict | None:
        """Serve the waiting jobs and ``jobs`` that arrive before ``horizon_ns``; adds
        ``start``, ``idle`` (the vCPU idled before it) and ``idle_since``."""
        parts = [j for j in (self.waiting, jobs) if j is not None and len(j["arrive"])]
        if not parts:
            return None
        jobs = _cat(parts)
        now = jobs["arrive"] < horizon_ns
        later = {k: v[~now] for k, v in jobs.items()}
        self.waiting = later if len(later["arrive"]) else None
        jobs = {k: v[now] for k, v in jobs.items()}
        if not len(jobs["arrive"]):
            return None
        pos = jobs["pos"]
        order = np.lexsort((jobs["n"], jobs["arrive"], pos))
        jobs["start"] = serve_per_cpu(pos, jobs["arrive"], jobs["service"], self.free_ns, order)
        # the end of the job before each one on its vCPU (or of the last window's last job)
        sp = pos[order]
        first = np.ones(len(order), bool)
        first[1:] = sp[1:] != sp[:-1]
        end = jobs["start"] + jobs["service"]
        prev = np.empty_like(end)
        prev[order[1:]] = end[order[:-1]]
        prev[order[first]] = self.prev_end[sp[first]]
        jobs["idle_since"] = prev
        jobs["idle"] = jobs["start"] - prev >= IDLE_MIN_NS
        # an idle period already written when the last window found the vCPU free
        jobs["idle_new"] = jobs["idle"].copy()
        jobs["idle_new"][order[first]] &= ~self.idle_written[sp[first]]
        last = np.ones(len(order), bool)
        last[:-1] = sp[1:] != sp[:-1]
        self.prev_end[sp[last]] = end[order[last]]
        self.idle_written[sp[last]] = False
        return jobs

    def idle_now(self, out: Out, stream: int, until_ns: int, horizon_ns: int) -> None:
        """Write the ``idle_enter`` of each vCPU free since before ``until_ns``: its next
        job arrives at or after ``horizon_ns`` (>= ``IDLE_MIN_NS`` later), so it idles."""
        due = ~self.idle_written & (self.prev_end < until_ns)
        assert (self.prev_end[due] + IDLE_MIN_NS <= horizon_ns).all()
        out.add(stream, self.prev_end[due], self.cpus[due], EventKind.IDLE_ENTER)
        self.idle_written |= due


class NetRR:
    """Request/response serving: NIC interrupt bursts on IRQ vCPUs wake the application.

    Requests arrive in bursts (Poisson bursts of geometric size, ``burst_gap_ns``
    apart) on a NIC queue, one per IRQ vCPU. On the IRQ vCPU each request is
    ``device_irq`` (IRQ 25 + queue, ``dur_ns`` = handler time), ``irq_mask`` of the
    line (``mask_irq``: the IO-APIC level-triggered path; MSI-X by default), ``eoi``,
    ``idle_exit`` if it was idle, ``tpr_write`` to DISPATCH (``tpr_raise``), receive
    processing (``softirq_ns``), a wakeup ``ipi_send`` (reschedule vector, unicast) to
    the application's vCPU, the TPR lowered again and ``irq_unmask``. On the
    application vCPU: ``ipi_irq``, ``eoi``, ``idle_exit`` if idle, then ``app_ns`` of work
    with ``clock_reads_per_request`` clock reads. A vCPU with nothing to do for at
    least 1 us is idle (``idle_enter`` when its previous job ends). Interrupts on a
    vCPU are handled one at a time, in arrival order. With a single vCPU there is
    no IPI: the application runs right after the receive processing.

    Expected: about ``requests_per_s * duration`` ``device_irq`` (and as many
    ``ipi_send``/``ipi_irq`` with two or more vCPUs), ``clock_reads_per_request``
    clock reads, 2 TPR writes and, with ``mask_irq``, one mask/unmask pair per request.

    Random streams: burst ``b``'s gap, size and queue are draw ``b`` of streams ``(0,
    1..3)``; request ``n``'s application vCPU, handler, softirq, wakeup handler and work
    times draw ``n`` of ``(0, 4..8)``.
    """

    def __init__(self, key: int, cpus: np.ndarray, p: dict, shape):
        self.p, self.cpus = p, cpus
        self.q, self.shared = _roles(p, len(cpus))
        self.app_cpus = cpus if self.shared else cpus[self.q:]
        self.keys = [draws.stream_key(key, 0, s) for s in range(9)]
        self.bursts = Poisson(self.keys[_BURSTS], p["requests_per_s"] / p["burst_mean"])
        self.n_requests = 0
        self.irq = Queue(cpus[:self.q])
        self.app = None if self.shared else Queue(self.app_cpus)

    def _requests(self, horizon_ns: int) -> dict | None:
        p, keys = self.p, self.keys
        bursts, b = self.bursts.until(horizon_ns)
        if not len(b):
            return None
        size = draws.geometric(keys[_SIZE], b, 1 / p["burst_mean"])
        total = int(size.sum())
        n = self.n_requests + np.arange(total, dtype=np.int64)
        self.n_requests += total
        index_in_burst = np.arange(total) - np.repeat(np.cumsum(size) - size, size)
        queue = np.repeat(draws.integers(keys[_QUEUE], b, 0, self.q), size)
        work = draws.uniform_around(keys[_WORK], n, p["app_ns"], WORK_SPREAD)
        h = draws.uniform_around(keys[_H], n, p["irq_handler_ns"], HANDLER_SPREAD)
        soft = (draws.uniform_around(keys[_SOFT], n, p["softirq_ns"], HANDLER_SPREAD)
                if p["softirq_ns"] else np.zeros(total, np.int64))
        irq_len = h + soft + 6 * STEP_NS
        return {"arrive": np.repeat(bursts, size) + index_in_burst * p["burst_gap_ns"],
                "n": n, "pos": queue, "h": h, "soft": soft, "work": work,
                "app": draws.integers(keys[_APP], n, 0, len(self.app_cpus)),
                "hw": draws.uniform_around(keys[_HW], n, p["wake_handler_ns"], HANDLER_SPREAD),
                "service": irq_len + (work + STEP_NS if self.shared else 0)}

    def advance(self, out: Out, until_ns: int) -> None:
        p = self.p
        horizon = until_ns + IDLE_MIN_NS  # jobs arriving later cannot end an idle before until
        jobs = self.irq.serve(self._requests(horizon), horizon)
        app_jobs = None
        if jobs is not None:
            s, h, soft = jobs["start"], jobs["h"], jobs["soft"]
            irq = NET_IRQ_BASE + jobs["pos"]
            send = s + h + soft + 3 * STEP_NS
            ep = Episodes(self.cpus[jobs["pos"]], len(s))
            ep.step(s, EventKind.DEVICE_IRQ, vector=irq, dur_ns=h)
            ep.step(s + STEP_NS, EventKind.IRQ_MASK, vector=irq, present=p["mask_irq"])
            ep.step(s + h, EventKind.EOI, vector=irq)
            ep.step(s + h + STEP_NS, EventKind.IDLE_EXIT, present=jobs["idle"])
            ep.step(s + h + 2 * STEP_NS, EventKind.TPR_WRITE, arg=TPR_DISPATCH,
                    present=p["tpr_raise"])
            ep.step(send, EventKind.IPI_SEND, vector=RESCHEDULE_VECTOR,
                    target=self.app_cpus[jobs["app"]], present=not self.shared)
            ep.step(send + STEP_NS, EventKind.TPR_WRITE, arg=0, present=p["tpr_raise"])
            ep.step(send + 2 * STEP_NS, EventKind.IRQ_UNMASK, vector=irq, present=p["mask_irq"])
            if self.shared:
                # Local wakeup: the application thread runs once the receive path is done.
                _app_steps(ep, s + h + soft + 6 * STEP_NS, jobs["work"], p)
            kept = ep.emit(out, 1)
            sel = jobs["idle_new"]
            out.add(0, jobs["idle_since"][sel], self.cpus[jobs["pos"][sel]], EventKind.IDLE_ENTER)
            if not self.shared:
                app_jobs = {"arrive": send + p["wake_delivery_ns"], "n": jobs["n"],
                            "pos": jobs["app"], "hw": jobs["hw"], "work": jobs["work"],
                            "service": jobs["hw"] + jobs["work"] + 3 * STEP_NS, "kept": kept}
        self.irq.idle_now(out, 0, until_ns, horizon)
        if self.shared:
            return
        jobs = self.app.serve(app_jobs, horizon)
        if jobs is not None:
            b, hw = jobs["start"], jobs["hw"]
            ep = Episodes(self.app_cpus[jobs["pos"]], len(b))
            ep.step(b, EventKind.IPI_IRQ, vector=RESCHEDULE_VECTOR, dur_ns=hw)
            ep.step(b + hw, EventKind.EOI, vector=RESCHEDULE_VECTOR)
            ep.step(b + hw + STEP_NS, EventKind.IDLE_EXIT, present=jobs["idle"])
            _app_steps(ep, b + hw + 2 * STEP_NS, jobs["work"], p)
            ep.emit(out, 3, keep=jobs["kept"])
            sel = jobs["idle_new"]
            out.add(2, jobs["idle_since"][sel], self.app_cpus[jobs["pos"][sel]],
                    EventKind.IDLE_ENTER)
        self.app.idle_now(out, 2, until_ns, horizon)


NET_RR = Scenario(
    name="net-rr",
    summary="NIC interrupt bursts, request/response: device IRQ, mask/EOI, wakeup IPI, clock reads",
    params=NET_PARAMS,
    part=NetRR,
    check=check_net,
)
