"""Mechanisms: the building blocks every backend is composed of.

A backend chooses one option on each axis (DESIGN.md section 4):

==============  ==============================================================
apic_access     how a local-APIC register access reaches the hypervisor
timer           how the guest programs its one-shot timer and how expiry arrives
clocksource     what a clock read costs
delivery        how interrupts reach a running or halted vCPU
eoi             how end-of-interrupt is signalled
ipi             how an IPI is sent
tpr             how task-priority writes are handled
mask            how an interrupt line is masked / unmasked
idle            what a vCPU does when it goes idle (``idle.py``)
==============  ==============================================================

Intercepted MSRs and port I/O outside these axes are a rule, not an axis
(``intercept.py``): one exit each on every virtualized backend, none on bare metal.

Each option is a function of the parameters (cycles) that fills part of a
:class:`CycleModel`. The parameters a backend exposes are exactly those its
options read (recorded while composing), so listings cannot drift from the model.
"""

from __future__ import annotations

from collections.abc import Mapping

from tracebench.backends import layout as L
from tracebench.backends.access import (
    APIC_ACCESS,
    VIRTUALIZED_APIC,
    Access,
    Cost,
    apic_write_trap,
    avic_incomplete_ipi,
    hcall,
)
from tracebench.backends.idle import IDLE
from tracebench.backends.intercept import is_virtualized, other_intercepts
from tracebench.backends.model import CycleModel
from tracebench.errors import ParamError
from tracebench.schema import EventKind as K
from tracebench.schema import ExitReason as R


class RecordingParams:
    """Attribute access to parameter values that remembers which names were read."""

    def __init__(self, values: Mapping[str, float]):
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "used", set())

    def __getattr__(self, name: str) -> float:
        try:
            value = self._values[name]
        except KeyError:
            raise AttributeError(name) from None
        self.used.add(name)
        return value




def _irq_inject_cost(p, delivery: str) -> float:
    return p.posted_inject_cyc if delivery in ("posted", "exitless") else p.inject_cyc


def _timer(kind: str):
    """Timer options: (arm cost, expiry path). ``native`` needs no host at all."""

    def build(m: CycleModel, p, acc: Access, delivery: str) -> None:
        if kind == "native":
            arm = (p.native_apic_access_cyc, 0, R.NONE)
            m.action(K.TIMER_ARM, *arm)
            m.action(K.TIMER_CANCEL, *arm)
            m.interrupt(K.TIMER_IRQ, 0, p.native_irq_entry_cyc, 0, 0, R.NONE,
                        p.native_c1_exit_cyc + p.native_irq_entry_cyc)
            return
        if kind == "lapic_tmict":
            arm = acc.write(p, "timer_program_cyc")
        elif kind == "pv_alarm":
            arm = hcall(p, "timer_program_cyc")
        else:  # tsc_deadline, tsc_deadline_preemption
            arm = (p.exit_roundtrip_cyc + p.timer_program_cyc, 1, R.MSR_WRITE)
        m.action(K.TIMER_ARM, *arm)
        m.action(K.TIMER_CANCEL, *arm)
        inj = _irq_inject_cost(p, delivery)
        if kind == "tsc_deadline_preemption":
            # The preemption timer expires in guest mode: one cheap exit, no host IRQ.
            fire = p.exit_roundtrip_cyc + p.timer_expiry_cyc + inj
            reason = R.PREEMPTION_TIMER
        else:
            fire = p.host_timer_irq_cyc + p.exit_roundtrip_cyc + p.timer_expiry_cyc + inj
            reason = R.EXTERNAL_INTERRUPT
        # A halted vCPU has no preemption timer running: a host hrtimer wakes its thread.
        wake = p.host_timer_irq_cyc + p.timer_expiry_cyc + p.halt_wakeup_cyc + inj
        m.interrupt(K.TIMER_IRQ, 0, fire, fire, 1, reason, wake, wake - p.halt_wakeup_cyc)
        if kind != "pv_alarm":  # KVM LAPIC timers: adaptive advance, settled, up to its cap
            m.timer_advance(min(wake - inj, p.lapic_timer_advance_ns * p.tsc_ghz), inj)
        if delivery == "inject":  # expired with interrupts off: then an interrupt window
            m.legacy_window(K.TIMER_IRQ, fire + p.exit_roundtrip_cyc, inj)

    return build


