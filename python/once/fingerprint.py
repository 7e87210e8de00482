"""Compute every action's key: its inputs from one workspace walk, env, tools and dep keys."""

from __future__ import annotations

import fnmatch
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from once import _core
from once.config import CONFIG_NAME, STATE_DIR, Rule, Workspace
from once.errors import ConfigError
from once.graph import Action


@dataclass(frozen=True)
class Fingerprint:
    key: str
    spec_json: str  # everything that went into the key, for `once why` and `--dry-run`
    inputs: _core.FileSet


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
    return sorted(
        (name, value)
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    )


def input_patterns(workspace: Workspace, rule: Rule) -> tuple[list[str], list[str]]:
    """Include and exclude globs (relative to the package) of a rule's inputs.

    Outputs of every rule in the package are never inputs (they are covered by dep keys), nor
    are nested packages. The package's once.toml is left out of the default inputs because
    what it says about this rule enters the key directly.
    """
    package = workspace.packages[rule.package]
    exclude = [output for other in package.rules.values() for output in other.outputs]
    prefix = f"{rule.package}/" if rule.package else ""
    exclude += [
        other[len(prefix) :]
        for other in workspace.packages
        if other and other.startswith(prefix) and other != rule.package
    ]
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
            done = subprocess.run(
                ["sh", "-c", command],
                cwd=self._root,
                capture_output=True,
                check=False,
            )
            text = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
            self._outputs[command] = f"{text}\n[exit {done.returncode}]"
        return self._outputs[command]


def plan(workspace: Workspace, actions: list[Action], environ: Mapping[str, str]) -> Plan:
    """Keys of `actions` (given in dependency order) from one walk of the workspace."""
    snapshot = _core.Snapshot.scan(str(workspace.root), [STATE_DIR])
    filesets: dict[str, _core.FileSet] = {}
    for action in actions:
        include, exclude = input_patterns(workspace, action.rule)
        try:
            filesets[action.label] = snapshot.select(action.rule.package, include, exclude)
        except _core.GlobError as err:
            raise ConfigError(action.rule.source, f"{action.label}: {err}") from None
    read = snapshot.hash(list(filesets.values()), str(workspace.root / STATE_DIR / "statcache"))

    probes = ToolProbes(workspace.root)
    tag = platform_tag()
    fingerprints: dict[str, Fingerprint] = {}
    for action in actions:
        rule = action.rule
        key, spec = _core.action_key(
            snapshot,
            filesets[action.label],
            label=rule.label,
            cmd=rule.cmd,
            cwd=rule.package,
            platform=tag,
            env=declared_env(rule.env, environ),
            tools=[(tool, probes.output(tool)) for tool in rule.tools],
            deps=[(dep, fingerprints[dep].key) for dep in action.deps],
            outputs=list(rule.outputs),
        )
        fingerprints[action.label] = Fingerprint(key, spec, filesets[action.label])
    return Plan(snapshot, fingerprints, read)
