"""``perf kvm stat report`` and ``kvm_stat`` text as measured-exits tables.

What most users have is not a trace but one of these reports. Each is read into the
table a host trace's ingest writes (``NAME.exits.parquet``: one row per vCPU x reason
with count and handling times; see :mod:`tracebench.ingest.stream.exits`), plus ``rate_per_s``
where the text gives a rate or its interval. Reports are for all vCPUs together: their
rows carry ``cpu`` 0 and the metadata says ``vcpus: all``.

Formats read:

- ``perf kvm stat report`` / ``perf kvm stat live`` tables of the three event families
  (``VM-EXIT``, ``IO Port Access``, ``MMIO Access``), with ``Total Samples`` lines; a
  ``perf kvm stat record ... sleep N`` command line above gives the interval;
- the boxed ``| Event name | Samples | Sample% | Time (ns) | Time% |`` table of the AMD
  posts (same numbers, pipe-separated);
- ``kvm_stat`` output: the interactive table (``Event Total %Total CurAvg/s``), ``-1``
  batch lines (``name total delta``) and ``-l`` logging mode (a banner of names, then one
  line of per-interval counts).

A file that holds several tables is either a run of ``perf kvm stat live`` snapshots
(each headed by its time: summed) or several experiments: then ``FILE#N`` picks the N-th.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from pathlib import Path

import polars as pl

from tracebench.errors import TracebenchError
from tracebench.exitnames import exit_label

_NUM = r"([\d.]+)"
_PERF_ROW = re.compile(
    rf"^\s*(\S+(?: excp)?)\s+(\d+)\s+{_NUM}%\s+{_NUM}%\s+{_NUM}us\s+{_NUM}us\s+{_NUM}us"
    rf"(?:\s*\(\s*\+-\s*{_NUM}%\s*\))?\s*$")
_PERF_HEAD = re.compile(r"^\s*(VM-EXIT|IO Port Access|MMIO Access)\s+Samples\s+Samples%")
_PERF_TOTAL = re.compile(r"Total Samples:\s*(\d+),\s*Total events handled time:\s*([\d.]+)us")
_PERF_SLEEP = re.compile(r"perf kvm (?:--\S+ )*stat record\b.*\bsleep\s+([\d.]+)")
_TIME_LINE = re.compile(r"^\s*\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\s*$")
_BOX_ROW = re.compile(r"^\s*\|\s*([\w\- ]+?)\s*\|\s*(\d+)\s*\|\s*[\d.]+\s*%\s*\|\s*(\d+)\s*\|")
_BOX_HEAD = re.compile(r"\|\s*Event name\s*\|\s*Samples\s*\|")
_KVMSTAT_HEAD = re.compile(r"^\s*Event\s+Total\s+(?:%Total\s+)?(?:CurAvg/s|Current)\s*$")
_KVMSTAT_ROW = re.compile(r"^\s*(\S+)\s+(\d+)\s+(?:([\d.]+)\s+)?(\d+)\s*$")

#: kvm_stat events (tracepoints and debugfs counters) that stand for one exit each, by
#: the exit reason they imply (``msr``: direction unknown); exits of other reasons are
#: the rest of ``kvm_exit``
KVMSTAT_EXIT_EVENTS = {
    "kvm_msr": "msr", "kvm_pio": "IO_INSTRUCTION", "kvm_fast_mmio": "EPT_MISCONFIG",
    "kvm_mmio": "EPT_MISCONFIG", "kvm_hypercall": "VMCALL", "kvm_vcpu_wakeup": "HLT",
    "halt_exits": "HLT", "irq_exits": "EXTERNAL_INTERRUPT", "io_exits": "IO_INSTRUCTION",
    "mmio_exits": "EPT_MISCONFIG", "irq_window_exits": "PENDING_INTERRUPT",
    "hypercalls": "VMCALL",
}


@dataclasses.dataclass
class Report:
    """A measured-exits table read from report text.

    Attributes
    ----------
    table : columns of ``EXITS_SCHEMA`` plus ``rate_per_s`` (null where unknown).
    meta : format, family, interval (``duration_s``) and source line numbers.
    """

    table: pl.DataFrame
    meta: dict


@dataclasses.dataclass
class _Block:
    title: str
    line: int
    rows: list
    family: str = "VM-EXIT"
    total: int | None = None


def _perf_blocks(lines: list[str]) -> list[_Block]:
    blocks, cur, title, title_line = [], None, "", 0
    for i, ln in enumerate(lines, 1):
        if m := _PERF_HEAD.match(ln):
            cur = _Block(title, title_line, [], m.group(1))
            blocks.append(cur)
        elif _BOX_HEAD.search(ln):
            cur = _Block(title, title_line, [], "VM-EXIT (boxed)")
            blocks.append(cur)
        elif cur is not None and (m := _PERF_ROW.match(ln)):
            name, n, _sp, _tp, mn, mx, avg = m.groups()[:7]
            cur.rows.append((name, int(n), float(mn), float(mx), float(avg), i))
        elif cur is not None and cur.family.endswith("(boxed)") and (m := _BOX_ROW.match(ln)):
            cur.rows.append((m.group(1), int(m.group(2)), None, None,
                             int(m.group(3)) / 1000 / max(int(m.group(2)), 1), i))
        elif cur is not None and (m := _PERF_TOTAL.search(ln)):
            cur.total = int(m.group(1))
            cur = None
        elif ln.strip() and not ln.lstrip().startswith(("Analyze events", "---", "|")):
            title, title_line = ln.strip(), i
            if cur is not None and not cur.family.endswith("(boxed)"):
                cur = None
    return [b for b in blocks if b.rows]


def _exits_frame(rows: list[tuple], rate_s: float | None) -> pl.DataFrame:
    """(printed reason, count, min_us, max_us, avg_us) rows -> measured-exits table."""
    out = []
    for name, n, mn, mx, avg in rows:
        total_ns = round(avg * 1000 * n) if avg is not None else 0
        out.append({"cpu": 0, "reason": name, "exit_reason": exit_label(name), "count": n,
                    "timed": n if avg is not None else 0, "total_ns": total_ns,
                    "min_ns": round(mn * 1000) if mn is not None else None,
                    "max_ns": round(mx * 1000) if mx is not None else None,
                    "mean_ns": avg * 1000 if avg is not None else None,
                    "rate_per_s": n / rate_s if rate_s else None})
    return pl.DataFrame(out, schema=REPORT_SCHEMA)


REPORT_SCHEMA = {"cpu": pl.UInt16, "reason": pl.String, "exit_reason": pl.String,
                 "count": pl.Int64, "timed": pl.Int64, "total_ns": pl.Int64,
                 "min_ns": pl.Int64, "max_ns": pl.Int64, "mean_ns": pl.Float64,
                 "rate_per_s": pl.Float64}


def parse_perf(path: str, lines: list[str], pick: int | None) -> Report | None:
    """``perf kvm stat report/live`` or the boxed table; None if the text is neither."""
    blocks = _perf_blocks(lines)
    if not blocks:
        return None
    families = sorted({b.family for b in blocks})
    if pick is not None:
        if not 1 <= pick <= len(blocks):
            raise TracebenchError(f"{path}: #{pick}: the file holds {len(blocks)} table(s)")
        chosen = [blocks[pick - 1]]
    elif len(blocks) == 1:
        chosen = blocks
    elif len(families) == 1 and all(_TIME_LINE.match(b.title) for b in blocks):
        chosen = blocks  # perf kvm stat live snapshots: disjoint intervals, summed
    else:
        listing = "; ".join(f"#{k} line {b.line or '?'} {b.family} '{b.title[:40]}'"
                            for k, b in enumerate(blocks, 1))
        raise TracebenchError(f"{path}: holds {len(blocks)} tables ({listing}); pick one "
                              f"as {path}#N")
    sleep = next((float(m.group(1)) for ln in lines if (m := _PERF_SLEEP.search(ln))), None)
    agg: dict[str, list] = {}
    for b in chosen:
        for name, n, mn, mx, avg, _ in b.rows:
            a = agg.setdefault(name, [0, None, None, 0.0])
            a[0] += n
            a[1] = mn if a[1] is None else min(a[1], mn) if mn is not None else a[1]
            a[2] = mx if a[2] is None else max(a[2], mx) if mx is not None else a[2]
            a[3] += avg * n
    rows = [(k, n, mn, mx, tot / n if n else 0.0) for k, (n, mn, mx, tot) in agg.items()]
    df = _exits_frame(rows, sleep).sort("count", descending=True)
    meta = {"format": "perf-kvm-stat" if not chosen[0].family.endswith("(boxed)")
            else "perf-kvm-stat-boxed", "family": chosen[0].family, "vcpus": "all",
            "tables": [f"line {b.line}: {b.title}" for b in chosen], "duration_s": sleep,
            "total_samples": sum(b.total or 0 for b in chosen) or int(df["count"].sum())}
    return Report(df, meta)


def _kvmstat_events(lines: list[str]) -> tuple[dict, dict, float | None, str] | None:
    """(event -> total, event -> rate/s, interval s, format) from any kvm_stat layout."""
    for i, ln in enumerate(lines):
        if _KVMSTAT_HEAD.match(ln):  # interactive table
            tot, rate = {}, {}
            for row in lines[i + 1:]:
                m = _KVMSTAT_ROW.match(row)
                if not m:
                    if row.strip():
                        break
                    continue
                if m.group(1) != "Total":
                    tot[m.group(1)], rate[m.group(1)] = int(m.group(2)), float(m.group(4))
            return tot, rate, None, "kvm_stat"
    batch = [ln.split() for ln in lines if ln.strip()]
    if batch and all(len(t) == 3 and t[1].isdigit() and t[2].isdigit() for t in batch):
        # -1 / --once: name, total, count during the one-second sample
        return ({t[0]: int(t[1]) for t in batch}, {t[0]: float(t[2]) for t in batch}, None,
                "kvm_stat -1")
    for i, ln in enumerate(lines):
        names = _tokens(ln)
        if len(names) > 1 and all(re.fullmatch(r"[a-z_][\w()]*", n) for n in names) \
                and any(n.startswith(("kvm_", "exits", "halt_")) for n in names):
            # -l / -L logging mode (also --csv): a banner, then per-interval counts
            if names[0] == "timestamp":
                names = names[1:]
            rows, stamps = [], []
            for data in lines[i + 1:]:
                toks = _tokens(data)
                if not toks or toks == _tokens(ln):
                    continue  # the banner repeats every 20 lines
                nums = [t for t in toks if t.isdigit()]
                if len(nums) >= len(names):
                    rows.append([int(x) for x in nums[-len(names):]])
                    if m := _STAMP.search(data):
                        stamps.append(datetime.datetime.fromisoformat(m.group(0)))
            if not rows:
                return None
            interval = None
            if len(stamps) == len(rows) > 1:
                interval = (stamps[-1] - stamps[0]).total_seconds() / (len(rows) - 1)
            tot = {n: sum(r[k] for r in rows) for k, n in enumerate(names)}
            dur = interval * len(rows) if interval else None
            return tot, {n: tot[n] / dur for n in names} if dur else {}, dur, "kvm_stat -l"
    return None


def _tokens(line: str) -> list[str]:
    return [t for t in re.split(r"[,\s]+", line.strip()) if t]


_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


def parse_kvm_stat(path: str, lines: list[str]) -> Report | None:
    """``kvm_stat`` text -> exits by reason; None if the text is not kvm_stat output."""
    parsed = _kvmstat_events(lines)
    if parsed is None:
        return None
    tot, rate, interval, fmt = parsed
    rows = []
    exits = {k: v for k, v in tot.items() if k.startswith("kvm_exit(")}
    if exits:  # drill-down: kvm_exit(REASON) counts are exact
        for k, v in exits.items():
            rows.append((k, k[len("kvm_exit("):-1], v, rate.get(k)))
    else:
        attributed = 0
        for event, reason in KVMSTAT_EXIT_EVENTS.items():
            if tot.get(event):
                rows.append((event, reason, tot[event], rate.get(event)))
                attributed += tot[event]
        all_exits = tot.get("kvm_exit", tot.get("exits"))
        if all_exits is not None and all_exits > attributed:
            key = "kvm_exit" if "kvm_exit" in tot else "exits"
            r = rate.get(key)
            share = (all_exits - attributed) / all_exits
            rows.append((f"{key} (other reasons)", "OTHER", all_exits - attributed,
                         r * share if r is not None else None))
    if not rows:
        raise TracebenchError(f"{path}: kvm_stat output without kvm_exit or exit events")
    df = pl.DataFrame([{"cpu": 0, "reason": ev, "exit_reason": exit_label(reason),
                        "count": n, "timed": 0, "total_ns": 0, "min_ns": None,
                        "max_ns": None, "mean_ns": None, "rate_per_s": r}
                       for ev, reason, n, r in rows], schema=REPORT_SCHEMA)
    meta = {"format": fmt, "family": "kvm_stat events", "vcpus": "all",
            "duration_s": interval, "events": tot,
            "note": "exit reasons from the handler tracepoints that imply them (kvm_msr: "
                    "MSR, kvm_vcpu_wakeup: HLT, ...); the rest of kvm_exit is OTHER"
            if not exits else "kvm_exit(REASON) drill-down"}
    return Report(df.sort("count", descending=True), meta)


def split_pick(spec: str | Path) -> tuple[Path, int | None]:
    """``FILE#N`` -> (FILE, N); a plain path -> (path, None)."""
    s = str(spec)
    base, sep, tail = s.rpartition("#")
    if sep and tail.isdigit() and not Path(s).exists():
        return Path(base), int(tail)
    return Path(s), None