TIMER = {
    "native": ("bare-metal LAPIC TSC-deadline timer", _timer("native")),
    "lapic_tmict": ("LAPIC one-shot: TMICT register write through apic_access; host hrtimer",
                    _timer("lapic_tmict")),
    "tsc_deadline": ("TSC-deadline MSR write (MSR_WRITE exit); host hrtimer",
                     _timer("tsc_deadline")),
    "tsc_deadline_preemption": ("TSC-deadline MSR write; expiry via the VMX preemption timer "
                                "(PREEMPTION_TIMER exit)", _timer("tsc_deadline_preemption")),
    "pv_alarm": ("one-shot alarm hypercall (VMI SetAlarm, Xen set_timer_op); host hrtimer",
                 _timer("pv_alarm")),
}


def _clock(m: CycleModel, cost: Cost) -> None:
    m.action(K.CLOCK_READ, *cost)


def _pio_in(p) -> float:
    """A port read's exit: the qualification names port, size and direction, so no
    instruction is decoded (``pio_in_emulation_cyc`` is 0 except for the 2012-era KVM)."""
    return p.exit_roundtrip_cyc + p.pio_in_emulation_cyc


CLOCKSOURCE = {
    "tsc": ("rdtsc, not intercepted",
            lambda m, p: _clock(m, (p.tsc_read_cyc, 0, R.NONE))),
    "pvclock": ("kvm-clock / pvclock page: rdtsc + scaling, no exit",
                lambda m, p: _clock(m, (p.pvclock_read_cyc, 0, R.NONE))),
    "acpi_pm": ("ACPI PM timer port read emulated in user space (IO_INSTRUCTION, no decode)",
                lambda m, p: _clock(m, (_pio_in(p) + p.userspace_exit_cyc
                                        + p.pmtimer_device_cyc, 1, R.IO_INSTRUCTION))),
    "hpet": ("HPET counter MMIO read emulated in user space (EPT_MISCONFIG)",
             lambda m, p: _clock(m, (p.exit_roundtrip_cyc + p.insn_emulation_cyc
                                     + p.userspace_exit_cyc + p.hpet_device_cyc,
                                     1, R.EPT_MISCONFIG))),
    "pit": ("i8254 PIT read: latch (OUT) + two byte reads (IN), in-kernel PIO "
            "(3 IO_INSTRUCTION exits, no decode)",
            lambda m, p: _clock(m, (p.exit_roundtrip_cyc + 2 * _pio_in(p)
                                    + 3 * p.inkernel_pio_cyc, 3, R.IO_INSTRUCTION))),
}


def _delivery(kind: str):
    def build(m: CycleModel, p) -> None:
        if kind == "native":
            run, wake = p.native_irq_entry_cyc, p.native_c1_exit_cyc + p.native_irq_entry_cyc
            for k in (K.DEVICE_IRQ, K.IPI_IRQ):
                m.interrupt(k, 0, run, 0, 0, R.NONE, wake)
            return
        inj = _irq_inject_cost(p, kind)
        wake = p.halt_wakeup_cyc + inj
        if kind == "inject":
            # Kick: a host IPI forces the running vCPU out, the interrupt is injected on entry.
            stall = p.exit_roundtrip_cyc + inj
            ipi = (0, p.host_ipi_cyc + stall, stall, 1, R.EXTERNAL_INTERRUPT, wake, inj)
            dev = (p.host_irq_route_cyc,) + ipi[1:]
        else:
            ipi = (0, p.posted_notify_cyc, 0, 0, R.NONE, wake, inj)
            if kind == "exitless":  # ELI: the device's interrupt goes straight to the guest
                dev = (0, p.native_irq_entry_cyc, 0, 0, R.NONE, wake, inj)
            else:
                dev = (p.host_irq_route_cyc,) + ipi[1:]
        m.interrupt(K.IPI_IRQ, *ipi)
        m.interrupt(K.DEVICE_IRQ, *dev)
        for k in (K.IPI_IRQ, K.DEVICE_IRQ) if kind == "inject" else ():
            m.legacy_window(k, p.exit_roundtrip_cyc + inj, inj)

    return build


