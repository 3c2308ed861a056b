"""``full-virt``: the 2007 baseline, every interrupt-controller and timer access trapped."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="full-virt",
    description=(
        "Full virtualization as in 2007 KVM/VMware without paravirt: the guest drives an "
        "emulated xAPIC (MMIO page, APIC_ACCESS exit + instruction decode on every register "
        "access), the LAPIC one-shot timer through TMICT, an IO-APIC for masking and the "
        "ACPI PM timer as clocksource (a user-space port-I/O exit per read). Interrupts are "
        "injected on VM entry; no APICv."
    ),
    mechanisms=dict(apic_access="xapic_mmio", timer="lapic_tmict", clocksource="acpi_pm",
                    delivery="inject", eoi="trap", ipi="icr", tpr="apic_access",
                    mask="ioapic_mmio", idle="hlt_exit"),
)
