"""What an action's key takes from outside the workspace's files: the platform, the declared
environment variables and the output of the rule's tool probes.

Light (`quick.py` keys actions before anything else of the front loads): `fnmatch` and
`subprocess` are imported only for rules that declare env patterns or tools."""

from __future__ import annotations

import marshal
import os
import sys
import time

from once.layout import STATE_DIR

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping

    from once.stamps import Signature


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
    """Runs each `tools` probe once per run; its output (and failure) enters the key. Also
    digests the program each command starts (`executables`): a tool upgrade that changes
    results is a miss even when no probe was declared."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = os.fspath(root)
        self._outputs: dict[str, str] = {}
        self._programs: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        # Digests of programs by their stat, kept in `.once/executables` between runs, so a
        # no-op stats each program instead of reading it (a `node` binary is ~100 MB).
        self._known: dict[str, tuple[Signature, str]] | None = None
        self._changed = False

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

    def executables(self, cmd: str, package: str, path: str) -> list[tuple[str, str]]:
        """("executable WORD", digest) of the program `cmd` starts (its first word, found on
        `path` as the shell would), and ("interpreter WORD", digest) of the interpreter of a
        `#!` script; none for a shell builtin or a first word the shell expands."""
        word = _first_word(cmd)
        if word is None:
            return []
        # Worked out once per program: a thousand steps start a handful of programs.
        key = (word, package if "/" in word else "", path)
        if key not in self._programs:
            self._programs[key] = self._digest_programs(word, package, path)
        return self._programs[key]

    def _digest_programs(self, word: str, package: str, path: str) -> list[tuple[str, str]]:
        found = _which(word, os.path.join(self._root, package), path)
        if found is None:
            return []
        pairs = [(f"executable {word}", self._digest(found))]
        interpreter = _interpreter(found)
        if interpreter is not None:
            program = _which(interpreter, os.path.dirname(found), path)
            if program is not None:
                pairs.append((f"interpreter {interpreter}", self._digest(program)))
        return pairs

    def _digest(self, program: str) -> str:
        from once import _core  # noqa: PLC0415 - loaded already by every run
        from once.stamps import settled, signature  # noqa: PLC0415

        real = os.path.realpath(program)
        known = self._load()
        try:
            sig = signature(real)
        except OSError:
            return "unreadable"
        kept = known.get(real)
        if kept is not None and kept[0] == sig:
            return kept[1]
        digest = _core.hash_files([real])[0]
        # A program replaced in the same clock tick as this read could keep its stat: such a
        # digest is used now but not kept (the racy-timestamp rule).
        if settled(sig, time.time_ns()):
            known[real] = (sig, digest)
            self._changed = True
        return digest

    def _load(self) -> dict[str, tuple[Signature, str]]:
        if self._known is None:
            from once.atomic_file import read_sealed  # noqa: PLC0415

            self._known = {}
            data = read_sealed(os.path.join(self._root, STATE_DIR, EXECUTABLES_NAME))
            try:
                loaded = marshal.loads(data) if data else {}  # noqa: S302 - plain values only
                if isinstance(loaded, dict):
                    self._known = loaded
            except (EOFError, ValueError, TypeError):
                pass  # damaged: digest again
        return self._known

    def save(self) -> None:
        """Keep the digests worked out this run, where a run has made the state folder."""
        state = os.path.join(self._root, STATE_DIR)
        if not self._changed or self._known is None or not os.path.isdir(state):
            return
        from once.atomic_file import write_sealed  # noqa: PLC0415

        try:
            write_sealed(os.path.join(state, EXECUTABLES_NAME), marshal.dumps(self._known))
        except OSError as err:
            from once.errors import os_error_message  # noqa: PLC0415
            from once.kept_state import unsaved  # noqa: PLC0415

            unsaved("the program digests", os_error_message(err))  # read again next time
        self._changed = False


# In the state folder: program digests by stat (`ToolProbes.executables`).
EXECUTABLES_NAME = "executables"
# Characters that make a first word something the shell expands or a construct, not a program.
_SHELL_SYNTAX = frozenset("$`'\"(){}[]<>|&;*?~!\\")


def _first_word(cmd: str) -> str | None:
    """The program a `sh -c` command starts, past `NAME=value` assignments; None when the
    shell would expand it (a variable, a subshell, quotes), since then only running it tells."""
    for word in cmd.split():
        if "=" in word and not word.startswith("="):
            continue  # an assignment for the command
        return None if _SHELL_SYNTAX.intersection(word) else word
    return None


def _which(word: str, cwd: str, path: str) -> str | None:
    """Where the shell finds `word`: itself when it holds a `/` (relative to `cwd`), else the
    first executable file of that name on `path`; None for a builtin or a typo."""
    if "/" in word:
        candidate = os.path.join(cwd, word)
        return candidate if os.path.isfile(candidate) else None
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", word)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _interpreter(program: str) -> str | None:
    """The interpreter a `#!` line names (`#!/usr/bin/env python3` names `python3`)."""
    try:
        with open(program, "rb") as file:
            head = file.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        return next((word for word in words[1:] if not word.startswith("-")), None)
    return words[0]
