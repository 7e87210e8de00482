"""What a workspace is once its once.toml files are read and validated: packages and rules.

Shared by `config` (which builds it from the files) and `workspace_cache` (which keeps it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from once.stamps import Stamps


@dataclass(frozen=True)
class Rule:
    """One `[rule.NAME]` table of a package, validated but not yet resolved into an action."""

    package: str  # package path relative to the workspace root, "" for the root
    name: str
    cmd: str
    inputs: tuple[str, ...] | None  # None: every non-ignored file of the package
    outputs: tuple[str, ...]
    deps: tuple[str, ...]
    env: tuple[str, ...]
    pass_env: tuple[str, ...]
    tools: tuple[str, ...]
    cache: bool
    source: Path  # the once.toml it came from, for error messages

    @cached_property
    def label(self) -> str:
        # Asked ~7 times per action by graph, plan and run: 70,000 f-strings for 10,000 rules.
        return f"//{self.package}:{self.name}"


@dataclass(frozen=True)
class Package:
    path: str  # relative to the workspace root, "/"-separated, "" for the root
    deps: tuple[str, ...]  # paths of the packages this one depends on
    rules: dict[str, Rule] = field(default_factory=dict)
    source: Path = Path()

    @property
    def label(self) -> str:
        return f"//{self.path}"


@dataclass(frozen=True)
class RemoteSettings:
    """The root once.toml's `[remote]` table; the environment may override it (remote.py)."""

    url: str | None
    read_only: bool
    token_env: str | None  # the variable holding a bearer token, never the token itself
    endpoint: str | None  # S3 endpoint of a non-AWS server
    region: str | None
    timeout: float | None  # seconds
    source: Path


@dataclass(frozen=True)
class Workspace:
    root: Path
    packages: dict[str, Package]  # by path
    remote: RemoteSettings | None = None
    # The stats of every file and folder it was read from, when they vouch for a copy of it
    # (workspace_cache.py); None when it cannot be kept. Not part of what it is.
    stamps: Stamps | None = field(default=None, compare=False, repr=False)

    def rule(self, label: str) -> Rule | None:
        package, _, name = label.removeprefix("//").partition(":")
        found = self.packages.get(package)
        return found.rules.get(name) if found else None
