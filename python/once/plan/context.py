"""What an action's key takes from outside the workspace's files: the platform, the declared
environment variables and the output of the rule's tool probes.

Light (a run keys its kept plan before anything else of the front loads, run/pipeline.py):
`fnmatch` and `subprocess` are imported only for rules that declare env patterns or tools."""

from __future__ import annotations

import marshal
import os
import sys
import time

from once.layout import STATE_DIR

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from once.state.stamps import Signature


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
    """Runs each `tools` probe at most once per run, all of a run's probes at once; its output
    (and failure) enters the key. A probe's output is kept in `.once/probes` and used again
    while the program it starts (its first word on PATH, and a `#!` script's interpreter) has
    the same stat and digest, and the probe sees the same command and environment: a no-op
    starts no probe. A probe whose first word is not a program on PATH (a shell builtin, a
    variable), whose program is a script or a link to a program of another name (a version
    manager's shim or proxy, which picks the real program from files of its own), that names
    a file (`cat VERSION`), or that failed runs every time. `once run --force` runs every probe
    again (`reprobe`: no kept output is used). Also digests the program each command starts
    (`executables`): a tool upgrade that changes results is a miss even when no probe was
    declared."""

    def __init__(self, root: str | os.PathLike[str], *, reprobe: bool = False) -> None:
        self._root = os.fspath(root)
        self.reprobe = reprobe
        self._outputs: dict[str, str] = {}
        # Outputs kept between runs: command -> (what it was run under, output).
        self._kept: dict[str, tuple[ProbeKey, str]] | None = None
        self._kept_changed = False
        self._programs: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        # Digests of programs by their stat, kept in `.once/executables` between runs, so a
        # no-op stats each program instead of reading it (a `node` binary is ~100 MB).
        self._known: dict[str, tuple[Signature, str]] | None = None
        self._changed = False

    def output(self, command: str) -> str:
        """The output of the probe `command` (run it first with `run_all` to run many at once)."""
        if command not in self._outputs:
            self.run_all([command], os.environ)
        return self._outputs[command]

    def run_all(self, commands: Iterable[str], environ: Mapping[str, str]) -> None:
        """Find the output of each probe of `commands`: kept from an earlier run where nothing
        it depends on changed, else by running it; those left to run run in parallel (each
        mostly waits on its own process: ~0.25 s for a `node --version`)."""
        env = {name: value for name, value in environ.items() if name not in _NOT_WORTH_NAMING}
        env_items = tuple(sorted(env.items()))
        path = environ.get("PATH", "")
        kept = self._load_kept()
        to_run: list[tuple[str, ProbeKey | None]] = []
        for command in dict.fromkeys(commands):
            if command in self._outputs:
                continue
            simple = _simple(command) and not _names_a_file(command, self._root)
            programs = tuple(self.executables(command, "", path)) if simple else ()
            if len(programs) != 1 or _may_dispatch(command, self._root, path):
                programs = ()  # a script or a proxy: run it
            key = (command, programs, env_items) if programs else None
            known = kept.get(command)
            if key is not None and known is not None and known[0] == key and not self.reprobe:
                self._outputs[command] = known[1]
            else:
                to_run.append((command, key))
        if not to_run:
            return
        import subprocess  # noqa: PLC0415 - only a probe that is not kept starts a process
        import threading  # noqa: PLC0415

        def probe(command: str, key: ProbeKey | None) -> None:
            done = subprocess.run(
                ["sh", "-c", command], cwd=self._root, env=env, capture_output=True, check=False
            )
            text = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
            output = f"{text}\n[exit {done.returncode}]"
            self._outputs[command] = output
            # A failure may be passing (a network, a lock): run it again next time.
            if key is not None and done.returncode == 0:
                kept[command] = (key, output)
                self._kept_changed = True

        threads = [
            threading.Thread(target=probe, args=item, name="once-probe") for item in to_run[1:]
        ]
        for thread in threads:
            thread.start()
        probe(*to_run[0])
        for thread in threads:
            thread.join()
        for command, _ in to_run:
            if command not in self._outputs:  # its thread died: an error, as a probe's
                self._outputs[command] = "probe could not be started\n[exit 127]"

    def _load_kept(self) -> dict[str, tuple[ProbeKey, str]]:
        if self._kept is None:
            self._kept = _load_marshal(os.path.join(self._root, STATE_DIR, PROBES_NAME))
        return self._kept

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
        from once.state.stamps import settled, signature  # noqa: PLC0415

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
            self._known = _load_marshal(os.path.join(self._root, STATE_DIR, EXECUTABLES_NAME))
        return self._known

    def save(self) -> None:
        """Keep the digests and probe outputs worked out this run, where a run has made the
        state folder."""
        if self._changed and self._known is not None:
            _save_marshal(self._root, EXECUTABLES_NAME, self._known, "the program digests")
            self._changed = False
        if self._kept_changed and self._kept is not None:
            _save_marshal(self._root, PROBES_NAME, self._kept, "the tool probe outputs")
            self._kept_changed = False


