"""The `once` command line. Imports only click up front: each command imports what it needs,
so `once --version` stays as cheap as importing click."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from once.cli.cache import cache_group
from once.cli.workspace import complete_targets, completion_command, graph_command, init_command
from once.errors import EXIT_INTERRUPTED, EXIT_USAGE
from once.run.command import call_reporting_errors, fail, run_and_exit
from once.run.options import RUN_OPTIONS, RunRequest

# Where the prelude handed to `main` is kept for `run` (click's context meta is shared by
# every command of one invocation).
_EARLY = "once.early"


def _version() -> str:
    from once._core import __version__

    return __version__


def _print_version(ctx: click.Context) -> None:
    click.echo(f"once {_version()}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-C",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run as if once was started in DIR.",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _, value: (
        _print_version(ctx) if value and not ctx.resilient_parsing else None
    ),
    help="Show the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context, directory: Path | None) -> None:
    """once runs every build step once: it restores outputs and replays logs of steps whose
    inputs it has seen before."""
    # `main` hands in the prelude of a run (its lock and walk), for `run` to claim.
    ctx.meta[_EARLY] = ctx.obj
    if directory is not None:
        if not directory.is_dir():
            raise click.BadParameter(f"{directory} is not a folder", param_hint="-C")
        ctx.obj = directory.resolve()
    else:
        ctx.obj = Path.cwd()


if TYPE_CHECKING:
    from once.config.model import Workspace
    from once.plan.graph import Action
    from once.plan.keys import Plan
    from once.run.prelude import Early


def _prepare(
    cwd: Path, request: RunRequest, *, to_stderr: bool = False
) -> tuple[Workspace, list[Action], Plan]:
    """The actions of `request` and their keys (by what the cache has of their dependencies'
    outputs), as a run would plan and key them, running nothing and writing no state."""
    from once.plan.keys import plan
    from once.plan.targets import load_actions
    from once.run.pipeline import apply_options
    from once.state.cache_files import open_store

    apply_options(request)
    workspace, actions = load_actions(
        cwd,
        request.targets,
        affected=request.affected,
        since=request.since,
        to_stderr=to_stderr,
    )
    store = open_store(quiet=True)
    return (
        workspace,
        actions,
        plan(workspace, actions, os.environ, store=store, reprobe=request.force),
    )


def _run_options(command: Callable[..., None]) -> Callable[..., None]:
    """`run`'s click options, made from their one description (`once.run.options.RUN_OPTIONS`)."""
    for option in reversed(RUN_OPTIONS):
        kind: click.ParamType[Any] | None = None
        if option.choices is not None:
            kind = click.Choice(option.choices)
        elif option.minimum is not None:
            kind = click.IntRange(min=option.minimum)
        command = click.option(
            *option.names,
            option.dest,
            is_flag=not option.takes_value,
            type=kind,
            default=option.default,
            show_default=option.show_default,
            metavar=option.metavar,
            help=option.help,
        )(command)
    return command


@cli.command()
@click.argument("targets", nargs=-1, shell_complete=complete_targets)
@_run_options
@click.pass_obj
def run(
    cwd: Path,
    targets: tuple[str, ...],
    jobs: int | None,
    force: bool,
    output_logs: str,
    dry_run: bool,
    as_json: bool,
    link: str,
    affected: bool,
    since: str | None,
    env_mode: str | None,
    remote_read_only: bool,
) -> None:
    """Run TARGETS and everything they depend on, restoring from the cache what it has.

    A target is a rule name (that rule in every package, or in the package you are in) or a
    label such as //libs/core:build.

    On a terminal a live line shows the steps done, running, cached and failed; in CI (CI
    set) or when piped, each event is a plain line. Exit 0 when every step succeeded, 1 when
    one failed (its dependents are skipped), 2 for bad usage or configuration."""
    from once.ui.console import log_mode

    if as_json and not dry_run:
        raise click.UsageError("--json needs --dry-run")
    if not targets and not (affected or since):
        raise click.UsageError("name a TARGET to run (a rule name or a label), or use --affected")
    request = RunRequest(
        list(targets),
        output_logs=log_mode(output_logs),
        jobs=jobs,
        force=force,
        link=link,
        affected=affected,
        since=since,
        env_mode=env_mode,
        remote_read_only=remote_read_only,
    )
    if dry_run:
        # With --json, stdout is the JSON document alone; the headline goes to stderr.
        workspace, actions, keyed = _prepare(cwd, request, to_stderr=as_json)
        _print_dry_run(workspace, actions, keyed, as_json=as_json)
        return
    # Parsed by click only when the light parser left it (options.parse_run): the same run.
    run_and_exit(request, str(cwd), click.get_current_context().meta.get(_EARLY))


