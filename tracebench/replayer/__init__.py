"""Replay: the chunk driver that runs the backend kernels over a trace, and the results writer.

``driver`` reads a canonical trace chunk by chunk and runs every configured backend's
kernel (four built-in backends to a pass); ``results`` turns each backend's aggregates and
per-event rows into the results dataset. Nothing here knows an input format or the CLI.
"""
