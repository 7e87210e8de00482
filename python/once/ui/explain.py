"""Name exactly what changed between two action specs: inputs, env, command, tools, deps.

Variable values are never printed (they may be secrets in CI logs); only which changed.
"""

from __future__ import annotations

from collections.abc import Callable

from once.state.history import Spec

MAX_LISTED = 10  # longer lists of changed files are cut, with the count of the rest


def _pairs(spec: Spec, field: str) -> dict[str, str]:
    return {str(name): str(value) for name, value in spec.get(field, [])}


def _inputs(spec: Spec) -> dict[str, tuple[str, bool]]:
    return {item["path"]: (item["digest"], item["executable"]) for item in spec.get("inputs", [])}


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 60 else line[:57] + "..."


def _listed(kind: str, paths: list[str]) -> list[str]:
    lines = [f"{kind}: {path}" for path in paths[:MAX_LISTED]]
    if len(paths) > MAX_LISTED:
        lines.append(f"{kind}: ... and {len(paths) - MAX_LISTED} more")
    return lines


def changes(old: Spec, new: Spec) -> list[str]:
    """One line per difference, most telling first; empty when the specs are the same."""
    lines: list[str] = []
    if old.get("cmd") != new.get("cmd"):
        lines.append(f"command changed: {old.get('cmd')!r} -> {new.get('cmd')!r}")
    lines += _input_changes(_inputs(old), _inputs(new))
    lines += _lockfile_changes(_pairs(old, "lockfiles"), _pairs(new, "lockfiles"))
    lines += _env_changes(_pairs(old, "env"), _pairs(new, "env"))
    lines += _tool_changes(_pairs(old, "tools"), _pairs(new, "tools"))
    lines += _dep_changes(old, new)
    for field, what in (
        ("outputs", "outputs"),
        ("cwd", "working folder"),
        ("platform", "platform"),
        ("env_mode", "environment mode"),
    ):
        if old.get(field) != new.get(field):
            lines.append(f"{what} changed: {old.get(field)!r} -> {new.get(field)!r}")
    return lines


def _input_changes(old: dict[str, tuple[str, bool]], new: dict[str, tuple[str, bool]]) -> list[str]:
    both = old.keys() & new.keys()
    return [
        *_listed("input changed", sorted(p for p in both if old[p][0] != new[p][0])),
        *_listed("input added", sorted(new.keys() - old.keys())),
        *_listed("input removed", sorted(old.keys() - new.keys())),
        *_listed(
            "executable bit changed",
            sorted(p for p in both if old[p][0] == new[p][0] and old[p][1] != new[p][1]),
        ),
    ]


def _keyed_changes(
    old: dict[str, str],
    new: dict[str, str],
    added: Callable[[str], str],
    removed: Callable[[str], str],
    changed: Callable[[str, str, str], str],
) -> list[str]:
    """One line per name added, removed or given another value, in name order."""
    lines = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            lines.append(added(name))
        elif name not in new:
            lines.append(removed(name))
        elif old[name] != new[name]:
            lines.append(changed(name, old[name], new[name]))
    return lines


def _env_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return _keyed_changes(
        old,
        new,
        lambda name: f"env {name} is now set",
        lambda name: f"env {name} is no longer set",
        lambda name, _before, _after: f"env {name} changed value",
    )


def _tool_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return _keyed_changes(
        old,
        new,
        lambda tool: f"tool probe added: {tool!r}",
        lambda tool: f"tool probe removed: {tool!r}",
        lambda tool, before, after: (
            f"tool output changed: {tool!r}: {_first_line(before)!r} -> {_first_line(after)!r}"
        ),
    )


def _lockfile_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    def what(part: str) -> str:
        return "the part the package resolves" if part.startswith("slice:") else "the whole file"

    return _keyed_changes(
        old,
        new,
        lambda path: f"lockfile now in the key: {path} ({what(new[path])})",
        lambda path: f"lockfile no longer in the key: {path}",
        lambda path, before, after: (
            f"lockfile changed: {path}: {what(after)} changed"
            if what(before) == what(after)
            else f"lockfile changed: {path}: {what(before)} -> {what(after)}"
        ),
    )


def _dep_changes(old_spec: Spec, new_spec: Spec) -> list[str]:
    """A dependency added, removed or changed; under one keyed by its outputs, which of them
    changed (path and digests), as the specs list them (`dep_outputs`)."""
    old, new = _pairs(old_spec, "deps"), _pairs(new_spec, "deps")
    old_outputs, new_outputs = old_spec.get("dep_outputs", {}), new_spec.get("dep_outputs", {})
    lines = []
    for dep in sorted(old.keys() | new.keys()):
        if dep not in old:
            lines.append(f"dependency added: {dep}")
        elif dep not in new:
            lines.append(f"dependency removed: {dep}")
        elif old[dep] != new[dep]:
            lines.append(f"dependency changed: {dep}")
            if dep in old_outputs and dep in new_outputs:
                lines += _output_changes(dep, dict(old_outputs[dep]), dict(new_outputs[dep]))
    return lines


def _output_changes(dep: str, before: dict[str, str], after: dict[str, str]) -> list[str]:
    changed = [
        f"{path} ({_short(before[path])} -> {_short(after[path])})"
        for path in sorted(before.keys() & after.keys())
        if before[path] != after[path]
    ]
    return [
        *_listed(f"output of {dep} changed", changed),
        *_listed(f"output of {dep} added", sorted(after.keys() - before.keys())),
        *_listed(f"output of {dep} removed", sorted(before.keys() - after.keys())),
    ]


def _short(what: str) -> str:
    """A digest cut to 12 digits (with its ` executable`), a folder or link as it is."""
    digest, _, rest = what.partition(" ")
    return f"{digest[:12]} {rest}".strip() if len(digest) == 64 else what


def explain(
    label: str,
    old_of: Callable[[str], Spec | None],
    new_of: Callable[[str], Spec | None],
    depth: int = 0,
    seen: set[str] | None = None,
) -> list[str]:
    """Lines explaining why `label`'s key differs from its last run, following changed
    dependencies down to the rules whose own inputs changed."""
    seen = set() if seen is None else seen
    seen.add(label)
    indent = "  " * depth
    old, new = old_of(label), new_of(label)
    if new is None:
        return [f"{indent}{label}: not part of this build"]
    if old is None:
        return [f"{indent}{label}: never run in this workspace, so nothing to compare with"]
    found = changes(old, new)
    if not found:
        return [f"{indent}{label}: unchanged since its last run"]
    lines = [f"{indent}{label}:"]
    for line in found:
        lines.append(f"{indent}  {line}")
        prefix = "dependency changed: "
        if line.startswith(prefix) and line[len(prefix) :] not in seen:
            lines += explain(line[len(prefix) :], old_of, new_of, depth + 2, seen)
    return lines


def summary(old: Spec | None, new: Spec) -> str:
    """The most telling difference in a few words, for `once status`."""
    if old is None:
        return "never run here"
    found = changes(old, new)
    if not found:
        return "same key as its last run, but no cache entry (failed, evicted or never stored)"
    more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
    return found[0] + more
