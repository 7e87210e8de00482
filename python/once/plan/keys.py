"""Compute every action's key: its inputs from one workspace walk, env, tools, and what its
dependencies produced (early cutoff: the digest of a cached dependency's outputs, else its key)."""

from __future__ import annotations

import posixpath

from once import _core
from once.config.model import Rule, Workspace
from once.errors import ConfigError
from once.layout import CONFIG_NAME, STATE_DIR, TRACKED_CACHE, WORKSPACE_PREFIX, is_glob
from once.plan.context import ToolProbes
from once.plan.graph import Action
from once.plan.steps import (
    DepResult,
    KeyAndResult,
    KeyRequest,
    SourceUnderOutputGlob,
    Step,
    hash_inputs,
    key_context,
    key_requests,
    select_inputs,
    selections,
    spec_json,
)

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Final


class Fingerprint:
    """One action's key, with what it was computed from. The key is None while a dependency's
    result is unknown: its outputs are not cached, so it must run before this is keyed."""

    __slots__ = ("deps", "inputs", "key", "request", "result", "snapshot", "store")

    def __init__(
        self,
        key: str | None,
        result: str | None,
        *,
        snapshot: _core.Snapshot,
        request: KeyRequest,
        deps: list[DepResult],
        store: _core.Store | None,
    ) -> None:
        self.key: Final = key
        # What its dependents' keys hold of it as planned (see `_core.action_keys`): None
        # when unknown until it runs.
        self.result: Final = result
        self.inputs: Final = request.inputs
        self.snapshot: Final = snapshot
        self.request: Final = request
        self.deps: Final = deps  # (label, key, result) of each dependency
        self.store: Final = store  # where the outputs of dependencies keyed by them are

    def waits_for(self) -> str | None:
        """The first dependency whose result is unknown (a reason the key is None)."""
        return next((label for label, _, result in self.deps if result is None), None)

    def rekeyed(self, deps: list[DepResult]) -> Fingerprint:
        """This step keyed by `deps`, its dependencies as they turned out in this run (each
        result known): they may have run, or been restored from other entries than planned."""
        key, result = _core.action_key(
            self.snapshot, self.request, [(label, result or "") for label, _, result in deps]
        )
        return Fingerprint(
            key,
            None if self.request.cutoff else result,
            snapshot=self.snapshot,
            request=self.request,
            deps=deps,
            store=self.store,
        )

    def spec(self, saved: Mapping[str, _core.Entry] | None = None) -> str:
        """Everything that went into the key as JSON, for `once why` and `--dry-run`. Built on
        demand: a run needs it only for the actions whose key changed since their last run.
        `saved`: the entries a run saved so far, by key."""
        return spec_json(self.snapshot, self.request, self.deps, self.store, saved)


class Plan:
    """The keys of one run's actions and the workspace snapshot they were computed from."""

    __slots__ = ("files_read", "fingerprints", "snapshot", "store")

    def __init__(
        self,
        snapshot: _core.Snapshot,
        fingerprints: dict[str, Fingerprint],
        files_read: int,
        store: _core.Store | None,
    ) -> None:
        self.snapshot: Final = snapshot
        self.fingerprints: Final = fingerprints
        self.files_read: Final = files_read  # files whose contents were hashed, not looked up
        self.store: Final = store  # where the keys' dependency results were looked up


def excluded_paths(workspace: Workspace) -> dict[str, list[str]]:
    """For each package, what is never an input of its rules, relative to it: the outputs of
    every rule of the package (covered by dep keys), and the packages nested below it.

    Computed once per run: asking every rule to scan every package and every rule of its own
    package cost 0.6 s for 1,500 rules in 1,000 packages (benches/scale.py, cProfile)."""
    excluded = {
        path: [output for rule in package.rules.values() for output in rule.outputs]
        for path, package in workspace.packages.items()
    }
    for package in workspace.packages:
        if not package:
            continue  # the root package is below nothing
        parts = package.split("/")
        for depth in range(len(parts)):
            outer = "/".join(parts[:depth])
            if outer in excluded:
                prefix = f"{outer}/" if outer else ""
                excluded[outer].append(package[len(prefix) :])
    return excluded


class PackageExcludes:
    """What is never an input of a package's rules (its `excluded_paths`), indexed so that a
    rule naming its input files gets only the excludes that can remove one of them: a literal
    exclude at, above or below one of its inputs, and every glob. The rest select nothing a
    rule reads, and passing every rule all of them (the outputs of each rule of a package of
    100: 1,000,000 strings at 10,000 rules) cost a cold run 0.15 s on their way into the core."""

    __slots__ = ("at", "below", "everywhere", "patterns")

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: Final = patterns
        self.everywhere: Final[list[int]] = []  # globs: asked of every rule
        self.at: Final[dict[str, list[int]]] = {}  # a literal's normalized path -> positions
        self.below: Final[dict[str, list[int]]] = {}  # a folder -> positions of literals in it
        for position, pattern in enumerate(patterns):
            path = _literal_path(pattern)
            if path is None:
                self.everywhere.append(position)
                continue
            self.at.setdefault(path, []).append(position)
            while "/" in path:
                path = path.rpartition("/")[0]
                self.below.setdefault(path, []).append(position)

    def for_inputs(self, inputs: Sequence[str]) -> list[str]:
        """The excludes, in their order, that may remove a file `inputs` select."""
        chosen = set(self.everywhere)
        for pattern in inputs:
            if pattern.startswith(WORKSPACE_PREFIX):
                continue  # selected from the workspace root, where the excludes do not apply
            path = _literal_path(pattern)
            if path is None:
                return list(self.patterns)
            chosen.update(self.below.get(path, ()))
            while True:
                chosen.update(self.at.get(path, ()))
                if "/" not in path:
                    break
                path = path.rpartition("/")[0]
        return [self.patterns[position] for position in sorted(chosen)]


