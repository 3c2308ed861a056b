"""Chunks through to the trace: the driver (``pipeline.py``) runs the reader
(``records.py``, with per-event routes from ``routes.py``) and the window
(``window.py``: ``calibrate.py``, the rules, ``merge.py``, ``resolve.py``), writes the
trace and, for families that have one, the measured-exits table (``exits.py``).
What differs between guest and host traces is a ``Family`` (``families.py``)."""
