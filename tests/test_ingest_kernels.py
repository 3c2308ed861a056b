"""Ingest kernels against slow, obvious references (the stumpy way).

- ``resolve``: the numba pass against the polars ``shift().over("cpu")`` formulation
  it replaced, window cut and carried rows included, on random candidate rows;
- ``ChunkReader``: mapped windows against reading ``chunk_bytes`` at a time into a
  bytes object and cutting at the last newline (where pieces end decides which
  relations a window finds, so they must end at the same bytes);
- the probe: against ``bytes.find`` of each needle;
- the whole ingest with the JIT disabled (the kernels as plain Python).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.ingest_helpers import DATA
from tracebench.ingest.rules.base import (
    EOI_INFERRED,
    EOI_TRACED,
    H_EXIT,
    H_IPI_HINT,
    H_KVM_ENTRY,
    H_KVM_EXIT,
    H_MARK,
    ROW_SCHEMA,
)
from tracebench.ingest.stream import merge
from tracebench.ingest.stream.resolve import (
    EOI_BEFORE_ENTRY_NS,
    IPI_DUP_WINDOW_NS,
    STEAL_GAP_NS,
    resolve,
)
from tracebench.ingest.text import probe
from tracebench.ingest.text.files import ChunkReader, scan_file
from tracebench.schema import EventKind as K

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- resolve

_IRQ = [int(K.TIMER_IRQ), int(K.IPI_IRQ), int(K.DEVICE_IRQ)]
_WRMSR = [int(k) for k in (K.TIMER_ARM, K.TIMER_CANCEL, K.IPI_SEND, K.TPR_WRITE, K.APIC_WRITE)]
_SORT = ["ts", "seq", "sub"]


def _neighbour(df: pl.DataFrame, kinds: list[int], n: int) -> pl.DataFrame:
    sub = df.filter(pl.col("kind").is_in(kinds)).select(
        "i", "cpu", "kind", "aux", "ts", "arg", "target"
    )
    return sub.with_columns(
        nk=pl.col("kind").shift(n).over("cpu"),
        naux=pl.col("aux").shift(n).over("cpu"),
        nts=pl.col("ts").shift(n).over("cpu"),
        narg=pl.col("arg").shift(n).over("cpu"),
        ntarget=pl.col("target").shift(n).over("cpu"),
    )


def _host_time(df: pl.DataFrame, msr_traced: bool) -> pl.DataFrame:
    """Per handler entry ``i``: its host time, the gaps (to the previous row on the CPU, any
    kind) of the rows after it up to its handler's exit that are over STEAL_GAP_NS, or,
    under traced MSR writes, end at a WRMSR's row."""
    wrmsr = pl.col("kind").is_in(_WRMSR) | ((pl.col("kind") == int(K.EOI)) & (pl.col("arg") == 0))
    owner = pl.when(pl.col("kind").is_in([*_IRQ, H_EXIT])).then(pl.col("i"))
    rows = df.with_columns(
        gap=pl.col("ts") - pl.col("ts").shift(1).over("cpu"),
        owner=owner.forward_fill().over("cpu").shift(1).over("cpu"),
    )
    kind_of = df.select(owner="i", owner_kind="kind")
    host = (pl.col("gap") > STEAL_GAP_NS) | (wrmsr & msr_traced)
    inside = rows.join(kind_of, on="owner").filter(pl.col("owner_kind").is_in(_IRQ))
    return inside.group_by("owner").agg(host=pl.col("gap").filter(host).sum())


