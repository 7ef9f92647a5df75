"""The modules of benchsuite and its built-in plugins import each other without cycles.

Edges are the imports a module runs when it is imported: its top-level ``import`` and ``from``
statements (also inside top-level ``try``/``if`` blocks, but not under ``if TYPE_CHECKING:``, and not
inside functions, which run later), with the packages Python imports on the way to the target. A cycle means
that importing one of its modules first finds the other half-initialised.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = {"benchsuite": ROOT / "benchsuite", "benchsuite_plugins": ROOT / "plugins"}


def module_files() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def every_import_statement(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Every import a module may run, also inside functions (lazy imports); not the type checker's."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = list(body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
        else:
            todo += ast.iter_child_nodes(node)
    return found


def import_time_statements(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and not _is_type_checking(node.test):
            found += import_time_statements(node.body) + import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            found += import_time_statements(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                found += import_time_statements(handler.body)
    return found


def with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_modules(module: str, path: Path, known: set[str], lazy: bool = False) -> set[str]:
    """The modules of ``known`` that ``module`` imports when it is imported (``lazy``: at any time)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    statements = every_import_statement if lazy else import_time_statements
    for node in statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for name in names:
            targets |= {n for n in with_parents(name) if n in known}
    # the module's own packages are being imported already when it runs (a package's __init__
    # importing its submodules is no cycle)
    return targets - set(with_parents(module))


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {m: imported_modules(m, p, known, lazy) for m, p in files.items()}


def cyclic_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that reach each other (strongly connected components of 2 or more)."""
    reach = {m: set() for m in graph}
    for start in graph:
        todo = list(graph[start])
        while todo:
            node = todo.pop()
            if node not in reach[start]:
                reach[start].add(node)
                todo += graph.get(node, ())
    groups = {frozenset({m} | {n for n in reach[m] if m in reach[n]}) for m in graph if m in reach[m]}
    return [set(g) for g in groups]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as the list of its modules, first repeated at the end), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 60 and "benchsuite.toolkit.labels" in graph["benchsuite_plugins.reid.mars"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


#: Cycles closed only by imports inside functions (each side imports the other lazily). None is
#: left; new code must not add one.
KNOWN_LAZY_CYCLES: list[set[str]] = []


def test_lazy_imports_close_no_new_cycles():
    for group in cyclic_groups(import_graph(lazy=True)):
        assert any(group <= known for known in KNOWN_LAZY_CYCLES), f"a new import cycle: {sorted(group)}"


def test_relative_imports_and_type_checking_blocks_are_read_right(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nfrom . import task\nfrom ..noise import corrupt_labels\n"
        "if TYPE_CHECKING:\n    from benchsuite.engine import TrainContext\n"
        "def later():\n    from benchsuite import grid\n"
    )
    known = {"benchsuite", "benchsuite.toolkit", "benchsuite.toolkit.task", "benchsuite.noise", "benchsuite.engine", "benchsuite.grid"}
    assert imported_modules("benchsuite.toolkit.mod", source, known) == {"benchsuite.toolkit.task", "benchsuite.noise"}


def test_cyclic_groups():
    assert cyclic_groups({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [{"a", "b"}]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