def _print_dry_run(
    workspace: Workspace, actions: list[Action], plan: Plan, *, as_json: bool
) -> None:
    import json

    from once.layout import STATE_DIR
    from once.state.history import History
    from once.ui.explain import summary

    store = plan.store
    history = History(workspace.root / STATE_DIR)
    rows = []
    for action in actions:
        fingerprint = plan.fingerprints[action.label]
        key = fingerprint.key
        cached = bool(action.rule.cache and store and key and store.lookup(key))
        spec = json.loads(fingerprint.spec())
        waits_for = fingerprint.waits_for()
        rows.append(
            {
                "label": action.label,
                "key": key,
                "cached": cached,
                "cache": action.rule.cache,
                "deps": list(action.deps),
                "waits_for": waits_for,
                # Set here but not seen by the command (strict mode): names, never values.
                "withheld": _withheld(action),
                "spec": spec,
            }
        )
        if not as_json:
            if cached:
                why = "cached"
            elif key is None:
                why = f"would run after {waits_for}: its key holds what that produces"
            else:
                why = f"would run: {summary(history.last_spec(action.label), spec)}"
            click.echo(f"{action.label}: {why}")
    if as_json:
        click.echo(json.dumps({"actions": rows}, indent=2))


def _withheld(action: Action) -> list[str]:
    """The variables set here that the action's command would not see (strict mode)."""
    from once.plan.context import command_env, env_mode

    # Worked out once per set of declarations, as the scheduler does: matching every variable
    # against every pattern for each of 1,000 steps cost a dry run 0.62 s.
    rule = action.rule
    declared = (rule.env_mode, rule.env, rule.pass_env)
    if declared not in _WITHHELD:
        mode = env_mode(rule.env_mode, os.environ)
        _WITHHELD[declared] = command_env(mode, rule.env, rule.pass_env, os.environ)[1]
    return list(_WITHHELD[declared])


# `_withheld`'s answers: the environment is this process's, the same for all its runs.
_WITHHELD: dict[tuple[object, ...], list[str]] = {}


@cli.command()
@click.argument("targets", nargs=-1, shell_complete=complete_targets)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rule.")
@click.pass_obj
def status(cwd: Path, targets: tuple[str, ...], as_json: bool) -> None:
    """For each rule of TARGETS (default: every rule here), whether the cache has it, and
    in one line why not."""
    workspace, actions, plan = _prepare(cwd, RunRequest(list(targets)))
    _print_dry_run(workspace, actions, plan, as_json=as_json)


@cli.command()
@click.argument("target", shell_complete=complete_targets)
@click.pass_obj
def why(cwd: Path, target: str) -> None:
    """Name exactly what changed in TARGET since its last run: input files, env variables,
    command, tool outputs or dependencies (followed down to their own changes)."""
    import json

    from once.layout import STATE_DIR
    from once.plan.graph import select_targets
    from once.state.history import History, Spec
    from once.ui.explain import explain

    workspace, actions, plan = _prepare(cwd, RunRequest([target]))
    plan_action = {action.label: action for action in actions}
    history = History(workspace.root / STATE_DIR)

    def now(label: str) -> Spec | None:
        fingerprint = plan.fingerprints.get(label)
        return json.loads(fingerprint.spec()) if fingerprint else None

    store = plan.store
    for label in select_targets(workspace, [target], cwd):
        fingerprint = plan.fingerprints[label]
        key = fingerprint.key
        last = history.last_key(label)
        if key is None:
            head = (
                f"{label}: not keyed yet: its key holds what {fingerprint.waits_for()} "
                "produces, which the cache does not have"
            )
        else:
            cached = store is not None and store.lookup(key) is not None
            head = f"{label}: key {key[:12]}, {'cached' if cached else 'not cached'}"
            if last and last != key:
                head += f"; last run had key {last[:12]}"
        click.echo(head)
        withheld = _withheld(plan_action[label])
        if withheld:
            click.echo(f"  runs without (strict environment): {', '.join(withheld)}")
        spec = now(label) or {}
        for tool, output in spec.get("tools", []):
            if not tool.startswith(("executable ", "interpreter ")):  # those are digests
                text, _, status = output.rpartition("\n")
                first = text.splitlines()[0] if text else ""
                click.echo(f"  tool probe {tool!r}: {first!r} {status}")
        lines = explain(label, history.last_spec, now)
        # The headline above already names the label; keep only what changed under it.
        for line in lines[1:] if lines[0] == f"{label}:" else lines:
            click.echo(line)


@cli.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def hash_command(paths: tuple[str, ...]) -> None:
    """Print the BLAKE3 digest of each file as b3sum does; folders are walked."""
    # The paths go as given, so each line names its file as b3sum would (`./a` stays `./a`).
    from once.hash_command import print_b3sum

    code = print_b3sum(list(paths))
    if code:
        sys.exit(code)


cli.add_command(cache_group)
cli.add_command(graph_command)
cli.add_command(init_command)
cli.add_command(completion_command)


def main(early: Early | None = None) -> NoReturn:
    """The CLI; `early`: the prelude `__main__` started for a run, if it did."""

    def run_cli() -> int:
        try:
            cli.main(standalone_mode=False, prog_name="once", obj=early)
        except click.ClickException as err:
            return fail(_one_line(err), EXIT_USAGE)
        except click.exceptions.Abort:
            return fail("interrupted", EXIT_INTERRUPTED)
        return 0

    sys.exit(call_reporting_errors(run_cli))


def _one_line(err: click.ClickException) -> str:
    """click's usage errors as one line, with where to read more: click prints a usage block,
    a blank line and the message, which buries the message in a wall of text."""
    message = " ".join(err.format_message().split())
    ctx = getattr(err, "ctx", None)
    if isinstance(err, click.UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message
