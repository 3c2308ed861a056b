"""Every x86 VM-exit reason as ``perf kvm stat`` / ``kvm_exit`` print it, VMX and SVM.

Beside :mod:`tracebench.schema` (whose :class:`~tracebench.schema.ExitReason` holds the
reasons the model predicts), this table names every reason a real trace or report can
show, so nothing measured is dropped or left without a name: a reason the model covers
maps to its ExitReason label; any other keeps a canonical name of its own (the VMX
spelling where AMD has an equivalent) and is shown as "not modelled".

VMX names: ``VMX_EXIT_REASONS`` in arch/x86/include/uapi/asm/vmx.h (Linux 6.x, plus the
pre-5.7 ``PENDING_INTERRUPT`` for INTERRUPT_WINDOW); SVM names: ``SVM_EXIT_REASONS`` in
arch/x86/include/uapi/asm/svm.h (plus the older spellings ``intr`` and ``vmmcall``).
"""

from __future__ import annotations

import dataclasses

from tracebench.schema import ExitReason


@dataclasses.dataclass(frozen=True)
class ExitName:
    """One printed exit reason.

    Attributes
    ----------
    printed : the name as the tracepoint / ``perf kvm stat`` prints it.
    isa : ``vmx`` or ``svm``.
    code : the hardware exit code (VMX basic exit reason, SVM EXITCODE); -1 if several.
    canonical : upper-case name used to compare across VMX and SVM (an ExitReason
        member name when the model covers it).
    """

    printed: str
    isa: str
    code: int
    canonical: str

    @property
    def label(self) -> str:
        return self.canonical.lower()

    @property
    def modelled(self) -> bool:
        return self.canonical in ExitReason.__members__ and self.canonical != "NONE"


_VMX = (
    (0, "EXCEPTION_NMI"), (1, "EXTERNAL_INTERRUPT"), (2, "TRIPLE_FAULT"), (3, "INIT_SIGNAL"),
    (4, "SIPI_SIGNAL"), (5, "IO_SMI"), (6, "OTHER_SMI"), (7, "INTERRUPT_WINDOW"),
    (8, "NMI_WINDOW"), (9, "TASK_SWITCH"), (10, "CPUID"), (11, "GETSEC"), (12, "HLT"),
    (13, "INVD"), (14, "INVLPG"), (15, "RDPMC"), (16, "RDTSC"), (17, "RSM"), (18, "VMCALL"),
    (19, "VMCLEAR"), (20, "VMLAUNCH"), (21, "VMPTRLD"), (22, "VMPTRST"), (23, "VMREAD"),
    (24, "VMRESUME"), (25, "VMWRITE"), (26, "VMOFF"), (27, "VMON"), (28, "CR_ACCESS"),
    (29, "DR_ACCESS"), (30, "IO_INSTRUCTION"), (31, "MSR_READ"), (32, "MSR_WRITE"),
    (33, "INVALID_STATE"), (34, "MSR_LOAD_FAIL"), (36, "MWAIT_INSTRUCTION"),
    (37, "MONITOR_TRAP_FLAG"), (39, "MONITOR_INSTRUCTION"), (40, "PAUSE_INSTRUCTION"),
    (41, "MCE_DURING_VMENTRY"), (43, "TPR_BELOW_THRESHOLD"), (44, "APIC_ACCESS"),
    (45, "EOI_INDUCED"), (46, "GDTR_IDTR"), (47, "LDTR_TR"), (48, "EPT_VIOLATION"),
    (49, "EPT_MISCONFIG"), (50, "INVEPT"), (51, "RDTSCP"), (52, "PREEMPTION_TIMER"),
    (53, "INVVPID"), (54, "WBINVD"), (55, "XSETBV"), (56, "APIC_WRITE"), (57, "RDRAND"),
    (58, "INVPCID"), (59, "VMFUNC"), (60, "ENCLS"), (61, "RDSEED"), (62, "PML_FULL"),
    (63, "XSAVES"), (64, "XRSTORS"), (67, "UMWAIT"), (68, "TPAUSE"), (74, "BUS_LOCK"),
    (75, "NOTIFY"), (77, "TDCALL"), (84, "MSR_READ_IMM"), (85, "MSR_WRITE_IMM"),
)
#: VMX names that are the same exit as another (older kernels, immediate forms)
_VMX_ALIASES = {"INTERRUPT_WINDOW": "PENDING_INTERRUPT", "MSR_READ_IMM": "MSR_READ",
                "MSR_WRITE_IMM": "MSR_WRITE"}

