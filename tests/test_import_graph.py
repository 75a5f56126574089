"""No import cycle inside tabsynth (#14), counting imports inside functions too.

An import deferred into a function body still ties two modules together: it only hides the
cycle from Python's import machinery. The graph is read with ``ast`` (nothing is imported):
an edge ``a -> b`` for every ``import``/``from ... import`` anywhere in ``a`` that names a
tabsynth module ``b`` (``from pkg import name`` counts ``pkg.name`` when it is a module, else
``pkg``). Imports under ``if TYPE_CHECKING:`` are skipped (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tabsynth"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skipped.update(id(n) for n in ast.walk(child))
    return skipped


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: {tabsynth modules it imports}}`` for every ``.py`` file under ``root``."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skipped = _type_checking_nodes(tree)
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join(package + ([base] if base else []))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import tabsynth.x.y` names x.y
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cyclic_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (each holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:  # Tarjan's algorithm (the graph is small)
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(components)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per cyclic component."""
    return [_one_cycle(graph, set(c)) for c in cyclic_components(graph)]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("not a cycle")  # pragma: no cover


def test_the_walker_finds_cycles_and_ignores_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "tabsynth"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from tabsynth.sub import a\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "sub" / "b.py").write_text("import tabsynth.sub.c\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tabsynth.sub import a\n"
        "def g():\n    from tabsynth.sub.a import f\n"
    )
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tabsynth.sub.a\n"
    )
    graph = import_graph(pkg)
    assert graph["tabsynth.sub.a"] == {"tabsynth.sub.b"}
    assert graph["tabsynth.sub.c"] == {"tabsynth.sub.a"}
    assert graph["tabsynth.d"] == set()
    assert find_cycles(graph) == [
        ["tabsynth.sub.a", "tabsynth.sub.b", "tabsynth.sub.c", "tabsynth.sub.a"]
    ]


def test_no_import_cycle_in_tabsynth() -> None:
    """#14: the private training loops live in their models' files, so the former cycle
    ``base -> _private -> ctgan -> base`` is gone; no other may appear."""
    graph = import_graph()
    assert "tabsynth.models.base" in graph and len(graph) > 20
    message = "import cycles: " + "; ".join(" -> ".join(c) for c in find_cycles(graph))
    assert not cyclic_components(graph), message
    # the DP preparation module never reaches into a model
    assert not graph["tabsynth.models._private"] & {
        "tabsynth.models.base",
        "tabsynth.models.ctgan",
        "tabsynth.models.tvae",
        "tabsynth.models.argn",
    }


def test_persistence_is_a_codec_that_never_sees_a_model() -> None:
    graph = import_graph()
    assert graph["tabsynth.models.persistence"] <= {
        "tabsynth",
        "tabsynth._files",
        "tabsynth.errors",
    }
    assert "tabsynth.models.persistence" in graph["tabsynth.models.base"]


if __name__ == "__main__":  # pragma: no cover - a quick look at the graph
    for cycle in find_cycles(import_graph()):
        print(" -> ".join(cycle))
    pytest.main([__file__])
