"""User-facing errors: one line that names the file, row or line and what is wrong.

The CLI prints ``str(error)`` and exits 1 (data/runtime) for these; anything
else is a bug and keeps its traceback.
"""


class TracebenchError(Exception):
    """A problem with the user's input or environment, reported in one line."""


class TraceError(TracebenchError):
    """A trace file that is missing, unreadable, or breaks the canonical schema."""


class ParamError(TracebenchError):
    """An unknown backend, parameter name, or a parameter value out of bounds."""
