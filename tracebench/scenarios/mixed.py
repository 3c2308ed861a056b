"""A server running several workloads at once (``mixed-server``), one per group of vCPUs."""

from __future__ import annotations

import numpy as np

from tracebench.errors import ParamError
from tracebench.scenarios import draws
from tracebench.scenarios.events import Out
from tracebench.scenarios.ipi import IPI_STORM
from tracebench.scenarios.net import NET_RR
from tracebench.scenarios.spec import Param, Scenario
from tracebench.scenarios.tick import CLOCK_HEAVY
from tracebench.scenarios.timers import IDLE_NOHZ, TIMER_HEAVY

#: the blend's parts in allocation order; the first takes what a too-small part gives up
PARTS = (NET_RR, CLOCK_HEAVY, TIMER_HEAVY, IPI_STORM, IDLE_NOHZ)


def _weight_name(s: Scenario) -> str:
    return s.name.replace("-", "_") + "_weight"


MIXED_PARAMS = (
    Param(
        _weight_name(NET_RR),
        3,
        "weight",
        "share of vCPUs serving network requests (net-rr: one takes the NIC interrupts)",
        low=0,
        high=1000,
    ),
    Param(
        _weight_name(CLOCK_HEAVY),
        2,
        "weight",
        "share of vCPUs running a clock-reading database (clock-heavy)",
        low=0,
        high=1000,
    ),
    Param(
        _weight_name(TIMER_HEAVY),
        1,
        "weight",
        "share of vCPUs running timer loops (timer-heavy)",
        low=0,
        high=1000,
    ),
    Param(
        _weight_name(IPI_STORM),
        2,
        "weight",
        "share of vCPUs of a multi-threaded job exchanging IPIs (ipi-storm; gets 2 or none)",
        low=0,
        high=1000,
    ),
    Param(
        _weight_name(IDLE_NOHZ),
        2,
        "weight",
        "share of idle tickless vCPUs (idle-nohz)",
        low=0,
        high=1000,
    ),
)


def allocate(p: dict, n_cpus: int) -> dict[str, int]:
    """vCPUs per part: largest-remainder shares of the weights, ties in :data:`PARTS` order.

    A part below its ``min_cpus`` gives its vCPUs to the first part that runs, so
    every vCPU belongs to exactly one part whatever ``n_cpus`` is.
    """
    weights = np.array([p[_weight_name(s)] for s in PARTS], dtype=float)
    if weights.sum() == 0:
        weights[0] = 1
    exact = n_cpus * weights / weights.sum()
    count = np.floor(exact).astype(int)
    rest = n_cpus - int(count.sum())
    order = sorted(range(len(PARTS)), key=lambda i: (-(exact[i] - count[i]), i))
    for i in order[:rest]:
        count[i] += 1
    for i, s in enumerate(PARTS):
        if 0 < count[i] < s.min_cpus:
            takers = [j for j in range(len(PARTS)) if j != i and count[j]] or [
                j
                for j in range(len(PARTS))
                if j != i and weights[j] and PARTS[j].min_cpus <= count[i]
            ]
            if not takers:
                raise ParamError(
                    f"scenario mixed-server: {s.name} needs {s.min_cpus} vCPUs "
                    f"and no other part has weight; got {n_cpus} vCPU(s)"
                )
            count[takers[0]] += count[i]
            count[i] = 0
    return {s.name: int(c) for s, c in zip(PARTS, count, strict=True)}


#: stream numbers per part of the blend (a part uses fewer than this many)
STREAMS_PER_PART = 8


class MixedServer:
    """A blend of the other scenarios on disjoint groups of vCPUs, each with its defaults.

    vCPUs are shared out by the ``*_weight`` parameters (largest remainder, in the
    order net-rr, clock-heavy, timer-heavy, ipi-storm, idle-nohz; with the default
    3:2:1:2:2 weights, 10 vCPUs give 3, 2, 1, 2, 2). A part that would get fewer
    vCPUs than it needs (ipi-storm: 2) hands them to the first part that runs. Each
    group runs its scenario exactly as alone, with default parameters, except that
    the IPI storm does not broadcast beyond its own group (an all-but-self IPI
    would reach the other workloads; those shootdowns use a mask instead). Each part
    draws from its own random streams (keyed by its position in that order), so
    changing one weight does not reshuffle the others. The vCPU ranges chosen are
    written to the trace's ``source.layout``.

    Expected: each group's counts as documented for its scenario, scaled to its
    vCPUs.
    """

    def __init__(self, key: int, cpus: np.ndarray, p: dict, shape):
        counts = allocate(p, len(cpus))
        self.parts = []
        layout = {}
        first = 0
        for index, part in enumerate(PARTS):
            k = counts[part.name]
            if not k:
                continue
            group = cpus[first:first + k]
            layout[part.name] = [int(group[0]), int(group[-1])]
            gen = part.part(draws.stream_key(key, index), group, part.resolve(None, n_cpus=k),
                            shape)
            self.parts.append((index * STREAMS_PER_PART, gen))
            first += k
        shape.notes["layout"] = layout

    def advance(self, out: Out, until_ns: int) -> None:
        for base, gen in self.parts:
            out.stream_base = base
            gen.advance(out, until_ns)
        out.stream_base = 0


MIXED_SERVER = Scenario(
    name="mixed-server",
    summary="a blend on disjoint vCPU groups: net-rr, clock-heavy, timer-heavy, ipi-storm, "
    "idle-nohz",
    params=MIXED_PARAMS,
    part=MixedServer,
)
