"""Resolve targets and rule `deps` into an action graph in dependency order."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from once.config import Rule, Workspace, _line_of, _read
from once.errors import ConfigError, UsageError


@dataclass(frozen=True)
class Action:
    """A rule selected for this run, with the labels of the actions it waits for."""

    rule: Rule
    deps: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.rule.label


def resolve_deps(workspace: Workspace, rule: Rule) -> tuple[str, ...]:
    """Labels of the rules `rule` depends on: `gen`, `^build` or `//pkg:rule`."""
    package = workspace.packages[rule.package]
    labels: list[str] = []
    for dep in rule.deps:
        if dep.startswith("^"):
            name = dep[1:]
            labels.extend(
                f"//{upstream}:{name}"
                for upstream in package.deps
                if name in workspace.packages[upstream].rules
            )
            continue
        label = dep if dep.startswith("//") else f"//{rule.package}:{dep}"
        if ":" not in label:
            raise _dep_error(workspace, rule, dep, "a label needs a rule name: '//pkg:rule'")
        if workspace.rule(label) is None:
            known = [r.label for p in workspace.packages.values() for r in p.rules.values()]
            hint = difflib.get_close_matches(label, known, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise _dep_error(workspace, rule, dep, f"unknown rule {label!r}{suggestion}")
        labels.append(label)
    return tuple(dict.fromkeys(labels))


def _dep_error(workspace: Workspace, rule: Rule, dep: str, message: str) -> ConfigError:
    line = _line_of(_read(rule.source), f"rule.{rule.name}", "deps")
    return ConfigError(rule.source, f"{rule.label}: deps entry {dep!r}: {message}", line)


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


def build_graph(workspace: Workspace, targets: list[str]) -> list[Action]:
    """Every action the targets need, dependencies before dependents; cycles are errors."""
    actions: dict[str, Action] = {}
    order: list[str] = []
    visiting: list[str] = []

    def visit(label: str) -> None:
        if label in actions:
            return
        if label in visiting:
            cycle = [*visiting[visiting.index(label) :], label]
            source = workspace.packages[label.removeprefix("//").partition(":")[0]].source
            raise ConfigError(source, "dependency cycle: " + " -> ".join(cycle))
        rule = workspace.rule(label)
        if rule is None:  # targets and deps were resolved against the workspace already
            raise UsageError(f"unknown target {label!r}")
        visiting.append(label)
        deps = resolve_deps(workspace, rule)
        for dep in deps:
            visit(dep)
        visiting.pop()
        actions[label] = Action(rule=rule, deps=deps)
        order.append(label)

    for target in targets:
        visit(target)
    return [actions[label] for label in order]
