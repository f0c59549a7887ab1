"""The package is layered (docs/ARCHITECTURE.md): subpackages in pipeline order, each importing only from its own
layer or the layers below, and no import cycle anywhere. Imports are read from the source (``ast``), inside
functions too, so a cycle dodged by a function-level import still fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "a2gnn"

LAYERS = (
    "core", "data", "backbones", "ops", "seeds", "affinity", "graph", "gnn", "pseudo_labels", "evaluation",
    "segmentation", "instance", "pipeline", "reporting",
)
"""Lowest first: a module of ``LAYERS[k]`` may import from ``LAYERS[:k + 1]`` only."""
ENTRY_POINTS = {"a2gnn.stage_deps"}
"""Top-level command shims (``python -m a2gnn.stage_deps``): above every layer, imported by nothing."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Package modules ``path`` imports: ``from a.b import c`` -> ``a.b.c`` when that is a module, else ``a.b``;
    ``import a.b`` -> ``a.b``. (The parents a Python import runs first are package ``__init__``s, which import
    only their own submodules: they are checked as modules of their own.)"""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            found.update(subs if len(subs) == len(node.names) else subs | {node.module})
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    names = set(modules)
    return {name: imports_of(path, names) - {name} for name, path in modules.items()}


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) == 1 or name in ENTRY_POINTS:
        return None  # the package root (sets the numerics pin only) and the command shims
    return parts[1]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_a_cycle_and_only_then():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a2"}, "a2": set(), "b": {"b"}}) == ["b", "b"]


def test_imports_of_reads_function_level_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from a2gnn.x import y, z\n    import a2gnn.w\n")
    assert imports_of(src, {"a2gnn.x", "a2gnn.x.y", "a2gnn.w"}) == {"a2gnn.x", "a2gnn.x.y", "a2gnn.w"}


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_every_module_is_in_a_layer():
    top_level = [n for n in package_modules() if n.count(".") == 1 and n not in ENTRY_POINTS
                 and layer_of(n) not in LAYERS]
    assert top_level == [], "top-level modules outside the layers: " + ", ".join(top_level)


def test_nothing_imports_an_entry_point():
    assert [n for n, targets in import_graph().items() if targets & ENTRY_POINTS] == []


def test_no_import_from_a_higher_layer():
    rank = {layer: k for k, layer in enumerate(LAYERS)}
    wrong = []
    for name, targets in import_graph().items():
        if layer_of(name) is None:
            continue
        for target in sorted(targets):
            if layer_of(target) is not None and rank[layer_of(target)] > rank[layer_of(name)]:
                wrong.append(f"{name} -> {target}")
    assert wrong == [], "imports from a higher layer:\n" + "\n".join(wrong)


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_is_a_package(layer):
    assert (PACKAGE / layer / "__init__.py").is_file()
