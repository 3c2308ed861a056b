"""Codes and column types shared by every stage: the one place they are defined.

Event kinds describe what the *guest* does, independent of the hypervisor, so
one trace replays under every backend. Exit reasons use the names that
``perf kvm stat`` prints. Kernels read the plain integer values; everything
else refers to members by name.
"""

from __future__ import annotations

import enum

import pyarrow as pa

#: canonical trace schema (TRACE_SCHEMA below + TraceMeta); docs/schema.md lists versions
SCHEMA_VERSION = 1
#: results folder schema (summary/exits/events/vcpus/configs): 1 = ``backend=/trace=``
#: partitions without a ``params`` column; 2 = ``backend=/params=HASH12/trace=`` partitions
#: and a ``params`` column in summary and exits; 3 = the ``vcpus`` table and the summary's
#: ``max_lag_ns`` and ``saturated_vcpus``; 4 = ``checkpoints`` table, compact ``events``
#: (``row`` joined to the trace, no trace columns) written on request only; 5 and 6 = the
#: checkpoints' replay state grew (15, then 17 words per vCPU). Older folders are upgraded
#: when packed; docs/schema.md describes each version.
RESULTS_SCHEMA_VERSION = 6
METADATA_KEY = b"tracebench"


class CodeEnum(enum.IntEnum):
    """An integer code that carries its one-line description beside its value."""

    def __new__(cls, value: int, doc: str):
        member = int.__new__(cls, value)
        member._value_ = value
        member.doc = doc
        return member

    @property
    def label(self) -> str:
        """The stable string name stored in files (lower case for kinds)."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str):
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown {cls.__name__} {label!r}") from None

    @classmethod
    def labels(cls) -> list[str]:
        return [m.label for m in cls]


class EventKind(CodeEnum):
    TIMER_ARM = 0, "guest programs its one-shot timer; arg = deadline (ns, trace clock)"
    TIMER_CANCEL = 1, "guest stops its one-shot timer"
    TIMER_IRQ = 2, "local timer interrupt handler starts"
    DEVICE_IRQ = 3, "device interrupt handler starts; vector = IRQ, dur_ns = handler time"
    IPI_SEND = 4, "guest sends an IPI; target = vCPU, -1 all-but-self, -2 mask in arg"
    IPI_IRQ = 5, "IPI handler starts on the receiving vCPU; vector = IPI vector"
    EOI = 6, "end of interrupt written to the interrupt controller"
    TPR_WRITE = 7, "task-priority register write; arg = new TPR"
    CLOCK_READ = 8, "clocksource read; arg = clock source code the trace saw (informational)"
    APIC_READ = 9, "other local APIC register read; arg = register offset"
    APIC_WRITE = 10, "other local APIC register write; arg = register offset"
    IRQ_MASK = 11, "interrupt line masked (IO-APIC RTE / LVT / irq_chip mask)"
    IRQ_UNMASK = 12, "interrupt line unmasked"
    IDLE_ENTER = 13, "vCPU goes idle (HLT / mwait)"
    IDLE_EXIT = 14, "vCPU leaves idle"
    # Appended, never renumbered: stored traces keep their codes. Guest actions outside the
    # interrupt/timer table that still trap: each is one exit under every virtualized backend.
    MSR_READ = 15, "RDMSR of an intercepted MSR outside the APIC/timer table; arg = MSR index"
    MSR_WRITE = 16, "WRMSR of an intercepted MSR outside the APIC/timer table; arg = MSR index"
    PORT_IO = 17, "a port access no other kind holds; arg = port, + PORT_WRITE for an OUT"


#: kinds whose time is set by something outside the vCPU's own instruction stream
INTERRUPT_KINDS = (EventKind.TIMER_IRQ, EventKind.DEVICE_IRQ, EventKind.IPI_IRQ)
N_KINDS = len(EventKind)


class ExitReason(CodeEnum):
    NONE = 0, "no VM exit"
    APIC_ACCESS = 1, "xAPIC MMIO page access trapped and decoded"
    APIC_WRITE = 2, "trap-like APIC register write exit (APICv)"
    MSR_WRITE = 3, "WRMSR intercepted (x2APIC, TSC-deadline, PV MSRs)"
    MSR_READ = 4, "RDMSR intercepted"
    IO_INSTRUCTION = 5, "port I/O (PIT, ACPI PM timer, PIC)"
    EPT_MISCONFIG = 6, "MMIO to an emulated device (IO-APIC, HPET)"
    VMCALL = 7, "hypercall"
    HLT = 8, "HLT intercepted (idle)"
    EXTERNAL_INTERRUPT = 9, "host interrupt forced an exit (kick, host timer)"
    PREEMPTION_TIMER = 10, "VMX preemption timer expired"
    EOI_INDUCED = 11, "EOI of a level-triggered vector under APICv"
    PENDING_INTERRUPT = 12, "interrupt-window exit to inject a pending interrupt"
    # SVM spellings of the same exits (``kvm_exit`` on AMD prints these): aliases, so a
    # model or a reader can name them either way and results stay in one code space.
    INTR = 9, "SVM: physical interrupt (EXTERNAL_INTERRUPT)"
    VINTR = 12, "SVM: virtual interrupt window (PENDING_INTERRUPT)"
    NPF = 6, "SVM: nested page fault, KVM's emulated MMIO (EPT_MISCONFIG)"
    VMMCALL = 7, "SVM: hypercall (VMCALL)"
    AVIC_INCOMPLETE_IPI = 2, "SVM AVIC: ICR write AVIC could not complete (APIC_WRITE)"
    AVIC_UNACCELERATED_ACCESS = 1, "SVM AVIC: APIC register access not accelerated (APIC_ACCESS)"


N_REASONS = len(ExitReason)


class ClockSource(CodeEnum):
    UNKNOWN = 0, "not known from the trace"
    TSC = 1, "rdtsc"
    PVCLOCK = 2, "kvm-clock / Xen pvclock page"
    ACPI_PM = 3, "ACPI PM timer port"
    HPET = 4, "HPET main counter (MMIO)"
    PIT = 5, "i8254 PIT counter"


#: IPI target codes (column ``target``)
TARGET_NONE = -1  # for kinds without a target the column is -1 as well
TARGET_ALL_BUT_SELF = -1
TARGET_MASK = -2
#: added to a ``port_io`` event's ``arg`` (the port) when the access is a write (OUT)
PORT_WRITE = 1 << 16

KIND_TYPE = pa.dictionary(pa.int8(), pa.string())

TRACE_SCHEMA = pa.schema(
    [
        pa.field("ts_ns", pa.int64(), nullable=False),
        pa.field("cpu", pa.uint16(), nullable=False),
        pa.field("kind", KIND_TYPE, nullable=False),
        pa.field("vector", pa.int16(), nullable=False),
        pa.field("target", pa.int32(), nullable=False),
        pa.field("arg", pa.int64(), nullable=False),
        pa.field("dur_ns", pa.int64(), nullable=False),
    ]
)

#: numpy dtypes of the columns as the kernels see them (kind as its int8 code)
TRACE_NUMPY_DTYPES = {
    "ts_ns": "int64",
    "cpu": "uint16",
    "kind": "int8",
    "vector": "int16",
    "target": "int32",
    "arg": "int64",
    "dur_ns": "int64",
}
