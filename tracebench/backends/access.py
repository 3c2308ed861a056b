"""The ``apic_access`` axis: how a local-APIC register access reaches the hypervisor.

Each option gives the cost of a register read and of a register write (cycles, exits,
reason) for a handler-cost parameter, and how many register writes an IPI send takes in
that APIC mode (xAPIC: ICR2 then ICR; x2APIC: one 64-bit ICR write). ``mechanisms.py``
composes these into the other axes (EOI, IPI, TPR, timer and mask writes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tracebench.schema import ExitReason as R

Cost = tuple[float, int, R]  # (cycles, exits, reason)


@dataclasses.dataclass(frozen=True)
class Access:
    """How one local-APIC register access is virtualized (the ``apic_access`` axis)."""

    doc: str
    # (mechanisms.RecordingParams, name of the handler-cost parameter) -> Cost
    read: Callable[..., Cost]
    write: Callable[..., Cost]
    icr_writes: int  # register writes per unicast IPI: xAPIC writes ICR2 then ICR


def _native(p, _h):
    return p.native_apic_access_cyc, 0, R.NONE


def _mmio(p, h):
    return p.exit_roundtrip_cyc + p.insn_emulation_cyc + getattr(p, h), 1, R.APIC_ACCESS


def apic_write_trap(p, h):
    # Trap-like: the write is already in the virtual-APIC page and the exit qualification
    # names the register, so nothing is decoded; but it takes KVM's full exit path.
    return p.exit_roundtrip_cyc + p.apic_write_slowpath_cyc + getattr(p, h), 1, R.APIC_WRITE


def _msr(reason):
    return lambda p, h: (p.exit_roundtrip_cyc + getattr(p, h), 1, reason)


def _avic_trap(p, h, reason=R.AVIC_UNACCELERATED_ACCESS):
    # A write AVIC does not accelerate commits to the backing page, then exits trap-like
    # with the register in the exit information: no instruction to decode.
    return p.exit_roundtrip_cyc + p.apic_write_slowpath_cyc + getattr(p, h), 1, reason


def avic_incomplete_ipi(p) -> Cost:
    """The sender's exit when AVIC finds a destination not running: trap-like (the ICR
    write is done, the IRR bits set), through KVM's full exit path (SVM's fastpath takes
    only MSR writes), its handler decoding the ICR from the exit information as an ICR
    write's would (avic_incomplete_ipi_interception, arch/x86/kvm/svm/avic.c)."""
    return _avic_trap(p, "icr_handler_cyc", R.AVIC_INCOMPLETE_IPI)


def hcall(p, h):
    return p.exit_roundtrip_cyc + p.hypercall_handler_cyc + getattr(p, h), 1, R.VMCALL


def _shared(p, _h):
    return p.shared_mem_cyc, 0, R.NONE


APIC_ACCESS = {
    "native": Access("bare-metal APIC, no exit", _native, _native, 1),
    "xapic_mmio": Access("xAPIC page trapped: APIC_ACCESS exit + instruction decode",
                         _mmio, _mmio, 2),
    "x2apic_msr": Access("x2APIC MSRs intercepted (VMX without APICv, SVM without AVIC): "
                         "MSR_READ/MSR_WRITE exit (SVM 'msr'), no decode",
                         _msr(R.MSR_READ), _msr(R.MSR_WRITE), 1),
    "xapic_apicv": Access("xAPIC page with APIC-register virtualization: reads and ICR2 "
                          "virtualized, other writes a trap-like APIC_WRITE exit (no decode)",
                          _native, apic_write_trap, 1),
    "x2apic_apicv": Access("x2APIC with APIC-register virtualization: reads from the "
                           "virtual-APIC page, writes exit", _native, _msr(R.MSR_WRITE), 1),
    "x2avic": Access("AMD x2AVIC (Zen 4+): reads from the AVIC backing page; writes to "
                     "registers AVIC does not accelerate (TMICT, LVT ...) trap as "
                     "AVIC_UNACCELERATED_ACCESS (APIC_ACCESS), no decode", _native, _avic_trap, 1),
    "hypercall": Access("apic_read/apic_write hooks become hypercalls (VMI style, xAPIC "
                        "register layout)", hcall, hcall, 2),
    "shared_mem": Access("no APIC: per-vCPU interrupt state in guest-host shared memory",
                         _shared, _shared, 1),
}

#: apic_access options under which the CPU virtualizes the local APIC (APICv, AVIC)
VIRTUALIZED_APIC = ("x2apic_apicv", "xapic_apicv", "x2avic")
