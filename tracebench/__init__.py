"""tracebench: record/replay, trace-driven evaluation of interrupt and timer virtualization.

Public API (imported lazily so that ``tracebench --help`` stays instant):

- :func:`tracebench.replay` -- replay traces through backends, polars frames back;
- :func:`tracebench.synth` -- synthesize a scenario trace to a file (package `scenarios`);
- :func:`tracebench.read_trace` -- read a canonical trace into numpy columns + metadata;
- :func:`tracebench.read_events` -- per-event rows of a results folder, joined to the trace;
- :func:`tracebench.get_backend` -- a registered backend (or a ``.toml`` one) by name.
"""

from tracebench._version import __version__ as __version__

__all__ = ["replay", "synth", "read_trace", "read_events", "get_backend", "__version__"]


def __getattr__(name: str):
    if name == "replay":
        from tracebench.api import replay

        return replay
    if name == "synth":
        from tracebench.api import synth

        return synth
    if name == "read_trace":
        from tracebench.trace import read_trace

        return read_trace
    if name == "read_events":
        from tracebench.replayer.results import read_events

        return read_events
    if name == "get_backend":
        from tracebench.backends import get_backend

        return get_backend
    raise AttributeError(f"module 'tracebench' has no attribute {name!r}")
