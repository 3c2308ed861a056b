"""``tracebench stat`` and ``tracebench compare``: read a results folder back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracebench.cli.common import OutputFormat, app, fail, print_rows, user_errors

FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]


@app.command()
@user_errors
def stat(
    results: Annotated[Path, typer.Argument(help="Results folder written by replay -o.")],
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", help="Only these backends; repeat.")] = None,
    trace: Annotated[list[str] | None, typer.Option(
        "--trace", "-t", help="Only these trace ids; repeat.")] = None,
    vcpu: Annotated[int | None, typer.Option("--vcpu", min=0, help="Only this vCPU.")] = None,
    key: Annotated[str, typer.Option("--key", "-k", help="Sort by samples or time.")]
    = "samples",
    measured: Annotated[Path | None, typer.Option(
        "--measured", help="NAME.exits.parquet from `ingest` of a host KVM trace: show the "
        "real exit mix beside each backend's prediction.")] = None,
    fmt: FormatOpt = OutputFormat.table,
):
    """Exit reasons per backend, as `perf kvm stat report` prints them."""
    from tracebench.report import kvm_stat, with_measured

    table = kvm_stat(results, backend, trace, vcpu, key)
    if measured is not None:
        table = with_measured(table, measured)
    rows = table.to_dicts()
    print_rows(rows, fmt, title=f"VM exits by reason ({results})")


@app.command()
@user_errors
def compare(
    results: Annotated[Path, typer.Argument(help="Results folder (A).")],
    other: Annotated[Path | None, typer.Argument(
        help="Second results folder (B): compare B against A, backend by backend.")] = None,
    base: Annotated[str, typer.Option(
        "--base", help="With one folder: the backend every other one is set against.")]
    = "native",
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", help="Event kinds (or all, interrupts); repeat. Default: all, interrupts.")]
    = None,
    fail_above: Annotated[float | None, typer.Option(
        "--fail-above", min=0, help="With two folders: exit 3 if any p99 or exit count of B "
        "exceeds A by more than this many percent (CI regression gate).")] = None,
    fmt: FormatOpt = OutputFormat.table,
):
    """A/B comparison: backends against a base, or one results folder against another."""
    from tracebench.report import compare as run_compare

    df = run_compare(results, other, base, kind)
    print_rows(df.to_dicts(), fmt, title="tracebench compare (ratios are B / A)")
    if fail_above is not None:
        if other is None:
            fail("--fail-above needs two results folders", code=2)
        limit = 1 + fail_above / 100
        worse = df.filter((df["p99_ns_ratio"] > limit) | (df["exits_ratio"] > limit))
        if worse.height:
            first = worse.row(0, named=True)
            fail(f"regression: {worse.height} rows above +{fail_above:g}% (first: "
                 f"{first['backend']} {first['kind']} p99 x{first['p99_ns_ratio']:.3f}, "
                 f"exits x{first['exits_ratio']})", code=3)
