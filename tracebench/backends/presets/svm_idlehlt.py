"""``svm-idlehlt``: KVM on AMD without AVIC, on a host with the Idle HLT intercept."""

from tracebench.backends.base import Backend

BACKEND = Backend(
    name="svm-idlehlt",
    description=(
        "The svm preset (KVM on AMD without AVIC) on a CPU with the Idle HLT intercept "
        "(Zen 5 class [U]), Linux 6.14+: KVM intercepts IDLE_HLT instead of HLT, so a HLT "
        "exits ('idle-halt') only when no interrupt is pending; a HLT with one pending "
        "(V_INTR set, e.g. a self-IPI raised with interrupts off before 'sti; hlt') takes "
        "no exit and does not block, and the interrupt comes through the interrupt-window "
        "(VINTR) exit alone."
    ),
    mechanisms=dict(apic_access="x2apic_msr", timer="tsc_deadline", clocksource="tsc",
                    delivery="inject", eoi="trap", ipi="icr", tpr="cr8_shadow",
                    mask="ioapic_mmio", idle="idle_hlt"),
)
