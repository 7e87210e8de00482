"""What an action's key takes from outside the workspace's files: the platform, the declared
environment variables and the output of the rule's tool probes.

Light (`quick.py` keys actions before anything else of the front loads): `fnmatch` and
`subprocess` are imported only for rules that declare env patterns or tools."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping


# What of the environment a command sees. "strict": the declared `env` and `pass_env`
# variables and the base set below, nothing else, so that nothing undeclared changes a result
# (`BROWSERSLIST="ie 11"` making an ie11 build under the normal key). "loose": everything.
ENV_MODES = ("strict", "loose")
# Overrides the workspace's `env_mode` for one run (`once run --env-mode` sets it).
ENV_MODE_VAR = "ONCE_ENV_MODE"
# Passed in strict mode without entering the key: where programs are, who and where the user
# is, the terminal, the locale and the temporary folder, and what Windows cannot start without.
BASE_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "TMPDIR",
    "TMP",
    "TEMP",
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "SYSTEMROOT",
    "COMSPEC",
    "PATHEXT",
    "WINDIR",
)


def env_mode(configured: str, environ: Mapping[str, str]) -> str:
    """The environment mode of a run: `$ONCE_ENV_MODE` wins over the workspace's."""
    mode = environ.get(ENV_MODE_VAR) or configured
    if mode not in ENV_MODES:
        from once.errors import UsageError  # noqa: PLC0415 - only for the error

        raise UsageError(f"{ENV_MODE_VAR}: {mode!r} is not an environment mode (strict or loose)")
    return mode


def command_env(
    mode: str, env: tuple[str, ...], pass_env: tuple[str, ...], environ: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The environment a command runs with, and the names of the variables set here that it
    does not see (none in loose mode)."""
    if mode == "loose":
        return dict(environ), []
    import fnmatch  # noqa: PLC0415 - loads `re`; a run of hits starts no command

    patterns = (*BASE_ENV, *env, *pass_env)
    passed = {
        name: value
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }
    withheld = sorted(
        name
        for name in environ
        if name not in passed and name not in _NOT_WORTH_NAMING and not name.startswith("ONCE_")
    )
    return passed, withheld


# Set by every shell for itself (and once's own settings): never what a command missed.
_NOT_WORTH_NAMING = frozenset(("PWD", "OLDPWD", "SHLVL", "_"))


def platform_tag() -> str:
    # os.uname's machine is what platform.machine() reports on POSIX, without importing it.
    return f"{sys.platform}-{os.uname().machine}"


def declared_env(patterns: tuple[str, ...], environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(name, value) of every set variable matching a declared name or pattern (`API_*`)."""
    if not patterns:
        return []  # most rules declare none: skip a pass over the whole environment
    import fnmatch  # noqa: PLC0415 - loads `re`, which a rule without patterns never needs

    return sorted(
        (name, value)
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    )


class ToolProbes:
    """Runs each `tools` probe once per run; its output (and failure) enters the key."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
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
