"""A strict checker of Chrome Trace Event JSON (the format ui.perfetto.dev imports).

Follows the Trace Event Format document (Google, "Trace Event Format", the JSON Object
form): per-phase required fields, microsecond timestamps, ``B``/``E`` balanced per thread
in order, complete events nested per thread, flow events (``s``/``t``/``f``) matched by
id and bound to a slice of their own thread. Returns the list of problems (empty = valid).
"""

from __future__ import annotations

from collections import defaultdict

COMMON = ("ph", "pid", "tid")
REQUIRED = {
    "X": ("name", "ts", "dur"),
    "B": ("name", "ts"),
    "E": ("ts",),
    "i": ("name", "ts", "s"),
    "I": ("name", "ts"),
    "M": ("name", "args"),
    "s": ("name", "ts", "id", "cat"),
    "t": ("name", "ts", "id", "cat"),
    "f": ("name", "ts", "id", "cat"),
    "C": ("name", "ts", "args"),
}
METADATA_NAMES = {"process_name", "thread_name", "process_sort_index", "thread_sort_index",
                  "process_labels"}


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v


def check(doc: dict, eps_us: float = 1e-6) -> list[str]:
    problems: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["not a JSON object with a traceEvents array"]
    if doc.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        problems.append(f"displayTimeUnit {doc['displayTimeUnit']!r} is not ms or ns")
    open_b: dict[tuple, list] = defaultdict(list)
    slices: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    flows: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    named_threads, named_procs = set(), set()
    for n, e in enumerate(doc["traceEvents"]):
        ph = e.get("ph")
        if ph not in REQUIRED:
            problems.append(f"event {n}: unknown or missing ph {ph!r}")
            continue
        for f in COMMON + REQUIRED[ph]:
            if f not in e:
                problems.append(f"event {n} ({ph}): missing {f!r}")
        if "ts" in e and not _num(e["ts"]):
            problems.append(f"event {n} ({ph}): ts {e['ts']!r} is not a number")
        if ph == "X" and (not _num(e.get("dur")) or e.get("dur", -1) < 0):
            problems.append(f"event {n}: X with dur {e.get('dur')!r}")
        if ph == "i" and e.get("s") not in ("g", "p", "t"):
            problems.append(f"event {n}: instant scope {e.get('s')!r}")
        if ph == "M":
            if e.get("name") not in METADATA_NAMES:
                problems.append(f"event {n}: unknown metadata {e.get('name')!r}")
            elif not isinstance(e.get("args", {}).get("name", ""), str):
                problems.append(f"event {n}: metadata args.name is not a string")
            if e.get("name") == "thread_name":
                named_threads.add((e["pid"], e["tid"]))
            if e.get("name") == "process_name":
                named_procs.add(e["pid"])
            continue
        key = (e.get("pid"), e.get("tid"))
        ts = e.get("ts", 0)
        if ph == "B":
            open_b[key].append((ts, n))
        elif ph == "E":
            if not open_b[key]:
                problems.append(f"event {n}: E on {key} without an open B")
            else:
                start, _ = open_b[key].pop()
                if ts < start - eps_us:
                    problems.append(f"event {n}: E at {ts} before its B at {start}")
                slices[key].append((start, ts))
        elif ph == "X":
            slices[key].append((ts, ts + e["dur"]))
        elif ph in "stf":
            flows[e.get("id")][ph].append((key, ts, e.get("bp")))
    for key, stack in open_b.items():
        for ts, n in stack:
            problems.append(f"event {n}: B on {key} at {ts} never ended")
    for key, spans in slices.items():
        if key not in named_threads:
            problems.append(f"thread {key} has slices but no thread_name")
        if key[0] not in named_procs:
            problems.append(f"process {key[0]} has slices but no process_name")
        # slices on one thread nest: sorted by (start, -end), each fits inside any still open
        stack: list[float] = []
        for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= start + eps_us:
                stack.pop()
            if stack and end > stack[-1] + eps_us:
                problems.append(f"thread {key}: slice [{start}, {end}] overlaps one ending "
                                f"at {stack[-1]} without nesting")
            stack.append(end)
    for fid, parts in flows.items():
        if len(parts["s"]) != 1 or len(parts["f"]) != 1:
            problems.append(f"flow {fid}: {len(parts['s'])} starts, {len(parts['f'])} ends")
            continue
        for ph in ("s", "t", "f"):
            for key, ts, bp in parts[ph]:
                spans = slices.get(key, [])
                # "s"/"t" and "f" with bp "e" bind to the slice enclosing their ts;
                # a plain "f" binds to the next slice that starts on its thread
                if ph == "f" and bp != "e":
                    ok = any(s >= ts - eps_us for s, _ in spans)
                else:
                    ok = any(s - eps_us <= ts <= e + eps_us for s, e in spans)
                if not ok:
                    problems.append(f"flow {fid}: {ph} at {ts} on {key} is in no slice")
        if parts["f"][0][1] < parts["s"][0][1] - eps_us:
            problems.append(f"flow {fid}: ends before it starts")
    return problems
