"""The plug-in axis of ingest: the *family* of a trace's events (guest or KVM host).

A format names its family (``InputFormat.family``); everything that differs between
a guest trace and a host trace is a field of that :class:`Family`: its rule table,
the events whose presence must be known before mapping, whether EOIs are inferred,
which records take the compiled fast path, what is learned per chunk, and whether a
measured-exits table is written. The stream stages ask the family, never its name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from tracebench.errors import TraceError
from tracebench.ingest.rules import kvmfacts
from tracebench.ingest.rules.base import MapContext, RuleTable
from tracebench.ingest.rules.fastmap import FAST
from tracebench.ingest.rules.guest import GUEST_RULES
from tracebench.ingest.rules.kvmhost import KVM_HOST_RULES
from tracebench.ingest.stream.exits import MeasuredExits

#: events whose presence anywhere in the input changes a rule (see the rule tables' docs);
#: the probe looks for all of them whatever the family (they are listed in the metadata)
PROBED = ("write_msr", "kvm_apic", "kvm_eoi", "kvm_msr", "kvm_apic_accept_irq", "kvm_exit",
          "kvm_mmio", "kvm_inj_virq", "kvm_pio", "kvm_ack_irq")


def _no_learning(ctx: MapContext, slow: dict) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Family:
    """What one family of events brings to an ingest.

    Attributes
    ----------
    name : stored in the metadata (``source.family``); formats refer to it.
    rules : its mapping table (short event name -> rule).
    probed : events whose presence must be known before the first row is mapped.
    fast : short event name -> compiled route (``text.fields.R_*``); others go to polars.
    infer_eoi : imply one EOI per interrupt no traced EOI accounts for (a guest under
        PV EOI writes memory nobody traces); counted in ``source.inferred``.
    with_task : the reader keeps each wanted record's task name (thread -> vCPU).
    header_cpus : a format header's CPU count is this family's CPU count.
    platform : ``environment.platform`` unless the caller says otherwise.
    learn : ``learn(ctx, slow records by event)`` per chunk, before its rows are mapped.
    calibrated : ``calibrated(ctx, [slow records by event])`` once, over the chunks the
        clock calibration read.
    exits : measured-exits writer (``NAME.exits.parquet``), or None.
    """

    name: str
    rules: RuleTable
    probed: frozenset[str]
    fast: Mapping[str, int]
    infer_eoi: bool
    with_task: bool
    header_cpus: bool
    platform: str
    learn: Callable[[MapContext, dict], None] = _no_learning
    calibrated: Callable[[MapContext, list[dict]], None] = _no_learning
    exits: MeasuredExits | None = None


GUEST = Family(
    name="guest",
    rules=GUEST_RULES,
    probed=frozenset({"write_msr"}),
    fast=FAST,
    infer_eoi=True,
    with_task=False,
    header_cpus=True,
    platform="unknown",
)
KVM_HOST = Family(
    name="kvm-host",
    rules=KVM_HOST_RULES,
    probed=frozenset(PROBED),
    fast={},
    infer_eoi=False,
    with_task=True,
    header_cpus=False,  # a host header counts host CPUs, not vCPUs
    platform="kvm-host",
    learn=kvmfacts.learn_vcpus,
    calibrated=kvmfacts.learn_vectors,
    exits=MeasuredExits(kvmfacts.reason_label),
)
#: every family, by name (a new family: its rule table, then one entry here)
FAMILIES: dict[str, Family] = {f.name: f for f in (GUEST, KVM_HOST)}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise TraceError(f"unknown event family {name!r} (known: {', '.join(FAMILIES)})") from None


def table(family: str | None = None) -> list[dict]:
    """The mapping table as rows (family, event, kinds, rule), for docs."""
    return [row for f in FAMILIES.values() if family in (None, f.name) for row in f.rules.table()]
