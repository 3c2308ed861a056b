"""``irqchip``: an abstract genirq irq_chip whose interrupts the hypervisor injects."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="irqchip",
    description=(
        "Abstract IRQ chip (event-channel style, the 2007 proposal): per-cpu and global "
        "interrupts are events the hypervisor posts to the vCPU (no exit on a running "
        "target); EOI, mask, unmask and priority live in shared memory; an IPI to any set of "
        "vCPUs is one hypercall; timer and clock are paravirtual (alarm hypercall, pvclock)."
    ),
    mechanisms=dict(apic_access="shared_mem", timer="pv_alarm", clocksource="pvclock",
                    delivery="posted", eoi="shared_mem", ipi="pv_multicast", tpr="shared_mem",
                    mask="shared_mem", idle="hlt_exit"),
)