def _resolve_reference(cand: pl.DataFrame, infer_eoi: bool, msr_traced: bool):
    """The polars formulation the numba pass replaced (rows, exits, timed exits)."""
    df = cand.with_row_index("i")
    h = _neighbour(df, [*_IRQ, H_EXIT], -1)
    dur = (
        h.filter(
            pl.col("kind").is_in(_IRQ)
            & (pl.col("nk") == H_EXIT)
            & (pl.col("naux") == pl.col("aux"))
        )
        .join(_host_time(df, msr_traced), left_on="i", right_on="owner", how="left")
        .with_columns(host=pl.col("host").fill_null(0))
    )
    hosted = dur.select("ts", "host")
    dur = dur.select("i", d=pl.col("nts") - pl.col("ts") - pl.col("host"))
    ipi = _neighbour(df, [H_IPI_HINT, int(K.IPI_SEND)], -1)
    dup = (
        (pl.col("nk") == int(K.IPI_SEND))
        & (pl.col("nts") - pl.col("ts") <= IPI_DUP_WINDOW_NS)
        & ((pl.col("target") < 0) | (pl.col("ntarget") == pl.col("target")))
    )
    hints = ipi.filter(pl.col("kind") == H_IPI_HINT)
    drop = hints.filter(dup).select("i") if msr_traced else hints.clear().select("i")
    df = df.with_columns(
        kind=pl.when(pl.col("kind") == H_IPI_HINT)
        .then(pl.lit(int(K.IPI_SEND), pl.Int8))
        .otherwise(pl.col("kind"))
    )
    df = df.join(drop, on="i", how="anti")
    df = df.join(dur, on="i", how="left").with_columns(dur_ns=pl.coalesce("d", "dur_ns")).drop("d")
    extra = []
    if infer_eoi:
        e = _neighbour(df, [*_IRQ, int(K.EOI)], 1)
        covered = (
            (pl.col("nk") == int(K.EOI))
            & (pl.col("narg") == EOI_TRACED)
            & (pl.col("ts") - pl.col("nts") <= EOI_BEFORE_ENTRY_NS)
        )
        need = e.filter(pl.col("kind").is_in(_IRQ) & ~covered.fill_null(False)).select("i")
        extra.append(
            df.join(need, on="i", how="semi").with_columns(
                kind=pl.lit(int(K.EOI), pl.Int8),
                target=pl.lit(-1, pl.Int32),
                arg=pl.lit(EOI_INFERRED, pl.Int64),
                argt=pl.lit(False),
                dur_ns=pl.lit(0, pl.Int64),
                sub=pl.lit(1, pl.Int8),
            )
        )
    x = _neighbour(df, [H_KVM_EXIT, H_KVM_ENTRY], 1)
    exits = x.filter(pl.col("kind") == H_KVM_EXIT).select("ts", "cpu", reason=pl.col("aux"))
    closed = x.filter((pl.col("kind") == H_KVM_ENTRY) & (pl.col("nk") == H_KVM_EXIT))
    timed = closed.select("ts", "cpu", reason=pl.col("naux"), ns=pl.col("ts") - pl.col("nts"))
    hlt_in = x.filter((pl.col("kind") == H_KVM_EXIT) & (pl.col("arg") == 1)).select("i")
    hlt_out = closed.filter(pl.col("narg") == 1).select("i")
    for ids, kind in ((hlt_in, K.IDLE_ENTER), (hlt_out, K.IDLE_EXIT)):
        extra.append(
            df.join(ids, on="i", how="semi").with_columns(
                kind=pl.lit(int(kind), pl.Int8),
                arg=pl.lit(0, pl.Int64),
                aux=pl.lit(0, pl.Int64),
                sub=pl.lit(1, pl.Int8),
            )
        )
    out = pl.concat([df.filter(pl.col("kind") >= 0), *extra]).drop("i").sort(_SORT)
    return out, exits, timed, hosted