def read_report(spec: str | Path) -> Report:
    """Read a ``perf kvm stat`` or ``kvm_stat`` text file (``FILE#N``: its N-th table)."""
    path, pick = split_pick(spec)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise TracebenchError(f"{path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    rep = parse_perf(str(path), lines, pick)
    if rep is None:
        rep = parse_kvm_stat(str(path), lines)
    if rep is None:
        raise TracebenchError(f"{path}: not a perf kvm stat report nor kvm_stat output (no "
                              "'VM-EXIT Samples' header, no 'Event Total' table)")
    rep.meta["source"] = str(spec)
    return rep


def is_report(spec: str | Path) -> bool:
    """True when ``spec`` names a text report rather than a Parquet table."""
    path, pick = split_pick(spec)
    if pick is not None:
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) != b"PAR1"
    except OSError:
        return False


def read_measured(spec: str | Path) -> tuple[pl.DataFrame, dict]:
    """A measured-exits table from ``NAME.exits.parquet`` or a report text (with meta)."""
    path, _ = split_pick(spec)
    if not path.is_file():
        raise TracebenchError(f"{path}: no such file")
    if is_report(spec):
        rep = read_report(spec)
        return rep.table, rep.meta
    path = Path(spec)
    try:
        df = pl.read_parquet(path)
        import pyarrow.parquet as pq

        raw = (pq.read_schema(path).metadata or {}).get(b"tracebench")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TracebenchError(f"{path}: not a measured-exits table "
                              f"({' '.join(str(exc).split())[:120]})") from None
    if not {"reason", "count"} <= set(df.columns):
        raise TracebenchError(f"{path}: not a measured-exits table (needs reason, count)")
    meta = json.loads(raw) if raw else {}
    return df, {"format": "exits.parquet", "source": str(path), "trace_meta": meta}