DELIVERY = {
    "native": ("bare-metal interrupt delivery", _delivery("native")),
    "inject": ("event injection on VM entry; a running vCPU is kicked out "
               "(EXTERNAL_INTERRUPT)", _delivery("inject")),
    "posted": ("posted interrupts / virtual-interrupt delivery (APICv, event-channel upcall): "
               "no exit on a running vCPU", _delivery("posted")),
    "exitless": ("exitless interrupts (ELI): assigned-device interrupts go straight to the "
                 "guest; IPIs and timers posted", _delivery("exitless")),
}

def _pv_eoi(m: CycleModel, p, acc: Access) -> None:
    m.action(K.EOI, p.shared_mem_cyc)
    m.ipi[[L.IPI_EOI_PENDING_COST, L.IPI_EOI_PENDING_EXITS, L.IPI_EOI_PENDING_REASON]] = \
        acc.write(p, "eoi_handler_cyc")


EOI = {
    "native": ("bare-metal EOI register write",
               lambda m, p, acc: m.action(K.EOI, p.native_apic_access_cyc)),
    "trap": ("EOI register write through apic_access (exits unless apic_access is exitless)",
             lambda m, p, acc: m.action(K.EOI, *acc.write(p, "eoi_handler_cyc"))),
    "virtual": ("APICv / AVIC virtual EOI on the virtual-APIC page, no exit (edge vectors)",
                lambda m, p, acc: m.action(K.EOI, p.virtual_eoi_cyc)),
    "pv_eoi": ("KVM PV EOI: a bit in guest memory, no exit unless another interrupt is "
               "pending (then the EOI write); not with APICv/AVIC: see check_mechanisms",
               _pv_eoi),
    "shared_mem": ("irq_chip EOI in shared memory (event channels), no exit",
                   lambda m, p, acc: m.action(K.EOI, p.shared_mem_cyc)),
    # an OUT takes KVM's fast PIO path to the in-kernel PIC (outl_to_kernel), no decode
    "pic": ("8259 PIC EOI: a port write (out 0x20/0xa0) to the in-kernel PIC, one "
            "IO_INSTRUCTION exit, no decode (legacy guests: BIOS, DOS, no APIC)",
            lambda m, p, acc: m.action(K.EOI, p.exit_roundtrip_cyc + p.inkernel_pio_cyc, 1,
                                       R.IO_INSTRUCTION)),
}


def _ipi(kind: str):
    def build(m: CycleModel, p, acc: Access) -> None:
        t = m.ipi
        if kind == "native":
            t[L.IPI_TARGET_COST] = p.native_apic_access_cyc
            t[L.IPI_USES_SHORTHAND], t[L.IPI_SHORT_COST] = 1, p.native_apic_access_cyc
            return
        icr = acc.write(p, "icr_handler_cyc")
        if kind == "icr":
            # xAPIC: ICR2 (destination) then ICR; x2APIC: one 64-bit ICR write.
            extra = acc.write(p, "apic_reg_handler_cyc") if acc.icr_writes == 2 else (0, 0, 0)
            t[L.IPI_TARGET_COST], t[L.IPI_TARGET_EXITS] = icr[0] + extra[0], icr[1] + extra[1]
            t[L.IPI_REASON] = icr[2]
        elif kind == "pv_multicast":
            call = hcall(p, "icr_handler_cyc")
            t[L.IPI_CALL_COST], t[L.IPI_CALL_EXITS], t[L.IPI_REASON] = call
            t[L.IPI_TARGET_COST] = p.pv_ipi_per_target_cyc
            return  # the all-but-self case is one multicast hypercall too
        elif kind == "pv_unicast":
            send = hcall(p, "icr_handler_cyc")
            t[L.IPI_TARGET_COST], t[L.IPI_TARGET_EXITS], t[L.IPI_REASON] = send
            return  # no shorthand: one send per destination
        elif kind == "ipiv":
            # IPIv sends physical-mode fixed IPIs itself, in xAPIC mode after a virtualized
            # ICR2 write; what it cannot virtualize (shorthands) commits to the virtual-APIC
            # page and exits trap-like as APIC_WRITE, no decode, in either APIC mode. A
            # destination mask is taken as one physical unicast per destination (the
            # kernel has no per-send mask column: see docs/backends.md).
            t[L.IPI_TARGET_COST] = p.ipiv_send_cyc
            icr = apic_write_trap(p, "icr_handler_cyc")
        elif kind == "avic":
            # AVIC delivers to every running destination in hardware, shorthands included
            # (one backing-page update and doorbell per destination): no sender exit. One
            # that finds a destination blocked sets its IRR bit, then exits
            # (AVIC_INCOMPLETE_IPI, once per ICR write); KVM wakes each blocked
            # destination from that exit, so their wake-up starts when it ends.
            t[L.IPI_TARGET_COST] = p.ipiv_send_cyc
            t[[L.IPI_BLOCKED_COST, L.IPI_BLOCKED_EXITS, L.IPI_BLOCKED_REASON]] = \
                avic_incomplete_ipi(p)
            t[L.IPI_BLOCKED_TARGET_COST] = p.wake_request_cyc
            return
        t[L.IPI_USES_SHORTHAND] = 1
        t[L.IPI_SHORT_COST], t[L.IPI_SHORT_EXITS], t[L.IPI_SHORT_REASON] = icr

    return build


