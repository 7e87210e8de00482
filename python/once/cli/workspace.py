"""Commands that help work with a workspace rather than build it: `once graph`, `once init`,
`once completion`, and the completion of targets on the command line.

Imports only click up front, like cli/: `once --version` must not pay for these."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # click loads its completion module only when completing
    from click.shell_completion import CompletionItem

SHELLS = ("bash", "zsh", "fish")
# The variable click's completion protocol reads: `_ONCE_COMPLETE=bash_complete once ...`.
COMPLETE_VAR = "_ONCE_COMPLETE"


def complete_targets(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Rule names and labels of the workspace, for the shell. Silent on any problem: a broken
    once.toml must not print a traceback into the user's command line."""
    from click.shell_completion import CompletionItem  # noqa: PLC0415 - only when completing

    from once.config import load_workspace  # noqa: PLC0415

    root = ctx.find_root()
    directory = root.params.get("directory") or Path.cwd()
    try:
        workspace = load_workspace(Path(directory))
    except Exception:  # any failure: see the docstring
        return []
    rules = [rule for package in workspace.packages.values() for rule in package.rules.values()]
    # Labels only once the user starts one; plain names are what people type most.
    words = (
        sorted({rule.label for rule in rules})
        if incomplete.startswith("/")
        else sorted({rule.name for rule in rules})
    )
    return [CompletionItem(word) for word in words if word.startswith(incomplete)]


@click.command("graph")
@click.argument("targets", nargs=-1, shell_complete=complete_targets)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "json"]),
    default="dot",
    show_default=True,
    help="dot: a Graphviz digraph (render with `dot -Tsvg`); json: every action with its "
    "deps, inputs and outputs.",
)
@click.pass_obj
def graph_command(cwd: Path, targets: tuple[str, ...], fmt: str) -> None:
    """Print the action graph of TARGETS (default: every rule here) and everything they
    depend on, with an edge from each rule to each rule it needs.

    \b
    once graph build | dot -Tsvg > graph.svg
    once graph //apps/report:build --format json
    """
    from once.cli.graph import to_dot, to_json  # noqa: PLC0415
    from once.config import load_workspace  # noqa: PLC0415 - see the module docstring
    from once.plan.graph import all_targets, build_graph, select_targets  # noqa: PLC0415

    workspace = load_workspace(cwd)
    labels = (
        select_targets(workspace, list(targets), cwd) if targets else all_targets(workspace, cwd)
    )
    actions = build_graph(workspace, labels)
    click.echo(to_dot(actions) if fmt == "dot" else to_json(actions), nl=fmt == "json")


@click.command("init")
@click.pass_obj
def init_command(cwd: Path) -> None:
    """Write a starter once.toml in the current folder (or -C DIR), with one rule per step
    found in pyproject.toml (pytest, ruff, mypy, build), package.json scripts and Makefile
    targets, and add .once/ (once's state folder) to .gitignore.

    Refuses to overwrite an existing once.toml. Review the rules it writes: declare each
    step's outputs so a cache hit can restore them."""
    from once.config.init import init  # noqa: PLC0415 - see the module docstring

    report = init(cwd)
    names = ", ".join(rule.name for rule in report.rules)
    found = f"{len(report.rules)} rules ({names})" if report.rules else "no rules (an example)"
    click.echo(f"once: wrote {_shown(report.config, cwd)} with {found}")
    if report.gitignore is not None:
        click.echo(f"once: added .once/ to {_shown(report.gitignore, cwd)}")


def _shown(path: Path, cwd: Path) -> str:
    return os.path.relpath(path, cwd) if path.is_relative_to(cwd) else str(path)


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    bash: once completion bash > ~/.local/share/bash-completion/completions/once
    zsh:  once completion zsh > "${fpath[1]}/_once"
    fish: once completion fish > ~/.config/fish/completions/once.fish
    """
    from click.shell_completion import get_completion_class  # noqa: PLC0415

    complete = get_completion_class(shell)
    root = ctx.find_root()
    if complete is None:  # every name of SHELLS is one click ships
        raise click.UsageError(f"no completion for {shell}")
    click.echo(complete(root.command, {}, "once", COMPLETE_VAR).source())
