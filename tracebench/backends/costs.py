"""Cost primitives (TSC cycles) and named CPU profiles, each figure with its source.

Defaults are the Skylake-SP-class 2020 server ("skx-2020") of ../shared/COSTS.md
section (d). Figures marked [D] were fitted so that compositions reproduce the
published kvm-unit-tests round trips (the worked examples in
``tests/test_published_figures.py``); [U] marks assumptions no primary source
anchors yet; sweep them before drawing conclusions that depend on them.
"""

from __future__ import annotations

import dataclasses

from tracebench.backends.params import Param, base_name, param_values_from_toml
from tracebench.backends.spread import Spread, median_for_mean
from tracebench.errors import ParamError

_KUT_PIO = "kvm-unit-tests commit 00bfecaa 'vmexit: time ... simple PIO' (2012)"
_TSCDL = "Wanpeng Li, tscdeadline fastpath cover letter, kvm@vger, Apr 2020 (Skylake-SP)"
_IPIV = "Zeng Guang et al., IPI virtualization v7, kvm@vger 2022"
_HALTPOLL_DOC = ("Documentation/virt/kvm/halt-polling.rst: polling saves 'a trip through the "
                 "scheduler, normally on the order of a few micro-seconds'")
_YZ2017 = ("Yang Zhang, '[RFC PATCH v2 0/7] x86/idle: add halt poll support', LKML Aug 2017: "
           "contextswitch in a guest 2,493 ns/switch with HLT vs 1,159 with guest polling")
#: the 2012 host of 00bfecaa, whose figures decompose exactly: vmcall 3,898; outl_to_kernel
#: 4,451 (fast path) and inl_from_kernel 7,237 (the same in-kernel ELCR port through the
#: instruction emulator); inl_from_qemu 20,574 (the same IN, to user space)
_KUT2012_EXIT_CYC = 3898
_KUT2012_PIO_IN_EMULATION_CYC = 7237 - 4451
_KUT2012_USERSPACE_CYC = 20574 - 3898 - _KUT2012_PIO_IN_EMULATION_CYC


def _scaled_2012(cycles_2012: float, exit_roundtrip_cyc: float = 1530) -> float:
    """A software path measured on the 2012 host (3,898-cycle exits) scaled to a host with
    another exit round trip: the user-space exit and the instruction emulator are kernel and
    user code on the same core, taken to speed up with it as the exit path did. No newer
    measurement of them (inl_from_qemu, inl_from_kernel) on a named, non-nested host was
    found; sweep them."""
    return round(cycles_2012 * exit_roundtrip_cyc / _KUT2012_EXIT_CYC)


def _userspace_exit(exit_roundtrip_cyc: float) -> float:
    return _scaled_2012(_KUT2012_USERSPACE_CYC, exit_roundtrip_cyc)


_USERSPACE_SRC = (f"[D] inl_from_qemu 20,574 - vmcall 3,898 - IN emulation 2,786 = 13,890 "
                  f"cycles on the 2012 host ('exiting to userspace is 13000 cycles', {_KUT_PIO})"
                  ", x this profile's exit round trip / that host's 3,898; sweep 3,700-13,900")
_EMU_SCALED_SRC = ("[D] the 2012 emulator, 2,786 cycles (inl_from_kernel - outl_to_kernel, "
                   f"{_KUT_PIO}), x this profile's exit round trip / 3,898")
_PIO_EMU_SRC = (f"[D] inl_from_kernel 7,237 - outl_to_kernel 4,451: the same in-kernel port "
                f"read through the emulator, which KVM then used for every IN, {_KUT_PIO}")

