"""The Python API: `import once`, then hash files, load a workspace, compute keys, run rules.

A thin, stable facade over config -> graph -> fingerprint -> run, for people who drive builds
from Python (a notebook, a pipeline script, a test). Its names are what `once.__all__` lists;
the modules under it may change shape between releases, these do not.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from once import _core
from once.config import load_workspace
from once.config.model import Workspace as _Config
from once.plan.graph import Action, all_targets, build_graph, dependency_graph, select_targets

StrPath = str | os.PathLike[str]
OutputLogs = Literal["full", "new-only", "errors-only", "none"]
Outcome = Literal["ran", "cached", "restored", "failed", "skipped"]


def hash_bytes(data: bytes) -> str:
    """The BLAKE3 digest of `data`, as 64 lowercase hex digits (what `b3sum` prints)."""
    return _core.hash_bytes(data)


def hash_file(path: StrPath) -> str:
    """The BLAKE3 digest of one file, as 64 hex digits. Big files are memory-mapped and hashed
    on several threads, with the GIL released. Raises FileNotFoundError (an OSError)."""
    return _core.hash_files([os.fspath(path)])[0]


def hash_files(paths: Iterable[StrPath]) -> list[str]:
    """The BLAKE3 digest of each file, in order, hashed in parallel."""
    return _core.hash_files([os.fspath(path) for path in paths])


@dataclass(frozen=True)
class Rule:
    """One rule of a workspace, as its once.toml declares it, with its deps resolved."""

    label: str  # `//libs/core:build`
    package: str  # `libs/core`; "" for the workspace root
    name: str  # `build`
    cmd: str
    inputs: tuple[str, ...] | None  # globs; None means every non-ignored file of the package
    outputs: tuple[str, ...]
    deps: tuple[str, ...]  # labels of the rules it waits for
    cache: bool


@dataclass(frozen=True)
class StepResult:
    """What happened to one step of `Workspace.run`."""

    label: str
    outcome: Outcome
    seconds: float  # wall time of this step in this run
    saved_seconds: float  # for a cache hit: how long the step took when it ran


@dataclass(frozen=True)
class RunReport:
    """The steps of one `Workspace.run`, in dependency order."""

    steps: tuple[StepResult, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when no step failed (and so none was skipped)."""
        return all(step.outcome not in ("failed", "skipped") for step in self.steps)

    def labels(self, *outcomes: Outcome) -> list[str]:
        """Labels of the steps that ended with one of `outcomes`."""
        return [step.label for step in self.steps if step.outcome in outcomes]

    @property
    def ran(self) -> list[str]:
        return self.labels("ran")

    @property
    def cached(self) -> list[str]:
        """Steps the cache answered: restored, or already on disk as the cache has them."""
        return self.labels("cached", "restored")

    @property
    def failed(self) -> list[str]:
        return self.labels("failed")


class Workspace:
    """A loaded workspace: the root once.toml and every member package's.

    Targets are what `once run` takes: a rule name (that rule in every package) or a label such
    as `//libs/core:build`; none means every rule. Configuration problems raise
    `once.errors.ConfigError` and unknown targets `once.errors.UsageError`, whose message is the
    one line the CLI would print.
    """

    def __init__(self, config: _Config) -> None:
        self._config = config

    @property
    def root(self) -> Path:
        """The folder holding the workspace's root once.toml."""
        return self._config.root

    def rules(self) -> list[Rule]:
        """Every rule of the workspace, package by package."""
        graph = dependency_graph(self._config)
        return [
            Rule(
                label=rule.label,
                package=rule.package,
                name=rule.name,
                cmd=rule.cmd,
                inputs=rule.inputs,
                outputs=rule.outputs,
                deps=graph[rule.label],
                cache=rule.cache,
            )
            for package in self._config.packages.values()
            for rule in package.rules.values()
        ]

    def graph(self, *targets: str) -> dict[str, list[str]]:
        """The targets and everything they need, dependencies first: label -> labels it needs."""
        return {action.label: list(action.deps) for action in self._actions(targets)}

    def keys(
        self, *targets: str, environ: Mapping[str, str] | None = None
    ) -> dict[str, str | None]:
        """The action key of every step the targets need (label -> 64 hex digits), computed
        as `once run` would with `environ` (default: this process's environment). Reads and
        hashes the inputs, trusting the workspace's stat cache; runs nothing. A step whose
        dependency declares outputs that the cache lacks has None: its key holds what that
        dependency produces, known once it ran."""
        from once.plan.keys import plan  # noqa: PLC0415 - hashing machinery on demand
        from once.state.cache_files import open_store  # noqa: PLC0415

        actions = self._actions(targets)
        fingerprints = plan(
            self._config,
            actions,
            os.environ if environ is None else environ,
            store=open_store(quiet=True),
        )
        return {label: found.key for label, found in fingerprints.fingerprints.items()}

    def run(
        self,
        *targets: str,
        jobs: int | None = None,
        force: bool = False,
        output_logs: OutputLogs = "errors-only",
        stream: BinaryIO | None = None,
    ) -> RunReport:
        """Run the targets as `once run` does: restore what the cache has, run the rest with
        `jobs` commands at once (default: the number of CPUs), under the workspace's lock.

        Command output (chosen by `output_logs`, default only that of failures) and status
        lines go to `stream` (default: standard output). A failing command does not raise:
        check `RunReport.ok`.
        """
        # Imported here: `import once` must not load the scheduler, nor the store.
        from once.run import pipeline  # noqa: PLC0415
        from once.run.options import RunRequest  # noqa: PLC0415
        from once.ui.console import Console, log_mode  # noqa: PLC0415

        started = time.monotonic()
        request = RunRequest(
            list(targets), output_logs=log_mode(output_logs), jobs=jobs, force=force
        )
        results = pipeline.run(
            request,
            str(self._config.root),
            lambda _total: Console(_binary(stream), request.output_logs),
            loaded=(self._config, self._actions(targets)),
        )
        steps = tuple(
            StepResult(
                label=result.label,
                outcome=result.outcome,
                seconds=result.seconds,
                saved_seconds=result.saved_ms / 1000,
            )
            for result in results
        )
        return RunReport(steps, time.monotonic() - started)

    def _actions(self, targets: Iterable[str]) -> list[Action]:
        chosen = list(targets)
        root = self._config.root
        labels = (
            select_targets(self._config, chosen, root)
            if chosen
            else all_targets(self._config, root)
        )
        return build_graph(self._config, labels)


def load(path: StrPath = ".") -> Workspace:
    """The workspace holding `path`: the nearest folder at or above it whose once.toml has a
    `[workspace]` table, else the nearest once.toml (a single-package project)."""
    return Workspace(load_workspace(Path(path)))


def _binary(stream: BinaryIO | None) -> BinaryIO:
    """Standard output's bytes, or a sink where there are none (some notebook front ends
    replace sys.stdout with a text-only object)."""
    if stream is not None:
        return stream
    buffer = getattr(sys.stdout, "buffer", None)
    return buffer if buffer is not None else io.BytesIO()
