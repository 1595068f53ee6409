"""No import cycles in retrain-core or the first-party plugins.

Every ``import`` and ``from ... import`` in every module counts: at module level, inside functions
and under ``if TYPE_CHECKING:`` (a cycle there still means two modules that cannot be read, or
type-checked, one without the other). The graph is built from the source (AST), so the test needs
no optional dependency installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def package_roots() -> dict[str, Path]:
    """Top-level package name -> its folder: retrain and each first-party plugin's package."""
    roots = {"retrain": REPO / "retrain-core" / "src" / "retrain"}
    for folder in sorted((REPO / "plugins").glob("*/src/*")):
        if (folder / "__init__.py").is_file():
            roots[folder.name] = folder
    return roots


def module_files(roots: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file (a package is its ``__init__.py``)."""
    modules = {}
    for root in roots.values():
        for f in sorted(root.rglob("*.py")):
            parts = list(f.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = f
    return modules


def imported_modules(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """The first-party modules ``name`` imports anywhere in its source."""

    def known(dotted: str) -> str | None:  # the longest prefix that is one of our modules
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            out.update(filter(None, (known(a.name) for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y / from .. import z
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else known(base)
                if target:
                    out.add(target)
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = module_files(package_roots())
    return {name: imported_modules(name, f, modules) for name, f in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (depth-first search, three colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 unseen, 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            if colour[nxt] == 0 and (found := visit(nxt)):
                return found
        path.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour[node] == 0 and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert {"retrain", "retrain_vllm", "retrain_hicra", "retrain_verifiers"} <= set(graph)
    assert "retrain.hookspecs" in graph["retrain"]  # module level
    assert "retrain.evaluation" in graph["retrain.train.loop"]  # inside a function
    assert "retrain.train.parts" in graph["retrain.distributed.run"]  # under TYPE_CHECKING
    assert "retrain_vllm.settings" in graph["retrain_vllm.inprocess"]


def test_find_cycle_reports_the_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
