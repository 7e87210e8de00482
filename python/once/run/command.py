"""`once run TARGET...` without the command line's parsing: loading the workspace, keeping the
plan for the fast path, running the steps and reporting them. `cli.run` calls it after click
has parsed the options; `__main__` calls `run_plain` directly for a plain run the fast path
could not answer (a step to run), so that such a run never imports click (~45 ms)."""

from __future__ import annotations

import os
import sys
import time

from once.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, OnceError, os_error_message

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import NoReturn

    from once.api import OutputLogs
    from once.config.model import Workspace
    from once.plan.graph import Action
    from once.plan.steps import Step
    from once.run.prelude import Early


def load(cwd: Path, targets: list[str]) -> tuple[Workspace, list[Action]]:
    """Load the workspace and resolve the targets (all rules in scope when none)."""
    from once.config import load_workspace
    from once.plan.graph import all_targets, build_graph, select_targets

    workspace = load_workspace(cwd)
    labels = select_targets(workspace, targets, cwd) if targets else all_targets(workspace, cwd)
    return workspace, build_graph(workspace, labels)


def keep_plan(
    cwd: Path,
    targets: tuple[str, ...],
    workspace: Workspace,
    actions: list[Action],
    early: Early | None,
) -> list[Step] | None:
    """Keep this command's plan for the fast path (run/quick.py) when that path could answer it
    next time: the workspace is kept under stamps, and no step needs the scheduler (a step
    that is never cached always runs). A remote cache does not stop it: a run whose steps are
    all local hits never asks the remote. Returns the steps it kept, which the
    run keys without working them out again (`early`: the prelude, whose fast path may have
    loaded this very plan)."""
    from once.layout import STATE_DIR
    from once.plan import steps as plans
    from once.plan.keys import plan_steps

    if workspace.stamps is None or not actions:
        return None
    if not all(action.rule.cache for action in actions):
        return None
    state_dir = str(workspace.root / STATE_DIR)
    key = (os.path.realpath(cwd), targets)
    steps = plan_steps(workspace, actions)
    if early is not None and early.keyed_steps() == steps:
        return steps  # the fast path loaded this very plan moments ago, under the same lock
    kept = plans.load(state_dir, key)
    if kept is None or kept[0] != steps:
        plans.save(state_dir, workspace.stamps, key, steps)
    return steps


def run_steps(
    workspace: Workspace,
    actions: list[Action],
    *,
    output_logs: OutputLogs,
    started: float,
    max_bytes: int,
    steps: list[Step] | None,
    jobs: int | None = None,
    force: bool = False,
    link: str = "copy",
    remote_read_only: bool = False,
    early: Early | None = None,
) -> None:
    """Run `actions` (and report them, from `started`); exit 1 when a step failed."""
    from once.run.session import execute
    from once.ui.console import summary
    from once.ui.terminal import make_console

    console = make_console(sys.stdout.buffer, output_logs, len(actions))
    results = execute(
        workspace,
        actions,
        console,
        jobs=jobs,
        force=force,
        link=link,
        remote_read_only=remote_read_only,
        max_bytes=max_bytes,
        steps=steps,
        early=early,
    )
    console.status(summary(results, time.monotonic() - started))
    if any(result.outcome == "failed" for result in results):
        sys.exit(EXIT_FAILED)


def run_plain(
    early: Early, cwd: Path, targets: list[str], output_logs: OutputLogs, jobs: int | None
) -> NoReturn:
    """`once run [--output-logs MODE] [-j N] TARGET...` in `cwd`, as `cli.run` runs it, and
    exit; `early` is its prelude."""
    from once.run.cache_bound import run_cache_bound

    def run() -> None:
        max_bytes = run_cache_bound()
        started = time.monotonic()
        workspace, actions = load(cwd, targets)
        if not actions:
            return
        steps = keep_plan(cwd, tuple(targets), workspace, actions, early)
        run_steps(
            workspace,
            actions,
            output_logs=output_logs,
            started=started,
            max_bytes=max_bytes,
            steps=steps,
            jobs=jobs,
            early=early,
        )

    exit_reporting_errors(run)


def exit_reporting_errors(call: Callable[[], object]) -> NoReturn:
    """Call `call` and exit 0; an error a user can cause exits as one line and its code."""
    try:
        call()
    except OnceError as err:
        fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except FileNotFoundError as err:
        fail(f"{err.filename}: no such file or directory", EXIT_USAGE)
    except OSError as err:
        fail(os_error_message(err), EXIT_FAILED)
    sys.exit(0)


def fail(message: str, code: int) -> NoReturn:
    print(f"once: error: {message.translate(_LINE_BREAKS)}", file=sys.stderr)
    sys.exit(code)


# An error is one line, whatever a value quoted in it holds (a file name, a TOML string).
_LINE_BREAKS = {ord(char): repr(char)[1:-1] for char in "\0\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}