def _literal_path(pattern: str) -> str | None:
    """The path a pattern without glob syntax names (a file, or every file below it), as a
    walk spells it; None for a glob, or anything else that may name more than one path."""
    if is_glob(pattern):
        return None
    path = posixpath.normpath(pattern)
    return None if path == "." or path.startswith(("/", "..")) else path


def input_patterns(
    workspace: Workspace, rule: Rule, excluded: Mapping[str, PackageExcludes] | None = None
) -> tuple[list[str], list[str]]:
    """Include and exclude globs (relative to the package) of a rule's inputs.

    Excluded are those of the package's `excluded_paths` (indexed when not given) that may
    remove one of its inputs. The package's once.toml is left out of the default inputs
    because what it says about this rule enters the key directly. Includes starting with `//`
    (the rule's own and `[workspace] inputs`) are relative to the workspace root, and the
    excludes do not apply to them.
    """
    if excluded is None:
        excluded = exclude_index(workspace)
    package = excluded[rule.package]
    if rule.inputs is None:
        return ["**", *rule.workspace_inputs], [*package.patterns, CONFIG_NAME]
    return [*rule.inputs, *rule.workspace_inputs], package.for_inputs(rule.inputs)


def exclude_index(workspace: Workspace) -> dict[str, PackageExcludes]:
    """`excluded_paths` of every package, indexed."""
    return {path: PackageExcludes(paths) for path, paths in excluded_paths(workspace).items()}


def plan_steps(workspace: Workspace, actions: list[Action]) -> list[Step]:
    """The steps of `actions` (given in dependency order): what their keys are made of, but
    the files' contents. What `plan/steps.py` keeps for the next identical command."""
    excluded = exclude_index(workspace)
    return [
        Step(
            label=action.label,
            deps=action.deps,
            package=action.rule.package,
            include=include,
            exclude=exclude,
            cmd=action.rule.cmd,
            env=action.rule.env,
            tools=action.rule.tools,
            outputs=action.rule.outputs,
            env_mode=action.rule.env_mode,
            lockfiles=action.rule.lockfiles,
            cache=action.rule.cache,
        )
        for action in actions
        for include, exclude in [input_patterns(workspace, action.rule, excluded)]
    ]


def plan(
    workspace: Workspace,
    actions: list[Action],
    environ: Mapping[str, str],
    *,
    snapshot: _core.Snapshot | None = None,
    steps: list[Step] | None = None,
    known: tuple[list[KeyAndResult], list[KeyRequest], int] | None = None,
    store: _core.Store | None = None,
    reprobe: bool = False,
) -> Plan:
    """Keys of `actions` (given in dependency order) from one walk of the workspace (`snapshot`,
    when the prelude walked it already), with one call into the core per step for all actions
    (select, hash, keys), not one per action. `steps`: their `plan_steps`, when known; `known`:
    their (key, result) pairs, key requests and files read, when the run worked them out
    already. `store`: where the outputs of dependencies are looked up (early cutoff); without
    one, every dependent of a step with outputs waits for it to run. `reprobe`: run every tool
    probe again (`--force`)."""
    if snapshot is None:
        tracked = workspace.root / STATE_DIR / TRACKED_CACHE
        snapshot = _core.Snapshot.scan(str(workspace.root), [STATE_DIR], str(tracked))
    if known is not None:
        keyed, requests, read = known
    else:
        if steps is None:
            steps = plan_steps(workspace, actions)
        keyed, requests, read = _key(
            workspace, actions, steps, snapshot, environ, store=store, reprobe=reprobe
        )
    by_label = dict(zip((action.label for action in actions), keyed, strict=True))
    fingerprints = {
        action.label: Fingerprint(
            *by_label[action.label],
            snapshot=snapshot,
            request=request,
            deps=[(dep, *by_label[dep]) for dep in action.deps],
            store=store,
        )
        for action, request in zip(actions, requests, strict=True)
    }
    return Plan(snapshot, fingerprints, read, store)


def _key(
    workspace: Workspace,
    actions: list[Action],
    steps: list[Step],
    snapshot: _core.Snapshot,
    environ: Mapping[str, str],
    *,
    store: _core.Store | None,
    reprobe: bool,
) -> tuple[list[KeyAndResult], list[KeyRequest], int]:
    """Select, hash and key every step: ((key, result) pairs, key requests, files read)."""
    try:
        filesets = select_inputs(snapshot, steps)
    except _core.GlobError:
        # Name the rule whose glob is at fault (the batch only says which glob).
        for action, (package, include, exclude) in zip(actions, selections(steps), strict=True):
            try:
                snapshot.select(package, include, exclude)
            except _core.GlobError as err:
                raise ConfigError(action.rule.source, f"{action.label}: {err}") from None
        raise
    except SourceUnderOutputGlob as found:
        action = actions[found.index]
        raise ConfigError(
            action.rule.source,
            f"rule.{action.rule.name}.outputs: {found.output!r} matches {found.path}, which is "
            "not ignored: restoring the rule would replace it (name the outputs exactly, or "
            "ignore them in .gitignore or .onceignore)",
        ) from None
    read, slices = hash_inputs(str(workspace.root), snapshot, steps, filesets)
    context = key_context(steps, environ, ToolProbes(workspace.root, reprobe=reprobe))
    requests = key_requests(steps, filesets, context, slices)
    return _core.action_keys(snapshot, requests, store), requests, read
