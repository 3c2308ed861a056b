"""Reference documentation generated from the specs, so it cannot drift from the model.

``python scripts/gen_docs.py`` writes ``docs/backends.md``; a test checks it is current.
"""

from __future__ import annotations

from tracebench.backends import builtin_backends
from tracebench.backends.costs import CYCLE_PARAMS, PROFILES
from tracebench.backends.mechanisms import AXES, axis_options
from tracebench.backends.spread import Spread

_MODEL_NOTES = """## APIC mode: the trace's and the backend's

A trace shows its guest's APIC mode: an xAPIC guest polls ICR before each IPI
(`apic_read`, `arg` = 0x300) and its register numbers are xAPIC offsets; an x2APIC guest's
MSRs are recorded with the same offsets (MSR 0x800 + offset/16). An `ipi_send` is the
whole send, whatever the mode: ingest folds an xAPIC ICR2 write into the ICR write that
follows it (the destination), and `synth ipi-storm -p apic_mode=xapic` does the same. Each
backend then charges the writes of *its* APIC mode: `xapic_mmio` and `hypercall` two
register writes (ICR2, ICR), `xapic_apicv` one (ICR2 is virtualized), the x2APIC options
one 64-bit ICR MSR write. So an xAPIC ICR2+ICR pair replays as one ICR MSR write under an
x2APIC backend, and an x2APIC trace replays as ICR2+ICR under `full-virt`.

The kernels charge an event by its kind, never by its register, so two things cannot be
reconciled there: an `apic_write` of ICR2 given as its own event (no ingest or scenario
writes one) is charged as a register write; and an xAPIC trace's ICR polls are register
reads under every backend: exitless under APICv/AVIC and on bare metal, but MSR_READ exits
under `x2apic_msr` backends (`x2apic-tscdeadline`, `svm`, `kvm-pv`), where an x2APIC guest
would not poll at all.

## Intercepted MSRs and port I/O: a rule, not an axis

`msr_read`, `msr_write` (an intercepted MSR outside the APIC/timer table: IA32_TSC_ADJUST,
IA32_APIC_BASE, the KVM PV MSRs) and `port_io` (a port no other kind holds: keyboard,
serial, RTC) trap alike under every hypervisor, whatever its interrupt and timer design, so
they follow from whether the backend is virtualized (`tracebench/backends/intercept.py`):
every backend whose `delivery` is not `native` takes one exit each, MSR_READ / MSR_WRITE at
`exit_roundtrip_cyc + msr_handler_cyc` and IO_INSTRUCTION at an unhandled port's exit to
user space (`exit_roundtrip_cyc + pio_in_emulation_cyc + userspace_exit_cyc`, kvm-unit-tests'
`inl_from_qemu`); `native` none. An OUT is charged as an IN. The 8259 PIC's EOI, a port
write to the in-kernel PIC, is the `eoi` option `pic` (preset `full-virt-pic`).

## What the tables cannot express yet

- IPIv and logical destinations: IPIv virtualizes only physical-mode fixed IPIs; a
  logical-mode multicast (xAPIC flat mode with up to 8 CPUs, x2APIC cluster mode) traps as
  one APIC_WRITE. A destination mask (`target` = -2) is charged as one physical unicast per
  destination (physical destination mode), which IPIv sends without exits. All-but-self
  shorthands trap as APIC_WRITE.

Modelled in the kernel (model v2): interrupt-window exits under legacy injection (for an
interrupt pending at `sti; hlt`, and for one due while the guest is inside a handler with a
known `dur_ns`: interrupts off until its IRET), no kick for a self-IPI or a target already
in the host, HLT with an interrupt pending returning at once (with AMD's Idle HLT
intercept, `idle = "idle_hlt"`, not exiting at all), host halt-polling and the guest's
haltpoll (`idle` options `hlt_halt_poll`, `guest_haltpoll`), KVM's timer advance on a wake
from halt (`lapic_timer_advance_ns`), PV EOI's exit when another interrupt is pending at
the EOI, and AVIC's incomplete IPI: a send that finds a destination blocked (halted, past
the host's halt polling: KVM clears IsRunning only when it blocks the thread) makes the
*sender* take one AVIC_INCOMPLETE_IPI exit per ICR write, whose handler requests each
blocked destination's wake-up (`wake_request_cyc`); those destinations' wake-up starts when
that exit ends, running ones have the IPI from the hardware (README: "How replay works").

## Compositions that are refused

`eoi = "pv_eoi"` with an APIC-virtualizing `apic_access` (`x2apic_apicv`, `xapic_apicv`,
`x2avic`): KVM tracks no highest in-service vector while APICv/AVIC is active, so it never
sets the PV EOI bit and the guest's EOI is the virtual EOI (use `eoi = "virtual"`).
`ipi = "ipiv"` needs APICv (`x2apic_apicv`, `xapic_apicv`); `ipi = "avic"` needs `x2avic`.

## Exit names on AMD

Exit reasons are stored under their VMX (`perf kvm stat`) names; the SVM names the AMD
presets (`svm`, `avic`, `svm-idlehlt`) produce are aliases of the same codes
(`tracebench.schema.ExitReason`): `intr` = EXTERNAL_INTERRUPT, `vintr` = PENDING_INTERRUPT,
`idle-halt` = HLT, `npf` = EPT_MISCONFIG (KVM's emulated MMIO), `vmmcall` = VMCALL,
`avic_incomplete_ipi` = APIC_WRITE,
`avic_unaccelerated_access` = APIC_ACCESS; SVM's `msr` is MSR_WRITE or MSR_READ by
direction.

""".splitlines()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _default(p, value: float | None = None) -> str:
    """A default (or a profile's ``value`` of it) as the docs print it: a distributed
    cost's median and its mean."""
    value = p.default if value is None else value
    if not p.spread:
        return f"{value:g}"
    facets = {f: v * value / p.default for f, v in p.spread.items()}
    return f"p50 {value:.1f}, mean {Spread.of(p.name, value, facets, p.name).mean:g}"


