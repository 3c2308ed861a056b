"""``x2apic-tscdeadline``: a modern KVM guest on an Intel host without APICv."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="x2apic-tscdeadline",
    description=(
        "KVM on Intel VMX without APICv (enable_apicv=0, or a CPU without it): x2APIC MSRs "
        "(MSR_WRITE exits, no decode) for EOI and ICR, the TSC-deadline timer with expiry on "
        "the VMX preemption timer, TSC clocksource, CR8 TPR shadow, legacy injection. AMD "
        "hosts without AVIC have no preemption timer: use svm."
    ),
    mechanisms=dict(apic_access="x2apic_msr", timer="tsc_deadline_preemption", clocksource="tsc",
                    delivery="inject", eoi="trap", ipi="icr", tpr="cr8_shadow",
                    mask="ioapic_mmio", idle="hlt_exit"),
)
