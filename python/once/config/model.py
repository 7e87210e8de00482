"""What a workspace is once its once.toml files are read and validated: packages and rules.

Shared by `config` (which builds it from the files) and `workspace_cache` (which keeps it)."""

from __future__ import annotations

from pathlib import Path

from once.value import Value

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from typing import Final

    from once.state.stamps import Stamps
    from once.state.workspace_cache import Reads

# What a rule is compared by; state/workspace_cache.py keeps them (bar package and source) in order.
RULE_FIELDS = (
    "package",
    "name",
    "cmd",
    "inputs",
    "outputs",
    "deps",
    "env",
    "pass_env",
    "tools",
    "cache",
    "source",
    "workspace_inputs",
    "env_mode",
    "lockfiles",
)


class Rule(Value):
    """One `[rule.NAME]` table of a package, validated but not yet resolved into an action."""

    __slots__ = (*RULE_FIELDS, "label")
    FIELDS = RULE_FIELDS

    def __init__(
        self,
        *,
        package: str,
        name: str,
        cmd: str,
        inputs: tuple[str, ...] | None,
        outputs: tuple[str, ...],
        deps: tuple[str, ...],
        env: tuple[str, ...],
        pass_env: tuple[str, ...],
        tools: tuple[str, ...],
        cache: bool,
        source: Path,
        workspace_inputs: tuple[str, ...] = (),
        env_mode: str = "strict",
        lockfiles: tuple[str, ...] | None = None,
    ) -> None:
        self.package: Final = package  # relative to the workspace root, "" for the root
        self.name: Final = name
        self.cmd: Final = cmd
        self.inputs: Final = inputs  # None: every non-ignored file of the package
        self.outputs: Final = outputs
        self.deps: Final = deps
        self.env: Final = env
        self.pass_env: Final = pass_env
        self.tools: Final = tools
        self.cache: Final = cache
        self.source: Final = source  # the once.toml it came from, for error messages
        # `[workspace] inputs`: files of the workspace (root-relative) every rule reads.
        self.workspace_inputs: Final = workspace_inputs
        # `[workspace] env_mode`: what of the environment the command sees ("strict", "loose").
        self.env_mode: Final = env_mode
        # `[workspace] lockfiles`: None finds the lockfiles governing the package (the
        # default), else exactly these (root-relative; none for `lockfiles = false`).
        self.lockfiles: Final = lockfiles
        # Asked ~7 times per action by graph, plan and run: made once, not 70,000 times for
        # 10,000 rules.
        self.label: Final = f"//{package}:{name}"


class Package(Value):
    __slots__ = ("deps", "path", "rules", "source")
    FIELDS = ("path", "deps", "rules", "source")

    def __init__(
        self,
        path: str,
        deps: tuple[str, ...],
        rules: dict[str, Rule] | None = None,
        source: Path | None = None,
    ) -> None:
        self.path: Final = path  # relative to the workspace root, "/"-separated, "" for the root
        self.deps: Final = deps  # paths of the packages this one depends on
        self.rules: Final[dict[str, Rule]] = {} if rules is None else rules
        self.source: Final = Path() if source is None else source

    @property
    def label(self) -> str:
        return f"//{self.path}"


class RemoteSettings(Value):
    """The root once.toml's `[remote]` table; the environment may override it (run/remote.py)."""

    __slots__ = ("endpoint", "read_only", "region", "source", "timeout", "token_env", "url")
    FIELDS = ("url", "read_only", "token_env", "endpoint", "region", "timeout", "source")

    def __init__(
        self,
        *,
        url: str | None,
        read_only: bool,
        token_env: str | None,
        endpoint: str | None,
        region: str | None,
        timeout: float | None,
        source: Path,
    ) -> None:
        self.url: Final = url
        self.read_only: Final = read_only
        self.token_env: Final = token_env  # the variable holding a bearer token, never the token
        self.endpoint: Final = endpoint  # S3 endpoint of a non-AWS server
        self.region: Final = region
        self.timeout: Final = timeout  # seconds
        self.source: Final = source


class Workspace(Value):
    __slots__ = ("packages", "reads", "remote", "root", "stamps")
    # The stamps and reads are not part of what it is.
    FIELDS = ("root", "packages", "remote")

    def __init__(
        self,
        root: Path,
        packages: dict[str, Package],
        remote: RemoteSettings | None = None,
        stamps: Stamps | None = None,
        reads: Reads | None = None,
    ) -> None:
        self.root: Final = root
        self.packages: Final = packages  # by path
        self.remote: Final = remote
        # The stats of every file and folder it was read from, when they vouch for a copy of
        # it (state/workspace_cache.py); None when it cannot be kept.
        self.stamps: Final = stamps
        # What it was read from, when it could not be kept yet for want of the state folder:
        # the first run keeps it once it has made the folder (`workspace_cache.keep`).
        self.reads: Final = reads

    def rule(self, label: str) -> Rule | None:
        package, _, name = label.removeprefix("//").partition(":")
        found = self.packages.get(package)
        return found.rules.get(name) if found else None
