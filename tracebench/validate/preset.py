"""Pick the preset whose mechanisms match the host configuration a trace shows.

The evidence is what a host trace or report can show: the exit reasons (APICv's
APIC_WRITE / EOI_INDUCED, AVIC's ``avic_*``, xAPIC's APIC_ACCESS, the preemption
timer, AMD's ``idle-halt``), the tracepoints seen (``kvm_pv_eoi``, ``kvm_hypercall``
KVM_HC_SEND_IPI, ``kvm_pvclock_update``, ``kvm_msr`` on x2APIC / TSC-deadline MSRs,
``kvm_mmio`` on the xAPIC page, PIC acknowledges) and the guest events derived from it.
Every rule that fires is reported, so the choice can be checked.

AMD's Idle HLT intercept shows only in an ``idle-halt`` exit: a host with it intercepts
IDLE_HLT instead of HLT, so a blocking HLT prints ``idle-halt``, never ``hlt``, and a HLT
with an interrupt pending shows nothing at all. A trace without either HLT exit cannot
tell the two hosts apart.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Evidence:
    """What the trace (and report) show.

    Attributes
    ----------
    reasons : canonical exit reasons seen (upper case).
    events : tracepoint name -> count.
    msrs : MSR indices seen in ``kvm_msr`` (written or read).
    kinds : guest event kind -> count of the derived trace.
    isa : ``vmx``, ``svm`` or ``unknown``.
    """

    reasons: set[str]
    events: dict[str, int]
    msrs: set[int]
    kinds: dict[str, int]
    isa: str


def choose(ev: Evidence) -> tuple[str, list[str]]:
    """(preset name, the reasons for it, one line each)."""
    why = []
    if ev.isa != "unknown":
        why.append(f"{ev.isa.upper()} exit names in kvm_exit / the report")
    apicv = ev.reasons & {"APIC_WRITE", "EOI_INDUCED"}
    avic = any(e.startswith("kvm_avic") for e in ev.events) or "avic_incomplete_ipi" in ev.events
    idle_halts = ev.events.get("kvm_exit_idle_halt", 0)
    if apicv or avic:
        why.append("APIC virtualization: " + (", ".join(sorted(apicv)) + " exits" if apicv
                                              else "AVIC events"))
        if avic or ev.isa == "svm":
            if idle_halts:
                why.append(f"{idle_halts} idle-halt exits: the Idle HLT intercept, which the "
                           "avic preset leaves out (base = 'avic' with idle = 'idle_hlt' in "
                           "a TOML backend has it)")
            return "avic", why
        ipis = ev.kinds.get("ipi_send", 0)
        if ipis and not ev.reasons & {"MSR_WRITE", "APIC_WRITE", "MSR"}:
            why.append(f"{ipis} IPIs sent without an ICR exit: IPI virtualization")
            return "apicv-ipiv", why
        return "apicv", why
    xapic = "APIC_ACCESS" in ev.reasons or ev.events.get("kvm_mmio_xapic", 0) > 0
    legacy = ev.events.get("kvm_pic_set_irq", 0) or ev.events.get("kvm_ack_irq_pic", 0)
    x2apic = any(0x800 <= m <= 0x8FF for m in ev.msrs)
    tscdl = 0x6E0 in ev.msrs
    if xapic or (legacy and not x2apic and not tscdl):
        why.append("xAPIC MMIO accesses (APIC_ACCESS / kvm_mmio on 0xfee00000)" if xapic
                   else "8259 PIC interrupts and no x2APIC or TSC-deadline MSR")
        pic_eois = ev.events.get("kvm_ack_irq_pic", 0)
        if pic_eois and not xapic:
            # the guest acknowledges the 8259, not a local APIC: its EOI is a port write
            why.append(f"{pic_eois} PIC acknowledges (kvm_ack_irq PIC): the guest's EOI is a "
                       "port write to the 8259 (out 0x20/0xa0, one IO_INSTRUCTION exit), "
                       "not an xAPIC EOI register write")
            return "full-virt-pic", why
        return "full-virt", why
    pv = []
    if ev.events.get("kvm_pv_eoi"):
        pv.append("kvm_pv_eoi")
    if ev.events.get("kvm_hypercall_send_ipi"):
        pv.append("KVM_HC_SEND_IPI hypercalls")
    if ev.events.get("kvm_pvclock_update"):
        pv.append("kvm_pvclock_update")
    if x2apic or tscdl:
        why.append("x2APIC MSR exits" if x2apic else "TSC-deadline MSR (0x6e0) writes")
    if "PREEMPTION_TIMER" in ev.reasons or ev.events.get("kvm_hv_timer_state"):
        why.append("VMX preemption timer in use")
    if pv:
        why.append("paravirt features: " + ", ".join(pv))
        return "kvm-pv", why
    if x2apic or tscdl or ev.reasons:
        why.append("no PV EOI / PV IPI / kvm-clock evidence")
        if ev.isa == "svm":
            why.append("AMD without AVIC: no preemption timer")
            if idle_halts:
                why.append(f"{idle_halts} idle-halt exits: the Idle HLT intercept (a HLT with "
                           "an interrupt pending does not exit)")
                return "svm-idlehlt", why
            if "HLT" not in ev.reasons:
                why.append("no HLT exit: whether the host has the Idle HLT intercept cannot "
                           "be told (replayed without it)")
            return "svm", why
        return "x2apic-tscdeadline", why
    why.append("no host configuration visible: the KVM default of a modern guest")
    return "kvm-pv", why
