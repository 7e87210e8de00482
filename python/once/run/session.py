"""One `once run` from start to end, shared by the CLI and the Python API: under the
workspace lock, key the actions, run them (local store and remote cache), let uploads finish,
bound the cache, and remember each rule's key for `once why`."""

from __future__ import annotations

import os

from once.config.model import Workspace
from once.layout import STATE_DIR
from once.plan.graph import Action
from once.plan.keys import plan
from once.plan.steps import Step
from once.run.cache_bound import finish_run
from once.run.prelude import Early
from once.run.remote import open_remote, start_remote
from once.run.scheduler import Runner, open_store
from once.state.history import SPECS, History
from once.state.kept_state import remove_leftovers
from once.state.lock import workspace_lock
from once.ui.console import Console, Result


def execute(
    workspace: Workspace,
    actions: list[Action],
    console: Console,
    *,
    jobs: int | None = None,
    force: bool = False,
    link: str = "copy",
    remote_read_only: bool = False,
    max_bytes: int,
    steps: list[Step] | None = None,
    early: Early | None = None,
) -> list[Result]:
    """`early`: the lock and walk `once run` started before its front was imported (and what
    the fast path worked out before it left the run to this one), claimed here."""
    remote = open_remote(workspace, read_only=remote_read_only)
    state_dir = workspace.root / STATE_DIR
    held = early.claim_lock(state_dir) if early is not None else None
    with workspace_lock(state_dir, held=held):
        # Keyed under the lock: a run that waited must see what the run before it left.
        known = (
            early.claim_keys(workspace.root, steps)
            if early is not None and steps is not None
            else None
        )
        claimed = (
            early.claim_entries([key for key, _ in known[0]])
            if early is not None and known is not None
            else None
        )
        entries, settled = claimed if claimed is not None else (None, {})
        store = open_store()
        keyed = plan(
            workspace,
            actions,
            os.environ,
            snapshot=early.claim_snapshot(workspace.root) if early is not None else None,
            steps=steps,
            known=known,
            store=store,
        )
        runner = Runner(
            workspace,
            keyed.fingerprints,
            store,
            console,
            force=force,
            snapshot=keyed.snapshot,
            link=link,
            remote=start_remote(remote, store, actions, keyed, force=force),
            entries=entries,
            settled=settled,
        )
        try:
            results = runner.run(actions, jobs or os.cpu_count() or 1)
        finally:
            console.close()  # the live line goes before anything else is printed
        if runner.remote is not None:
            runner.remote.finish()  # uploads end before the run does (and before collection)
        finish_run(runner, actions, results, max_bytes)
        history = History(state_dir)
        for result in results:
            # Only a step that succeeded: `once why` compares with the last build that worked,
            # so after a failure it still names what changed since then.
            # Keys as the run used them: a step keyed after its dependencies ran is in the
            # runner's fingerprints, and one never keyed (a dependency not cached) has none.
            fingerprint = runner.fingerprints[result.label]
            if result.outcome not in ("failed", "skipped") and fingerprint.key is not None:
                history.record(result.label, fingerprint.key, fingerprint.spec)
        history.save()
        # Under the lock: no other run of this workspace is writing its state meanwhile.
        remove_leftovers([str(state_dir), str(state_dir / SPECS)])
    return results