CYCLE_PARAMS: tuple[Param, ...] = (
    Param("tsc_ghz", 2.4, "GHz", "[U] Skylake-SP Xeon Gold class base clock; CPUs in the "
          "sources are unnamed", "TSC frequency: converts cycles to ns", 0.1, 10.0,
          spreadable=False),
    Param("cost_seed", 0, "seed", "[S] the seed of the per-event draws of distributed costs "
          "(spread.py): the same seed gives the same bytes; backends with one seed draw alike",
          "seed of the cost draws", 0, 2**31 - 1, spreadable=False, integer=True),
    Param("spread_scale", 1, "x", "[S] 1: every distribution as given; 0: every cost a "
          "constant at its mean (the model before cost distributions)",
          "multiplies the log-normal shape (sigma) of every distributed cost about the same "
          "mean", 0, 10,
          spreadable=False),
    Param("exit_roundtrip_cyc", 1530, "cycles", "[C] vmcall 1,529-1,539 cycles, Skylake-SP, "
          "Wanpeng Li, kvm@vger, 13 Mar 2020", "VM exit + trivial handler + VM entry"),
    Param("insn_emulation_cyc", _scaled_2012(_KUT2012_PIO_IN_EMULATION_CYC), "cycles",
          "[D] the 2012 emulator (inl_from_kernel 7,237 - outl_to_kernel 4,451 = 2,786, "
          f"{_KUT_PIO}) x exit round trip / 3,898, as userspace_exit_cyc; sweep 1,100-3,300",
          "fetch + decode + emulate the instruction of a fault-like MMIO exit (APIC_ACCESS, "
          "EPT_MISCONFIG)"),
    Param("apic_write_slowpath_cyc", 6059 - 4338, "cycles", f"[D] xAPIC IPI 6,059 - x2APIC "
          f"4,338 with APICv, {_IPIV}: the xAPIC ICR write is an APIC_WRITE trap through KVM's "
          "full exit path, the x2APIC one an MSR write in its irqs-off fastpath (Wanpeng Li, "
          "'Ultra fast single target IPI fastpath', kvm@vger 2020: 4,238 -> 3,293)",
          "full exit-handling path of a trap-like APIC write (APIC_WRITE, AVIC unaccelerated "
          "write) beyond the fastpath an MSR write takes"),
    Param("userspace_exit_cyc", _userspace_exit(1530), "cycles", _USERSPACE_SRC,
          "KVM -> QEMU -> KVM for a device emulated in user space"),
    Param("pio_in_emulation_cyc", 0, "cycles", "[C] 0: KVM completes a non-string IN from the "
          "exit qualification (port, size) in kvm_fast_pio_in (arch/x86/kvm/x86.c), no "
          "instruction emulator; nested vmexit 2019 shows inl_from_kernel 13,518 = "
          "outl_to_kernel 13,436 (Bonzini '[PATCH 00/43] VMX optimizations')",
          "instruction emulation an IN port read still pays (the 2012 KVM emulated every IN)"),
    Param("hypercall_handler_cyc", 200, "cycles", "[D] COSTS.md (d) back-end 2: vmcall + ~200",
          "dispatch of a PV hypercall beyond the bare exit"),
    Param("apic_reg_handler_cyc", 100, "cycles", "[U] small register emulation, not measured",
          "emulate a plain local APIC register read/write"),
    Param("msr_handler_cyc", 100, "cycles", "[U] not measured: kvm_get_msr_common / "
          "kvm_set_msr_common on a per-vCPU field (IA32_TSC_ADJUST, IA32_APIC_BASE, the KVM PV "
          "MSRs), taken as small as apic_reg_handler_cyc; perf kvm stat's MSR_READ Avg 1.56 us "
          "(n=132, COSTS.md b.2: exit to entry, tracing included) bounds exit + handler from "
          "above; sweep 100-1,500", "emulate an intercepted MSR outside the APIC/timer table "
          "(read or write) beyond the bare exit"),
    Param("icr_handler_cyc", 800, "cycles", f"[D] fitted: x2APIC IPI 4,338 = exit + ICR + "
          f"posted delivery, {_IPIV}", "ICR write emulation: decode destination, queue IPI"),
    Param("eoi_handler_cyc", 400, "cycles", f"[D] fitted: tscdeadline 7,474 (no APICv) vs "
          f"5,662 (APICv), {_TSCDL}", "EOI emulation: clear ISR, find next pending vector"),
    Param("virtual_eoi_cyc", 332, "cycles", f"[D] the 532 cycles tscdeadline with APICv "
          f"(5,662) leaves after 3,000 + exit + expiry, less posted_inject_cyc (the split is "
          f"assumed: sweep the two together); {_TSCDL}",
          "APICv/AVIC EOI virtualization: vISR/vPPR update and RVI re-evaluation, no exit"),
    Param("timer_program_cyc", 700, "cycles", f"[D] fitted: tscdeadline_immed 4,781/2,919, "
          f"{_TSCDL}", "host side of (re)programming the guest timer (hrtimer/preemption)"),
    Param("timer_expiry_cyc", 600, "cycles", f"[D] fitted: tscdeadline 7,474, {_TSCDL}",
          "host handling of guest timer expiry (mark pending, request injection)"),
    Param("host_timer_irq_cyc", 1200, "cycles", "[C] tscdeadline 6,800 (hrtimer) vs 5,600 "
          "(preemption timer), Haswell, kvm-unit-tests commit cfbd129c (2017)",
          "extra cost when a host hrtimer interrupt, not the preemption timer, expires"),
    Param("inject_cyc", 400, "cycles", f"[D] fitted: tscdeadline 7,474 no APICv, {_TSCDL}",
          "legacy event injection on VM entry (KVM_REQ_EVENT)"),
    Param("posted_inject_cyc", 200, "cycles", "[D] half of inject_cyc: the PIR -> vIRR sync "
          "and RVI write left to KVM, the CPU doing the ack/ISR/PPR work of the legacy path; "
          f"with virtual_eoi_cyc it makes up tscdeadline 5,662 (APICv), {_TSCDL}; the "
          "figure fixes only their sum (sweep 0-530)",
          "virtual-interrupt delivery via the posted-interrupt descriptor"),
    Param("posted_notify_cyc", 2000, "cycles", f"[D] fitted: x2APIC IPI 4,338 (APICv, no "
          f"IPIv), {_IPIV}; COSTS.md (d) gives 1,000-2,000 [U]",
          "notification IPI to a running vCPU's pCPU + hardware delivery, no exit"),
    Param("host_ipi_cyc", 1500, "cycles", "[U] COSTS.md (d): host notification IPI ~1,000-2,000",
          "host IPI that kicks a running vCPU out of guest mode"),
    Param("host_irq_route_cyc", 1500, "cycles", "[U] host IRQ handler + irqfd/MSI routing, not "
          "measured in COSTS.md", "host work before a device interrupt can be injected"),
    Param("halt_wakeup_cyc", 4800, "cycles", f"[D] 2 us at 2.4 GHz, the low end of {_HALTPOLL_DOC}"
          f"; a measured bracket: {_YZ2017} (the whole HLT path, exits included, 1.3 us on "
          "a polling host): sweep 2,000-7,200",
          "wake a halted vCPU thread through the host scheduler and re-enter the guest"),
    Param("wake_request_cyc", 1000, "cycles", "[U] not measured: kvm_vcpu_wake_up of a blocked "
          "vCPU thread (rcuwait_wake_up -> try_to_wake_up, a remote wake-up) as the sender's "
          "AVIC_INCOMPLETE_IPI handler makes it (avic_kick_vcpu, arch/x86/kvm/svm/avic.c); "
          "at least the ~600 cycles of RCU overhead KVM's kick paths shed (Ice Lake-SP, "
          "kvm@vger Oct 2021, COSTS.md a.2); sweep 600-2,000",
          "request the wake-up of one blocked vCPU (the waker's side; the woken thread's "
          "latency is halt_wakeup_cyc)"),
    Param("pmtimer_device_cyc", 4041, "cycles", f"[D] inl_from_pmtimer 24,615 - inl_from_qemu "
          f"20,574, {_KUT_PIO}", "QEMU's ACPI PM timer device model per read"),
    Param("hpet_device_cyc", 4041, "cycles", "[U] assumed equal to the PM timer device model "
          "(COSTS.md a.3: HPET ~ userspace MMIO)", "QEMU's HPET counter read"),
    Param("inkernel_pio_cyc", 553, "cycles", f"[D] outl_to_kernel 4,451 - vmcall 3,898, "
          f"{_KUT_PIO}", "in-kernel device (PIT, PIC, ELCR) port access handler"),
    Param("ioapic_handler_cyc", 300, "cycles", "[U] in-kernel IO-APIC register emulation; "
          "COSTS.md (d) IO-APIC EOI not measured", "IO-APIC IOREGSEL/IOWIN access handler"),
    Param("pv_ipi_per_target_cyc", 150, "cycles", "[U] per-destination work of KVM_HC_SEND_IPI",
          "per-target cost inside one PV multicast IPI hypercall"),
    Param("ipiv_send_cyc", 1645, "cycles", f"[D] fitted: x2APIC IPI with IPIv 3,645 - posted "
          f"delivery 2,000, {_IPIV}", "sender-side cost of a hardware-virtualized IPI"),
    Param("shared_mem_cyc", 20, "cycles", "[U] COSTS.md (d) back-end 4: ~20, no published figure",
          "EOI/mask/flag update in guest-host shared memory"),
    Param("pvclock_read_cyc", 40, "cycles", "[U] COSTS.md a.3: rdtsc + pvclock scaling 20-60",
          "kvm-clock / pvclock / VMI GetCycleCounter read"),
    Param("tsc_read_cyc", 25, "cycles", "[U] COSTS.md (d): native rdtsc ~25", "rdtsc"),
    Param("native_apic_access_cyc", 40, "cycles", "[U] x2APIC MSR / APIC page access on bare "
          "metal, not measured", "bare-metal local APIC register access"),
    Param("native_ioapic_access_cyc", 200, "cycles", "[U] uncached MMIO to the IO-APIC",
          "bare-metal IO-APIC register access"),
    Param("native_irq_entry_cyc", 300, "cycles", "[U] APIC delivery + IDT entry on bare metal",
          "hardware interrupt delivery to the handler's first instruction"),
    Param("native_c1_exit_cyc", 4800, "cycles", "[C] skx_cstates C1 exit_latency = 2 (us), "
          "drivers/idle/intel_idle.c; 2 us at 2.4 GHz", "wake a halted CPU from C1 on bare metal"),
    # idle-polling windows are times, not cycles (idle options hlt_halt_poll, guest_haltpoll)
    Param("halt_poll_ns", 200000, "ns", "[C] KVM_HALT_POLL_NS_DEFAULT 200000 on x86 "
          "(arch/x86/include/asm/kvm_host.h; module parameter kvm.halt_poll_ns); KVM grows and "
          "shrinks it per vCPU, modelled fixed", "how long KVM polls after a HLT exit before "
          "it schedules the vCPU thread out", 0, 1e9, spreadable=False),
    Param("lapic_timer_advance_ns", 5000, "ns", "[C] kvm.lapic_timer_advance_ns default -1: "
          "adaptive from 1000 up to LAPIC_TIMER_ADVANCE_NS_MAX 5000 (arch/x86/kvm/lapic.c); "
          "modelled settled: the halted-vCPU timer path's latency, up to this cap",
          "how early KVM fires a guest timer at most (0: advance off)", 0, 1e6, spreadable=False),
    Param("guest_halt_poll_ns", 200000, "ns", "[C] guest_halt_poll_ns default 200000 "
          "(drivers/cpuidle/governors/haltpoll.c, cpuidle-haltpoll); adaptive, modelled fixed",
          "how long the guest's haltpoll cpuidle driver polls before it executes HLT", 0, 1e9,
          spreadable=False),
)

