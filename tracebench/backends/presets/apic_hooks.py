"""``apic-hooks``: VMI-style paravirt apic_read/apic_write, everything else emulated."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="apic-hooks",
    description=(
        "Paravirtual APIC hooks (VMware VMI, 2007): apic_read/apic_write become hypercalls, "
        "so every local-APIC access (TMICT, EOI, ICR2+ICR, TPR) is one VMCALL with no "
        "instruction decode. The clocksource (ACPI PM timer) and IO-APIC stay emulated."
    ),
    mechanisms=dict(apic_access="hypercall", timer="lapic_tmict", clocksource="acpi_pm",
                    delivery="inject", eoi="trap", ipi="icr", tpr="apic_access",
                    mask="ioapic_mmio", idle="hlt_exit"),
)
