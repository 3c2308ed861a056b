"""The house rules of docs/architecture.md, checked on the source with ``ast``.

- no import circle anywhere in ``tracebench/`` (imports inside functions count too: a lazy
  import is still an arrow, and a circle of them breaks as soon as one becomes eager);
- arrows run down the stages, never back up (the forbidden arrows below);
- no module over 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tracebench"
MAX_LINES = 400

#: (importer prefix, imported prefix): an arrow that must not exist, and why
FORBIDDEN = [
    ("tracebench.backends", "tracebench.ingest", "a model knows no input format"),
    ("tracebench.backends", "tracebench.scenarios", "a model knows no scenario"),
    ("tracebench.backends", "tracebench.replayer", "a model knows no driver"),
    ("tracebench.backends", "tracebench.report", "a model knows no report"),
    ("tracebench.ingest", "tracebench.backends", "an input format knows no hypervisor model"),
    ("tracebench.ingest", "tracebench.replayer", "ingest stands before replay"),
    ("tracebench.scenarios", "tracebench.backends", "a scenario knows no hypervisor model"),
    ("tracebench.scenarios", "tracebench.replayer", "synthesis stands before replay"),
    ("tracebench.replayer", "tracebench.ingest", "replay reads canonical traces only"),
    ("tracebench.replayer", "tracebench.report", "replay writes results, reports read them"),
    ("tracebench.report", "tracebench.backends.kernel", "reports read results, never kernels"),
    ("tracebench.report", "tracebench.replayer.driver", "reports read results, never kernels"),
    ("tracebench.trace", "tracebench.backends", "the canonical trace knows no model"),
    ("tracebench.schema", "tracebench.", "the floor imports nothing of the package"),
    ("tracebench._version", "tracebench.", "the floor imports nothing of the package"),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every tracebench module ``name`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import mod`` names a module; ``from mod import func`` its module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # ``import a.b.c`` of a function-less path
                t = t.rpartition(".")[0]
            if t.startswith("tracebench") and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_finder_sees_a_circle():
    """The checker itself can fail: a made-up circle is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_circle():
    circles = strongly_connected(import_graph())
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


@pytest.mark.parametrize("importer,imported,why", FORBIDDEN)
def test_arrows_run_down_the_stages(importer, imported, why):
    graph = import_graph()
    bad = sorted(f"{src} -> {dst}" for src, dsts in graph.items() for dst in dsts
                 if (src == importer or src.startswith(importer + "."))
                 and (dst == imported.rstrip(".") or dst.startswith(imported.rstrip(".") + ".")
                      or (imported.endswith(".") and dst.startswith(imported))))
    assert not bad, f"{why}: {', '.join(bad)}"


def test_no_module_over_the_size_limit():
    big = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by what they do): {big}"
