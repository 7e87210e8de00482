"""The `once` command line. Imports only click up front: each command imports what it needs,
so `once --version` stays as cheap as importing click."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from once.errors import OnceError

# Exit codes of the user contract (ARCHITECTURE.md).
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    if directory is not None:
        if not directory.is_dir():
            raise click.BadParameter(f"{directory} is not a folder", param_hint="-C")
        ctx.obj = directory.resolve()
    else:
        ctx.obj = Path.cwd()


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Commands to run at once [default: number of CPUs].",
)
@click.option("--force", is_flag=True, help="Run every command even if the cache has it.")
@click.pass_obj
def run(cwd: Path, targets: tuple[str, ...], jobs: int | None, force: bool) -> None:
    """Run TARGETS: a rule name (in every package, or the package you are in) or a label
    such as //libs/core:build, and everything they depend on."""
    import time

    from once import _core
    from once.config import load_workspace
    from once.fingerprint import compute_fingerprints
    from once.graph import build_graph, select_targets
    from once.run import Console, Outcome, Runner, default_cache_dir, summary

    started = time.monotonic()
    workspace = load_workspace(cwd)
    actions = build_graph(workspace, select_targets(workspace, list(targets), cwd))
    fingerprints, _ = compute_fingerprints(workspace, actions, os.environ)
    console = Console(sys.stdout.buffer)
    store: _core.Store | None
    try:
        store = _core.Store(str(default_cache_dir()))
    except OSError as err:
        click.echo(f"once: warning: caching is off for this run: {err}", err=True)
        store = None
    runner = Runner(workspace, fingerprints, store, console, force=force)
    results = runner.run(actions, jobs or os.cpu_count() or 1)
    console.status(summary(results, time.monotonic() - started))
    if any(result.outcome is Outcome.FAILED for result in results):
        sys.exit(EXIT_FAILED)


@cli.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def hash_command(paths: tuple[Path, ...]) -> None:
    """Print the BLAKE3 digest of each file as b3sum does; folders are walked."""
    from once import _core

    for line in _core.b3sum_lines([str(path) for path in paths]):
        click.echo(line)


def main() -> NoReturn:
    if sys.argv[1:] in (["--version"], ["-V"]):
        # The fast path: no subcommand machinery for the most common probe of a tool.
        print(f"once {_version()}")
        sys.exit(0)
    try:
        cli.main(standalone_mode=False, prog_name="once")
    except OnceError as err:
        _fail(str(err), err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        _fail("interrupted", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except FileNotFoundError as err:
        _fail(f"{err.filename}: no such file or directory", EXIT_USAGE)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        _fail(f"{where}{err.strerror or err}", EXIT_FAILED)
    sys.exit(0)


def _fail(message: str, code: int) -> NoReturn:
    print(f"once: error: {message}", file=sys.stderr)
    sys.exit(code)