# What a kept probe output was found under: the command, the ("executable WORD", digest) and
# ("interpreter WORD", digest) pairs of the programs it starts, and the environment it saw.
ProbeKey = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]


def _load_marshal(path: str) -> dict[Any, Any]:
    """A dict kept in the state folder; empty when there is none, or it is damaged."""
    from once.state.atomic_file import read_sealed  # noqa: PLC0415

    data = read_sealed(path)
    try:
        loaded = marshal.loads(data) if data else {}  # noqa: S302 - plain values only
    except (EOFError, ValueError, TypeError):
        return {}  # damaged: worked out again
    return loaded if isinstance(loaded, dict) else {}


def _save_marshal(root: str, name: str, value: dict[Any, Any], what: str) -> None:
    state = os.path.join(root, STATE_DIR)
    if not os.path.isdir(state):
        return
    from once.state.atomic_file import write_sealed  # noqa: PLC0415

    try:
        write_sealed(os.path.join(state, name), marshal.dumps(value))
    except OSError as err:
        from once.errors import os_error_message  # noqa: PLC0415
        from once.state.kept_state import unsaved  # noqa: PLC0415

        unsaved(what, os_error_message(err))  # worked out again next time


# In the state folder: program digests by stat (`ToolProbes.executables`).
EXECUTABLES_NAME = "executables"
# In the state folder: tool probe outputs (`ToolProbes.run_all`).
PROBES_NAME = "probes"
# Characters that make a first word something the shell expands or a construct, not a program.
_SHELL_SYNTAX = frozenset("$`'\"(){}[]<>|&;*?~!\\")


# Commands `sh` runs itself, whatever program of the same name lies on PATH.
_SHELL_BUILTINS = frozenset(
    [
        ".",
        ":",
        "[",
        "alias",
        "bg",
        "cd",
        "command",
        "echo",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "fg",
        "getopts",
        "hash",
        "jobs",
        "kill",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "source",
        "test",
        "times",
        "trap",
        "true",
        "type",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
    ]
)


def _simple(command: str) -> bool:
    """Whether `command` only starts its first word with arguments: no builtin, no variable,
    quote, redirection, pipe or list (`a; b`), whose result the program's stat cannot vouch
    for. Only such a probe's output is kept between runs."""
    word = _first_word(command)
    return (
        word is not None
        and word not in _SHELL_BUILTINS
        and not _SHELL_SYNTAX.intersection(command)
        and "=" not in command.split(maxsplit=1)[0]
    )


def _may_dispatch(command: str, cwd: str, path: str) -> bool:
    """Whether the program `command` starts may hand over to another one chosen by a file its
    stat does not cover: a link to a program of another name (rustup's `rustc`, volta's
    `node`), or one of several hard links to it. Scripts (pyenv's shims) are told apart by
    their interpreter (`executables`)."""
    word = _first_word(command)
    found = _which(word, cwd, path) if word is not None else None
    if word is None or found is None:
        return True
    real = os.path.realpath(found)
    try:
        links = os.stat(real).st_nlink
    except OSError:
        return True
    return os.path.basename(real) != os.path.basename(word) or links > 1


def _names_a_file(command: str, cwd: str) -> bool:
    """Whether an argument of `command` names a file (a path with `/`, or a name found in
    `cwd`, where probes run): `cat VERSION` prints what the file holds, which the program's
    stat cannot vouch for."""
    return any(
        "/" in word or os.path.lexists(os.path.join(cwd, word)) for word in command.split()[1:]
    )


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
