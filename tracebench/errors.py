"""User-facing errors: one line that names the file, row or line and what is wrong.

The CLI prints ``str(error)`` and exits with the error's ``exit_code``: 1 for bad data or
a failing environment (disk, permissions), 2 for a usage error (an option, a backend, a
profile or a parameter that does not exist); anything else is a bug and keeps its
traceback.
"""


class TracebenchError(Exception):
    """A problem with the user's input or environment, reported in one line (exit 1)."""

    exit_code = 1


class UsageError(TracebenchError):
    """The command was asked for something that cannot be: a usage error (exit 2)."""

    exit_code = 2


class TraceError(TracebenchError):
    """A trace file that is missing, unreadable, or breaks the canonical schema."""


class ParamError(UsageError):
    """An unknown backend, profile, parameter name, or a parameter value out of bounds."""
