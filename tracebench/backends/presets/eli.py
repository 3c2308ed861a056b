"""``eli``: exitless interrupts for assigned devices (Gordon et al., ASPLOS 2012)."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="eli",
    description=(
        "ELI (ASPLOS 2012) on an APICv host: interrupts of assigned devices are delivered "
        "straight to the running guest through a shadow IDT with exitless EOI (no host "
        "handling, no exit); IPIs and timers as apicv."
    ),
    mechanisms=dict(apic_access="x2apic_apicv", timer="tsc_deadline_preemption",
                    clocksource="tsc", delivery="exitless", eoi="virtual", ipi="icr",
                    tpr="cr8_shadow", mask="ioapic_mmio", idle="hlt_exit"),
)
