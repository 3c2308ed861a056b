"""``full-virt-pic``: full virtualization of a legacy guest that EOIs the 8259 PIC."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="full-virt-pic",
    description=(
        "The full-virt preset for a guest that takes its interrupts through the in-kernel "
        "8259 PIC (BIOS, DOS, a kernel without an APIC): it signals end of interrupt by a "
        "port write to the PIC's command port (out 0x20 / 0xa0), one IO_INSTRUCTION exit "
        "through KVM's fast PIO path, instead of a write to the xAPIC EOI register. "
        "`validate` picks it when a host trace shows PIC acknowledges."
    ),
    mechanisms=dict(apic_access="xapic_mmio", timer="lapic_tmict", clocksource="acpi_pm",
                    delivery="inject", eoi="pic", ipi="icr", tpr="apic_access",
                    mask="ioapic_mmio", idle="hlt_exit"),
)
