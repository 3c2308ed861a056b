"""``x2apic-tscdeadline``: a modern KVM guest on a host without APICv."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="x2apic-tscdeadline",
    description=(
        "KVM without APICv (e.g. APICv disabled or an AMD host without AVIC): x2APIC MSRs "
        "(MSR_WRITE exits, no decode) for EOI and ICR, the TSC-deadline timer with expiry on "
        "the VMX preemption timer, TSC clocksource, CR8 TPR shadow, legacy injection."
    ),
    mechanisms=dict(apic_access="x2apic_msr", timer="tsc_deadline_preemption", clocksource="tsc",
                    delivery="inject", eoi="trap", ipi="icr", tpr="cr8_shadow",
                    mask="ioapic_mmio", idle="hlt_exit"),
)