_KVM_STAT = ("shifted log-normal fitted to a perf kvm stat row's Min, Avg and +-% (CV = "
             "%/100 x sqrt(n)), COSTS.md b.2 (Linux guest, TSC-deadline era, 2021)")
_MEDIAN_SHAPE = ("[D] p99/p50 4 and min/p50 0.5: the median shape of 15 x86 exit classes "
                 "in the perf kvm stat tables of COSTS.md b.2/b.4/b.5 (n >= 300 each)")
_EXT_SHAPE = ("[D] p99/p50 6.5, min/p50 0.42: EXTERNAL_INTERRUPT rows of COSTS.md b.2, b.4, "
              "b.5 (fits 7.5, 6.5, 2.0), their median")
#: default spreads (facets at the default median) and where each comes from; the p50 is the
#: parameter's own default. Busy production hosts measured with perf running: sweep the
#: p99/p50 ratio 1.5-7 (``spread_scale``) before concluding from a tail.
DEFAULT_SPREADS: dict[str, tuple[dict[str, float], str]] = {
    "exit_roundtrip_cyc": ({"min": 1150, "p99": 6300}, f"[D] CPUID rows (n=2,160): {_KVM_STAT}"
                           "; p99/p50 4.1, the median of 15 exit classes too"),
    "timer_program_cyc": ({"min": 290, "p99": 4900}, f"[D] MSR_WRITE (n=42,521): {_KVM_STAT}"),
    "timer_expiry_cyc": ({"min": 190, "p99": 2700},
                         f"[D] PREEMPTION_TIMER (n=1,805): {_KVM_STAT}"),
    "host_timer_irq_cyc": ({"min": 500, "p99": 7800}, _EXT_SHAPE),
    "host_ipi_cyc": ({"min": 630, "p99": 9800}, _EXT_SHAPE + ": the kicked vCPU's exit"),
    "host_irq_route_cyc": ({"min": 630, "p99": 9800}, _EXT_SHAPE),
    "icr_handler_cyc": ({"min": 140, "p99": 3850}, f"[D] APIC_WRITE (n=6,226): {_KVM_STAT}"),
    "apic_write_slowpath_cyc": ({"min": 290, "p99": 8300},
                                f"[D] APIC_WRITE (n=6,226): {_KVM_STAT}"),
    "eoi_handler_cyc": ({"min": 200, "p99": 1600}, _MEDIAN_SHAPE),
    "inject_cyc": ({"min": 200, "p99": 1600}, _MEDIAN_SHAPE + "; injection runs inside the "
                   "entry path of every measured exit"),
    "posted_inject_cyc": ({"min": 100, "p99": 800}, _MEDIAN_SHAPE),
    "apic_reg_handler_cyc": ({"min": 50, "p99": 400}, _MEDIAN_SHAPE),
    "msr_handler_cyc": ({"min": 50, "p99": 400}, _MEDIAN_SHAPE),
    "hypercall_handler_cyc": ({"min": 100, "p99": 800}, _MEDIAN_SHAPE + " (VMCALL rows: 2.8)"),
    "ioapic_handler_cyc": ({"min": 150, "p99": 1200}, _MEDIAN_SHAPE),
    "pv_ipi_per_target_cyc": ({"min": 75, "p99": 600}, _MEDIAN_SHAPE),
    "inkernel_pio_cyc": ({"min": 276, "p99": 2212}, _MEDIAN_SHAPE),
    "userspace_exit_cyc": ({"min": 1700, "p99": 20000}, "[D] IO_INSTRUCTION to RTC/PIT ports, "
                           "Windows guest on a loaded host (n=55,654, COSTS.md b.4), fitted as "
                           "b.2's rows: p99/p50 3.7 (Linux b.2 IO_INSTRUCTION: 3.5)"),
    "halt_wakeup_cyc": ({"min": 2000, "p99": 12000}, "[U] no host-side wake-up distribution "
                        "was found: p99/p50 2.5 is a futex wake of an idle vCPU measured in a "
                        "nested KVM guest (tracebench calibrate); floor the low end of the "
                        "sweep (Yang Zhang 2017: 1,159 ns with polling)"),
}


