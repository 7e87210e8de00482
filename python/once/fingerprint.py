"""Compute every action's key: its inputs from one workspace walk, env, tools and dep keys."""

from __future__ import annotations

import fnmatch
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from once import _core
from once.errors import ConfigError
from once.graph import Action
from once.layout import CONFIG_NAME, STAT_CACHE, STATE_DIR
from once.model import Rule, Workspace

# What `_core.action_keys` takes per action: inputs, label, cmd, cwd, platform, env, tools,
# dependency labels, outputs.
KeyRequest = tuple[
    _core.FileSet,
    str,
    str,
    str,
    str,
    list[tuple[str, str]],
    list[tuple[str, str]],
    list[str],
    list[str],
]


@dataclass(frozen=True)
class Fingerprint:
    key: str
    inputs: _core.FileSet
    snapshot: _core.Snapshot
    request: KeyRequest
    deps: list[tuple[str, str]]  # (label, key) of each dependency

    def spec(self) -> str:
        """Everything that went into the key as JSON, for `once why` and `--dry-run`. Built on
        demand: a run needs it only for the actions whose key changed since their last run."""
        inputs, label, cmd, cwd, platform, env, tools, _, outputs = self.request
        _, spec = _core.action_key(
            self.snapshot,
            inputs,
            label=label,
            cmd=cmd,
            cwd=cwd,
            platform=platform,
            env=env,
            tools=tools,
            deps=self.deps,
            outputs=outputs,
        )
        return spec

    @property
    def spec_json(self) -> str:
        return self.spec()


@dataclass(frozen=True)
class Plan:
    """The keys of one run's actions and the workspace snapshot they were computed from."""

    snapshot: _core.Snapshot
    fingerprints: dict[str, Fingerprint]
    files_read: int  # files whose contents were hashed (not answered by the stat cache)


def platform_tag() -> str:
    return f"{sys.platform}-{platform.machine()}"


def declared_env(patterns: tuple[str, ...], environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(name, value) of every set variable matching a declared name or pattern (`API_*`)."""
    if not patterns:
        return []  # most rules declare none: skip a pass over the whole environment
    return sorted(
        (name, value)
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    )


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


def input_patterns(
    workspace: Workspace, rule: Rule, excluded: Mapping[str, list[str]] | None = None
) -> tuple[list[str], list[str]]:
    """Include and exclude globs (relative to the package) of a rule's inputs.

    Excluded are the package's `excluded_paths` (computed here when not given). The package's
    once.toml is left out of the default inputs because what it says about this rule enters
    the key directly.
    """
    exclude = list((excluded if excluded is not None else excluded_paths(workspace))[rule.package])
    if rule.inputs is None:
        return ["**"], [*exclude, CONFIG_NAME]
    return list(rule.inputs), exclude


class ToolProbes:
    """Runs each `tools` probe once per run; its output (and failure) enters the key."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._outputs: dict[str, str] = {}

    def output(self, command: str) -> str:
        if command not in self._outputs:
            import subprocess  # noqa: PLC0415 - only rules with `tools` run a probe

            done = subprocess.run(
                ["sh", "-c", command],
                cwd=self._root,
                capture_output=True,
                check=False,
            )
            text = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
            self._outputs[command] = f"{text}\n[exit {done.returncode}]"
        return self._outputs[command]


def plan(
    workspace: Workspace,
    actions: list[Action],
    environ: Mapping[str, str],
    *,
    snapshot: _core.Snapshot | None = None,
) -> Plan:
    """Keys of `actions` (given in dependency order) from one walk of the workspace (`snapshot`,
    when the prelude walked it already), with one call into the core per step for all actions
    (select, hash, keys), not one per action."""
    if snapshot is None:
        snapshot = _core.Snapshot.scan(str(workspace.root), [STATE_DIR])
    excluded = excluded_paths(workspace)
    selections = [
        (action.rule.package, *input_patterns(workspace, action.rule, excluded))
        for action in actions
    ]
    try:
        filesets = snapshot.select_many(selections)
    except _core.GlobError:
        # Name the rule whose glob is at fault (the batch only says which glob).
        for action, (package, include, exclude) in zip(actions, selections, strict=True):
            try:
                snapshot.select(package, include, exclude)
            except _core.GlobError as err:
                raise ConfigError(action.rule.source, f"{action.label}: {err}") from None
        raise
    read = snapshot.hash(filesets, str(workspace.root / STATE_DIR / STAT_CACHE))

    probes = ToolProbes(workspace.root)
    tag = platform_tag()
    requests: list[KeyRequest] = [
        (
            inputs,
            action.rule.label,
            action.rule.cmd,
            action.rule.package,
            tag,
            declared_env(action.rule.env, environ),
            [(tool, probes.output(tool)) for tool in action.rule.tools],
            list(action.deps),
            list(action.rule.outputs),
        )
        for action, inputs in zip(actions, filesets, strict=True)
    ]
    keys = dict(
        zip(
            (action.label for action in actions), _core.action_keys(snapshot, requests), strict=True
        )
    )
    fingerprints = {
        action.label: Fingerprint(
            keys[action.label],
            request[0],
            snapshot,
            request,
            [(dep, keys[dep]) for dep in action.deps],
        )
        for action, request in zip(actions, requests, strict=True)
    }
    return Plan(snapshot, fingerprints, read)
