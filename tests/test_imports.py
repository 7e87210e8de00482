"""How `python/once` hangs together: no module imports one that imports it back (directly or
through others, lazily or not), and a no-op run loads none of the machinery a run with a step to
run needs."""

from __future__ import annotations

import ast
from pathlib import Path

import once

from tests.helpers import Workspace, once_traced, three_packages

PACKAGE = Path(once.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of the package `path` imports at run time, at the top or in a function
    (imports for the type checker only are not run)."""
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text())]
    while pending:
        node = pending.pop()
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            pending.append(child)
    return {name for name in found if name in modules and name != "once"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for other in sorted(graph[name]):
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == name:
                    break
            if len(group) > 1 or name in graph[name]:
                groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return groups


def test_no_import_cycles() -> None:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    assert len(graph) > 20  # the package was found
    assert graph["once.run.pipeline"], "imports were read"
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


# What a no-op must never load: the CLI, the configuration's parser and loader, the rule graph,
# the scheduler and its threads, the remote cache, and the standard modules they pull in.
NOT_IN_A_NO_OP = (
    "click",
    "tomli",
    "once.config",
    "once.plan.graph",
    "once.run.scheduler",
    "once.plan.keys",
    "once.plan.targets",
    "once.run.workers",
    "once.run.remote",
    "once.ui.progress",
    "threading",
    "concurrent.futures",
    "dataclasses",
    "typing",
)


def test_a_no_op_imports_none_of_the_run_machinery(ws: Workspace) -> None:
    three_packages(ws)
    for _ in range(3):  # builds, then keeps the plan, then answers from it
        done, imported = once_traced(ws, "run", "build", "-j", "2")
        assert done.code == 0, done.err
    assert "once.run.pipeline" in imported
    assert done.out.splitlines()[-1].startswith("once: all 3 steps cached")
    assert sorted(imported.intersection(NOT_IN_A_NO_OP)) == []
