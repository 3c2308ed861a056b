"""``vmi-2007``: the VMI interface the 2007 LKML debate was about."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="vmi-2007",
    description=(
        "VMware VMI as merged in Linux 2.6.21 (arch/x86/kernel/vmi_32.c, vmiclock_32.c): "
        "APIC hooks as hypercalls, VMI timer (SetAlarm one-shot hypercall, GetCycleCounter "
        "clocksource) with the hardwired timer IRQ on a private 'VMI-LOCAL' irq_chip whose "
        "mask/unmask are an apic_read plus an apic_write of the LVT, each a hypercall."
    ),
    mechanisms=dict(apic_access="hypercall", timer="pv_alarm", clocksource="pvclock",
                    delivery="inject", eoi="trap", ipi="icr", tpr="apic_access",
                    mask="lvt_hooks", idle="hlt_exit"),
)
