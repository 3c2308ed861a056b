"""Predicted against measured exits, per reason, in the ``perf kvm stat`` layout.

Both sides are reduced to the canonical reason names of :mod:`tracebench.exitnames`
(so SVM ``vintr`` and VMX ``PENDING_INTERRUPT`` meet). Where the measured side cannot
tell an MSR read from a write (an SVM ``msr`` row of a report, a ``kvm_msr`` count of
``kvm_stat``) the predicted MSR_READ and MSR_WRITE are folded into one ``MSR`` row too.

The ratio is predicted / measured. Its basis is said per table: ``count`` when both sides
cover the same interval (the exits measured from the replayed trace itself), ``rate``
(exits/s) when an external report gives its interval, else ``share`` (percent of all
exits) — the only comparable figure between a short trace and a long report.
"""

from __future__ import annotations

import dataclasses

import polars as pl

from tracebench.exitnames import EXIT_NAMES, exit_label, is_modelled

UNDIRECTED_MSR = "msr"


@dataclasses.dataclass
class Comparison:
    """The per-reason table and how it was made.

    Attributes
    ----------
    rows : one dict per reason (columns in ``COLUMNS``), modelled first.
    basis : ``count``, ``rate`` or ``share``.
    backend : the replayed preset.
    """

    rows: list[dict]
    basis: str
    backend: str

    def outside(self, lo: float, hi: float) -> list[dict]:
        """Modelled rows whose ratio is outside [lo, hi] (a missing side counts as outside)."""
        return [r for r in self.rows if r["modelled"] == "yes"
                and (r["ratio"] is None or not lo <= r["ratio"] <= hi)]


COLUMNS = ("reason", "modelled", "pred_samples", "meas_samples", "pred_pct", "meas_pct",
           "pred_rate_s", "meas_rate_s", "pred_avg_us", "meas_avg_us", "ratio")


def _canonical(label: str) -> str:
    """Label of a reason -> the canonical upper-case name (VMX spelling)."""
    entry = EXIT_NAMES.get(label) or EXIT_NAMES.get(label.upper())
    return entry.canonical if entry is not None else label.upper()


def measured_by_reason(measured: pl.DataFrame) -> pl.DataFrame:
    """reason (canonical), samples, total_ns, timed: the measured table summed over vCPUs."""
    if measured.height == 0:
        return pl.DataFrame(schema={"reason": pl.String, "samples": pl.Int64,
                                    "total_ns": pl.Int64, "timed": pl.Int64})
    label = (pl.coalesce(pl.col("exit_reason"), pl.col("reason"))
             if "exit_reason" in measured.columns else pl.col("reason"))
    m = measured.with_columns(label=label)
    m = m.with_columns(reason=pl.col("label").map_elements(
        lambda s: _canonical(exit_label(s)) if s not in ("msr",) else "MSR",
        return_dtype=pl.String))
    timed = pl.col("timed") if "timed" in m.columns else pl.col("count")
    return (m.group_by("reason")
            .agg(samples=pl.col("count").sum(), total_ns=pl.col("total_ns").sum(),
                 timed=timed.sum()))


def predicted_by_reason(exits: pl.DataFrame, fold_msr: bool) -> pl.DataFrame:
    """The replay's exits table (one backend) summed over vCPUs, by canonical reason."""
    if exits.height == 0:
        return pl.DataFrame(schema={"reason": pl.String, "samples": pl.Int64,
                                    "total_ns": pl.Int64})
    reason = pl.col("reason").str.to_uppercase()
    if fold_msr:
        reason = pl.when(reason.is_in(["MSR_READ", "MSR_WRITE"])).then(pl.lit("MSR")) \
            .otherwise(reason)
    return (exits.with_columns(reason=reason).group_by("reason")
            .agg(samples=pl.col("count").sum(), total_ns=pl.col("total_ns").sum()))


def compare(predicted: pl.DataFrame, measured: pl.DataFrame, backend: str,
            pred_duration_s: float | None, meas_duration_s: float | None,
            same_interval: bool, pred_times: pl.DataFrame | None = None) -> Comparison:
    """Join both sides by reason and compute shares, rates, mean times and ratios.

    Parameters
    ----------
    predicted : the replay's exits table for ``backend``.
    measured : a measured-exits table (trace ingest or report).
    pred_duration_s, meas_duration_s : the intervals each side covers (None: unknown).
    same_interval : the measured exits come from the replayed trace itself.
    pred_times : the exits table whose time per exit is ``pred_avg_us`` (default
        ``predicted``): ``validate`` passes the replay with every cost at its mean.
    """
    meas = measured_by_reason(measured)
    fold = UNDIRECTED_MSR.upper() in set(meas["reason"].to_list())
    pred = predicted_by_reason(predicted, fold)
    times = {r["reason"]: r for r in predicted_by_reason(
        predicted if pred_times is None else pred_times, fold).to_dicts()}
    p_total = max(int(pred["samples"].sum() or 0), 0)
    m_total = max(int(meas["samples"].sum() or 0), 0)
    if same_interval:
        basis = "count"
    elif pred_duration_s and meas_duration_s:
        basis = "rate"
    else:
        basis = "share"
    pmap = {r["reason"]: r for r in pred.to_dicts()}
    mmap = {r["reason"]: r for r in meas.to_dicts()}
    rows = []
    for reason in sorted(set(pmap) | set(mmap)):
        p, m = pmap.get(reason), mmap.get(reason)
        ps, ms = (p["samples"] if p else 0), (m["samples"] if m else 0)
        row = {
            "reason": reason,
            "modelled": "yes" if is_modelled(reason) or reason == "MSR" else "not modelled",
            "pred_samples": ps, "meas_samples": ms,
            "pred_pct": 100 * ps / p_total if p_total else 0.0,
            "meas_pct": 100 * ms / m_total if m_total else 0.0,
            "pred_rate_s": ps / pred_duration_s if pred_duration_s else None,
            "meas_rate_s": ms / meas_duration_s if meas_duration_s else None,
            "pred_avg_us": (t["total_ns"] / t["samples"] / 1000
                            if (t := times.get(reason)) and t["samples"] else None),
            "meas_avg_us": m["total_ns"] / m["timed"] / 1000 if m and m["timed"] else None,
        }
        if basis == "count":
            num, den = ps, ms
        elif basis == "rate":
            num, den = row["pred_rate_s"], row["meas_rate_s"]
        else:
            num, den = row["pred_pct"], row["meas_pct"]
        row["ratio"] = num / den if den else None
        rows.append(row)
    rows.sort(key=lambda r: (r["modelled"] != "yes", -max(r["meas_samples"], r["pred_samples"]),
                             r["reason"]))
    return Comparison(rows, basis, backend)
