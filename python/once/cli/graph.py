"""`once graph`: the action graph of some targets as Graphviz dot or JSON.

Structure only, no keys: drawing the graph of a big monorepo must not hash its files."""

from __future__ import annotations

import json

from once.plan.graph import Action

# Graph drawn left to right (dependencies on the left), one box per rule, grouped by package:
# monorepo graphs are wide rather than deep, and a left-to-right layout keeps labels readable.
_DOT_HEAD = (
    "digraph once {\n"
    "  rankdir=LR;\n"
    '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", fontname="Helvetica"];\n'
)


def _quote(text: str) -> str:
    """A dot ID in double quotes: backslashes and quotes escaped, so any label is safe."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(actions: list[Action]) -> str:
    """A dot digraph with an edge from each rule to each rule it depends on."""
    by_package: dict[str, list[Action]] = {}
    for action in actions:
        by_package.setdefault(action.rule.package, []).append(action)
    lines = [_DOT_HEAD]
    for index, (package, members) in enumerate(sorted(by_package.items())):
        lines.append(f"  subgraph cluster_{index} {{\n")
        lines.append(f"    label={_quote('//' + package)};\n    style=dashed;\n")
        for action in members:
            extra = ', style="rounded,dashed"' if not action.rule.cache else ""
            lines.append(f"    {_quote(action.label)} [label={_quote(action.rule.name)}{extra}];\n")
        lines.append("  }\n")
    for action in actions:
        for dep in action.deps:
            lines.append(f"  {_quote(action.label)} -> {_quote(dep)};\n")
    lines.append("}\n")
    return "".join(lines)


def to_json(actions: list[Action]) -> str:
    """Every action in dependency order, with what a tool drawing or scheduling it needs."""
    rows = [
        {
            "label": action.label,
            "package": f"//{action.rule.package}",
            "rule": action.rule.name,
            "cmd": action.rule.cmd,
            "deps": list(action.deps),
            "inputs": list(action.rule.inputs) if action.rule.inputs is not None else None,
            "outputs": list(action.rule.outputs),
            "cache": action.rule.cache,
        }
        for action in actions
    ]
    return json.dumps({"actions": rows}, indent=2)
