"""Host-side KVM tracepoints (``kvm:kvm_exit``, ``kvm_msr``, ``kvm_apic``...) in ftrace,
trace-cmd or perf script text: found by the share of ``kvm_*`` events among the records.

Its rules are the ``kvm-host`` table in :mod:`tracebench.ingest.rules.kvmhost`.
"""

from __future__ import annotations

import re

from tracebench.ingest.formats.base import InputFormat, records

_EVENT = re.compile(r"\d+\.\d+:\s+(?:kvm:)?(\w+):")


def sniff(lines: list[str]) -> float:
    names = [m.group(1) for ln in records(lines)[:400] if (m := _EVENT.search(ln))]
    if not names:
        return 0.0
    return 2.0 * sum(n.startswith("kvm_") for n in names) / len(names)


KVM_HOST = InputFormat(
    name="kvm-host",
    family="kvm-host",
    description="host-side KVM tracepoints (kvm_exit/kvm_entry/kvm_msr/kvm_apic/...) in "
    "ftrace, trace-cmd or perf script text; also writes NAME.exits.parquet",
    sniff=sniff,
)
