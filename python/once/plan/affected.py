"""`once run --affected`: the rules whose inputs changed in git since a revision, and every rule
depending on them (Nx's `affected`, Turborepo's `--affected`).

Changed files are what `git diff --name-only REF` lists (committed, staged and unstaged changes
against REF, deletions included) plus untracked files git does not ignore. A rule is affected
when a changed path matches its inputs, or when its package's once.toml changed; a file below
the target of a symlinked folder also changed at each path the walk reaches it through such a
link (git names the target, a rule's globs may name the link). This errs on
the side of running: a rule selected needlessly costs one cache hit, a rule missed is a stale
build.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from once import _core
from once.config import compiled
from once.config.model import Rule, Workspace
from once.errors import UsageError
from once.layout import CONFIG_NAME, STATE_DIR, TRACKED_CACHE, WORKSPACE_PREFIX
from once.plan.graph import all_targets, dependency_graph, select_targets
from once.plan.keys import input_patterns

# Tried in order when no --since is given; the first that exists is the default branch.
DEFAULT_BRANCHES = ("origin/HEAD", "main", "master", "origin/main", "origin/master")


@dataclass(frozen=True)
class Changes:
    """Files changed since `base`, relative to the workspace root."""

    base: str  # the revision compared against, as given, or "the merge base with main"
    commit: str  # the commit it names
    paths: tuple[str, ...]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UsageError("--affected needs git, and git is not installed") from None


def changed_files(root: Path, since: str | None) -> Changes:
    """Paths under `root` that differ from `since` (default: the merge base of HEAD with the
    default branch), plus untracked, non-ignored files."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise UsageError(f"--affected needs a git repository, and {root} is not in one")
    git_root = Path(top.stdout.strip()).resolve()
    base, ref = (since, since) if since is not None else _default_base(root)
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        raise UsageError(f"--since: {base!r} is not a commit, branch or tag git knows")
    sha = commit.stdout.strip()
    diff = _git(root, "diff", "--name-only", "--no-renames", "-z", sha, "--", ".")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--full-name", "-z")
    for done in (diff, untracked):
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise UsageError(f"--affected: git failed: {last}")
    # Both list paths relative to the repository's top folder; the workspace may sit below it.
    prefix = root.resolve().relative_to(git_root).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    paths = sorted(
        {
            path.removeprefix(prefix)
            for path in (diff.stdout + untracked.stdout).split("\0")
            # once's own state is never an input, even where its .gitignore was removed
            if path and path.startswith(prefix) and not _is_state(path.removeprefix(prefix))
        }
    )
    return Changes(base, sha, tuple(paths))


def through_links(
    root: Path, paths: tuple[str, ...], snapshot: _core.Snapshot | None = None
) -> tuple[str, ...]:
    """`paths` and, for each below the target of a folder link the workspace walk follows, the
    same file at the link's path. The walk reports every link path it follows (one inside a
    linked folder included), so one pass reaches them all. `snapshot`: a walk of `root`, made
    here when not given."""
    if snapshot is None:
        tracked = root / STATE_DIR / TRACKED_CACHE
        snapshot = _core.Snapshot.scan(str(root), [STATE_DIR], str(tracked))
    links = snapshot.folder_links()
    if not links:
        return paths
    seen = set(paths)
    for path in paths:
        for link, target in links:
            if path.startswith(f"{target}/"):
                seen.add(link + path[len(target) :])
    return tuple(sorted(seen))


def _is_state(path: str) -> bool:
    return path == STATE_DIR or path.startswith(f"{STATE_DIR}/")


def _default_base(root: Path) -> tuple[str, str]:
    """The merge base of HEAD with the default branch (what a pull request would change): how
    to name it to the user, and its commit."""
    for branch in DEFAULT_BRANCHES:
        if _git(root, "rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}").returncode:
            continue
        base = _git(root, "merge-base", "HEAD", branch)
        if base.returncode == 0:
            return f"the merge base with {branch}", base.stdout.strip()
    raise UsageError(
        "--affected: no default branch to compare with (no origin/HEAD, main or master); "
        "name a revision with --since REF"
    )


