"""``avic``: KVM on AMD with x2AVIC (Zen 4 and later, Linux 6.0+)."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="avic",
    description=(
        "KVM on an AMD host with AVIC in x2APIC mode (x2AVIC, Zen 4+): register reads come "
        "from the AVIC backing page, EOI of edge vectors and IPIs to running vCPUs "
        "(shorthands included) complete in hardware without an exit; an IPI to a halted "
        "vCPU makes the sender exit (AVIC_INCOMPLETE_IPI) so that KVM can wake it. There is "
        "no preemption timer: the TSC-deadline write is an intercepted MSR and an expiry on "
        "a running vCPU is a host hrtimer interrupt ('intr' exit), injected through AVIC. "
        "Device and IPI interrupts to a running vCPU go through the AVIC doorbell, no exit."
    ),
    mechanisms=dict(apic_access="x2avic", timer="tsc_deadline", clocksource="tsc",
                    delivery="posted", eoi="virtual", ipi="avic", tpr="cr8_shadow",
                    mask="ioapic_mmio", idle="hlt_exit"),
)
