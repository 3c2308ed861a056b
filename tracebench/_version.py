"""The package version: the floor every module may import (no other tracebench import)."""

__version__ = "0.1.0"
