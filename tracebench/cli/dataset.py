"""``tracebench dataset pack|verify|info|merge``: share traces and results safely."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tracebench.cli.common import OutputFormat, app, fail, print_rows, user_errors

dataset_app = typer.Typer(
    help="Pack, verify, describe and merge shareable datasets (traces + results).",
    no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Replace an existing dataset (only one tracebench wrote).")]
LicenseOpt = Annotated[str | None, typer.Option(
    "--license", help="SPDX licence expression, e.g. CC-BY-4.0.")]
TitleOpt = Annotated[str | None, typer.Option("--title", help="Dataset title.")]
DescOpt = Annotated[str | None, typer.Option("--description", help="One-paragraph description.")]


@dataset_app.command("pack")
@user_errors
def pack_cmd(
    inputs: Annotated[list[Path], typer.Argument(
        help="Results folders (replay -o), canonical trace files and/or datasets.")],
    out: OutOpt,
    license: LicenseOpt = None,
    title: TitleOpt = None,
    description: DescOpt = None,
    force: ForceOpt = False,
):
    """Pack results and traces into a dataset: manifest, checksums, schemas, card."""
    from tracebench.dataset import pack

    path = pack(inputs, out, license=license, title=title, description=description,
                force=force)
    print(f"tracebench: dataset written to {path}/ (check it: tracebench dataset verify "
          f"{path})", file=sys.stderr)


@dataset_app.command("verify")
@user_errors
def verify_cmd(
    folder: Annotated[Path, typer.Argument(help="Dataset folder.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Problems only.")] = False,
    fmt: Annotated[OutputFormat, typer.Option(
        "--format", "-f", help="table: problems on stderr; json / csv: the problems (path, "
        "what) on stdout. Exit 1 if any.")] = OutputFormat.table,
):
    """Check checksums, sizes, schema versions and manifest consistency; exit 1 if bad."""
    from tracebench.dataset import verify

    rep = verify(folder)
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps({"dataset": str(folder), "ok": rep.ok, "files": rep.files,
                                     "bytes": rep.bytes,
                                     "problems": [{"path": p.path, "what": p.what}
                                                  for p in rep.problems]}, indent=2) + "\n")
    elif fmt is OutputFormat.csv:
        import csv

        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["path", "what"])
        out.writerows([p.path, p.what] for p in rep.problems)
    else:
        for p in rep.problems:
            print(f"tracebench: error: {folder / p.path}: {p.what}", file=sys.stderr)
    if not rep.ok:
        fail(f"{folder}: {len(rep.problems)} problem(s); do not trust this dataset as is")
    if not quiet and fmt is OutputFormat.table:
        print(f"{folder}: ok ({rep.files} files, {rep.bytes:,} bytes, checksums and schemas "
              "verified)")


@dataset_app.command("info")
@user_errors
def info_cmd(
    folder: Annotated[Path, typer.Argument(help="Dataset folder.")],
    section: Annotated[str | None, typer.Option(
        "--section", "-s", help="dataset, traces or results (default: all; csv: traces).")]
    = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
    = OutputFormat.table,
):
    """What a dataset holds (the card's facts), from its manifest."""
    from tracebench.dataset.info import SECTIONS, info, section_rows

    facts = info(folder)
    if section is not None and section not in SECTIONS:
        fail(f"--section must be one of {', '.join(SECTIONS)}, not {section!r}", code=2)
    if fmt is OutputFormat.json:
        doc = facts if section is None else facts[section]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    if fmt is OutputFormat.csv:
        print_rows(section_rows(facts, section or "traces"), fmt)
        return
    for name in [section] if section else SECTIONS:
        rows = section_rows(facts, name)
        if name == "traces":  # the full digest and attribution: --format json / csv
            rows = [{**{k: v for k, v in r.items() if k != "attribution"},
                     "sha256": (r["sha256"] or "")[:12]} for r in rows]
        if name == "dataset":
            rows = [{"fact": k, "value": v} for k, v in rows[0].items()]
        print_rows(rows, fmt, title=f"{folder}: {name}")


@dataset_app.command("merge")
@user_errors
def merge_cmd(
    datasets: Annotated[list[Path], typer.Argument(help="Two or more dataset folders.")],
    out: OutOpt,
    license: LicenseOpt = None,
    title: TitleOpt = None,
    description: DescOpt = None,
    force: ForceOpt = False,
):
    """Merge datasets; identical duplicates kept once, conflicts refused with the reason."""
    from tracebench.dataset import merge

    path = merge(datasets, out, license=license, title=title, description=description,
                 force=force)
    print(f"tracebench: merged dataset written to {path}/", file=sys.stderr)
