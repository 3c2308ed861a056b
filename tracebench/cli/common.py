"""What every command shares: the typer app, error reporting, output formats.

Heavy imports (numba, hdrh, polars) happen inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Iterator
from enum import StrEnum

import typer

from tracebench.errors import TracebenchError

app = typer.Typer(
    name="tracebench",
    help="Record/replay, trace-driven evaluation of interrupt and timer virtualization.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error on stderr and exit (1: data/runtime, 2: usage)."""
    print(f"tracebench: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


class Terminated(TracebenchError):
    """SIGTERM or SIGHUP arrived: raised in the main thread so that every ``finally`` and
    every atomic writer removes its temporaries (Python's default would just exit)."""

    def __init__(self, signum: int):
        import signal

        self.exit_code = 128 + signum
        super().__init__(f"terminated by {signal.Signals(signum).name}: nothing written, "
                         "temporaries removed")


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def user_errors(func):
    """Turn :class:`TracebenchError` (a user mistake or bad input) into one line and its
    exit code (1 data/runtime, 2 usage); an OS failure or exhausted memory into one line
    and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with _terminate_cleanly():
                return func(*args, **kwargs)
        except TracebenchError as exc:
            fail(" ".join(str(exc).splitlines()), code=exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        except OSError as exc:  # the environment failed (disk, permissions), not the code
            from tracebench.atomic import os_error

            fail(str(os_error(exc, "output")).replace("cannot write", "I/O error"))
        except MemoryError:
            fail("out of memory (try a shorter trace, fewer vCPUs or --chunk-rows)")

    return wrapper


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


#: what a first run says while numba compiles (seconds of silence otherwise look like a hang)
COMPILE_NOTICE = ("compiling the kernels for this machine: first run only, numba keeps them "
                  "on disk for later runs")


@contextlib.contextmanager
def compile_notice(quiet: bool, progress=None) -> Iterator[None]:
    """Say once on stderr (above ``progress``, a rich progress bar, if one is shown) when
    numba compiles anything inside the block; nothing when ``quiet``.

    Numba broadcasts ``numba:compile`` only on a real compile, not on a load from its
    on-disk cache, so a warm run says nothing."""
    if quiet:
        yield
        return
    if progress is not None:
        def say(text: str) -> None:
            progress.console.print(f"tracebench: {text}", soft_wrap=True)
    else:
        def say(text: str) -> None:
            print(f"tracebench: {text}", file=sys.stderr, flush=True)
    from numba.core import event

    class Notice(event.Listener):
        said = False

        def on_start(self, ev) -> None:
            if not self.said:
                self.said = True
                say(COMPILE_NOTICE)

        def on_end(self, ev) -> None:
            pass

    listener = Notice()
    event.register("numba:compile", listener)
    try:
        yield
    finally:
        event.unregister("numba:compile", listener)


def print_rows(rows: list[dict], fmt: OutputFormat, title: str | None = None) -> None:
    """Print a list of flat dicts on stdout as a rich table, JSON lines array, or CSV."""
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    columns = list(rows[0]) if rows else []
    if fmt is OutputFormat.csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if rows and _numeric(rows[0][col]) else "left")
    for row in rows:
        table.add_row(*(_fmt_cell(row[c]) for c in columns))
    Console(width=max(160, Console().width)).print(table)


def _numeric(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fmt_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)
