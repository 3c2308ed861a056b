"""Guest actions outside the interrupt/timer axes that still trap: a rule, not an axis.

An intercepted MSR outside the APIC/timer table (IA32_TSC_ADJUST, IA32_APIC_BASE, the KVM
PV MSRs: ``ingest/rules/intercepts.py`` lists them) and a port access no other kind holds
(a keyboard, serial or RTC port) exit under every hypervisor alike: no interrupt or timer
design changes how KVM, Xen or VMware intercepts them. So they are no mechanism axis
(whose options would be one per axis value and the same in every virtualized preset) but
follow from whether the backend has a hypervisor at all: ``delivery = "native"`` is the
bare-metal floor (nothing injects its interrupts), every other composition is virtualized.

Virtualized: one exit each. ``msr_read`` / ``msr_write`` cost the exit round trip plus
``msr_handler_cyc`` (MSR_READ / MSR_WRITE; KVM's RDMSR/WRMSR exits name the MSR in ECX, no
decode); ``port_io`` costs an unhandled-port exit to user space, as kvm-unit-tests'
``inl_from_qemu`` measures it (the exit, ``pio_in_emulation_cyc`` and
``userspace_exit_cyc``; IO_INSTRUCTION): the ports KVM emulates in the kernel (the PIC, the
PIT, the ELCR) are the EOI and clock-read kinds, so what is left is QEMU's devices. An OUT
is charged as the IN (its direction is in ``arg``; the cost table is per kind).
Bare metal: no exit; the access costs a local register access (an MSR) or an uncached
chipset access (a port).
"""

from __future__ import annotations

from tracebench.backends.model import CycleModel
from tracebench.schema import EventKind as K
from tracebench.schema import ExitReason as R


def is_virtualized(mech) -> bool:
    """A hypervisor sits between guest and hardware unless interrupts are delivered natively."""
    return mech["delivery"] != "native"


def other_intercepts(m: CycleModel, p, virtualized: bool) -> None:
    """Costs of ``msr_read``, ``msr_write`` and ``port_io`` (see the module docstring)."""
    if not virtualized:
        for k in (K.MSR_READ, K.MSR_WRITE):
            m.action(k, p.native_apic_access_cyc)
        m.action(K.PORT_IO, p.native_ioapic_access_cyc)
        return
    m.action(K.MSR_READ, p.exit_roundtrip_cyc + p.msr_handler_cyc, 1, R.MSR_READ)
    m.action(K.MSR_WRITE, p.exit_roundtrip_cyc + p.msr_handler_cyc, 1, R.MSR_WRITE)
    m.action(K.PORT_IO, p.exit_roundtrip_cyc + p.pio_in_emulation_cyc + p.userspace_exit_cyc,
             1, R.IO_INSTRUCTION)
