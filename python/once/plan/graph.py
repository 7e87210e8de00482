"""Resolve targets and rule `deps` into an action graph in dependency order."""

from __future__ import annotations

from pathlib import Path

from once.config import CycleError, dependency_order, did_you_mean, source_error
from once.config.model import Rule, Workspace
from once.errors import ConfigError, UsageError
from once.value import Value

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from typing import Final


class Action(Value):
    """A rule selected for this run, with the labels of the actions it waits for."""

    __slots__ = ("deps", "rule")
    FIELDS = ("rule", "deps")

    def __init__(self, rule: Rule, deps: tuple[str, ...]) -> None:
        self.rule: Final = rule
        self.deps: Final = deps

    @property
    def label(self) -> str:
        return self.rule.label


def resolve_deps(workspace: Workspace, rule: Rule) -> tuple[str, ...]:
    """Labels of the rules `rule` depends on: `gen`, `^build` or `//pkg:rule`. The spelling of
    each entry was checked when the file was read; here, that what it names exists."""
    labels: list[str] = []
    for dep in rule.deps:
        if dep.startswith("^"):
            labels.extend(_upstream_labels(workspace, rule, dep))
            continue
        label = dep if dep.startswith("//") else f"//{rule.package}:{dep}"
        _check_label(workspace, rule, dep, label)
        labels.append(label)
    return tuple(dict.fromkeys(labels))


def _upstream_labels(workspace: Workspace, rule: Rule, dep: str) -> list[str]:
    """`^name`: that rule in every package this one depends on that has it, none when none
    has it (a leaf package's `^build`, as Turborepo reads `dependsOn`). A name no package of
    the workspace has a rule of is a typo, and an error."""
    name = dep[1:]
    package = workspace.packages[rule.package]
    upstream = [path for path in package.deps if name in workspace.packages[path].rules]
    if not upstream and not any(name in other.rules for other in workspace.packages.values()):
        names = {f"^{n}" for other in workspace.packages.values() for n in other.rules}
        hint = did_you_mean(dep, names)
        raise _dep_error(rule, dep, f"names rule {name!r}, which no package has{hint}")
    return [f"//{path}:{name}" for path in upstream]


def _check_label(workspace: Workspace, rule: Rule, dep: str, label: str) -> None:
    if label == rule.label:
        raise _dep_error(rule, dep, "is the rule itself; a rule cannot depend on itself")
    package, _, name = label.removeprefix("//").partition(":")
    if package not in workspace.packages:
        known = [f"//{path}" for path in workspace.packages]
        hint = did_you_mean(f"//{package}", known)
        raise _dep_error(rule, dep, f"names unknown package '//{package}'{hint}")
    if name not in workspace.packages[package].rules:
        known = [r.label for p in workspace.packages.values() for r in p.rules.values()]
        raise _dep_error(rule, dep, f"names unknown rule {label!r}{did_you_mean(label, known)}")


def _dep_error(rule: Rule, dep: str, message: str) -> ConfigError:
    return source_error(
        rule.source,
        f"rule.{rule.name}.deps: {dep!r} {message}",
        "rule",
        rule.name,
        "deps",
        value=dep,
    )


def select_targets(workspace: Workspace, targets: list[str], cwd: Path) -> list[str]:
    """Labels named on the command line. A bare rule name means that rule in the package
    holding `cwd`, or in every package that defines it when run from the workspace root."""
    here = _package_at(workspace, cwd)
    labels: list[str] = []
    for target in targets:
        if ":" in target:
            label = target if target.startswith("//") else f"//{target}"
            if workspace.rule(label) is None:
                raise UsageError(f"unknown target {target!r}")
            labels.append(label)
            continue
        scope = [here] if here else list(workspace.packages)
        found = [f"//{p}:{target}" for p in scope if target in workspace.packages[p].rules]
        if not found:
            known = sorted({n for p in scope for n in workspace.packages[p].rules})
            import difflib  # noqa: PLC0415 - only this error message needs it

            hint = difflib.get_close_matches(target, known, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            where = f"package //{here}" if here else "the workspace"
            raise UsageError(f"no rule named {target!r} in {where}{suggestion}")
        labels.extend(found)
    return list(dict.fromkeys(labels))


def all_targets(workspace: Workspace, cwd: Path) -> list[str]:
    """Every rule of the package holding `cwd`, or of the whole workspace from its root."""
    here = _package_at(workspace, cwd)
    return [
        rule.label
        for path, package in workspace.packages.items()
        if not here or path == here
        for rule in package.rules.values()
    ]


def _package_at(workspace: Workspace, cwd: Path) -> str:
    try:
        relative = cwd.resolve().relative_to(workspace.root).as_posix()
    except ValueError:
        return ""
    best = ""
    for package in workspace.packages:
        if package and (relative == package or relative.startswith(package + "/")):
            best = max(best, package, key=len)
    return best


def dependency_graph(workspace: Workspace) -> dict[str, tuple[str, ...]]:
    """The resolved deps of every rule of the workspace, checked for unknown names and cycles.

    All of them, not only those a run needs: a once.toml is valid or not whatever the targets,
    and resolving a thousand packages' deps costs well under a millisecond each.
    """
    graph = {
        rule.label: resolve_deps(workspace, rule)
        for package in workspace.packages.values()
        for rule in package.rules.values()
    }
    try:
        dependency_order(graph)
    except CycleError as cycle:
        first = _rule(workspace, cycle.path[0])
        raise source_error(
            first.source, f"dependency cycle: {cycle}", "rule", first.name, "deps"
        ) from None
    return graph


def build_graph(workspace: Workspace, targets: list[str]) -> list[Action]:
    """Every action the targets need, dependencies before dependents; cycles are errors."""
    graph = dependency_graph(workspace)
    unknown = [target for target in targets if target not in graph]
    if unknown:  # select_targets resolved them against the workspace already
        raise UsageError(f"unknown target {unknown[0]!r}")
    needed = {label: graph[label] for label in _closure(graph, targets)}
    return [
        Action(rule=_rule(workspace, label), deps=needed[label])
        for label in dependency_order(needed)
    ]


def _closure(graph: dict[str, tuple[str, ...]], targets: list[str]) -> set[str]:
    """The targets and everything they depend on, directly or not."""
    seen: set[str] = set()
    pending = list(targets)
    while pending:
        label = pending.pop()
        if label not in seen:
            seen.add(label)
            pending.extend(graph[label])
    return seen


def _rule(workspace: Workspace, label: str) -> Rule:
    rule = workspace.rule(label)
    if rule is None:  # labels come from `dependency_graph`, built from the workspace's rules
        raise UsageError(f"unknown target {label!r}")
    return rule
