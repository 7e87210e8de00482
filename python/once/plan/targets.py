"""The actions a command's targets name, read from the workspace's configuration: by rule name
or label, or (`--affected`) by what changed in git since a revision."""

from __future__ import annotations

import sys
from pathlib import Path

from once.config import load_workspace
from once.config.model import Workspace
from once.plan.graph import Action, all_targets, build_graph, select_targets

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from once.run.prelude import Early


def load_actions(
    cwd: str | Path,
    targets: list[str],
    *,
    affected: bool = False,
    since: str | None = None,
    walked: Early | None = None,
    to_stderr: bool = False,
) -> tuple[Workspace, list[Action]]:
    """The workspace holding `cwd` and the actions `targets` need (every rule in scope when
    none), dependencies first. With `affected`, only the targets the changes since `since`
    reach, after a headline saying what changed (on stderr with `to_stderr`, where stdout
    is a JSON document); `walked`: the run's own walk, when it started one."""
    workspace = load_workspace(Path(cwd))
    here = Path(cwd)
    if not affected:
        labels = (
            select_targets(workspace, targets, here) if targets else all_targets(workspace, here)
        )
        return workspace, build_graph(workspace, labels)
    from once.plan.affected import select_affected  # noqa: PLC0415 - runs git

    snapshot = (
        walked.snapshot if walked is not None and walked.root == str(workspace.root) else None
    )
    changes, labels = select_affected(workspace, here, targets, since, snapshot)
    count = len(changes.paths)
    print(
        f"once: {count} changed file{'' if count == 1 else 's'} since {changes.base} "
        f"({changes.commit[:12]}); {len(labels)} affected rule{'' if len(labels) == 1 else 's'}",
        file=sys.stderr if to_stderr else sys.stdout,
        flush=True,
    )
    return workspace, build_graph(workspace, labels)
