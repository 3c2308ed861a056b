"""Termination signals, and the few stretches of code that must not be cut by one.

The CLI turns SIGTERM and SIGHUP into an exception in the main thread, so that every
writer removes its temporaries on the way out. But pyarrow checks for signals while it
writes, and an exception raised from inside its C++ writer leaves that writer with
columns of different lengths: closing it then fails or crashes the process (seen under
SIGTERM during a synthesis's final row group), and a signal delivered to a thread in
the middle of a ``write`` system call can cut that write (EINTR) under the writer's feet.
So writer threads never take these signals (:func:`quiet_thread`), and the main thread's
critical calls run inside :func:`uninterrupted`: a termination signal that arrives there
stays pending and is raised the moment the stretch ends, where the ordinary cleanup takes
over.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: what the CLI turns into an exception; SIGINT stays Python's KeyboardInterrupt, held too
TERMINATING = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

_depth = 0
_held: list[int] = []


def quiet_thread() -> None:
    """Call first thing in a worker thread: the kernel then delivers termination signals
    to the main thread (where Python runs their handlers), never to this one."""
    signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATING)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold termination signals (in the main thread, where Python runs their handlers)
    until the block ends, then deliver the first one held."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    before = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATING) if _depth == 1 else None
    try:
        yield
    finally:
        _depth -= 1
        if before is not None:  # pending signals are delivered here, handlers run next
            signal.pthread_sigmask(signal.SIG_SETMASK, before)
        if _depth == 0 and _held:
            signum = _held[0]
            _held.clear()
            signal.raise_signal(signum)


def hold(signum: int) -> bool:
    """For a signal handler: ``True`` when ``signum`` is held for the end of an
    :func:`uninterrupted` stretch (the handler then returns without acting)."""
    if _depth:
        _held.append(signum)
        return True
    return False
