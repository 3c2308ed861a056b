"""The ``idle`` axis: what a vCPU does when it goes idle (``sti; hlt``), and what the HLT costs.

A HLT exit is accounted when the vCPU re-enters: its time is the time blocked. One that
finds an interrupt pending returns at once (``kvm_vcpu_check_block``): ``IPI_HLT_RETURN_*``.
With AMD's Idle HLT intercept (CPUID Fn8000_000A_EDX[30]; KVM sets ``INTERCEPT_IDLE_HLT``
instead of ``INTERCEPT_HLT`` on such hosts since Linux 6.14, ``init_vmcb`` in
arch/x86/kvm/svm/svm.c, and the exit prints as ``idle-halt``) the CPU intercepts HLT only
when no virtual interrupt is pending (V_INTR, V_NMI, AVIC IRR): that HLT neither exits
nor blocks. Polling windows are given in ns and stored as cycles like every cost.
"""

from __future__ import annotations

from tracebench.backends import layout as L
from tracebench.backends.model import CycleModel
from tracebench.schema import EventKind as K
from tracebench.schema import ExitReason as R


def _idle(m: CycleModel, p, halts: bool, hlt_exit: bool, poll: str = "",
          idle_hlt: bool = False) -> None:
    m.ipi[L.IPI_HALTS] = 1 if halts else 0
    if hlt_exit:
        m.action(K.IDLE_EXIT, 0.0, 1, R.HLT)
        # a HLT that finds an interrupt pending: one exit round trip, or none at all
        m.ipi[L.IPI_HLT_RETURN_COST] = 0 if idle_hlt else p.exit_roundtrip_cyc
        m.ipi[L.IPI_HLT_RETURN_EXITS] = 0 if idle_hlt else 1
    # polling windows (ns) as cycles; cpuidle-haltpoll turns host polling off (MSR_KVM_POLL_CONTROL)
    if poll:
        m.ipi[L.IPI_HOST_POLL if poll == "host" else L.IPI_GUEST_POLL] = p.tsc_ghz * (
            p.halt_poll_ns if poll == "host" else p.guest_halt_poll_ns)


IDLE = {
    "native": ("bare-metal HLT/mwait into C1", lambda m, p: _idle(m, p, True, False)),
    "hlt_exit": ("HLT exits; the vCPU thread blocks in the host until an interrupt, unless "
                 "one is already pending", lambda m, p: _idle(m, p, True, True)),
    "idle_hlt": ("AMD Idle HLT intercept (Linux 6.14+, exit 'idle-halt'): HLT exits only "
                 "with no interrupt pending; one that finds an interrupt pending neither "
                 "exits nor blocks", lambda m, p: _idle(m, p, True, True, idle_hlt=True)),
    "hlt_halt_poll": ("HLT exits; KVM polls halt_poll_ns before it blocks the thread: a "
                      "wake-up inside that window costs no schedule",
                      lambda m, p: _idle(m, p, True, True, "host")),
    "guest_haltpoll": ("guest cpuidle-haltpoll polls guest_halt_poll_ns before HLT (host "
                       "polling off): an interrupt inside it takes no HLT exit",
                       lambda m, p: _idle(m, p, True, True, "guest")),
    "poll": ("guest polls instead of halting (idle=poll, successful haltpoll): no exit, "
             "no wakeup", lambda m, p: _idle(m, p, False, False)),
}
