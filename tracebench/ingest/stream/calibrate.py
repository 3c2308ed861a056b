"""TSC-deadline values -> trace-clock ns, learned from the trace itself.

A guest arms its timer by writing a TSC value to MSR 0x6e0; replay needs that
deadline in ns on the trace clock. The trace tells how the two clocks relate:

``hrtimer`` (exact): the clockevent writes the deadline of the hrtimer it was just
handed, so ``hrtimer_start expires=E`` (CLOCK_MONOTONIC ns) followed on the same
CPU by ``write_msr 6e0 V`` gives pairs with ``V = a*E + b``; ``hrtimer_expire_entry
now=N`` at trace time ``T`` gives the monotonic -> trace clock offset ``T - N``.

``timer-irq`` (fallback, biased late by the shortest interrupt latency): the
``local_timer_entry`` that follows a deadline write fires at ``T ~ V/a + c``; ``c``
is set so that the earliest firing is exactly on time.

Both fits are robust (median of pairwise slopes, then least squares on inliers),
because not every write belongs to the hrtimer just started.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

MIN_PAIRS = 8
PAIR_WINDOW_NS = 50_000
#: TSC rates a fit may give, GHz (cycles per ns), as the model's tsc_ghz parameter: a fit
#: outside them matched the wrong records (an idle CPU re-writing the same deadlines)
TSC_GHZ = (0.1, 10.0)


@dataclasses.dataclass
class Calibration:
    """How TSC values and CLOCK_MONOTONIC map to the trace clock (absolute ns)."""

    method: str = "none"
    tsc_per_ns: float | None = None
    tsc_at_zero: float | None = None
    mono_offset_ns: int | None = None
    pairs: int = 0
    residual_p99_ns: float | None = None

    def tsc_expr(self):
        """Expression factory UInt64 TSC -> Int64 trace ns, or None without a fit."""
        if self.tsc_per_ns is None:
            return None
        a, b = self.tsc_per_ns, self.tsc_at_zero

        def conv(v: pl.Expr) -> pl.Expr:
            return ((v.cast(pl.Float64) - b) / a).round().cast(pl.Int64)

        return conv

    def to_meta(self) -> dict:
        return {
            k: (round(v, 9) if isinstance(v, float) else v)
            for k, v in dataclasses.asdict(self).items()
        }


def _robust_line(x: np.ndarray, y: np.ndarray, tol: float):
    """Fit y = s*x + c ignoring outliers; return (s, c, inlier mask) or None."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    n = len(x)
    half = n // 2
    dx = x[half : half * 2] - x[:half]
    ok = dx != 0
    if ok.sum() < 2:
        return None
    s = float(np.median((y[half : half * 2] - y[:half])[ok] / dx[ok]))
    c = float(np.median(y - s * x))
    inl = np.abs(y - s * x - c) < tol
    if inl.sum() < MIN_PAIRS:
        return None
    xm = x[inl].mean()
    ym = y[inl].mean()
    spread = np.sum((x[inl] - xm) ** 2)
    if not spread > 0:
        # the inliers share one x (an idle CPU re-writing the same two deadlines): no slope
        return None
    s = float(np.sum((x[inl] - xm) * (y[inl] - ym)) / spread)
    c = float(ym - s * xm)
    mask = np.zeros(n, bool)
    mask[order[inl]] = True
    return s, c, mask


def _asof(left: pl.DataFrame, right: pl.DataFrame, tolerance: int | None) -> pl.DataFrame:
    return left.sort("ts").join_asof(
        right.sort("ts"),
        on="ts",
        by="cpu",
        strategy="backward",
        tolerance=tolerance,
        check_sortedness=False,
    )


def mono_offset(expire_entry: pl.DataFrame) -> int | None:
    """Trace clock minus CLOCK_MONOTONIC from ``hrtimer_expire_entry now=`` (median), ns."""
    now = expire_entry.select(
        pl.col("ts"),
        now=pl.col("payload").str.extract(r"now=(\d+)", 1).cast(pl.Int64, strict=False),
    ).drop_nulls()
    if now.height == 0:
        return None
    return int(np.median((now["ts"] - now["now"]).to_numpy()))


def calibrate(events: dict[str, pl.DataFrame]) -> Calibration:
    """Learn the TSC -> trace ns map from records of the first part of a trace.

    Parameters
    ----------
    events : records (``ts`` ns, ``cpu``, ``payload``) of ``write_msr``,
        ``hrtimer_start``, ``hrtimer_expire_entry`` and ``local_timer_entry``.
    """
    empty = pl.DataFrame(schema={"ts": pl.Int64, "cpu": pl.Int32, "payload": pl.String})
    get = lambda name: events.get(name, empty)  # noqa: E731
    off = mono_offset(get("hrtimer_expire_entry"))
    cal = Calibration(mono_offset_ns=off)
    w = (
        get("write_msr")
        .select(
            "ts",
            "cpu",
            msr=pl.col("payload").str.extract(r"^(?:0x)?([0-9a-fA-F]+),", 1),
            v=pl.col("payload")
            .str.extract(r"value (?:0x)?([0-9a-fA-F]+)", 1)
            .str.to_integer(base=16, dtype=pl.UInt64, strict=False),
        )
        .filter((pl.col("msr") == "6e0") & (pl.col("v") > 0))
        .drop("msr")
    )
    if w.height < MIN_PAIRS:
        return cal
    if off is not None:
        hs = (
            get("hrtimer_start")
            .select(
                "ts",
                "cpu",
                e=pl.col("payload").str.extract(r"expires=(\d+)", 1).cast(pl.Int64, strict=False),
            )
            .drop_nulls()
        )
        pairs = _asof(w, hs, PAIR_WINDOW_NS).drop_nulls()
        if pairs.height >= MIN_PAIRS:
            e = pairs["e"].to_numpy().astype(np.float64)
            v = pairs["v"].to_numpy().astype(np.float64)
            fit = _robust_line(e, v, tol=5_000.0)  # cycles
            if fit is not None and TSC_GHZ[0] <= fit[0] <= TSC_GHZ[1]:
                a, b, inl = fit
                res = (v[inl] - a * e[inl] - b) / a
                return dataclasses.replace(
                    cal,
                    method="hrtimer",
                    tsc_per_ns=a,
                    tsc_at_zero=b - a * off,
                    pairs=int(inl.sum()),
                    residual_p99_ns=float(np.percentile(np.abs(res), 99)),
                )
    lt = get("local_timer_entry").select("ts", "cpu")
    pairs = _asof(lt, w.rename({"ts": "wts"}).with_columns(ts=pl.col("wts")), None).drop_nulls()
    if pairs.height < MIN_PAIRS:
        return cal
    v = pairs["v"].to_numpy().astype(np.float64)
    t = pairs["ts"].to_numpy().astype(np.float64)
    fit = _robust_line(v, t, tol=200_000.0)  # ns
    if fit is None or not (fit[0] > 0 and TSC_GHZ[0] <= 1.0 / fit[0] <= TSC_GHZ[1]):
        return cal
    s, c, inl = fit
    c = float(np.min(t[inl] - s * v[inl]))  # the earliest firing is taken as on time
    res = t[inl] - s * v[inl] - c
    return dataclasses.replace(
        cal,
        method="timer-irq",
        tsc_per_ns=1.0 / s,
        tsc_at_zero=-c / s,
        pairs=int(inl.sum()),
        residual_p99_ns=float(np.percentile(res, 99)),
    )
