"""``xen-evtchn``: Xen PV/PVH event channels."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="xen-evtchn",
    description=(
        "Xen event channels (PV/PVH guests): interrupts are events with pending/mask bits in "
        "the shared-info page and an upcall; EOI and masking are memory writes; each IPI "
        "destination is one EVTCHNOP_send hypercall; VCPUOP_set_singleshot_timer is the "
        "clockevent and the pvclock page the clocksource. An event for a running vCPU is "
        "not exitless: Xen marks it pending and vcpu_kick() raises VCPU_KICK_SOFTIRQ on the "
        "vCPU's pCPU (an IPI that forces it into Xen, EXTERNAL_INTERRUPT on PVH), and the "
        "upcall is delivered on the way back (xen/common/domain.c, event_channel.c)."
    ),
    mechanisms=dict(apic_access="shared_mem", timer="pv_alarm", clocksource="pvclock",
                    delivery="inject", eoi="shared_mem", ipi="pv_unicast", tpr="shared_mem",
                    mask="shared_mem", idle="hlt_exit"),
)