def _random_cands(rng: np.random.Generator, n: int, gaps: bool = False) -> dict:
    """Random candidate rows over 3 s; ``gaps``: consecutive times apart by steps at the
    host-time boundary (STEAL_GAP_NS and either side of it) and by large ones."""
    kinds = [*_IRQ, H_EXIT, H_IPI_HINT, int(K.IPI_SEND), int(K.EOI), H_KVM_EXIT, H_KVM_ENTRY,
             int(K.TIMER_ARM), int(K.IDLE_ENTER), H_MARK, int(K.TPR_WRITE)]  # fmt: skip
    if gaps:
        step = rng.choice([0, 1_000, STEAL_GAP_NS - 1, STEAL_GAP_NS, STEAL_GAP_NS + 1, 0], n)
        big = rng.random(n) < 0.2
        step[big] = rng.integers(0, 30_000_000, int(big.sum()))
        ts = np.cumsum(step).astype(np.int64)
    else:
        ts = np.sort(rng.integers(0, 3_000_000_000, n))
        ts[rng.random(n) < 0.2] = ts[0]  # ties in time, told apart by the line number
    ts = np.sort(ts)
    rows = {
        "seq": rng.permutation(n * 3)[:n].astype(np.int64),
        "ts": ts,
        "cpu": rng.choice([0, 1, 2, 7], n).astype(np.int32),
        "kind": rng.choice(kinds, n).astype(np.int8),
        "vector": rng.choice([236, 253, 41, -1], n).astype(np.int16),
        "target": rng.choice([-2, -1, 0, 1, 2], n).astype(np.int32),
        "arg": rng.choice([0, 1, 5, 10**9], n).astype(np.int64),
        "argt": rng.random(n) < 0.3,
        "dur_ns": np.zeros(n, np.int64),
        "aux": rng.choice([65536 + 236, 2 * 65536 + 253, 6 * 65536 + 41, 3], n).astype(np.int64),
    }
    order = np.lexsort((rows["seq"], rows["ts"]))
    return {k: v[order] for k, v in rows.items()}


@pytest.mark.parametrize("seed", range(12))
def test_resolve_equals_polars_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3_000))
    cand = _random_cands(rng, n, gaps=seed >= 6)
    infer, msr = bool(seed % 2), seed % 3 != 0
    span = int(cand["ts"][-1]) if seed >= 6 else 3_000_000_000
    lo, cut = span * 2 // 15, span * 5 // 6
    rows, exits, keep, host = resolve(cand, infer, msr, lo, cut, cut - 500_000_000)
    df = pl.DataFrame(cand, schema=ROW_SCHEMA).with_columns(sub=pl.lit(0, pl.Int8))
    ref, ref_exits, ref_timed, ref_host = _resolve_reference(df, infer, msr)
    win = (pl.col("ts") >= lo) & (pl.col("ts") < cut)
    assert host["exit_ns"] + host["steal_ns"] == ref_host.filter(win)["host"].sum()
    ref = ref.filter(win)
    for k, v in rows.items():
        assert np.array_equal(v, ref[k].to_numpy()), k
    ref_x = pl.concat(
        [ref_exits.filter(win).with_columns(ns=pl.lit(-1, pl.Int64)), ref_timed.filter(win)]
    ).sort("ts", "cpu", "reason", "ns")
    got_x = pl.DataFrame(exits).sort("ts", "cpu", "reason", "ns")
    assert got_x.equals(ref_x.select(got_x.columns))
    # carried: rows from cut - hold on, plus the last older row of each (cpu, kind)
    older = df.with_row_index("i").filter(pl.col("ts") < cut - 500_000_000)
    last = older.group_by("cpu", "kind").agg(pl.col("i").last())["i"].to_list()
    want = (cand["ts"] >= cut - 500_000_000) | np.isin(np.arange(len(keep)), last)
    assert np.array_equal(keep, want)


def test_merge_keeps_time_then_line_order():
    rng = np.random.default_rng(7)
    a, b = _random_cands(rng, 500), _random_cands(rng, 300)
    b["seq"] += 10_000
    got = merge.merge_sorted(a, b)
    both = {k: np.concatenate([a[k], b[k]]) for k in a}
    order = np.lexsort((both["seq"], both["ts"]))
    for k in a:
        assert np.array_equal(got[k], both[k][order]), k


# --------------------------------------------------------------------------- reader


def _pieces_reference(data: bytes, chunk: int, unused_of):
    """The bytes-object reader the mapped one replaced (same pieces, same reports)."""
    pos, pending, eof, line_no, out, longs = 0, b"", False, 1, [], []
    while True:
        if not eof:
            got = data[pos : pos + chunk]
            pos += len(got)
            eof = not got
            pending += got
        if not pending:
            break
        if not eof:
            nl = pending.rfind(b"\n")
            if nl < 0:
                if len(pending) > chunk:  # an over-long line: stream through it
                    n, buf = 0, pending
                    while True:
                        k = buf.find(b"\n")
                        if k >= 0:
                            longs.append((line_no, n + k))
                            line_no += 1
                            pending = buf[k + 1 :]
                            break
                        n += len(buf)
                        buf = data[pos : pos + chunk]
                        pos += len(buf)
                        if not buf:
                            longs.append((line_no, n))
                            pending, eof = b"", True
                            break
                continue
            piece, rest = pending[: nl + 1], pending[nl + 1 :]
        else:
            piece, rest = pending, b""
        last = eof and not rest
        out.append((piece, line_no, last))
        used = len(piece) - unused_of(piece, last)
        line_no += piece.count(b"\n", 0, used)
        pending = piece[used:] + rest
        if last:
            break
    return out, longs, line_no