def _mean_anchored(p: Param) -> Param:
    """``p`` with its default spread, the published figure its *mean*: every figure above
    is a mean (kvm-unit-tests prints cycles per iteration of a loop of >= 2^30 cycles;
    ``perf kvm stat`` prints Avg time), and the shapes were fitted to ``perf kvm stat`` rows
    by their Avg. So the default median is the figure over the shape's mean/median ratio
    (1.09-1.42), and a replay's mean cost is the published figure, not 9-42 % above it."""
    facets, source = DEFAULT_SPREADS[p.name]
    median, facets = median_for_mean(p.name, p.default, facets)
    return dataclasses.replace(
        p, default=median, spread=facets, spread_source=source,
        source=f"{p.source} [mean {p.default:,.0f}: the default is the median of the "
               "spread with that mean]")


CYCLE_PARAMS = tuple(_mean_anchored(p) if p.name in DEFAULT_SPREADS else p
                     for p in CYCLE_PARAMS)
CYCLE_PARAM_NAMES = frozenset(p.name for p in CYCLE_PARAMS)
#: published mean -> default median, per distributed parameter (a shape-only ratio)
_MEDIAN_PER_MEAN = {p.name: p.default / Spread.of(p.name, p.default, dict(p.spread), p.name).mean
                    for p in CYCLE_PARAMS if p.spread}


