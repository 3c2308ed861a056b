"""Sweep progress on stderr: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time


class SweepProgress:
    """Tasks done of total, rate and ETA.

    ``mode``: ``"bar"`` (rich, on a terminal), ``"log"`` (a line every ``every_s``
    seconds and at the end), or ``"off"``.
    """

    def __init__(self, total: int, mode: str | None = None, every_s: float = 10.0):
        if mode is None:
            mode = "bar" if sys.stderr.isatty() else "log"
        self.total, self.mode, self.every_s = total, mode, every_s
        self.done = self.failed = 0
        self._t0 = self._last = time.monotonic()
        self._bar = self._task = None

    def __enter__(self) -> SweepProgress:
        if self.mode == "bar":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from tracebench.cli.common import stderr_console

            self._bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("tasks {task.fields[rate]} {task.fields[failed]}"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=stderr_console(), transient=False)
            self._task = self._bar.add_task("sweep", total=self.total, rate="", failed="")
            self._bar.start()
        return self

    def say(self, text: str) -> None:
        """A message above the bar (or a log line)."""
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.console.print(f"tracebench: {text}", soft_wrap=True, highlight=False,
                                    markup=False)  # user text (paths) as written
        else:
            print(f"tracebench: {text}", file=sys.stderr, flush=True)

    def advance(self, done: int, failed: int = 0) -> None:
        self.done += done + failed
        self.failed += failed
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=f"{self.rate():.1f}/s",
                             failed=f"({self.failed} failed)" if self.failed else "")
        elif self.mode == "log" and (now - self._last >= self.every_s or self.done == self.total):
            self._last = now
            self.say(self.line())

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self._t0, 1e-9)

    def line(self) -> str:
        rate = self.rate()
        left = self.total - self.done
        eta = f", ETA {left / rate:.0f} s" if rate > 0 and left else ""
        failed = f" ({self.failed} failed)" if self.failed else ""
        return f"sweep: {self.done}/{self.total} tasks{failed}, {rate:.1f} tasks/s{eta}"

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
