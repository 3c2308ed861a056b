"""``apicv``: Intel APICv with posted interrupts (KVM default on Intel servers since ~2013)."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="apicv",
    description=(
        "Intel APICv: APIC-register virtualization (x2APIC reads exitless), virtual-interrupt "
        "delivery with virtual EOI (no EOI exit for edge vectors), posted interrupts to "
        "running vCPUs; ICR writes still exit (MSR_WRITE); TSC-deadline on the preemption "
        "timer."
    ),
    mechanisms=dict(apic_access="x2apic_apicv", timer="tsc_deadline_preemption",
                    clocksource="tsc", delivery="posted", eoi="virtual", ipi="icr",
                    tpr="cr8_shadow", mask="ioapic_mmio", idle="hlt_exit"),
)
