"""``tracebench validate``: one host trace in, predicted vs measured exits out.

Ingest derives the guest-side events and the measured exits from the host trace; the
preset matching the host configuration the trace shows is chosen (or taken from the
user); the events are replayed through it; and each exit reason's prediction is set
beside the measured one (:mod:`tracebench.validate.compare`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from tracebench.errors import TracebenchError
from tracebench.validate.compare import Comparison, compare, measured_by_reason
from tracebench.validate.preset import Evidence, choose

_MSR = re.compile(r"kvm_msr: msr_(?:read|write) ([0-9a-fA-F]+)")
_HCALL_IPI = re.compile(r"kvm_hypercall: nr 0xa\b")
_XAPIC_MMIO = re.compile(r"kvm_mmio: mmio \w+ len \d+ gpa 0xfee00")
_PIC_ACK = re.compile(r"kvm_ack_irq: irqchip PIC")
#: SVM_EXIT_IDLE_HLT as kvm_exit prints it: the host has the Idle HLT intercept
_IDLE_HLT = re.compile(r"kvm_exit: .*reason idle-h(?:a)?lt\b")
IDLE_HLT_NAMES = ("idle-halt", "idle-hlt")


@dataclasses.dataclass
class Validation:
    """Result of :func:`validate`.

    Attributes
    ----------
    comparison : the per-reason table (``comparison.rows``) and its ratio basis.
    preset, why : the replayed preset and the evidence that chose it (or "given").
    measured_source : where the measured side came from.
    duration_s : the replayed trace's interval.
    notes : what the reader must know (empty sides, folded MSR rows ...).
    """

    comparison: Comparison
    preset: str
    why: list[str]
    measured_source: str
    duration_s: float
    notes: list[str]


def _scan(paths: Sequence[Path]) -> tuple[set[int], dict[str, int]]:
    """MSR indices and the few payload facts the preset choice needs, in one text pass."""
    msrs: set[int] = set()
    facts = {"kvm_hypercall_send_ipi": 0, "kvm_mmio_xapic": 0, "kvm_ack_irq_pic": 0,
             "kvm_exit_idle_halt": 0}
    for p in paths:
        with open(p, errors="replace") as fh:
            for line in fh:
                if "kvm_" not in line:
                    continue
                if m := _MSR.search(line):
                    msrs.add(int(m.group(1), 16))
                elif _HCALL_IPI.search(line):
                    facts["kvm_hypercall_send_ipi"] += 1
                elif _XAPIC_MMIO.search(line):
                    facts["kvm_mmio_xapic"] += 1
                elif _PIC_ACK.search(line):
                    facts["kvm_ack_irq_pic"] += 1
                elif _IDLE_HLT.search(line):
                    facts["kvm_exit_idle_halt"] += 1
    return msrs, facts


def _idle_halts(measured) -> int:
    """Exits a measured table prints as the Idle HLT intercept's (``idle-halt``)."""
    import polars as pl

    if measured.height == 0 or "reason" not in measured.columns:
        return 0
    return int(measured.filter(pl.col("reason").is_in(IDLE_HLT_NAMES))["count"].sum())


def _isa(measured) -> str:
    """VMX or SVM from the printed reason names (SVM prints lower case: ``msr``, ``vintr``)."""
    from tracebench.exitnames import EXIT_NAMES

    if measured.height == 0 or "reason" not in measured.columns:
        return "unknown"
    isas = {EXIT_NAMES[r].isa for r in measured["reason"].to_list() if r in EXIT_NAMES}
    return "svm" if "svm" in isas else "vmx" if "vmx" in isas else "unknown"


