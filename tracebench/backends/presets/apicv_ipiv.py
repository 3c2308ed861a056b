"""``apicv-ipiv``: APICv plus IPI virtualization (Sapphire Rapids and later)."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="apicv-ipiv",
    description=(
        "APICv with Intel IPI virtualization (IPIv, KVM 5.19+): unicast physical-mode IPIs "
        "are sent by the CPU through the PID-pointer table without a sender exit; "
        "all-but-self shorthands still trap. Otherwise as apicv."
    ),
    mechanisms=dict(apic_access="x2apic_apicv", timer="tsc_deadline_preemption",
                    clocksource="tsc", delivery="posted", eoi="virtual", ipi="ipiv",
                    tpr="cr8_shadow", mask="ioapic_mmio", idle="hlt_exit"),
)