def directly_affected(workspace: Workspace, paths: Iterable[str]) -> set[str]:
    """Labels of the rules one of `paths` (workspace-relative) is an input of, or whose
    once.toml is one of them."""
    paths = list(paths)
    labels: set[str] = set()
    for package in workspace.packages.values():
        prefix = f"{package.path}/" if package.path else ""
        inside = [path.removeprefix(prefix) for path in paths if path.startswith(prefix)]
        if CONFIG_NAME in inside:
            # The rules themselves changed; the root's file can also change members.
            labels.update(rule.label for rule in package.rules.values())
            continue
        for rule in package.rules.values():
            if _reads_any(workspace, rule, inside, paths):
                labels.add(rule.label)
    if CONFIG_NAME in paths:
        labels.update(
            rule.label for package in workspace.packages.values() for rule in package.rules.values()
        )
    return labels


def by_lockfiles(workspace: Workspace, changes: Changes) -> set[str]:
    """Labels of the rules of every package whose slice of a changed lockfile differs from
    the one at the base revision (the whole file, where it is read whole)."""
    from once.plan import lockfiles  # noqa: PLC0415

    rules = [rule for package in workspace.packages.values() for rule in package.rules.values()]
    if not rules or rules[0].lockfiles == ():
        return set()
    named = rules[0].lockfiles  # a workspace setting: the same for every rule
    changed = [
        path
        for path in changes.paths
        if (path in named if named is not None else lockfiles.ecosystem(path) is not None)
    ]
    if not changed:
        return set()
    root = str(workspace.root)
    present = lockfiles.present(root, workspace.packages, changed)
    folders = lockfiles.by_folder(present)
    labels: set[str] = set()
    for path in changed:
        governed = [
            (package.path, kind)
            for package in workspace.packages.values()
            for lock, kind in lockfiles.governing(package.path, folders, named, present)
            if lock == path and lockfiles.governs(package.path, kind, present)
        ]
        base = _git_show(workspace.root, changes.commit, path)
        now = lockfiles.read(root, path)
        if base is None or now is None:
            differ = {package for package, _ in governed}  # added or removed
        else:
            differ = lockfiles.parts_differ(root, path, governed, old=base, new=now)
        for package in differ:
            labels.update(rule.label for rule in workspace.packages[package].rules.values())
    return labels


def _git_show(root: Path, commit: str, path: str) -> bytes | None:
    """`path` (workspace-relative) as it was at `commit`, or None where it did not exist."""
    try:
        done = subprocess.run(
            ["git", "show", f"{commit}:./{path}"], cwd=root, capture_output=True, check=False
        )
    except FileNotFoundError:
        raise UsageError("--affected needs git, and git is not installed") from None
    return done.stdout if done.returncode == 0 else None


def _reads_any(workspace: Workspace, rule: Rule, inside: list[str], paths: list[str]) -> bool:
    """Whether the rule reads one of `inside` (relative to its package) or, through a `//`
    input, one of `paths` (relative to the workspace root)."""
    include, exclude = input_patterns(workspace, rule)
    rooted = [pattern[len(WORKSPACE_PREFIX) :] for pattern in include if _is_rooted(pattern)]
    relative = [pattern for pattern in include if not _is_rooted(pattern)]
    return bool(
        (inside and compiled(*relative).filter(inside, compiled(*exclude)))
        or (rooted and compiled(*rooted).filter(paths))
    )


def _is_rooted(pattern: str) -> bool:
    return pattern.startswith(WORKSPACE_PREFIX)


def with_dependents(graph: dict[str, tuple[str, ...]], labels: set[str]) -> set[str]:
    """`labels` and every rule depending on one of them, directly or not."""
    dependents: dict[str, list[str]] = {label: [] for label in graph}
    for label, deps in graph.items():
        for dep in deps:
            dependents[dep].append(label)
    seen = set(labels)
    pending = list(labels)
    while pending:
        for child in dependents.get(pending.pop(), []):
            if child not in seen:
                seen.add(child)
                pending.append(child)
    return seen


def select_affected(
    workspace: Workspace,
    cwd: Path,
    targets: list[str],
    since: str | None,
    walked: Callable[[], _core.Snapshot] | None = None,
) -> tuple[Changes, list[str]]:
    """The changes, and the labels among `targets` (default: every rule in scope at `cwd`)
    that they affect, in the order the targets name them. `walked`: the run's own walk of the
    workspace, when it started one (a second walk of a large tree costs what the first did)."""
    changes = changed_files(workspace.root, since)
    graph = dependency_graph(workspace)
    snapshot = walked() if walked is not None else None
    paths = through_links(workspace.root, changes.paths, snapshot)
    direct = directly_affected(workspace, paths) | by_lockfiles(workspace, changes)
    affected = with_dependents(graph, direct)
    scope = select_targets(workspace, targets, cwd) if targets else all_targets(workspace, cwd)
    return changes, [label for label in scope if label in affected]
