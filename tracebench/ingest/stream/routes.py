"""Per event name: is it wanted, and which path reads its records (compiled or polars).

The name table (``text/framed.NameTable``) gives every event name met an id; this
keeps, per id, what the later stages look up by index: the short name, the *route*
of its records (``text/fields.R_*``), and for handler events the kind and pairing
family of ``rules/guest.HANDLERS``. Only events in the family's compiled path
(``Family.fast``) skip polars; every other wanted event goes to its family's rule.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from tracebench.ingest.rules.base import H_EXIT
from tracebench.ingest.rules.guest import HANDLERS
from tracebench.ingest.stream.families import Family
from tracebench.ingest.text import fields as F
from tracebench.ingest.text.framed import NameTable
from tracebench.ingest.text.probe import Needles

#: events that calibration reads
CALIB_EVENTS = ("write_msr", "hrtimer_start", "hrtimer_expire_entry", "local_timer_entry")

def short_name(name: str) -> str:
    return name.rsplit(":", 1)[-1]


def route_of(family: Family, short: str, msr_traced: bool) -> tuple[int, int, int]:
    """(route, kind, pairing family) of an event's records in ``family``."""
    if short not in family.rules:
        return (F.R_NORULE if short in CALIB_EVENTS else F.R_SKIP), 0, 0
    if short == "hrtimer_start" and msr_traced:
        return F.R_MARK, 0, 0  # guest._hrtimer_start: only a time mark under MSR writes
    route = family.fast.get(short, F.R_SLOW)
    if route == F.R_VEC:
        entry = short if short in HANDLERS else short.removesuffix("_exit") + "_entry"
        kind, fam = HANDLERS[entry]
        return route, (int(kind) if short == entry else H_EXIT), fam
    return route, 0, 0


@dataclasses.dataclass(frozen=True)
class EventColumns:
    """Per-id columns as of one chunk (ids grow; earlier snapshots stay valid)."""

    short: list
    hashes: np.ndarray
    route: np.ndarray
    kind: np.ndarray
    fam: np.ndarray
    calib: np.ndarray


class Events:
    """The name table of one ingest, its per-id columns, and the probe's needles.

    ``hrtimer_start`` is the one route that depends on the whole input (are MSR writes
    traced?): until the scanner thread has found a ``write_msr`` its records go to the
    polars rule (which reads the driver's whole-input answer); afterwards they are
    time marks, which is what that rule makes of them when MSR writes are traced.
    """

    def __init__(self, family: Family, needles: Needles):
        self.family = family
        self.with_task = family.with_task
        self.table = NameTable()
        self.needles = needles
        # set once the reader's first kernel call returned: numba is set up in this process
        self.jit_ready = threading.Event()
        self._cols = EventColumns([], *(np.empty(0, t) for t in _DTYPES))
        self._msr = False

    def update(self) -> EventColumns:
        """Columns covering every name in the table."""
        old = self._cols
        names = self.table.names
        msr = "write_msr" in self.needles
        if len(old.short) == len(names) and msr == self._msr:
            return old
        short = [short_name(nm) for nm in names]
        info = [route_of(self.family, s, msr) for s in short]
        cols = EventColumns(
            short,
            self.table.id_hash[: len(names)].copy(),
            np.array([i[0] for i in info], np.int8),
            np.array([i[1] for i in info], np.int8),
            np.array([i[2] for i in info], np.int64),
            np.array([s in CALIB_EVENTS for s in short], np.bool_),
        )
        self._cols, self._msr = cols, msr
        return cols


_DTYPES = (np.uint64, np.int8, np.int8, np.int64, np.bool_)
