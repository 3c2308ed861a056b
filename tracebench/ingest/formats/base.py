"""What an input format is, and the helpers its sniffer shares with the others."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """One input format.

    Attributes
    ----------
    name : stable id used by ``--format`` and stored in trace metadata.
    family : name of the family its events belong to (``guest`` or ``kvm-host``; the
        :class:`~tracebench.ingest.stream.families.Family` of that name maps them).
    description : one line for ``--help`` and docs.
    sniff : score in [0, 2] from the first lines of a file; the best score wins.
    header : reads facts from the first lines (``{"n_cpus": ...}``), may return {}.
    """

    name: str
    family: str
    description: str
    sniff: Callable[[list[str]], float]
    header: Callable[[list[str]], dict] = lambda lines: {}


_WRAPPED = re.compile(r"\d+\.\d+:\s*$")


def records(lines: list[str]) -> list[str]:
    """Record lines (no comments, stack frames); mail-wrapped records joined again."""
    out: list[str] = []
    for ln in lines:
        if not ln.strip() or ln.lstrip().startswith(("#", "=>")):
            continue
        if out and _WRAPPED.search(out[-1]) and ln[:1].isspace():
            out[-1] = out[-1].rstrip() + " " + ln.strip()
        else:
            out.append(ln)
    return out


def line_share(lines: list[str], rx: re.Pattern) -> float:
    recs = records(lines)[:400]
    return sum(1 for ln in recs if rx.match(ln)) / len(recs) if recs else 0.0