def _unused(piece: bytes, last: bool) -> int:
    """Leave the last line for the next piece when it says so (as a wrapped header would)."""
    if last or not piece.endswith(b"carry\n"):
        return 0
    return len(piece) - piece.rstrip(b"\n").rfind(b"\n") - 1


@pytest.mark.parametrize("seed", range(8))
def test_reader_pieces_equal_bytes_reader(seed, tmp_path):
    rng = random.Random(seed)
    lines = []
    for _ in range(rng.randrange(50, 400)):
        r = rng.random()
        n = rng.randrange(3000) if r < 0.05 else rng.randrange(90)  # some longer than a chunk
        lines.append("carry" if r > 0.9 else "x" * n)
    data = ("\n".join(lines) + ("\n" if seed % 2 else "")).encode()
    src = tmp_path / "t.txt"
    src.write_bytes(data)
    chunk = rng.choice([256, 300, 1024, 4096])
    ref, ref_long, ref_line_no = _pieces_reference(data, chunk, _unused)
    reader, got = ChunkReader(src, chunk), []
    for win, lo, hi, first_line, last in reader:
        piece = bytes(win.arr[lo - win.offset : hi - win.offset])
        got.append((piece, first_line, last))
        reader.unused = _unused(piece, last)
    assert got == ref
    assert reader.long_lines == ref_long and reader.line_no == ref_line_no


# --------------------------------------------------------------------------- probe


def test_probe_equals_substring_search(tmp_path):
    names = ("write_msr", "kvm_apic", "kvm_eoi", "kvm_msr", "kvm_apic_accept_irq")
    rng = random.Random(3)
    for trial in range(40):
        parts = [bytes(rng.choice(b"ab :_\nkvmrsite") for _ in range(rng.randrange(9000)))]
        for _ in range(rng.randrange(3)):
            nm = rng.choice(names).encode()
            pre, post = rng.choice([b" ", b":", b"x"]), rng.choice([b": ", b":\n", b":x", b"::"])
            at = rng.randrange(len(parts[0]) + 1)
            parts[0] = parts[0][:at] + pre + nm + post + parts[0][at:]
        data = parts[0]
        src = tmp_path / f"p{trial}.txt"
        src.write_bytes(data)
        needles = probe.Needles(names)
        scan_file(src, needles.scan, block=4096, overlap=needles.OVERLAP)
        needle = (" {}: ", ":{}: ", " {}:\n")
        want = {nm for nm in names if any(v.format(nm).encode() in data for v in needle)}
        assert needles.found_names() == want, trial


# --------------------------------------------------------------------------- no JIT


def test_ingest_without_jit_equals_jit(tmp_path):
    """The kernels run as plain Python give the same trace (how their lines get covered)."""
    src = DATA / "local-dual/ftrace.txt"
    code = (
        "import json, sys; from tracebench.ingest import ingest; "
        "r = ingest([sys.argv[1]], sys.argv[2], chunk_bytes=16384); "
        "print(json.dumps(r.meta.source, sort_keys=True))"
    )
    outs = {}
    for jit in ("0", "1"):
        env = {**os.environ, "NUMBA_DISABLE_JIT": "0" if jit == "1" else "1"}
        dst = tmp_path / f"jit{jit}.parquet"
        proc = subprocess.run(
            [sys.executable, "-c", code, str(src), str(dst)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[jit] = (json.loads(proc.stdout.strip().splitlines()[-1]), dst.read_bytes())
    assert outs["0"][0] == outs["1"][0]
    from tracebench.trace import read_trace

    a, _ = read_trace(tmp_path / "jit0.parquet")
    b, _ = read_trace(tmp_path / "jit1.parquet")
    for k in a:
        assert np.array_equal(a[k], b[k]), k
