"""``svm``: KVM on AMD without AVIC (AVIC off, or inhibited)."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="svm",
    description=(
        "KVM on an AMD host without AVIC (SVM): x2APIC MSRs are intercepted ('msr' exits: "
        "MSR_WRITE for ICR, EOI, TSC-deadline; MSR_READ for reads), no instruction decode. "
        "SVM has no preemption timer: the guest's TSC deadline runs on a host hrtimer, so an "
        "expiry on a running vCPU is a host interrupt that forces an 'intr' exit "
        "(EXTERNAL_INTERRUPT) before KVM injects it; other interrupts kick a running vCPU the "
        "same way. Legacy injection (V_IRQ), CR8 writes not intercepted, TSC clocksource."
    ),
    mechanisms=dict(apic_access="x2apic_msr", timer="tsc_deadline", clocksource="tsc",
                    delivery="inject", eoi="trap", ipi="icr", tpr="cr8_shadow",
                    mask="ioapic_mmio", idle="hlt_exit"),
)