def validate(host_traces: Sequence[str | os.PathLike], backend: str = "auto",
             measured: str | os.PathLike | None = None, profile: str | None = None,
             params: Mapping[str, float] | None = None) -> Validation:
    """Replay a host KVM trace's guest-side events and compare exits with the measured ones.

    Parameters
    ----------
    host_traces : host-side KVM trace text (ftrace, trace-cmd report or perf script),
        consecutive pieces of one recording.
    backend : a preset name or ``.toml`` backend, or ``auto`` to choose from the trace.
    measured : instead of the trace's own exits: ``NAME.exits.parquet``, ``perf kvm stat``
        or ``kvm_stat`` text (``FILE#N``: its N-th table).
    profile, params : CPU cost profile (name or calibrate's TOML) and overrides.
    """
    from tracebench.api import replay
    from tracebench.ingest import ingest
    from tracebench.trace import TraceFile
    from tracebench.validate.reports import read_measured

    paths = [Path(p) for p in host_traces]
    if not paths:
        raise TracebenchError("no host trace given")
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tracebench-validate-") as tmp:
        out = Path(tmp) / "host.parquet"
        res = ingest(paths, out, fmt="auto")
        meta = TraceFile(out).meta
        if meta.source.get("family") != "kvm-host":
            raise TracebenchError(f"{paths[0]}: a guest-side trace; validate needs a host-side "
                                  "KVM trace (kvm:* tracepoints)")
        import polars as pl

        own = pl.read_parquet(res.exits_path) if res.exits_path else pl.DataFrame()
        if measured is not None:
            m_table, m_meta = read_measured(measured)
            source = str(measured)
            m_dur = m_meta.get("duration_s")
            same = False
        else:
            m_table, m_meta, source, same = own, {}, f"{paths[0].name} (its own exits)", True
            m_dur = meta.duration_ns / 1e9 or None
        if m_table.height == 0 or int(m_table["count"].sum()) == 0:
            notes.append(f"the measured side ({source}) holds no exit")
        events = dict(meta.source.get("events_seen") or {})
        events.update({k: v for k, v in (m_meta.get("events") or {}).items()})
        msrs, facts = _scan(paths)
        # a report's idle-halt rows say the same as the trace's idle-halt exits
        facts["kvm_exit_idle_halt"] = max(facts["kvm_exit_idle_halt"], _idle_halts(m_table))
        events.update({k: v for k, v in facts.items() if v})
        reasons = set(measured_by_reason(m_table)["reason"].to_list()) | \
            set(measured_by_reason(own)["reason"].to_list())
        kinds = dict(meta.source.get("kinds") or {})
        # a trace's own table names its reasons as kvm_exit printed them only if it has
        # kvm_exit (else they are the handler tracepoints' VMX-spelled hints)
        printed = m_table if measured is not None else own if "kvm_exit" in events else None
        ev = Evidence(reasons, events, msrs, kinds, _isa(printed) if printed is not None
                      else "unknown")
        if backend == "auto":
            preset, why = choose(ev)
        else:
            preset, why = backend, ["given with -b"]
        result = replay([out], [preset], profile=profile, params=params or {}, events=False)
        pred = result.exits
        # mean time per exit, like perf kvm stat's Avg: the model's expectation, not the
        # mean of the few costs a short trace draws. Every cost at its mean (spread_scale 0
        # keeps each mean) makes an exit's cost its expected cost. Only the times are read
        # from this replay: the counts stay the drawn replay's (timing-dependent paths,
        # such as a kick a longer exit makes needless, can move them)
        means = replay([out], [preset], profile=profile,
                       params={**(params or {}), "spread_scale": 0}, events=False).exits
        backend_name = pred["backend"][0] if pred.height else preset
        duration_s = meta.duration_ns / 1e9
    comp = compare(pred, m_table, backend_name, duration_s or None, m_dur, same,
                   pred_times=means)
    if comp.basis == "share":
        notes.append(f"{source} covers another interval than the trace and gives no "
                     "duration: ratios compare each reason's share of all exits")
    if any(r["reason"] == "MSR" for r in comp.rows):
        notes.append("the measured side does not tell MSR reads from writes: predicted "
                     "MSR_READ and MSR_WRITE are folded into MSR")
    return Validation(comp, preset, why, source, duration_s, notes)
