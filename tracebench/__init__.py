"""tracebench: record/replay, trace-driven evaluation of interrupt and timer virtualization."""

__version__ = "0.1.0"
