"""Adversarial corpus: crafted hostile inputs run through the real CLI, outcomes counted.

Each case runs ``python -m tracebench ...`` as a subprocess in a sandbox folder of its
own (with a timeout) and is *clean* when: the exit code is one the case allows (0 ok,
1 data, 2 usage, 3 gate); no traceback; an error is one line starting with
``tracebench: error:``; it answered before the timeout; nothing outside its sandbox
changed (a sentinel folder beside it is compared before and after); nothing at a final
name is partial (a trace written reads back, a results folder carries its marker); no
``.NAME.tmp-*`` temporary is left.

    python scripts/adversarial.py [--cases N] [--jobs 2] [--seed 1] [--json out.json]

Classes: output paths, backend files, trace files, ingest text (every format, mutated
real lines), streams and devices, synth and replay sizes, results folders, exit codes.
The corpus is generated from the seed (same seed, same cases) and from the real traces
under tests/data (their provenance: tests/data/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"
TIMEOUT_S = 120


@dataclass
class Case:
    cls: str
    name: str
    args: list  # "{d}" = the case's sandbox, "{w}" = the shared world (read-only inputs)
    codes: tuple = (0, 1, 2)
    setup: object = None  # callable(sandbox) run before
    stdin: bytes | None = None
    shell: bool = False
    expect_out: str | None = None  # an output path that, if the run succeeds, must be valid
    outcome: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- the world


def build_world(w: Path) -> None:
    """Shared, valid inputs: a trace, a results folder, two results to compare."""
    from tracebench.scenarios import generate
    from tracebench.trace import write_trace

    cols, meta = generate("mixed-server", n_cpus=2, duration_ns=30_000_000, seed=7)
    write_trace(w / "t.parquet", cols, meta, row_group=4096)
    run = [sys.executable, "-m", "tracebench"]
    env = _env()
    for name, extra in (("res", []), ("res2", ["-p", "exit_roundtrip_cyc=9000"])):
        subprocess.run(run + ["replay", str(w / "t.parquet"), "-b", "native", "-b", "apicv",
                              "-q", "-o", str(w / name), *extra], check=True, env=env,
                       capture_output=True)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --------------------------------------------------------------------------- generators


def output_cases(rng: random.Random) -> list[Case]:
    cases = []
    verbs = {
        "replay": lambda o: ["replay", "{w}/t.parquet", "-b", "native", "-q", "-o", o],
        "synth": lambda o: ["synth", "hz-tick", "--duration", "20ms", "-o", o],
        "ingest": lambda o: ["ingest", str(DATA / "local-dual/ftrace.txt"), "-o", o],
    }

    def mkdir_other(d):
        (d / "other").mkdir()
        (d / "other" / "thesis.tex").write_text("precious\n")

    def textfile(d):
        (d / "notes.parquet").write_text("precious\n")

    def symlink_dir(d):
        (d / "real").mkdir()
        (d / "real" / "keep").write_text("precious\n")
        (d / "link").symlink_to(d / "real")

    def dangling(d):
        (d / "dangling").symlink_to(d / "elsewhere")

    def under_file(d):
        (d / "afile").write_text("x")

    def own_then_marker_kind(d):
        (d / "forged").mkdir()
        (d / "forged" / ".tracebench-output").write_text('{"kind": "dataset"}')
        (d / "forged" / "keep").write_text("precious\n")

    def stale(d):
        p = subprocess.Popen(["true"])
        p.wait()
        for n in ("out", "out.parquet"):
            t = d / f".{n}.tmp-{p.pid}-0123abcd"
            t.mkdir()
            (t / ".tracebench-output").write_text('{"kind": "results"}')
            (t / "junk").write_bytes(b"x" * 1000)

    def own_trace(d, w):
        shutil.copy(w / "t.parquet", d / "t.parquet")

    spellings = [
        (".", None, ()), ("a/b/..", lambda d: (d / "a" / "b").mkdir(parents=True), ()),
        ("", None, ()), ("{d}/other", mkdir_other, ("--force",)),
        ("{d}/notes.parquet", textfile, ("--force",)), ("{d}/link", symlink_dir, ("--force",)),
        ("{d}/dangling", dangling, ()), ("{d}/afile/out", under_file, ()),
        ("{d}/" + "n" * 300, None, ()), ("/dev/full", None, ("--force",)),
        ("/proc/version", None, ("--force",)), ("{d}/forged", own_then_marker_kind, ("--force",)),
        ("{d}/out", stale, ()), ("{d}/out.parquet", stale, ()),
        ("{d}/deep/" + "/".join("x" * 5 for _ in range(40)) + "/o", None, ()),
        ("{w}", None, ("--force",)), ("{d}/t.parquet", own_trace, ("--force",)),
    ]
    for verb, make in verbs.items():
        for spelling, setup, extra in spellings:
            cases.append(Case("output paths", f"{verb} -o {spelling[:40]!r} {' '.join(extra)}",
                              make(spelling) + list(extra), setup=setup,
                              expect_out=spelling if spelling.startswith("{d}") else None))
    return cases


def backend_file_cases(rng: random.Random) -> list[Case]:
    docs = [
        'base = "self.toml"', 'name = "../x"\nbase = "apicv"', 'name = "a/b"\nbase = "apicv"',
        'name = ""\nbase = "apicv"', 'name = "a\\u0000b"\nbase = "apicv"', "name = 5",
        'mechanisms = "x"', 'base = "apicv"\n[mechanisms]\neoi = 3', "params = [1, 2]",
        'base = "apicv"\n[params]\nexit_roundtrip_cyc = "fast"',
        'base = "apicv"\n[params]\nexit_roundtrip_cyc = nan',
        'base = "apicv"\n[params]\nexit_roundtrip_cyc = -1',
        'base = "apicv"\n[params]\nexit_roundtrip_cyc = 1e300', 'base = "apicv"\ncolour = 1',
        "base = 7", 'base = ""', 'base = "nosuch"', 'base = "nosuch.toml"', 'name = "x\n',
        "x = " + "[" * 3000 + "]" * 3000, 'base = "apicv"\n[mechanisms]\nwarp = "drive"',
        'base = "apicv"\n[mechanisms]\neoi = "magic"', "[params]\n[params]",
        'name = "' + "a" * 100 + '"\nbase = "apicv"', 'name = "-rf"\nbase = "apicv"',
        'name = ".hidden"\nbase = "apicv"', 'name = "CON"\nbase = "apicv"',
        'name = "ok"\nbase = "apicv"\ndescription = "line1\\nline2"',
    ]
    keys = ["name", "description", "base", "mechanisms", "params", "extra"]
    vals = ['"apicv"', "1", "-1", "1e400", "true", "[]", "{}", '"../../etc"', '"self.toml"',
            '"x.toml"', "nan", '""', "[1, 'a']"]
    for _ in range(30):
        doc = "\n".join(f"{rng.choice(keys)} = {rng.choice(vals)}"
                        for _ in range(rng.randint(1, 4)))
        docs.append(doc)
    cases = []
    for i, doc in enumerate(docs):
        def setup(d, doc=doc):
            (d / "self.toml").write_text(doc + "\n")
            (d / "folder.toml").mkdir()
        cases.append(Case("backend files", f"backends #{i}: {doc[:40]!r}",
                          ["backends", "{d}/self.toml"], setup=setup))
        cases.append(Case("backend files", f"replay -b #{i}",
                          ["replay", "{w}/t.parquet", "-b", "{d}/self.toml", "-q", "-o",
                           "{d}/res"], setup=setup, expect_out="{d}/res"))
    for blob in (b"\xff\xfe\x00", b"\x00" * 10, "name = 'café'".encode("latin-1")):
        def setup(d, blob=blob):
            (d / "self.toml").write_bytes(blob)
        cases.append(Case("backend files", f"bytes {blob[:8]!r}", ["backends", "{d}/self.toml"],
                          setup=setup))
    cases.append(Case("backend files", "a folder", ["backends", "{d}/folder.toml"],
                      setup=lambda d: (d / "folder.toml").mkdir()))
    return cases


def trace_file_cases(rng: random.Random) -> list[Case]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tracebench.schema import METADATA_KEY

    metas = [b"[1]", b'"x"', b"{", b"null", b"{}", b"[" * 50000 + b"]" * 50000]
    fields = {"n_cpus": ["4", 4.5, 0, 65536, -1, 10**30, True, None],
              "duration_ns": [-5, "1s", 2**63, 1, None, 1.5],
              "method": [["x"], 1, None], "source": ["x", [1]], "environment": [[1], 3],
              "schema_version": [99, 0, "1"], "attribution": [None, 5]}
    cases = []

    def with_meta(raw=None, change=None, mutate=None, corrupt=None):
        def setup(d, w):
            t = pq.read_table(w / "t.parquet")
            meta = json.loads(t.schema.metadata[METADATA_KEY])
            if change:
                meta.update(change)
            body = raw if raw is not None else json.dumps(meta).encode()
            if mutate:
                t = mutate(t)
            pq.write_table(t.replace_schema_metadata({METADATA_KEY: body}), d / "h.parquet")
            if corrupt:
                data = bytearray((d / "h.parquet").read_bytes())
                corrupt(data)
                (d / "h.parquet").write_bytes(bytes(data))
        return setup

    for raw in metas:
        cases.append(Case("trace files", f"metadata {raw[:12]!r}", [], setup=with_meta(raw)))
    for k, vs in fields.items():
        for v in vs:
            cases.append(Case("trace files", f"metadata {k}={v!r}"[:60], [],
                              setup=with_meta(change={k: v})))

    def drop(col):
        return lambda t: t.drop_columns([col])

    def retype(col, typ):
        def f(t):
            i = t.column_names.index(col)
            arr = t.column(col).cast(typ, safe=False)
            return t.set_column(i, pa.field(col, typ), arr)
        return f

    def nulls(col):
        def f(t):
            i = t.column_names.index(col)
            arr = pa.compute.if_else(pa.array([k % 7 == 0 for k in range(t.num_rows)]),
                                     pa.scalar(None, t.column(col).type), t.column(col))
            return t.set_column(i, pa.field(col, arr.type), arr)
        return f

    def shuffled(t):
        idx = list(range(t.num_rows))
        random.Random(3).shuffle(idx)
        return t.take(pa.array(idx))

    def const(col, v):
        def f(t):
            i = t.column_names.index(col)
            typ = t.column(col).type
            return t.set_column(i, pa.field(col, typ), pa.array([v] * t.num_rows).cast(
                typ, safe=False))
        return f

    muts = [drop(c) for c in ("ts_ns", "cpu", "kind", "vector", "target", "arg", "dur_ns")]
    muts += [retype(c, pa.float64()) for c in ("ts_ns", "cpu", "arg")]
    muts += [retype("ts_ns", pa.int32()), retype("cpu", pa.int64()), retype("kind", pa.string())]
    muts += [nulls(c) for c in ("ts_ns", "cpu", "kind", "target")]
    muts += [shuffled, const("ts_ns", -1), const("cpu", 65535), const("dur_ns", -7),
             const("target", 99), const("ts_ns", 2**63 - 1),
             lambda t: t.append_column("extra", pa.array(range(t.num_rows))),
             lambda t: t.slice(0, 0)]
    for i, m in enumerate(muts):
        cases.append(Case("trace files", f"columns #{i}", [], setup=with_meta(mutate=m)))

    def flip(seed):
        def f(data):
            r = random.Random(seed)
            for _ in range(r.randint(1, 16)):
                k = r.randrange(max(len(data) - 4096, 0), len(data))
                data[k] = r.randrange(256)
        return f

    def cut(frac):
        def f(data):
            del data[int(len(data) * frac):]
        return f

    for s in range(20):
        cases.append(Case("trace files", f"footer bytes flipped #{s}", [],
                          setup=with_meta(corrupt=flip(s))))
    for frac in (0.0, 0.1, 0.5, 0.9, 0.999):
        cases.append(Case("trace files", f"truncated at {frac:.0%}", [],
                          setup=with_meta(corrupt=cut(frac))))
    for c in cases:
        c.args = ["replay", "{d}/h.parquet", "-b", "native", "-f", "json"]
    return cases


def _mutate_lines(rng: random.Random, lines: list[bytes]) -> bytes:
    out = list(lines)
    huge = [b"9" * 19, b"9" * 25, b"18446744073709551616", b"-1", b"65535", b"65536",
            b"4294967296", b"99999999999999.5", b"1e400", b"0x" + b"f" * 20]
    junk = [b"\0", b"\xff\xfe", b"\xc3\x28", b"\r", b"[", b"]", b":", "٣".encode(), b"\x1b[31m"]
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(out))
        line = out[i]
        op = rng.randrange(10)
        if op == 0:
            out[i] = line[: rng.randrange(len(line) + 1)]
        elif op == 1:
            parts = line.split(b" ")
            a, b = rng.randrange(len(parts)), rng.randrange(len(parts))
            parts[a], parts[b] = parts[b], parts[a]
            out[i] = b" ".join(parts)
        elif op == 2:
            parts = line.split(b" ")
            nums = [k for k, p in enumerate(parts) if any(48 <= c <= 57 for c in p)]
            if nums:
                k = rng.choice(nums)
                digits = bytes(c for c in parts[k] if 48 <= c <= 57)
                parts[k] = parts[k].replace(digits, rng.choice(huge), 1) if digits else parts[k]
            out[i] = b" ".join(parts)
        elif op == 3:
            at = rng.randrange(len(line) + 1)
            out[i] = line[:at] + rng.choice(junk) + line[at:]
        elif op == 4:
            out[i] = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        elif op == 5:
            out[i] = line + b"y" * rng.choice([70_000, 300_000])
        elif op == 6:
            out.insert(i, line)
        elif op == 7:
            out.insert(rng.randrange(len(out)), out.pop(i))
        elif op == 8:
            s, e = line.find(b"["), line.find(b"]")
            if 0 <= s < e:
                out[i] = line[: s + 1] + rng.choice([b"", b"abc", b"0x1", b"99999", b"-1",
                                                     b"65535"]) + line[e:]
        else:
            out[i] = b""
    return b"\n".join(out) + rng.choice([b"\n", b"", b"\r\n"])


SEEDS = [
    DATA / "local-dual/ftrace.txt", DATA / "local-dual/perf-script.txt",
    DATA / "local-dual/perf-script-F-ns.txt", DATA / "fc-guest-mixed/trace-head.txt",
    DATA / "realtraces/guest-nohz-local-timer-sysjitter/trace_excerpt.txt",
    DATA / "realtraces/kvm-svm-selfipi-eoi-idlehlt/trace_idle_hlt_off.txt",
    DATA / "realtraces/kvm-perfscript-irq-injection/perf_script_apic.txt",
    DATA / "realtraces/kvm-ftrace-pckbd-pic-seabios/trace_wrapped.txt",
    DATA / "realtraces/kvm-ftrace-tscdeadline-kvmstat/kvm_msr_ftrace.txt",
]


def ingest_cases(rng: random.Random, n: int) -> list[Case]:
    cases = []
    for k in range(n):
        seed = SEEDS[k % len(SEEDS)]
        lines = seed.read_bytes().splitlines()[:80]
        data = _mutate_lines(rng, lines)
        strict = rng.random() < 0.4

        def setup(d, data=data):
            (d / "in.txt").write_bytes(data)
        cases.append(Case("ingest text", f"{seed.name} mutated #{k}{' --strict' if strict else ''}",
                          ["ingest", "{d}/in.txt", "-o", "{d}/o.parquet"]
                          + (["--strict"] if strict else []), setup=setup,
                          expect_out="{d}/o.parquet"))
    for k in range(15):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))

        def setup(d, blob=blob):
            (d / "in.txt").write_bytes(blob)
        cases.append(Case("ingest text", f"random bytes #{k}",
                          ["ingest", "{d}/in.txt", "-o", "{d}/o.parquet"], setup=setup,
                          expect_out="{d}/o.parquet"))
    return cases


def stream_cases(rng: random.Random) -> list[Case]:
    src = DATA / "local-dual/ftrace.txt"
    py = f"{sys.executable} -m tracebench"
    cases = [
        Case("streams", "<(cat FILE)", [f"bash -c '{py} ingest <(cat {src}) -o {{d}}/o.parquet'"],
             shell=True, codes=(0,), expect_out="{d}/o.parquet"),
        Case("streams", "<(head -c 5000 FILE) (cut mid-line)",
             [f"bash -c '{py} ingest <(head -c 5000 {src}) -o {{d}}/o.parquet'"], shell=True,
             expect_out="{d}/o.parquet"),
        Case("streams", "<(true) (empty pipe)",
             [f"bash -c '{py} ingest <(true) -o {{d}}/o.parquet'"], shell=True, codes=(1,)),
        Case("streams", "stdin -", ["ingest", "-", "-o", "{d}/o.parquet"],
             stdin=src.read_bytes(), codes=(0,), expect_out="{d}/o.parquet"),
        Case("streams", "stdin binary", ["ingest", "-", "-o", "{d}/o.parquet"],
             stdin=b"\0" * 100000, codes=(1,)),
        Case("streams", "FIFO with a writer",
             [f"bash -c 'mkfifo {{d}}/f; (cat {src} > {{d}}/f &); {py} ingest {{d}}/f "
              f"-o {{d}}/o.parquet'"], shell=True, codes=(0,), expect_out="{d}/o.parquet"),
        Case("streams", "/dev/zero", ["ingest", "/dev/zero", "-o", "{d}/o.parquet"], codes=(1,)),
        Case("streams", "/dev/null", ["ingest", "/dev/null", "-o", "{d}/o.parquet"], codes=(1,)),
        Case("streams", "a folder", ["ingest", "{w}", "-o", "{d}/o.parquet"], codes=(1,)),
        Case("streams", "a parquet", ["ingest", "{w}/t.parquet", "-o", "{d}/o.parquet"],
             codes=(1,)),
        Case("streams", "input is output",
             ["ingest", "{d}/o.parquet", "-o", "{d}/o.parquet", "--force"], codes=(1, 2),
             setup=lambda d: (d / "o.parquet").write_bytes(src.read_bytes())),
    ]
    return cases


def size_cases(rng: random.Random) -> list[Case]:
    durations = ["1e400s", "-1s", "0", "0s", "99999999999h", "300y", "1.5.5s", "nan", "inf",
                 "100000h", "1ns"]
    cases = []
    for dur in durations:
        cases.append(Case("sizes", f"synth --duration {dur}",
                          ["synth", "mixed-server", "-o", "{d}/s.parquet", "--duration", dur],
                          expect_out="{d}/s.parquet"))
    for cpus in ("0", "-1", "65535", "65536", "99999999999999999999", "x"):
        cases.append(Case("sizes", f"synth --cpus {cpus}",
                          ["synth", "hz-tick", "-o", "{d}/s.parquet", "--cpus", cpus,
                           "--duration", "100000h"], expect_out="{d}/s.parquet"))
    for p in ("hz=1e30", "hz=-5", "hz=nan", "requests_per_s=1e30", "hz=99999999999999999999"):
        scen = "net-rr" if p.startswith("requests") else "hz-tick"
        cases.append(Case("sizes", f"synth -p {p}", ["synth", scen, "-o", "{d}/s.parquet",
                                                     "-p", p], expect_out="{d}/s.parquet"))
    opts = [["--chunk-rows", "0"], ["--chunk-rows", "99999999999999999999"],
            ["--threads", "0"], ["--threads", "100000"], ["-p", "exit_roundtrip_cyc=1e400"],
            ["-p", "exit_roundtrip_cyc=-1"], ["-p", "tsc_ghz=0"], ["-p", "nosuch=1"],
            ["--profile", "nosuch"], ["-b", "nosuch"], ["--events-for", "eli", "-o", "{d}/r"],
            ["-p", "exit_roundtrip_cyc"], ["--chunk-rows", "1"]]
    for o in opts:
        cases.append(Case("sizes", f"replay {' '.join(o)}",
                          ["replay", "{w}/t.parquet", "-b", "native", "-q", *o]))
    return cases


def results_cases(rng: random.Random) -> list[Case]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cases = []

    def damage(r: random.Random, p: Path) -> None:
        op = r.randrange(5)
        if op == 0:
            p.unlink(missing_ok=True)
        elif op == 1 and p.exists():
            data = p.read_bytes()
            p.write_bytes(data[: r.randrange(len(data) + 1)])
        elif op == 2:
            p.write_bytes(bytes(r.randrange(256) for _ in range(r.randrange(100))))
        elif op == 3 and p.exists():
            t = pq.read_table(p)
            pq.write_table(t.drop_columns([r.choice(t.column_names)]), p)
        elif p.exists():
            t = pq.read_table(p)
            c = r.choice(t.column_names)
            t = t.set_column(t.column_names.index(c), pa.field(c, pa.string()),
                             pa.array([str(v) for v in t.column(c).to_pylist()]))
            pq.write_table(t, p)

    def damaged(seed):
        def setup(d, w):
            r = random.Random(seed)
            shutil.copytree(w / "res", d / "res")
            parts = sorted((d / "res").rglob("*.parquet"))
            for _ in range(r.randint(1, 3)):
                # an earlier step may have spoiled this part already
                with contextlib.suppress(pa.ArrowException, OSError):
                    damage(r, r.choice(parts))
        return setup

    for s in range(30):
        verb = ["stat", "compare"][s % 2]
        args = [verb, "{d}/res"] + (["{w}/res2"] if s % 4 == 1 else [])
        cases.append(Case("results folders", f"{verb} damaged #{s}", args,
                          setup=damaged(s), codes=(0, 1, 2, 3)))
    for args, codes in (
        (["stat", "{w}/res", "--key", "color"], (2,)), (["stat", "{w}/res", "-b", "x"], (2,)),
        (["stat", "{w}/t.parquet"], (1,)), (["stat", "{d}/nothing"], (1,)),
        (["compare", "{w}/res", "{w}/res2", "--fail-above", "5"], (3,)),
        (["compare", "{w}/res", "{w}/res", "--fail-above", "5"], (0,)),
        (["compare", "{w}/res", "--fail-above", "5"], (0, 3)),  # gates backends vs base
        (["compare", "{w}/res", "--base", "nosuch"], (2,)),
        (["stat", "{w}/res", "--measured", "{w}/t.parquet"], (1,)),
    ):
        cases.append(Case("exit codes", " ".join(args[:4]), args, codes=codes))
    return cases


# --------------------------------------------------------------------------- running


def _snapshot(folder: Path) -> dict:
    out = {}
    for p in folder.rglob("*"):
        if p.is_symlink() or p.is_file():
            st = p.lstat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def _valid(path: Path) -> str | None:
    """None if ``path`` is absent or a complete output, else what is wrong."""
    try:
        if not path.exists() or path.is_symlink():
            return None
    except OSError:  # a name too long to exist: nothing was written there
        return None
    try:
        if path.is_dir():
            from tracebench.atomic import read_marker

            marker = read_marker(path)
            if marker is None or marker["kind"] != "results" or (path / "keep").exists():
                return None  # not a results folder tracebench wrote: the case's own
            if not (path / "run.json").exists():
                return "results folder without run.json"
            return None
        from tracebench.trace import TraceFile

        if path.read_bytes()[:4] != b"PAR1":
            return None  # the case's own file, left alone
        TraceFile(path).read_all()
    except Exception as exc:  # noqa: BLE001 (anything here is a finding)
        return f"partial output: {type(exc).__name__}: {exc}"
    return None


def run_case(case: Case, world: Path, base: Path) -> dict:
    d = Path(tempfile.mkdtemp(prefix="case-", dir=base))
    sentinel = base / "sentinel"
    before = _snapshot(sentinel)
    world_before = _snapshot(world)
    if case.setup is not None:
        try:
            code = case.setup.__code__
            required = code.co_argcount - len(case.setup.__defaults__ or ())
            case.setup(d, world) if required == 2 else case.setup(d)
        except OSError as exc:
            return {"clean": True, "why": f"setup impossible here ({exc})", "skipped": True}
    args = [str(a).replace("{d}", str(d)).replace("{w}", str(world)) for a in case.args]
    t0 = time.monotonic()
    try:
        if case.shell:
            r = subprocess.run(args[0], shell=True, capture_output=True, timeout=TIMEOUT_S,
                               env=_env(), cwd=d, input=case.stdin)
        else:
            r = subprocess.run([sys.executable, "-m", "tracebench", *args], capture_output=True,
                               timeout=TIMEOUT_S, env=_env(), cwd=d, input=case.stdin)
    except subprocess.TimeoutExpired:
        return {"clean": False, "why": f"hang (no answer in {TIMEOUT_S} s)"}
    took = time.monotonic() - t0
    err = r.stderr.decode(errors="replace").strip()
    problems = []
    if r.returncode not in case.codes:
        problems.append(f"exit {r.returncode} not in {case.codes}")
    if "Traceback" in err:
        problems.append("traceback: " + err.splitlines()[-1][:200])
    errors = [ln for ln in err.splitlines() if ln.startswith("tracebench: error:")]
    if r.returncode in (1, 2) and "Usage:" not in err and (
            len(errors) != 1 or not err.endswith(errors[0])):
        problems.append(f"not one error line: {err[-300:]!r}")
    if _snapshot(sentinel) != before or _snapshot(world) != world_before:
        problems.append("wrote outside its sandbox")
    if case.expect_out:
        bad = _valid(Path(case.expect_out.replace("{d}", str(d)).replace("{w}", str(world))))
        if bad:
            problems.append(bad)
    tmps = [p for p in d.rglob(".*") if ".tmp-" in p.name and p.name.split("-")[1] != "0123abcd"
            and "0123abcd" not in p.name]
    if tmps:
        problems.append(f"temporaries left: {[p.name for p in tmps][:3]}")
    shutil.rmtree(d, ignore_errors=True)
    return {"clean": not problems, "why": "; ".join(problems), "exit": r.returncode,
            "seconds": round(took, 2), "error": errors[0][:200] if errors else ""}


def _guarded(case: Case, world: Path, base: Path) -> dict:
    try:
        return run_case(case, world, base)
    except Exception as exc:  # noqa: BLE001 (the harness must report, not stop)
        return {"clean": False, "why": f"harness: {type(exc).__name__}: {exc}"[:300]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=0, help="run only the first N (0: all)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ingest", type=int, default=160, help="mutated ingest cases")
    ap.add_argument("--json", type=Path, help="write every case and its outcome here")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    base = Path(tempfile.mkdtemp(prefix="tracebench-adversarial-"))
    world = base / "world"
    world.mkdir()
    (base / "sentinel").mkdir()
    (base / "sentinel" / "precious.txt").write_text("must not change\n")
    build_world(world)
    cases = (output_cases(rng) + backend_file_cases(rng) + trace_file_cases(rng)
             + ingest_cases(rng, a.ingest) + stream_cases(rng) + size_cases(rng)
             + results_cases(rng))
    if a.cases:
        cases = cases[: a.cases]
    t0 = time.monotonic()
    with ThreadPoolExecutor(a.jobs) as pool:
        outcomes = list(pool.map(lambda c: _guarded(c, world, base), cases))
    by_class: dict[str, list[int]] = {}
    for c, o in zip(cases, outcomes, strict=True):
        c.outcome = o
        tried_clean = by_class.setdefault(c.cls, [0, 0])
        tried_clean[0] += 1
        tried_clean[1] += o["clean"]
        if not o["clean"]:
            print(f"NOT CLEAN [{c.cls}] {c.name}: {o['why']}", file=sys.stderr)
    total = len(cases)
    clean = sum(o["clean"] for o in outcomes)
    print(f"{'class':<18} {'tried':>6} {'clean':>6}")
    for cls, (n, ok) in by_class.items():
        print(f"{cls:<18} {n:>6} {ok:>6}")
    print(f"{'all':<18} {total:>6} {clean:>6}   ({time.monotonic() - t0:.0f} s, seed {a.seed})")
    if a.json:
        a.json.write_text(json.dumps([{"class": c.cls, "case": c.name, **c.outcome}
                                      for c in cases], indent=1) + "\n")
    shutil.rmtree(base, ignore_errors=True)
    return 0 if clean == total else 1


if __name__ == "__main__":
    sys.exit(main())
