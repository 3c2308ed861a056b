"""What every command shares: the typer app, error reporting, output formats.

Heavy imports (numba, hdrh, polars) happen inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
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
    # help texts are plain text: "[params]" and "[report]" must print as written
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from tracebench._version import __version__

        print(f"tracebench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Record/replay, trace-driven evaluation of interrupt and timer virtualization."""


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
    from tracebench.signals import hold

    if not hold(signum):  # inside a writer's critical call: raised when it returns
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


def print_rows(rows: list[dict], fmt: OutputFormat, title: str | None = None,
               right: set[str] | None = None, stream=None) -> None:
    """Print a list of flat dicts as a table, a JSON array, or CSV (on stdout, or ``stream``).

    Numeric columns (and those in ``right``) are right-aligned; the table takes the
    terminal's width (:func:`terminal_width`), and user text is never read as markup."""
    out = stream or sys.stdout
    if fmt is OutputFormat.json:
        out.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    columns = list(rows[0]) if rows else []
    if fmt is OutputFormat.csv:
        import csv

        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    from rich.table import Table

    right = right or set()
    cells = [[_fmt_cell(row[c]) for c in columns] for row in rows]
    table = Table(title=title, title_justify="left")
    for col in columns:
        numeric = col in right or any(_numeric(row[col]) for row in rows)
        table.add_column(col, justify="right" if numeric else "left", overflow="fold",
                         min_width=min(len(col), 12))
    for line in cells:
        table.add_row(*line)
    natural = sum(max([len(c)] + [len(line[i]) for line in cells]) + 3
                  for i, c in enumerate(columns)) + 1
    if title:
        natural = max(natural, len(title))
    stdout_console(natural, out).print(table)


def terminal_width(natural: int) -> int:
    """Width to print at: ``COLUMNS`` if set, the terminal's width on a terminal, else the
    content's own width (a pipe or a file never gets wrapped lines)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return max(natural, 20)


def stdout_console(natural: int = 80, stream=None):
    """A rich console on stdout (or ``stream``) that prints user text as given (no markup,
    no highlighting) at :func:`terminal_width`."""
    from rich.console import Console

    return Console(file=stream or sys.stdout, width=terminal_width(natural), markup=False,
                   highlight=False, emoji=False, soft_wrap=False)


def _numeric(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fmt_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)