def _median(name: str, mean: float) -> float:
    """A profile's published figure (a mean) as the median its value is."""
    return mean * _MEDIAN_PER_MEAN[name]


@dataclasses.dataclass(frozen=True)
class CpuProfile:
    """A named set of overrides of :data:`CYCLE_PARAMS` for one class of host CPU. Its
    published figures are means; a distributed cost's value is the median (``_median``)."""

    name: str
    description: str
    values: dict
    sources: dict

    def __post_init__(self):
        unknown = {base_name(k) for k in self.values} - CYCLE_PARAM_NAMES
        assert not unknown, f"profile {self.name}: unknown {unknown}"
        assert set(self.sources) == set(self.values), f"profile {self.name}: unsourced values"


PROFILES: dict[str, CpuProfile] = {
    p.name: p
    for p in (
        CpuProfile("skx-2020", "Skylake-SP / Cascade Lake server, KVM ~5.x (the defaults)", {}, {}),
        CpuProfile(
            "nhm-2010", "Nehalem-EP server (Xeon X5570 2.93 GHz), KVM 2.6.34 era",
            {"tsc_ghz": 2.93, "exit_roundtrip_cyc": _median("exit_roundtrip_cyc", 2000),
             "insn_emulation_cyc": _scaled_2012(_KUT2012_PIO_IN_EMULATION_CYC, 2000),
             "pio_in_emulation_cyc": _scaled_2012(_KUT2012_PIO_IN_EMULATION_CYC, 2000),
             "userspace_exit_cyc": _median("userspace_exit_cyc", _userspace_exit(2000))},
            {"tsc_ghz": "[C] Xeon X5570 2.93 GHz, SplitX (WIOV 2011) Sec. 1",
             "exit_roundtrip_cyc": "[C] ~2,000-cycle direct exit cost, Landau et al., SplitX "
                                   "(WIOV 2011)",
             "insn_emulation_cyc": _EMU_SCALED_SRC,
             "pio_in_emulation_cyc": _EMU_SCALED_SRC + " (KVM then emulated every IN)",
             "userspace_exit_cyc": _USERSPACE_SRC},
        ),
        CpuProfile(
            "kvm-2012", "the unnamed 2012 host of kvm-unit-tests commit 00bfecaa",
            {"tsc_ghz": 2.9, "exit_roundtrip_cyc": _median("exit_roundtrip_cyc", _KUT2012_EXIT_CYC),
             "insn_emulation_cyc": _KUT2012_PIO_IN_EMULATION_CYC,
             "pio_in_emulation_cyc": _KUT2012_PIO_IN_EMULATION_CYC,
             "userspace_exit_cyc": _median("userspace_exit_cyc", _KUT2012_USERSPACE_CYC)},
            {"tsc_ghz": "[U] host not named in the commit",
             "exit_roundtrip_cyc": f"[C] vmcall 3,898 cycles, {_KUT_PIO}",
             "insn_emulation_cyc": _PIO_EMU_SRC + " ('the cost of emulation is 3300 cycles' "
                                   "counts the ELCR device too)",
             "pio_in_emulation_cyc": _PIO_EMU_SRC,
             "userspace_exit_cyc": f"[D] inl_from_qemu 20,574 - vmcall 3,898 - IN emulation "
                                   f"2,786 ('exiting to userspace is 13000 cycles'), {_KUT_PIO}"},
        ),
        CpuProfile(
            "modern-2024", "2024-class Intel server, KVM 6.x",
            {"tsc_ghz": 2.1, "exit_roundtrip_cyc": _median("exit_roundtrip_cyc", 1050),
             "userspace_exit_cyc": _median("userspace_exit_cyc", _userspace_exit(1050)),
             "insn_emulation_cyc": _scaled_2012(_KUT2012_PIO_IN_EMULATION_CYC, 1050)},
            {"tsc_ghz": "[U] Sapphire/Emerald Rapids class base clock",
             "exit_roundtrip_cyc": "[C] cpuid exit 1,018-1,053 cycles, Christopherson/Kauer, "
                                   "kvm@vger, Dec 2024",
             "userspace_exit_cyc": _USERSPACE_SRC, "insn_emulation_cyc": _EMU_SCALED_SRC},
        ),
    )
}
DEFAULT_PROFILE = "skx-2020"


def profile_values(name: str | None) -> dict:
    """Overrides of the named profile (``None`` -> the defaults), or of a profile file:
    a path ending in ``.toml`` (``tracebench calibrate -o``) whose ``[params]`` table holds
    cycle-parameter values; its other tables (measured distributions) are not read."""
    if name is None:
        return {}
    if name.endswith(".toml"):
        values = param_values_from_toml(name)
        unknown = sorted(k for k in values if base_name(k) not in CYCLE_PARAM_NAMES)
        if unknown:
            raise ParamError(f"{name}: unknown parameter {unknown[0]!r} in the profile; valid: "
                             f"{', '.join(sorted(CYCLE_PARAM_NAMES))}")
        return values
    try:
        return dict(PROFILES[name].values)
    except KeyError:
        raise ParamError(f"unknown CPU profile {name!r}; known: {', '.join(PROFILES)} "
                         "or a profile .toml file") from None
