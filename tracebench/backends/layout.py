"""Where every number of the replay model sits: the one layout of the kernel's arrays.

Each index set is an enum with each name beside its number and what it means (plus, where
it matters, its initial value or storage type); the kernels read the plain int constants
derived from the enums (``S_SHIFT``, ``OUT_EXITS``, ...) because numba freezes module
globals as constants. Everything else (array shapes, initial values, the output columns'
names and types, the histogram geometry, how a lane group stacks its backends) is derived
here from the enums, so adding a member is the whole layout change.

Arrays a kernel takes besides the trace columns (one backend; flattened in C order):

============  ==============================  ===========================================
array         shape                           index enum
============  ==============================  ===========================================
kind_table    (N_KINDS, N_KIND_COLS) + draws  :class:`KindCol` (``ACT_*``, ``IRQ_*``)
ipi_table     (N_IPI_COLS,)                   :class:`IpiCol` (``IPI_*``)
hdr           (N_HDR,)                        :class:`Hdr` (``H_*``), from ``hist.geometry()``
state         (n_cpus, N_STATE)               :class:`State` (``S_*``)
out           see ``kernel.py``               :class:`Out` (``OUT_*``)
kind_agg      (N_KINDS, A_COLS)               :class:`KindAgg` (``A_*``)
exit_agg      (n_cpus, N_REASONS, E_COLS)     :class:`ExitAgg` (``E_*``)
lat_counts    (N_KINDS, counts length)        HdrHistogram counts per event kind
terr_counts   (counts length,)                HdrHistogram counts of timer errors
============  ==============================  ===========================================

The model tables are the median tables (every parameter at its p50); where a cost is a
distribution, an event reads its costs at the level ``spread.cost_level`` draws for it
(``kernel.py``) from the cost draws, which follow the kind table (``model.kernel_tables``):
:data:`N_DIR` int64 of directory (``DIR_*``: the number of levels, 1 where every cost is a
constant, and per kind and for the IPI table where its rows are), then the draw rows,
:data:`DRAW_DTYPE`: per kind one row of the costs its events read (``ACT_DRAWN`` for a guest
action, ``IRQ_DRAWN`` for an interrupt) and for the IPI table one of ``IPI_DRAWN``, per level
(one row for every level where none of them varies), slots named ``D_*``. A column not
drawn is the same at every level: the median table's.

A lane group (``LANES`` backends to a pass) adds a lane axis to each: last where the kernel
reads every lane's value of one column as one vector, first where a lane's part is handed
back to its backend as one contiguous array (:data:`LANE_AXIS`).
"""

from __future__ import annotations

import enum

import numpy as np

from tracebench.schema import N_KINDS, N_REASONS, CodeEnum

#: "no time" in state and in the timer-error output
NO_TIME = -1
#: backends per pass in a lane group: four int64 fill one AVX2 register
LANES = 4


class Quantity(enum.StrEnum):
    """What a model-table column holds: costs (converted from cycles to ns once), counts,
    exit-reason codes, flags, the cost draws' seed."""

    NS = "ns"
    #: ns, but fixed at the median cost level: a quantity the host settles on over many
    #: events (KVM's adaptive timer advance), not one drawn per event
    NS_SETTLED = "ns (settled)"
    COUNT = "count"
    REASON = "reason"
    FLAG = "flag"
    SEED = "seed"


Q = Quantity


class Column(CodeEnum):
    """A column index with its meaning, and a value that the column starts from."""

    def __new__(cls, value: int, doc: str, initial: int = 0):
        member = int.__new__(cls, value)
        member._value_ = value
        member.doc = doc
        member.initial = initial
        return member


class TableColumn(CodeEnum):
    """A model-table column: what it holds (a :class:`Quantity`) and its meaning; its label
    (the lower-case name) names it in ``CompiledModel.describe()``."""

    def __new__(cls, value: int, quantity: Quantity, doc: str):
        member = int.__new__(cls, value)
        member._value_ = value
        member.quantity = quantity
        member.doc = doc
        return member


