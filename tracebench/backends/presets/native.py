"""``native``: bare metal, the floor every virtualized design is measured against."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="native",
    description=(
        "Bare metal: the guest's operations go straight to the hardware LAPIC, IO-APIC and "
        "TSC. No VM exits; latencies are hardware delivery and C1 wakeup only."
    ),
    mechanisms=dict(apic_access="native", timer="native", clocksource="tsc", delivery="native",
                    eoi="native", ipi="native", tpr="native", mask="native", idle="native"),
)
