"""Which MSRs outside the APIC/timer table a guest trace may count as intercepted.

A host's ``kvm_msr`` fires only inside an RDMSR/WRMSR exit, so every MSR it shows that the
APIC/timer table does not map is an ``msr_read`` / ``msr_write`` (``kvmhost.py``). A guest's
``msr:read_msr`` / ``write_msr`` fire on every access, intercepted or not: only the MSRs
below, which KVM is known to intercept, become those kinds there; the rest stay unmapped
and counted (``read_msr(0x48)``), since KVM passes them through to the hardware without
an exit (SPEC_CTRL 0x48 and PRED_CMD 0x49 once the guest uses them, FS/GS bases,
KERNEL_GS_BASE, SYSENTER and the like: ``vmx_possible_passthrough_msrs`` in
arch/x86/kvm/vmx/vmx.c).
"""

from __future__ import annotations

import numpy as np
import polars as pl

#: (first, last, name, why KVM intercepts it): the one table of intercepted MSRs
INTERCEPTED_MSRS: tuple[tuple[int, int, str, str], ...] = (
    (0x1B, 0x1B, "IA32_APIC_BASE", "the APIC mode and base are KVM's (kvm_set_apic_base); "
     "never in the MSR bitmap's pass-through set"),
    (0x3B, 0x3B, "IA32_TSC_ADJUST", "emulated on a per-vCPU field folded into the TSC "
     "offset (KVM: x86: Emulate IA32_TSC_ADJUST MSR, 2012)"),
    (0x1A0, 0x1A0, "IA32_MISC_ENABLE", "emulated per vCPU (vcpu->arch.ia32_misc_enable_msr)"),
    (0x11, 0x12, "MSR_KVM_WALL_CLOCK / SYSTEM_TIME", "KVM's original paravirt clock MSRs"),
    (0x4B564D00, 0x4B564DFF, "KVM PV MSRs", "kvm-clock, steal time, PV EOI enable, async "
     "PF, poll control: KVM's own, handled in kvm_set_msr_common"),
)

#: the table's ranges as an array, for the compiled guest fast path (``fastmap.py``)
INTERCEPTED_RANGES = np.array([(lo, hi) for lo, hi, _, _ in INTERCEPTED_MSRS], np.int64)


def intercepted(msr: pl.Expr) -> pl.Expr:
    """Whether ``msr`` is in :data:`INTERCEPTED_MSRS`."""
    out = pl.lit(False)
    for lo, hi, _, _ in INTERCEPTED_MSRS:
        out = out | msr.is_between(lo, hi)
    return out