IPI = {
    "native": ("bare-metal ICR write", _ipi("native")),
    "icr": ("ICR write(s) through apic_access, per destination; all-but-self shorthand",
            _ipi("icr")),
    "pv_multicast": ("one PV send-IPI hypercall for the whole destination mask "
                     "(KVM_HC_SEND_IPI, abstract irq_chip)", _ipi("pv_multicast")),
    "pv_unicast": ("one hypercall per destination (Xen EVTCHNOP_send)", _ipi("pv_unicast")),
    "ipiv": ("IPI virtualization: physical-mode unicast without a sender exit (xAPIC: ICR2 "
             "virtualized); shorthands trap as APIC_WRITE", _ipi("ipiv")),
    "avic": ("AMD AVIC: IPIs to running destinations without exit, shorthands included; "
             "to a halted one the sender exits (AVIC_INCOMPLETE_IPI) and KVM wakes it",
             _ipi("avic")),
}

TPR = {
    "native": ("bare-metal CR8/TPR write",
               lambda m, p, acc: m.action(K.TPR_WRITE, p.native_apic_access_cyc)),
    "apic_access": ("TPR register write through apic_access (32-bit guests, no TPR shadow)",
                    lambda m, p, acc: m.action(K.TPR_WRITE, *acc.write(p, "apic_reg_handler_cyc"))),
    "cr8_shadow": ("CR8 write with the VMX TPR shadow, no exit",
                   lambda m, p, acc: m.action(K.TPR_WRITE, p.native_apic_access_cyc)),
    "shared_mem": ("priority kept in shared memory, no exit",
                   lambda m, p, acc: m.action(K.TPR_WRITE, p.shared_mem_cyc)),
}


def _mask_cost(kind: str, p, acc: Access) -> Cost:
    if kind == "native":
        return 2 * p.native_ioapic_access_cyc, 0, R.NONE
    if kind == "ioapic_mmio":  # IOREGSEL then IOWIN: two MMIO exits to the in-kernel IO-APIC
        return 2 * (p.exit_roundtrip_cyc + p.insn_emulation_cyc + p.ioapic_handler_cyc), 2, \
            R.EPT_MISCONFIG
    if kind == "lvt_hooks":  # VMI-LOCAL irq_chip: apic_read + apic_write of the LVT entry
        r, w = acc.read(p, "apic_reg_handler_cyc"), acc.write(p, "apic_reg_handler_cyc")
        return r[0] + w[0], r[1] + w[1], w[2] if w[1] else r[2]
    return p.shared_mem_cyc, 0, R.NONE


def _mask(kind: str):
    def build(m: CycleModel, p, acc: Access) -> None:
        cost = _mask_cost(kind, p, acc)
        m.action(K.IRQ_MASK, *cost)
        m.action(K.IRQ_UNMASK, *cost)

    return build


