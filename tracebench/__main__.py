"""``python -m tracebench``: the command line without an installed entry point."""

from tracebench.cli import app

app(prog_name="tracebench")
