"""Regenerate docs/backends.md from the backend specs (run after changing a backend)."""

from pathlib import Path

from tracebench.docs import backends_markdown

if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "docs" / "backends.md"
    out.write_text(backends_markdown())
    print(f"wrote {out}")
