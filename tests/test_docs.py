from pathlib import Path

from tracebench.docs import backends_markdown


def test_backend_reference_doc_is_generated_and_current():
    doc = Path(__file__).resolve().parent.parent / "docs" / "backends.md"
    assert doc.read_text() == backends_markdown(), "run: python scripts/gen_docs.py"
