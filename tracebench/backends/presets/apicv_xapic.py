"""``apicv-xapic``: Intel APICv with the guest left in xAPIC (MMIO) mode."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="apicv-xapic",
    description=(
        "Intel APICv with a guest that keeps its local APIC in xAPIC mode (no x2APIC in "
        "its CPUID, or nox2apic): reads of the APIC page and the ICR2 write are virtualized; "
        "the ICR write and other register writes exit trap-like as APIC_WRITE; virtual EOI, "
        "posted interrupts, TSC-deadline on the preemption timer. An IPI costs one "
        "APIC_WRITE where apicv's x2APIC guest takes one MSR_WRITE."
    ),
    mechanisms=dict(apic_access="xapic_apicv", timer="tsc_deadline_preemption",
                    clocksource="tsc", delivery="posted", eoi="virtual", ipi="icr",
                    tpr="cr8_shadow", mask="ioapic_mmio", idle="hlt_exit"),
)