class State(Column):
    """Per-vCPU state carried across chunks, one row per vCPU."""

    SHIFT = 0, "how far the vCPU's guest timeline lags the trace, ns"
    BUSY = 1, "no guest-originated event starts before this (replay clock), ns"
    DEADLINE = 2, "programmed timer deadline (replay clock), ns", NO_TIME
    IPI_ARRIVE = 3, "when the latest IPI sent to the vCPU left its sender, ns", NO_TIME
    IDLE = 4, "1 while the vCPU is halted"
    IDLE_SINCE = 5, "when the idle vCPU's HLT exit began, until it is accounted, ns", NO_TIME
    WOKE_AT = 6, "when the halted vCPU was woken (handler start or idle exit), ns", NO_TIME
    DEADLINE_TRACE = 7, "the programmed deadline on the trace clock, ns", NO_TIME
    STALL_START = 8, "start of the vCPU's latest window of back-to-back stalls, ns"
    STALL_END = 9, "end of that window, ns"
    IPI_SELF = 10, "1: the latest IPI sent to the vCPU came from its own exiting ICR write"
    HOST_START = 11, "start of the vCPU's latest exit (out of guest mode), ns"
    HOST_END = 12, "end of that exit (its re-entry), ns"
    IRQ_OFF_AT = 13, "its latest halting idle entry (sti; hlt: interrupts on again), ns", NO_TIME
    HLT_PENDING = 14, "1: its latest HLT found an interrupt pending (returned at once); "\
        "2: an interrupt came while the guest polled before HLT (no HLT)"
    HANDLER_AT = 15, "start of its latest interrupt handler with a known run time, ns"
    IRQ_ON_AT = 16, "that handler's return (IRET: interrupts on again) on its timeline; an "\
        "interrupt due between the two waits for it, ns"


class Out(CodeEnum):
    """Per-event outputs: the label is the column name, ``dtype`` its storage type (the
    kernels compute int64 and store into columns of that type)."""

    def __new__(cls, value: int, dtype: type, doc: str):
        member = int.__new__(cls, value)
        member._value_ = value
        member.dtype = np.dtype(dtype)
        member.doc = doc
        return member

    START_NS = 0, np.int64, "handler or action start on the replay clock"
    LATENCY_NS = 1, np.int64, "arrival (or trace time + lag) to start, plus the action's cost"
    STALL_NS = 2, np.int64, "time the vCPU spent out of guest mode for this event"
    EXIT_NS = 3, np.int64, "time of the VM exits this event caused (HLT: the blocked time)"
    TIMER_ERROR_NS = 4, np.int64, "handler start - deadline of a matched timer interrupt, else -1"
    EXITS = 5, np.uint16, "VM exits the event caused"
    EXIT_REASON = 6, np.int8, "their exit reason code (0 without exits)"


class KindAgg(Column):
    """Per event kind running totals."""

    COUNT = 0, "events"
    EXITS = 1, "VM exits they caused"
    STALL = 2, "their stall, ns"


class ExitAgg(Column):
    """Per (vCPU, exit reason) running totals, as ``perf kvm stat`` reports them."""

    COUNT = 0, "exits"
    TOTAL = 1, "their total time, ns"
    MIN = 2, "shortest, ns", int(np.iinfo(np.int64).max)
    MAX = 3, "longest, ns"


class Hdr(CodeEnum):
    """HdrHistogram geometry the kernels compute counts indices from; ``attr`` is the
    ``hdrh.histogram.HdrHistogram`` attribute each value is read from."""

    def __new__(cls, value: int, attr: str):
        member = int.__new__(cls, value)
        member._value_ = value
        member.doc = attr
        member.attr = attr
        return member

    UNIT_MAG = 0, "unit_magnitude"
    HALF_MAG = 1, "sub_bucket_half_count_magnitude"
    SUB_MASK = 2, "sub_bucket_mask"
    HALF_COUNT = 3, "sub_bucket_half_count"
    COUNTS_LEN = 4, "counts_len"
    HIGHEST = 5, "highest_trackable_value"


