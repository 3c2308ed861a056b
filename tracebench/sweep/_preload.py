"""Imported by the local pool's fork server: load the kernels once, before any fork."""

import contextlib

from tracebench.sweep.worker import warm_up

with contextlib.suppress(Exception):  # each worker warms up again and reports a failure
    warm_up()