MASK = {
    "native": ("bare-metal IO-APIC redirection-entry write", _mask("native")),
    "ioapic_mmio": ("emulated IO-APIC: IOREGSEL + IOWIN MMIO writes (2 EPT_MISCONFIG exits)",
                    _mask("ioapic_mmio")),
    "lvt_hooks": ("VMI-LOCAL irq_chip: mask/unmask = apic_read + apic_write of the LVT",
                  _mask("lvt_hooks")),
    "shared_mem": ("irq_chip mask bit in shared memory, no exit", _mask("shared_mem")),
}


AXES: dict[str, dict] = {
    "apic_access": APIC_ACCESS, "timer": TIMER, "clocksource": CLOCKSOURCE,
    "delivery": DELIVERY, "eoi": EOI, "ipi": IPI, "tpr": TPR, "mask": MASK, "idle": IDLE,
}


def _doc(option) -> str:
    return option.doc if isinstance(option, Access) else option[0]


def axis_options() -> dict[str, dict[str, str]]:
    """Every axis with its options and their one-line descriptions."""
    return {axis: {name: _doc(opt) for name, opt in opts.items()} for axis, opts in AXES.items()}


#: option pairs no real system has, and why (checked by :func:`check_mechanisms`)
_NEEDS = (
    ("eoi", "pv_eoi", "apic_access", tuple(a for a in APIC_ACCESS if a not in VIRTUALIZED_APIC),
     "KVM never sets the PV EOI bit while APICv/AVIC is active (it tracks no highest ISR "
     "then: apic_sync_pv_eoi_to_guest in arch/x86/kvm/lapic.c returns early), so the "
     "guest's EOI is the virtual EOI: choose eoi = 'virtual'"),
    ("ipi", "ipiv", "apic_access", ("x2apic_apicv", "xapic_apicv"),
     "IPI virtualization is an extension of APICv's APIC-register virtualization"),
    ("ipi", "avic", "apic_access", ("x2avic",), "AVIC IPIs need the AVIC backing page"),
)


def check_mechanisms(mech: Mapping[str, str], where: str) -> dict[str, str]:
    """Reject missing axes, unknown axes and unknown options, naming the valid ones, and
    compositions no hypervisor runs (:data:`_NEEDS`)."""
    unknown = set(mech) - set(AXES)
    if unknown:
        raise ParamError(f"{where}: unknown mechanism axis {sorted(unknown)[0]!r}; "
                         f"axes: {', '.join(AXES)}")
    out = {}
    for axis, options in AXES.items():
        if axis not in mech:
            raise ParamError(f"{where}: mechanism {axis!r} not chosen; options: "
                             f"{', '.join(options)}")
        if mech[axis] not in options:
            raise ParamError(f"{where}: {axis} = {mech[axis]!r} is not an option; options: "
                             f"{', '.join(options)}")
        out[axis] = mech[axis]
    for axis, option, other, allowed, why in _NEEDS:
        if out[axis] == option and out[other] not in allowed:
            raise ParamError(f"{where}: {axis} = {option!r} cannot go with {other} = "
                             f"{out[other]!r}: {why}")
    return out


def compose(mech: Mapping[str, str], values: Mapping[str, float]) -> tuple[CycleModel, set[str]]:
    """Build the cycle tables for a mechanism choice; also return the parameter names read."""
    p = RecordingParams(values)
    m = CycleModel()
    acc = APIC_ACCESS[mech["apic_access"]]
    for kind, handler in ((K.APIC_READ, acc.read), (K.APIC_WRITE, acc.write)):
        m.action(kind, *handler(p, "apic_reg_handler_cyc"))
    TIMER[mech["timer"]][1](m, p, acc, mech["delivery"])
    CLOCKSOURCE[mech["clocksource"]][1](m, p)
    DELIVERY[mech["delivery"]][1](m, p)
    EOI[mech["eoi"]][1](m, p, acc)
    IPI[mech["ipi"]][1](m, p, acc)
    TPR[mech["tpr"]][1](m, p, acc)
    MASK[mech["mask"]][1](m, p, acc)
    IDLE[mech["idle"]][1](m, p)
    other_intercepts(m, p, is_virtualized(mech))
    return m, p.used