class KindCol(TableColumn):
    """``kind_table[kind]``: what an event of that kind costs under the backend."""

    ACT_COST = 0, Q.NS, "guest-visible stall of a guest-originated action"
    ACT_EXITS = 1, Q.COUNT, "VM exits the action causes"
    ACT_REASON = 2, Q.REASON, "exit reason of those exits"
    IRQ_HOST = 3, Q.NS, "host-side latency before a vCPU can be notified (interrupt kinds)"
    IRQ_RUN = 4, Q.NS, "extra delivery latency into a running vCPU"
    IRQ_RUN_STALL = 5, Q.NS, "part of IRQ_RUN during which the running vCPU is out of guest"
    IRQ_RUN_EXITS = 6, Q.COUNT, "exits that delivery causes on a running vCPU"
    IRQ_RUN_REASON = 7, Q.REASON, "their exit reason"
    IRQ_WAKE = 8, Q.NS, "extra delivery latency into a halted vCPU (it was idle: no stall)"
    IRQ_WINDOW = 9, Q.NS, "delivery once the guest re-enables interrupts (interrupt window)"
    IRQ_WINDOW_STALL = 10, Q.NS, "part of IRQ_WINDOW out of guest mode"
    IRQ_WINDOW_EXITS = 11, Q.COUNT, "PENDING_INTERRUPT exits it takes (legacy injection)"
    IRQ_WINDOW_REASON = 12, Q.REASON, "their exit reason"
    IRQ_INJECT = 13, Q.NS, "injection on the re-entry of a vCPU already in the host"
    IRQ_POLL_WAKE = 14, Q.NS, "IRQ_WAKE for a vCPU still in the host's halt-polling window"
    IRQ_ADVANCE = 15, Q.NS_SETTLED, "how early KVM fires a halted vCPU's timer (timer advance)"
    IRQ_ADVANCE_MIN = 16, Q.NS, "deadline to handler at the least, once the host waited for it"


class IpiCol(TableColumn):
    """``ipi_table``: an IPI to ``n`` targets costs ``CALL + n * TARGET`` (cost and exits),
    or ``SHORT`` when the backend uses the APIC all-but-self shorthand for ``target == -1``;
    plus, where a send to a blocked vCPU exits (AVIC), ``BLOCKED + b * BLOCKED_TARGET`` for
    ``b > 0`` blocked destinations; and whether idle halts the vCPU."""

    TARGET_COST = 0, Q.NS, "per destination vCPU"
    TARGET_EXITS = 1, Q.COUNT, "exits per destination vCPU"
    CALL_COST = 2, Q.NS, "per send, whatever the destinations"
    CALL_EXITS = 3, Q.COUNT, "exits per send"
    REASON = 4, Q.REASON, "exit reason of a send's exits"
    USES_SHORTHAND = 5, Q.FLAG, "1: all-but-self goes as one shorthand write"
    SHORT_COST = 6, Q.NS, "cost of that shorthand write"
    SHORT_EXITS = 7, Q.COUNT, "its exits"
    SHORT_REASON = 8, Q.REASON, "their exit reason"
    HALTS = 9, Q.FLAG, "1: idle halts the vCPU (woken by its next interrupt)"
    HLT_RETURN_COST = 10, Q.NS, "a HLT exit that finds an interrupt pending (no blocking)"
    HOST_POLL = 11, Q.NS, "KVM halt-polling window after a HLT exit (halt_poll_ns)"
    GUEST_POLL = 12, Q.NS, "guest cpuidle-haltpoll window before HLT (guest_halt_poll_ns)"
    EOI_PENDING_COST = 13, Q.NS, "PV EOI with another interrupt pending: the EOI write"
    EOI_PENDING_EXITS = 14, Q.COUNT, "its exits (0: EOI costs the same either way)"
    EOI_PENDING_REASON = 15, Q.REASON, "their exit reason"
    BLOCKED_COST = 16, Q.NS, "per send with a blocked destination: the sender's exit"
    BLOCKED_EXITS = 17, Q.COUNT, "its exits (AVIC_INCOMPLETE_IPI; 0: no such exit)"
    BLOCKED_REASON = 18, Q.REASON, "their exit reason"
    BLOCKED_TARGET_COST = 19, Q.NS, "per blocked destination: the wake-up that exit requests"
    HLT_RETURN_EXITS = 20, Q.COUNT, "exits of that HLT_RETURN (0: AMD's idle-HLT intercept)"
    COST_SEED = 21, Q.SEED, "seed of the per-event cost level (spread.cost_level)"


