"""Every command's --help is complete, every error a user can cause is one line with exit 2,
and the CLI stays cheap to start."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from once.cli import cli

from tests.helpers import Workspace, three_packages


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


ALL_COMMANDS = commands(cli)


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(path) or "once")
def test_every_command_documents_itself_and_every_option(
    ws: Workspace, path: tuple[str, ...]
) -> None:
    command = _command(path)
    assert command.help, path
    assert len(command.help) > 30, path
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{' '.join(path)} {param.opts} has no help"
    done = ws.once(*path, "--help")
    assert done.code == 0
    assert done.out.startswith(f"Usage: once {' '.join(path)}".rstrip())


def test_the_known_commands_are_all_there() -> None:
    names = {" ".join(path) for path in ALL_COMMANDS}
    for name in ("run", "status", "why", "graph", "hash", "init", "completion", "cache stats"):
        assert name in names


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["run"],
        ["run", "nope"],
        ["run", "build", "--jobs", "0"],
        ["run", "build", "--json"],
        ["run", "build", "--output-logs", "some"],
        ["run", "--since", "HEAD"],
        ["status", "nope"],
        ["why"],
        ["why", "//libs/zzz:build"],
        ["graph", "--format", "svg"],
        ["hash"],
        ["completion"],
        ["cache", "gc", "--max-size", "lots"],
        ["-C", "/no/such/folder", "run", "build"],
        ["run", "build", "--no-such-option"],
    ],
    ids=" ".join,
)
def test_user_errors_are_one_line_exit_2(ws: Workspace, args: list[str]) -> None:
    three_packages(ws)
    done = ws.once(*args)
    assert done.code == 2, done
    assert done.err.startswith("once: error: "), done.err
    assert done.err.count("\n") == 1, done.err
    assert "Traceback" not in done.err
    assert ws.ran() == []


def test_import_once_and_version_stay_cheap() -> None:
    """`import once` and the CLI module load no configuration, graph or run machinery; the
    API loads on first use of one of its names."""
    code = (
        "import sys, once, once.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('once')))\n"
        "once.load\n"
        "print('once.api' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, api_loaded = done.stdout.splitlines()
    assert eval(loaded) == [  # noqa: S307 - our own repr of a list of names
        "once",
        "once._core",
        "once.cli",
        "once.cli.cache",
        "once.cli.workspace",
        "once.errors",
        "once.run",
        "once.run.cache_bound",
        "once.run.command",
        "once.run.options",  # the one description of `run`'s options
        "once.state",
        "once.state.cache_files",
        "once.ui",
        "once.ui.console",  # the log modes, a choice of `run --output-logs`
        "once.value",
    ]
    assert api_loaded == "True"
