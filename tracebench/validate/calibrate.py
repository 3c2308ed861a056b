"""``tracebench calibrate``: measure what the model's parameters stand for, on this machine.

Each figure is a distribution (min / p50 / p99 / max over many repetitions) from the
C loops in ``csrc/calib.c``:

- an unconditional VM exit round trip (CPUID leaf 0, as kvm-unit-tests ``vmexit cpuid``);
- RDTSC and RDTSCP;
- ``clock_gettime(CLOCK_MONOTONIC)`` through the current clocksource, and, with
  ``switch_clocksources`` (root), through every clocksource the kernel offers: the
  original one is always written back, also on an error or a signal;
- one-shot timer program -> fire: ``clock_nanosleep`` to an absolute deadline, the
  wake-up time minus the deadline (cyclictest's measure, timer slack set to 1 ns);
- cross-CPU wake-up: a thread blocked in ``futex_wait`` on one CPU woken from another
  (the target CPU idles between samples, so each sample is a real idle wake-up).

The platform (hypervisor vendor, x2APIC, TSC-deadline, kvm-clock, PV EOI, cpuidle
driver) is read from CPUID and sysfs. :func:`profile_toml` turns the result into a
profile for ``--profile FILE.toml``, naming for each parameter the figure it comes from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import signal
import subprocess
from pathlib import Path

import numpy as np

from tracebench.errors import TracebenchError
from tracebench.validate.cbuild import binary

CLOCKSOURCE_DIR = Path("/sys/devices/system/clocksource/clocksource0")
CPUIDLE_DRIVER = Path("/sys/devices/system/cpu/cpuidle/current_driver")
CLOCK_MONOTONIC = 1

#: KVM_CPUID_FEATURES (leaf 0x40000001 EAX) bits, arch/x86/include/uapi/asm/kvm_para.h
KVM_FEATURES = {
    0: "clocksource", 3: "clocksource2", 5: "steal_time", 6: "pv_eoi", 7: "pv_unhalt",
    9: "pv_tlb_flush", 11: "pv_send_ipi", 12: "poll_control", 13: "pv_sched_yield",
    14: "async_pf_int", 15: "msi_ext_dest_id", 24: "clocksource_stable",
}


@dataclasses.dataclass
class Measurement:
    """One measured distribution.

    Attributes
    ----------
    name : stable identifier (``exit_roundtrip``, ``clock_read(kvm-clock)`` ...).
    what : how it was measured, in words.
    unit : ``cycles`` (TSC) or ``ns``.
    samples : the raw samples.
    """

    name: str
    what: str
    unit: str
    samples: np.ndarray

    def stats(self) -> dict:
        s = self.samples
        return {"n": int(s.size), "min": float(s.min()), "p50": float(np.percentile(s, 50)),
                "p99": float(np.percentile(s, 99)), "max": float(s.max()),
                "mean": float(s.mean())}

    def p50(self) -> float:
        return float(np.percentile(self.samples, 50))

    def p99(self) -> float:
        return float(np.percentile(self.samples, 99))


@dataclasses.dataclass
class Calibration:
    """Everything ``calibrate`` measured and detected."""

    tsc_ghz: float
    platform: dict
    measurements: list[Measurement]
    notes: list[str]

    def get(self, name: str) -> Measurement | None:
        return next((m for m in self.measurements if m.name == name), None)

    def rows(self) -> list[dict]:
        """One row per measurement: both units, so cycles and ns read side by side."""
        out = []
        for m in self.measurements:
            st = m.stats()
            to_ns = 1 / self.tsc_ghz if m.unit == "cycles" else 1.0
            out.append({"measure": m.name, "n": st["n"],
                        **{f"{k}_ns": round(st[k] * to_ns, 1)
                           for k in ("min", "p50", "p99", "max")},
                        "p50_cyc": round(st["p50"] * (1 if m.unit == "cycles"
                                                      else self.tsc_ghz)),
                        "what": m.what})
        return out


def _run(exe: Path, *args) -> np.ndarray:
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise TracebenchError(f"calibration loop '{' '.join(map(str, args))}' failed: "
                              f"{proc.stderr.strip()[:200]}")
    return np.array(proc.stdout.split(), dtype=np.int64)


def detect_platform(exe: Path) -> dict:
    """Hypervisor vendor, APIC/timer/clock features and the cpuidle driver."""
    proc = subprocess.run([str(exe), "platform"], capture_output=True, text=True, check=True)
    facts: dict = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        facts[key] = value
    feats = int(facts.get("kvm_features", "0"), 16)
    kvm = [name for bit, name in KVM_FEATURES.items() if feats >> bit & 1]
    vendor = facts.get("cpu_vendor", "")
    info = {
        "cpu_vendor": vendor,
        "virtualization": "SVM (AMD)" if vendor == "AuthenticAMD" else "VMX (Intel)"
        if vendor == "GenuineIntel" else "unknown",
        "hypervisor": facts.get("hypervisor_vendor", "none (bare metal)")
        if facts.get("hypervisor_bit") == "1" else "none (bare metal)",
        "x2apic": facts.get("x2apic") == "1",
        "tsc_deadline": facts.get("tsc_deadline") == "1",
        "kvm_features": kvm,
        "pv_eoi": "pv_eoi" in kvm,
        "pv_send_ipi": "pv_send_ipi" in kvm,
        "kvm_clock": "clocksource2" in kvm or "clocksource" in kvm,
        "clocksource_current": _read(CLOCKSOURCE_DIR / "current_clocksource"),
        "clocksources_available": _read(CLOCKSOURCE_DIR / "available_clocksource").split(),
        "cpuidle_driver": _read(CPUIDLE_DRIVER) or "none",
    }
    return info


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def _switched_clocksource(name: str):
    """Make ``name`` the current clocksource for the block; always switch back, also
    when interrupted by SIGINT/SIGTERM/SIGHUP."""
    node = CLOCKSOURCE_DIR / "current_clocksource"
    original = _read(node)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    saved = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            node.write_text(name)
        except OSError as exc:
            raise TracebenchError(f"{node}: cannot switch to {name} ({exc.strerror}); "
                                  "switching the clocksource needs root") from None
        yield
    finally:
        try:
            if _read(node) != original:
                node.write_text(original)
        finally:
            for s, h in saved.items():
                signal.signal(s, h)


def calibrate(reps: int = 20000, latency_reps: int | None = None,
              switch_clocksources: bool = False, cpus: tuple[int, int] | None = None,
              timer_delay_us: int = 200, wake_gap_us: int = 200, say=None) -> Calibration:
    """Measure this machine.

    Parameters
    ----------
    reps : samples of each cost loop (CPUID, RDTSC, clock reads).
    latency_reps : samples of the timer and wake-up latencies (default ``reps // 10``,
        at least 20; each costs about ``timer_delay_us`` / ``wake_gap_us``).
    switch_clocksources : also measure clock reads through every available clocksource
        by switching to it (root); the original is restored.
    cpus : the two CPUs for the wake-up (default: 0 and 1; one CPU: both 0).
    timer_delay_us : distance of each timer deadline from its programming, us.
    wake_gap_us : idle time of the woken thread before each wake-up, us.
    say : receives one-line progress messages (stderr in the CLI).
    """
    if reps < 10:
        raise TracebenchError(f"--reps {reps}: at least 10 repetitions are needed")
    exe = binary("calib.c", say)
    latency_reps = max(20, reps // 10) if latency_reps is None else latency_reps
    n_cpu = len(os.sched_getaffinity(0))
    allowed = sorted(os.sched_getaffinity(0))
    cpu_a, cpu_b = cpus if cpus else (allowed[0], allowed[1] if n_cpu > 1 else allowed[0])
    plat = detect_platform(exe)
    tsc_ghz = float(np.median(np.concatenate([_run(exe, "tscghz", 20) for _ in range(3)])))
    tsc_ghz /= 1e6
    notes = []
    ms = [
        Measurement("exit_roundtrip", "CPUID leaf 0 (unconditional exit), per op", "cycles",
                    _run(exe, "cpuid", reps)),
        Measurement("tsc_read", "RDTSC, per op", "cycles", _run(exe, "rdtsc", reps)),
        Measurement("tscp_read", "RDTSCP, per op", "cycles", _run(exe, "rdtscp", reps)),
    ]
    current = plat["clocksource_current"]
    sources = [current] if current else []
    if switch_clocksources:
        sources += [s for s in plat["clocksources_available"] if s != current]
    elif len(plat["clocksources_available"]) > 1:
        others = [s for s in plat["clocksources_available"] if s != current]
        notes.append(f"clock reads measured through the current clocksource ({current}) "
                     f"only; {', '.join(others)} need --switch-clocksource (root)")
    for src in sources:
        cm = contextlib.nullcontext() if src == current else _switched_clocksource(src)
        with cm:
            samples = _run(exe, "clock", reps, CLOCK_MONOTONIC)
        ms.append(Measurement(f"clock_read({src})", f"clock_gettime(MONOTONIC) via {src}"
                              + (" (current)" if src == current else " (switched)"),
                              "cycles", samples))
    ms.append(Measurement("timer_fire", f"clock_nanosleep to a deadline {timer_delay_us} us "
                          f"ahead on CPU {cpu_a}: wake-up - deadline", "ns",
                          _run(exe, "timer", latency_reps, timer_delay_us, cpu_a)))
    if cpu_a == cpu_b:
        notes.append("one CPU only: the wake-up is same-CPU, not cross-CPU")
    ms.append(Measurement("cross_cpu_wakeup", f"futex wake CPU {cpu_a} -> thread blocked "
                          f"{wake_gap_us} us on CPU {cpu_b}: running - wake call", "ns",
                          _run(exe, "wake", latency_reps, cpu_a, cpu_b, wake_gap_us)))
    if plat["cpuidle_driver"] == "haltpoll":
        notes.append("cpuidle driver haltpoll: an idle vCPU polls before it halts, so short "
                     "idle gaps wake without a HLT exit")
    return Calibration(tsc_ghz, plat, ms, notes)


def profile_params(cal: Calibration) -> list[tuple[str, float, str]]:
    """(parameter or ``parameter.facet``, value, which measured figure it comes from).

    Derived parameters subtract the model's other costs (from the same profile) from a
    measured end-to-end latency; what cannot be separated stays in and is named. A p99 is
    derived the same way from the p99s, as the model composes an event's costs at one
    quantile (README: "Cost distributions"); a p99 that comes out below its p50 (the other
    costs' default tails exceed the measured one) is left out, the cost a constant.
    """
    from tracebench.backends.costs import CYCLE_PARAMS

    d = {p.name: p.default for p in CYCLE_PARAMS}
    tail = {p.name: p.spread.get("p99", p.default) for p in CYCLE_PARAMS}
    ghz = cal.tsc_ghz
    out = [("tsc_ghz", round(ghz, 4), "TSC cycles / CLOCK_MONOTONIC_RAW ns over 3 x 20 ms")]
    exit_m = cal.get("exit_roundtrip")
    exit_cyc, exit_p99 = exit_m.p50(), exit_m.p99()
    out.append(("exit_roundtrip_cyc", round(exit_cyc), "exit_roundtrip p50: CPUID leaf 0 "
                "round trip seen from the guest (kvm-unit-tests 'vmexit cpuid')"))
    out += _spread("exit_roundtrip_cyc", exit_cyc, exit_p99, float(exit_m.samples.min()),
                   "exit_roundtrip p99 and min")
    out.append(("tsc_read_cyc", round(cal.get("tsc_read").p50()), "tsc_read p50: RDTSC"))
    pv = cal.get("clock_read(kvm-clock)")
    if pv is not None:
        out.append(("pvclock_read_cyc", round(pv.p50()), "clock_read(kvm-clock) p50: "
                    "clock_gettime through kvm-clock (vDSO pvclock read + scaling)"))
    inject = d["inject_cyc"]
    wake = cal.get("cross_cpu_wakeup")
    sender = exit_cyc + d["hypercall_handler_cyc"] + d["icr_handler_cyc"]
    halt = wake.p50() * ghz - sender - inject
    halt_cyc = round(halt) if halt > 0 else d["halt_wakeup_cyc"]
    out.append(("halt_wakeup_cyc", halt_cyc,
                f"cross_cpu_wakeup p50 ({wake.p50():.0f} ns) x tsc_ghz - PV send-IPI exit "
                f"(exit_roundtrip + hypercall_handler + icr_handler = {sender:.0f}) - "
                f"inject_cyc ({inject:.0f}); includes the guest's futex wake and scheduler "
                "switch" if halt > 0 else "measured wake-up too short to separate: default"))
    halt_p99 = (wake.p99() * ghz - exit_p99 - tail["hypercall_handler_cyc"]
                - tail["icr_handler_cyc"] - tail["inject_cyc"])
    if halt > 0:
        out += _spread("halt_wakeup_cyc", halt_cyc, halt_p99, None,
                       "cross_cpu_wakeup p99, less the p99s of the same parts")
    timer = cal.get("timer_fire")
    expiry = timer.p50() * ghz - d["host_timer_irq_cyc"] - halt_cyc - inject
    out.append(("timer_expiry_cyc", round(expiry) if expiry > 0 else d["timer_expiry_cyc"],
                f"timer_fire p50 ({timer.p50():.0f} ns) x tsc_ghz - host_timer_irq "
                f"({d['host_timer_irq_cyc']:.0f}) - halt_wakeup - inject; includes the "
                "guest's hrtimer interrupt and task wake-up" if expiry > 0 else
                "measured timer latency too short to separate: default"))
    if expiry > 0:
        expiry_p99 = (timer.p99() * ghz - tail["host_timer_irq_cyc"]
                      - max(halt_p99, halt_cyc) - tail["inject_cyc"])
        out += _spread("timer_expiry_cyc", round(expiry), expiry_p99, None,
                       "timer_fire p99, less the p99s of the same parts")
    return out


def _spread(name: str, p50: float, p99: float, floor: float | None, what: str
            ) -> list[tuple[str, float, str]]:
    """The facets of a measured spread, or none where the p99 does not exceed the p50."""
    if round(p99) <= round(p50):
        return []
    out = [(f"{name}.p99", round(p99), f"{what} ({round(p99)} cycles)")]
    if floor is not None and 0 < round(floor) < round(p50):
        out.append((f"{name}.min", round(floor), f"{what}: the fastest sample"))
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def profile_toml(cal: Calibration) -> str:
    """A profile for ``--profile FILE.toml``: ``[params]`` (what replay reads), then the
    platform and the full measured distributions (for the record; replay ignores them)."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = ["# tracebench calibrate profile: this machine's measured costs",
             f"# measured {when}; use: tracebench replay T.parquet --profile THIS.toml",
             "# each parameter names the measured figure (section [measured]) it comes from", "",
             "[params]"]
    params = profile_params(cal)
    spread = {n.partition(".")[0] for n, _, _ in params if "." in n}
    for name, value, source in params:
        # NAME.p50 beside NAME.p99: TOML has no key that is both a value and a table
        lines.append(f"# {source}")
        lines.append(f"{name}{'.p50' if name in spread else ''} = {_toml_value(value)}")
    lines += ["", "[platform]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in cal.platform.items()]
    lines.append(f"notes = {_toml_value(cal.notes)}")
    for m in cal.measurements:
        key = m.name.replace("(", "_").replace(")", "").replace("-", "_")
        lines += ["", f"[measured.{key}]", f"what = {_toml_value(m.what)}",
                  f'unit = "{m.unit}"']
        lines += [f"{k} = {_toml_value(round(v, 2))}" for k, v in m.stats().items()]
    return "\n".join(lines) + "\n"