# Plain ints for the kernels, derived from the enums above (numba freezes module globals;
# unpacking fails at import if a member is added here and not there, and
# tests/test_layout.py checks every name against its member).
(S_SHIFT, S_BUSY, S_DEADLINE, S_IPI_ARRIVE, S_IDLE, S_IDLE_SINCE, S_WOKE_AT, S_DEADLINE_TRACE,
 S_STALL_START, S_STALL_END, S_IPI_SELF, S_HOST_START, S_HOST_END, S_IRQ_OFF_AT,
 S_HLT_PENDING, S_HANDLER_AT, S_IRQ_ON_AT) = map(int, State)
(OUT_START_NS, OUT_LATENCY_NS, OUT_STALL_NS, OUT_EXIT_NS, OUT_TIMER_ERROR_NS, OUT_EXITS,
 OUT_EXIT_REASON) = map(int, Out)
A_COUNT, A_EXITS, A_STALL = map(int, KindAgg)
E_COUNT, E_TOTAL, E_MIN, E_MAX = map(int, ExitAgg)
H_UNIT_MAG, H_HALF_MAG, H_SUB_MASK, H_HALF_COUNT, H_COUNTS_LEN, H_HIGHEST = map(int, Hdr)
(ACT_COST, ACT_EXITS, ACT_REASON, IRQ_HOST, IRQ_RUN, IRQ_RUN_STALL, IRQ_RUN_EXITS,
 IRQ_RUN_REASON, IRQ_WAKE, IRQ_WINDOW, IRQ_WINDOW_STALL, IRQ_WINDOW_EXITS,
 IRQ_WINDOW_REASON, IRQ_INJECT, IRQ_POLL_WAKE, IRQ_ADVANCE, IRQ_ADVANCE_MIN) = map(int, KindCol)
(IPI_TARGET_COST, IPI_TARGET_EXITS, IPI_CALL_COST, IPI_CALL_EXITS, IPI_REASON,
 IPI_USES_SHORTHAND, IPI_SHORT_COST, IPI_SHORT_EXITS, IPI_SHORT_REASON,
 IPI_HALTS, IPI_HLT_RETURN_COST, IPI_HOST_POLL, IPI_GUEST_POLL, IPI_EOI_PENDING_COST,
 IPI_EOI_PENDING_EXITS, IPI_EOI_PENDING_REASON, IPI_BLOCKED_COST, IPI_BLOCKED_EXITS,
 IPI_BLOCKED_REASON, IPI_BLOCKED_TARGET_COST, IPI_HLT_RETURN_EXITS,
 IPI_COST_SEED) = map(int, IpiCol)

