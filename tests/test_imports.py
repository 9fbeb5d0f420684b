"""No import circle anywhere: among rlfn_video's modules and the VapourSynth plugin (vsrlfn).

Read from the source with `ast`, nothing imported: every `import`/`from ... import` counts,
at module level and deferred inside functions (a deferred import still ties the two modules
together) and under `if TYPE_CHECKING:`. `from . import colour` is an edge to rlfn_video.colour;
an edge from a module to a package it lies in does not count (importing a submodule runs its
package first anyway)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (ROOT / "rlfn_video", ROOT / "plugins" / "vapoursynth" / "vsrlfn")

Edges = dict[str, dict[str, int]]  # module -> {imported module: line of the first such import}


def modules(packages: tuple[Path, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted name -> file, for every module of `packages` (a package by its __init__.py)."""
    found = {}
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(package.parent).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, is_package: bool, source: str, known: set[str]) -> dict[str, int]:
    """The modules of `known` that module `name` imports, with the line of the first import."""
    package = name if is_package else name.rpartition(".")[0]
    edges: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in known and target != name and not name.startswith(target + "."):
            edges.setdefault(target, line)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import mod` imports pkg.mod; `from pkg import obj`, pkg
                add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target, node.lineno)
    return edges


def import_graph(packages: tuple[Path, ...] = PACKAGES) -> Edges:
    files = modules(packages)
    return {name: imports(name, path.name == "__init__.py", path.read_text(), set(files))
            for name, path in files.items()}


def cycles(graph: Edges) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(component: list[str], graph: Edges, files: dict[str, Path]) -> str:
    """Each import inside the component, with the file and line that makes it."""
    inside = set(component)
    return "\n".join(f"  {a} -> {b}  ({files[a].relative_to(ROOT)}:{line})"
                     for a in component for b, line in sorted(graph[a].items()) if b in inside)


def test_the_graph_is_read():
    """Guards against a vacuous pass: relative, deferred and plugin imports are all seen."""
    graph = import_graph()
    assert len(graph) > 20 and "vsrlfn" in graph
    assert "rlfn_video.engine" in graph["vsrlfn"]
    assert "rlfn_video.errors" in graph["rlfn_video.models.checkpoint"]  # from ..errors import
    assert all("rlfn_video" not in targets for name, targets in graph.items() if name.startswith("rlfn_video."))


def test_edges_are_to_modules_not_packages():
    known = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"}
    source = ("from . import a\nfrom .sub import c\nfrom pkg import VERSION\nimport pkg.b\n"
              "def f():\n    from .sub import helper\n")
    assert imports("pkg.sub.c", False, "from .. import a\nfrom . import VALUE\n", known) == {"pkg.a": 1}
    assert imports("pkg.d", False, source, known) == {"pkg.a": 1, "pkg.sub.c": 2, "pkg.b": 4, "pkg.sub": 6}
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph, files = import_graph(), modules()
    found = cycles(graph)
    assert not found, "import cycles (break each by moving the shared piece below both):\n" + "\n".join(
        " <-> ".join(c) + "\n" + describe(c, graph, files) for c in found)