_SVM = [
    *((0x000 + n, f"read_cr{n}", "CR_ACCESS") for n in (0, 2, 3, 4, 8)),
    *((0x010 + n, f"write_cr{n}", "CR_ACCESS") for n in (0, 2, 3, 4, 8)),
    *((0x020 + n, f"read_dr{n}", "DR_ACCESS") for n in range(8)),
    *((0x030 + n, f"write_dr{n}", "DR_ACCESS") for n in range(8)),
    *((0x040 + v, f"{n} excp", "EXCEPTION_NMI") for v, n in (
        (0, "DE"), (1, "DB"), (3, "BP"), (4, "OF"), (5, "BR"), (6, "UD"), (7, "NM"), (8, "DF"),
        (10, "TS"), (11, "NP"), (12, "SS"), (13, "GP"), (14, "PF"), (16, "MF"), (17, "AC"),
        (18, "MC"), (19, "XF"))),
    (0x060, "intr", "EXTERNAL_INTERRUPT"), (0x060, "interrupt", "EXTERNAL_INTERRUPT"),
    (0x061, "nmi", "EXCEPTION_NMI"), (0x062, "smi", "OTHER_SMI"), (0x063, "init", "INIT_SIGNAL"),
    (0x064, "vintr", "PENDING_INTERRUPT"), (0x065, "cr0_sel_write", "CR_ACCESS"),
    (0x066, "read_idtr", "GDTR_IDTR"), (0x067, "read_gdtr", "GDTR_IDTR"),
    (0x068, "read_ldtr", "LDTR_TR"), (0x069, "read_rt", "LDTR_TR"),
    (0x06a, "write_idtr", "GDTR_IDTR"), (0x06b, "write_gdtr", "GDTR_IDTR"),
    (0x06c, "write_ldtr", "LDTR_TR"), (0x06d, "write_rt", "LDTR_TR"),
    (0x06e, "rdtsc", "RDTSC"), (0x06f, "rdpmc", "RDPMC"), (0x070, "pushf", "PUSHF"),
    (0x071, "popf", "POPF"), (0x072, "cpuid", "CPUID"), (0x073, "rsm", "RSM"),
    (0x074, "iret", "IRET"), (0x075, "swint", "SWINT"), (0x076, "invd", "INVD"),
    (0x077, "pause", "PAUSE_INSTRUCTION"), (0x078, "hlt", "HLT"), (0x079, "invlpg", "INVLPG"),
    (0x07a, "invlpga", "INVLPGA"), (0x07b, "io", "IO_INSTRUCTION"),
    (0x07c, "msr", "MSR"), (0x07d, "task_switch", "TASK_SWITCH"),
    (0x07e, "ferr_freeze", "FERR_FREEZE"), (0x07f, "shutdown", "TRIPLE_FAULT"),
    (0x080, "vmrun", "VMRUN"), (0x081, "vmmcall", "VMCALL"), (0x081, "hypercall", "VMCALL"),
    (0x082, "vmload", "VMLOAD"), (0x083, "vmsave", "VMSAVE"), (0x084, "stgi", "STGI"),
    (0x085, "clgi", "CLGI"), (0x086, "skinit", "SKINIT"), (0x087, "rdtscp", "RDTSCP"),
    (0x088, "icebp", "ICEBP"), (0x089, "wbinvd", "WBINVD"),
    (0x08a, "monitor", "MONITOR_INSTRUCTION"), (0x08b, "mwait", "MWAIT_INSTRUCTION"),
    (0x08c, "mwait_cond", "MWAIT_INSTRUCTION"), (0x08d, "xsetbv", "XSETBV"),
    (0x08e, "rdpru", "RDPRU"), (0x08f, "write_efer_trap", "CR_ACCESS"),
    (0x090, "write_cr0_trap", "CR_ACCESS"), (0x094, "write_cr4_trap", "CR_ACCESS"),
    (0x098, "write_cr8_trap", "TPR_BELOW_THRESHOLD"), (0x0a2, "invpcid", "INVPCID"),
    (0x0a6, "idle-halt", "HLT"), (0x0a6, "idle-hlt", "HLT"),
    # NPF is both EPT_VIOLATION and (reserved-bit) EPT_MISCONFIG; KVM's MMIO to an emulated
    # device (the modelled case) arrives here
    (0x400, "npf", "EPT_MISCONFIG"), (0x401, "avic_incomplete_ipi", "APIC_WRITE"),
    (0x402, "avic_unaccelerated_access", "APIC_ACCESS"), (0x403, "vmgexit", "VMGEXIT"),
    (0x407, "pml_full", "PML_FULL"), (-1, "invalid_guest_state", "INVALID_STATE"),
    (-1, "msr_write", "MSR_WRITE"), (-1, "msr_read", "MSR_READ"),
]

EXIT_NAMES: dict[str, ExitName] = {}
for _code, _name in _VMX:
    EXIT_NAMES[_name] = ExitName(_name, "vmx", _code, _VMX_ALIASES.get(_name, _name))
EXIT_NAMES["PENDING_INTERRUPT"] = ExitName("PENDING_INTERRUPT", "vmx", 7, "PENDING_INTERRUPT")
for _code, _name, _canon in _SVM:
    EXIT_NAMES[_name] = ExitName(_name, "svm", _code, _canon)

#: an SVM ``msr`` exit whose direction the text does not tell (a perf kvm stat report)
MSR_EITHER = "msr"


def lookup(printed: str) -> ExitName:
    """The entry of a printed reason; an unknown one keeps its own name (never None)."""
    hit = EXIT_NAMES.get(printed)
    if hit is not None:
        return hit
    return ExitName(printed, "unknown", -1, printed.upper().replace(" ", "_"))


def exit_label(printed: str, is_write: bool | None = None) -> str:
    """The non-null label of a printed reason (``msr`` with a known direction resolves)."""
    if printed == "msr" and is_write is not None:
        return "msr_write" if is_write else "msr_read"
    return lookup(printed).label


def is_modelled(label: str) -> bool:
    """True when the model predicts exits of this label (an ExitReason other than NONE)."""
    name = label.upper()
    return name in ExitReason.__members__ and name != "NONE"