def backends_markdown() -> str:
    lines = ["# Backends, mechanisms and parameters", "",
             "Generated by `python scripts/gen_docs.py` from the backend specs; do not edit.",
             "", "## Mechanism axes", ""]
    for axis, options in axis_options().items():
        lines += [f"### `{axis}`", "", "| option | what it models |", "|---|---|"]
        lines += [f"| `{o}` | {_md_escape(d)} |" for o, d in options.items()]
        lines.append("")
    lines += ["## Built-in backends", "",
              "| backend | " + " | ".join(AXES) + " |",
              "|---|" + "---|" * len(AXES)]
    backends = builtin_backends()
    for b in backends.values():
        lines.append(f"| `{b.name}` | " + " | ".join(b.mechanisms[a] for a in AXES) + " |")
    lines.append("")
    for b in backends.values():
        names = ", ".join(f"`{p.name}`" for p in b.param_specs())
        lines += [f"### `{b.name}`", "", b.description, "", f"Parameters: {names}", ""]
    lines += _MODEL_NOTES
    lines += ["## Parameters (defaults: profile `skx-2020`)", "",
              "Sources: [C] read in a primary source, [D] derived from such figures, "
              "[U] an assumption still to be anchored (see ../shared/COSTS.md), [S] a setting "
              "of the replay, not a measurement.", "",
              "| parameter | default | unit | what | source |", "|---|---|---|---|---|"]
    for p in CYCLE_PARAMS:
        lines.append(f"| `{p.name}` | {_default(p)} | {p.unit} | {_md_escape(p.doc)} | "
                     f"{_md_escape(p.source)} |")
    lines += ["", "### Cost distributions", "",
              "A parameter's value is its median (p50). These come with a spread, a "
              "log-normal above a floor (`NAME.min`) through the p99 (`NAME.p99`): each event "
              "draws one quantile for all the costs it composes (README: \"Cost "
              "distributions\"). The published figure of each is a *mean* (kvm-unit-tests "
              "prints cycles per iteration, `perf kvm stat` its Avg time, and the shapes were "
              "fitted to `perf kvm stat` rows by their Avg): the default median is that figure "
              "over the shape's mean/median ratio, so the mean a replay draws is the "
              "published figure. `--param spread_scale=S` multiplies every shape about the "
              "same mean; `spread_scale=0` makes every cost the constant at its mean (the "
              "published figures, the model before cost distributions).", "",
              "| parameter | mean (published) | p50 | min | p99 | source of the spread |",
              "|---|---|---|---|---|---|"]
    for p in CYCLE_PARAMS:
        if p.spread:
            mean = Spread.of(p.name, p.default, dict(p.spread), p.name).mean
            lines.append(f"| `{p.name}` | {mean:g} | {p.default:.1f} | "
                         f"{p.spread.get('min', 0):.1f} | {p.spread['p99']:.1f} | "
                         f"{_md_escape(p.spread_source)} |")
    lines += ["", "The other costs are constants: settings and windows, exit-free reads (tens "
              "of cycles), hardware paths without an exit (`perf kvm stat` cannot see them: "
              "no distribution was found), the bare-metal floor, and the device models, "
              "whose spread arrives through the exit and user-space costs they are added to."]
    assumed = [p for p in CYCLE_PARAMS if p.source.startswith("[U]")]
    lines += ["", "### Still assumptions", "",
              "No primary source anchors these defaults yet; sweep them (`--param`, "
              "`tracebench sweep`) before drawing a conclusion that depends on them:", ""]
    lines += [f"- `{p.name}` ({_default(p)} {p.unit}): {_md_escape(p.source[4:])}"
              for p in assumed]
    swept = [p for p in CYCLE_PARAMS if p.source.startswith("[D]") and "sweep" in p.source]
    lines += ["", "Derived from published figures, but through a stated split or scaling that "
              "the figures do not fix (the source says which, and the range to sweep):", ""]
    lines += [f"- `{p.name}` ({_default(p)} {p.unit})" for p in swept]
    lines += ["", "## CPU profiles (`--profile`)", ""]
    specs = {p.name: p for p in CYCLE_PARAMS}
    for prof in PROFILES.values():
        lines.append(f"- **{prof.name}**: {prof.description}.")
        for k, v in prof.values.items():
            lines.append(f"  - `{k}` = {_default(specs[k], v)} ({_md_escape(prof.sources[k])})")
    return "\n".join(lines) + "\n"
