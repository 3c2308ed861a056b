"""``pv-clock``: a paravirtual clocksource and clockevent that never touch the PIT."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="pv-clock",
    description=(
        "Custom clocksource + clockevent (kvm-clock/pvclock, VMI timer, Xen): clock reads "
        "are exitless (rdtsc scaled by a shared page) and the one-shot timer is one alarm "
        "hypercall. The local APIC (EOI, IPIs) and IO-APIC remain fully emulated xAPIC."
    ),
    mechanisms=dict(apic_access="xapic_mmio", timer="pv_alarm", clocksource="pvclock",
                    delivery="inject", eoi="trap", ipi="icr", tpr="apic_access",
                    mask="ioapic_mmio", idle="hlt_exit"),
)