N_STATE = len(State)
A_COLS = len(KindAgg)
E_COLS = len(ExitAgg)
N_HDR = len(Hdr)
N_KIND_COLS = len(KindCol)
N_IPI_COLS = len(IpiCol)
#: int64 slots per row of the output block used where rows are not kept: the outputs
#: padded to whole 64-byte cache lines
N_OUT = -(-len(Out) // 8) * 8

OUT_NAMES = tuple(m.label for m in Out)
#: storage type of each per-event output column, in kernel order
COLUMN_DTYPES: dict[str, np.dtype] = {m.label: m.dtype for m in Out}
KIND_COL_NAMES = tuple(m.label for m in KindCol)
IPI_COL_NAMES = tuple(m.label for m in IpiCol)
KIND_COST_COLS = tuple(m for m in KindCol if m.quantity in (Q.NS, Q.NS_SETTLED))
IPI_COST_COLS = tuple(m for m in IpiCol if m.quantity in (Q.NS, Q.NS_SETTLED))

# The cost draws: what an event reads at its cost level, apart from the level-free columns.
# A guest action reads its ACT_COST, an interrupt its IRQ_* costs, and any event may read
# the IPI table's costs; each is one short row per level, its slots in these orders.
ACT_DRAWN = tuple(m for m in KindCol if m.quantity == Q.NS and m.name.startswith("ACT_"))
IRQ_DRAWN = tuple(m for m in KindCol if m.quantity == Q.NS and m.name.startswith("IRQ_"))
IPI_DRAWN = tuple(m for m in IpiCol if m.quantity == Q.NS)
(D_ACT_COST,) = range(len(ACT_DRAWN))
(D_IRQ_HOST, D_IRQ_RUN, D_IRQ_RUN_STALL, D_IRQ_WAKE, D_IRQ_WINDOW, D_IRQ_WINDOW_STALL,
 D_IRQ_INJECT, D_IRQ_POLL_WAKE, D_IRQ_ADVANCE_MIN) = range(len(IRQ_DRAWN))
(D_IPI_TARGET_COST, D_IPI_CALL_COST, D_IPI_SHORT_COST, D_IPI_HLT_RETURN_COST,
 D_IPI_HOST_POLL, D_IPI_GUEST_POLL, D_IPI_EOI_PENDING_COST, D_IPI_BLOCKED_COST,
 D_IPI_BLOCKED_TARGET_COST) = range(len(IPI_DRAWN))
#: the draws' directory, right after the median kind table: the number of levels (1 or
#: ``spread.LEVELS``), then for each kind and last for the IPI table the offset of its
#: level-0 row and the step from one level's row to the next (0: one row serves every level)
DIR_LEVELS = 0
#: the draws' storage type (offsets in the directory count its elements from the first row)
DRAW_DTYPE = np.dtype(np.int32)
DIR_KIND = 1
DIR_IPI = DIR_KIND + 2 * N_KINDS
N_DIR = DIR_IPI + 2


def _rows(columns: type[Column], lead: tuple[int, ...]) -> np.ndarray:
    """int64 array ``lead + (len(columns),)`` with each column at its initial value."""
    a = np.zeros((*lead, len(columns)), dtype=np.int64)
    for m in columns:
        if m.initial:
            a[..., m] = m.initial
    return a


def new_state(n_cpus: int) -> np.ndarray:
    """Per-vCPU state of one backend before any event, ``(n_cpus, N_STATE)``."""
    return _rows(State, (n_cpus,))


def new_kind_agg() -> np.ndarray:
    """Per kind totals, ``(N_KINDS, A_COLS)``."""
    return _rows(KindAgg, (N_KINDS,))


def new_exit_agg(n_cpus: int) -> np.ndarray:
    """Per (vCPU, reason) totals, ``(n_cpus, N_REASONS, E_COLS)``."""
    return _rows(ExitAgg, (n_cpus, N_REASONS))


#: Where a lane group puts the lane axis of each per-backend array the kernel takes: -1
#: (innermost: one load reads a column for every lane) or 0 (outermost: each lane's part is
#: one contiguous array, handed back to its backend).
LANE_AXIS: dict[str, int] = {
    "kind_table": -1, "ipi_table": -1, "state": -1, "kind_agg": -1,
    "exit_agg": 0, "lat_counts": 0, "terr_counts": 0,
}


def stack_lanes(name: str, arrays: list[np.ndarray]) -> np.ndarray:
    """The lane group's array ``name`` from one array per lane."""
    return np.stack(arrays, axis=LANE_AXIS[name])


def lane_view(name: str, stacked: np.ndarray, lane: int) -> np.ndarray:
    """Lane ``lane``'s part of the stacked array ``name`` (a view: writes go through)."""
    return stacked[lane] if LANE_AXIS[name] == 0 else stacked[..., lane]


def vcpu_state(state: np.ndarray, n_cpus: int) -> np.ndarray:
    """The flat ``state`` a kernel is given as an ``(n_cpus, N_STATE)`` view, indexed by
    :class:`State` (``vcpu_state(state, n)[c, State.BUSY]``): for plug-in kernels in Python."""
    return np.reshape(state, (n_cpus, N_STATE), copy=False)

