"""``kvm-pv``: a modern KVM guest with its paravirt features and no APICv."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="kvm-pv",
    description=(
        "A modern Linux KVM guest's PV features on a host without APICv (like this "
        "project's recording machine): x2APIC, TSC-deadline on the preemption timer, "
        "kvm-clock, KVM PV EOI (EOI is a bit in guest memory) and PV send-IPI "
        "(one KVM_HC_SEND_IPI hypercall per destination mask)."
    ),
    mechanisms=dict(apic_access="x2apic_msr", timer="tsc_deadline_preemption",
                    clocksource="pvclock", delivery="inject", eoi="pv_eoi", ipi="pv_multicast",
                    tpr="cr8_shadow", mask="ioapic_mmio", idle="hlt_exit"),
)
