"""One `once run`, however it is asked for (the command line with any of its options, or the
Python API), in stages each run goes through once:

    start     the workspace lock and the walk (run/prelude.py), taken before the command line's
              front is imported when the workspace has run before
    plan      the command's kept plan (plan/steps.py), else the configuration read and planned
    keys      the keys kept for that plan over this very tree (state/run_keys.py), else computed
    settle    every local hit whose dependencies are hits too, in one call into the core
              (run/settle.py)
    schedule  the rest, continuing from what settling left (run/scheduler.py)
    finish    the summary, the run log, the cache's bound, the history for `once why`

A run of hits (a no-op) and a build differ only in what they import: the configuration's loader,
the rule graph, the scheduler and the remote cache load when a step must run, so a no-op on a
100,000-file workspace costs little more than its walk."""

from __future__ import annotations

import gc
import os
import time

from once import _core
from once.layout import OUTPUT_STATS
from once.plan import steps as plans
from once.plan.context import ENV_MODE_VAR, ToolProbes
from once.run import prelude
from once.run.remote_choice import check_environment
from once.run.settle import Settled, lookup, settle
from once.state import kept_state, run_keys
from once.state.cache_files import configured_max_size, open_store, record_run
from once.state.history import History
from once.ui.console import summary

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from once.config.model import Workspace
    from once.plan.graph import Action
    from once.plan.steps import DepResult, KeyAndResult, KeyRequest, Step
    from once.run.options import RunRequest
    from once.run.scheduler import Runner
    from once.ui.console import Console, Result

    # The configuration's part of a run: the workspace and the actions of its targets.
    Loaded = tuple[Workspace, list[Action]]


def run(
    request: RunRequest,
    cwd: str,
    make_console: Callable[[int], Console],
    *,
    early: prelude.Early | None = None,
    loaded: Loaded | None = None,
) -> list[Result]:
    """Run `request`, asked in the folder `cwd`, printing to the console `make_console` makes
    for the number of steps; each step's result, in dependency order. `early`: the lock and
    walk taken before the front was imported, if they were (released here); `loaded`: the
    workspace and actions when the caller has them (the Python API), else read here."""
    started = time.monotonic()
    try:
        # What a user can get wrong outside the configuration is refused before anything runs.
        check_environment(os.environ)
        configured_max_size()
        apply_options(request)
        return _Run(
            request, cwd=cwd, make_console=make_console, early=early, loaded=loaded, started=started
        ).run()
    finally:
        if early is not None:
            early.release()


def apply_options(request: RunRequest) -> None:
    """What `request`'s options change for everything after them in this process (a dry run's
    keys too): the environment mode, through the variable, which the keys, the commands and
    any once inside read alike."""
    if request.env_mode is not None:
        os.environ[ENV_MODE_VAR] = request.env_mode


class _Requests:
    """The steps' key requests, made on first use: selecting and hashing their inputs is
    skipped when their keys are kept (state/run_keys.py), and then only a step whose key
    changed since its last run needs its request (for `once why`)."""

    def __init__(
        self, root: str, steps: list[Step], snapshot: _core.Snapshot, context: plans.KeyContext
    ) -> None:
        self._root = root
        self._steps = steps
        self._snapshot = snapshot
        self._context = context
        self._requests: list[KeyRequest] | None = None
        self.files_read = 0

    def get(self) -> list[KeyRequest]:
        if self._requests is None:
            inputs = plans.select_inputs(self._snapshot, self._steps)
            self.files_read, slices = plans.hash_inputs(
                self._root, self._snapshot, self._steps, inputs
            )
            self._requests = plans.key_requests(self._steps, inputs, self._context, slices)
        return self._requests


class _Run:
    """The state one run carries from stage to stage."""

    def __init__(
        self,
        request: RunRequest,
        *,
        cwd: str,
        make_console: Callable[[int], Console],
        early: prelude.Early | None,
        loaded: Loaded | None,
        started: float,
    ) -> None:
        self.request = request
        self.cwd = cwd
        self.make_console = make_console
        self.early = early
        self.loaded = loaded
        self.started = started
        # The key context (`plans.key_context`), worked out with the keys.
        self.context: plans.KeyContext = ("", [])
        # Whether the kept plan turned out not to be what the configuration says (`_schedule`).
        self.plan_stale = False

    def run(self) -> list[Result]:
        # A short-lived process making thousands of small tuples: the cyclic collector would
        # only walk them (a few ms) to find nothing to free. On again before steps run.
        gc.disable()
        try:
            found = self._plan()
            if found is None:
                return []
            steps, plan_id = found
            start = self._start()
            if plan_id is None:
                plan_id = self._keep_plan(start, steps)
            store = open_store()
            snapshot, requests, keyed, entries = self._keys(start, store, steps, plan_id)
            output_stats = _core.OutputStats(os.path.join(start.state_dir, OUTPUT_STATS))
            settled = Settled()
            if store is not None and not self.request.force:
                try:
                    settled = settle(
                        store,
                        start.root,
                        steps,
                        keyed,
                        entries,
                        link=self.request.link,
                        output_stats=output_stats,
                        replays=self.request.output_logs == "full",
                    )
                finally:
                    _save_output_stats(output_stats)
            console = self.make_console(len(steps))
            try:
                console.hits(settled.hits)
                if settled.complete(steps):
                    results = list(settled.results.values())
                    console.close()
                    self._finish_hits(
                        start=start,
                        store=store,
                        steps=steps,
                        keyed=keyed,
                        snapshot=snapshot,
                        requests=requests,
                        results=results,
                    )
                else:
                    gc.enable()  # a build may run for hours
                    runner, history, results = self._schedule(
                        start=start,
                        store=store,
                        console=console,
                        steps=steps,
                        keyed=keyed,
                        snapshot=snapshot,
                        requests=requests,
                        settled=settled,
                    )
                    self._finish_build(start, steps, runner, history, results)
                    self._keep_built_keys(
                        start,
                        plan_id=plan_id,
                        snapshot=snapshot,
                        steps=steps,
                        runner=runner,
                        results=results,
                    )
            finally:
                console.close()  # the live line goes before anything else is printed
            start.release()
            console.status(summary(results, time.monotonic() - self.started))
            return results
        finally:
            gc.enable()

    # -- plan ------------------------------------------------------------------------------

    def _plan(self) -> tuple[list[Step], str | None] | None:
        """The run's steps, and the id of the plan kept for this command while the
        configuration it came from is unchanged; else the steps read and planned (without an
        id: `_keep_plan` keeps them once the run holds the lock). None when the targets need
        no step."""
        early = self.early
        key = self._plan_key()
        if self.loaded is None and early is not None and key is not None:
            kept = plans.load(early.state_dir, key)
            if kept is not None and kept[0]:
                return kept
        workspace, actions = self._load()
        if not actions:
            return None
        from once.plan.keys import plan_steps  # noqa: PLC0415 - with the configuration

        return plan_steps(workspace, actions), None

    def _keep_plan(self, start: prelude.Early, steps: list[Step]) -> str | None:
        """Keep the plan just made for the next run of this command (see `plans.load`); its
        id, or None when it cannot be kept."""
        key = self._plan_key()
        if key is None or self.loaded is None:
            return None
        workspace = self.loaded[0]
        stamps = workspace.stamps
        if workspace.reads is not None:
            # The workspace's first run: the state folder did not exist when the configuration
            # was read, and does now.
            from once.state.workspace_cache import keep  # noqa: PLC0415 - a first run only

            stamps = keep(workspace, start.state_dir)
        if stamps is None:
            return None
        return plans.save(start.state_dir, stamps, key, steps)

    def _plan_key(self) -> plans.PlanKey | None:
        """What the command's plan is kept under; None for one that selects by what changed."""
        if self.request.affected:
            return None
        return (self.cwd, tuple(self.request.targets))

    def _load(self) -> Loaded:
        """The workspace and the actions of the run's targets, read once."""
        if self.loaded is None:
            from once.plan.targets import load_actions  # noqa: PLC0415 - only when not kept

            request = self.request
            self.loaded = load_actions(
                self.cwd,
                request.targets,
                affected=request.affected,
                since=request.since,
                walked=self.early,
            )
        return self.loaded

    # -- start -----------------------------------------------------------------------------

    def _start(self) -> prelude.Early:
        """The lock and walk of the run's workspace: the prelude's, or taken now."""
        root = str(self.loaded[0].root) if self.loaded is not None else None
        early = self.early
        if early is not None and (root is None or early.root == root):
            return early
        if early is not None:
            early.release()  # taken for another folder (the root was found otherwise)
        assert root is not None  # noqa: S101 - no prelude means the workspace was loaded
        self.early = prelude.begin(root, self.cwd)
        return self.early

    # -- keys ------------------------------------------------------------------------------

    def _keys(
        self,
        start: prelude.Early,
        store: _core.Store | None,
        steps: list[Step],
        plan_id: str | None,
    ) -> tuple[_core.Snapshot, _Requests, list[KeyAndResult], list[_core.Entry | None]]:
        """The walk, the steps' key requests (made on demand), their (key, result) pairs and
        the store's entry (or None) of each key: kept keys when the plan and the tree are
        unchanged and every dependency still has the entry its dependents were keyed by, else
        computed."""
        key = self._plan_key()
        # Worked out during the walk: the probes and the environment need no file.
        # A forced run trusts no kept probe output either.
        probes = ToolProbes(start.root, reprobe=self.request.force)
        context = plans.key_context(steps, os.environ, probes)
        snapshot = start.snapshot()
        requests = _Requests(start.root, steps, snapshot, context)
        self.context = context
        if plan_id is not None and key is not None and store is not None:
            tree = snapshot.tree_digest()
            kept = run_keys.known(start.state_dir, key, plan_id, tree, context)
            if kept is not None:
                entries = lookup(store, kept)
                if _as_keyed(steps, kept, entries):
                    return snapshot, requests, kept, entries
        keyed = self._compute_keys(snapshot, requests, store)
        # After hashing: the tree now has every selected file's digest.
        self._keep_keys(start, plan_id, snapshot, keyed)
        entries = lookup(store, keyed) if store is not None else [None] * len(steps)
        return snapshot, requests, keyed, entries

    def _keep_keys(
        self,
        start: prelude.Early,
        plan_id: str | None,
        snapshot: _core.Snapshot,
        keyed: list[KeyAndResult],
    ) -> None:
        """Keep `keyed`, computed over `snapshot`, for the next run of this plan over the same
        tree (state/run_keys.py); not unless every key is known."""
        key = self._plan_key()
        if plan_id is None or key is None or not all(k is not None for k, _ in keyed):
            return
        run_keys.keep(
            start.state_dir,
            key,
            plan_id=plan_id,
            tree=snapshot.tree_digest(),
            context=self.context,
            keys=keyed,
        )

    def _compute_keys(
        self, snapshot: _core.Snapshot, requests: _Requests, store: _core.Store | None
    ) -> list[KeyAndResult]:
        try:
            return _core.action_keys(snapshot, requests.get(), store)
        except (plans.SourceUnderOutputGlob, _core.GlobError):
            # Worded with the rule and its file, which only the configuration knows: keyed
            # from it, the same problem is raised as a configuration error.
            from once.plan.keys import plan  # noqa: PLC0415 - only to word the error

            workspace, actions = self._load()
            plan(workspace, actions, os.environ, snapshot=snapshot, store=store)
            raise

    # -- schedule --------------------------------------------------------------------------

    def _schedule(
        self,
        *,
        start: prelude.Early,
        store: _core.Store | None,
        console: Console,
        steps: list[Step],
        keyed: list[KeyAndResult],
        snapshot: _core.Snapshot,
        requests: _Requests,
        settled: Settled,
    ) -> tuple[Runner, History, list[Result]]:
        """Run what settling left, from where it left it."""
        from once.plan.keys import plan, plan_steps  # noqa: PLC0415 - a step to run
        from once.run.remote import open_remote, start_remote  # noqa: PLC0415
        from once.run.scheduler import Runner  # noqa: PLC0415

        request = self.request
        loaded_now = self.loaded is None  # the steps came from the kept plan
        workspace, actions = self._load()
        if loaded_now and plan_steps(workspace, actions) != steps:
            # The kept plan is not what the configuration says now (its stamps missed a
            # change): key afresh, and let the scheduler confirm every hit itself.
            keyed_now = None
            settled = Settled()
            self.plan_stale = True
        else:
            keyed_now = (keyed, requests.get(), requests.files_read)
        keys = plan(
            workspace,
            actions,
            os.environ,
            snapshot=snapshot,
            known=keyed_now,
            store=store,
            reprobe=request.force,
        )
        remote = open_remote(workspace, read_only=request.remote_read_only)
        history = History(start.state_dir)
        runner = Runner(
            workspace,
            keys.fingerprints,
            store,
            console,
            force=request.force,
            snapshot=snapshot,
            link=request.link,
            remote=start_remote(remote, store, actions, keys, force=request.force),
            settled=settled,
            on_result=lambda result: _record_history(history, runner, result, flush=True),
        )
        try:
            results = runner.run(actions, request.jobs or os.cpu_count() or 1)
        finally:
            console.close()
        if runner.remote is not None:
            runner.remote.finish()  # uploads end before the run does (and before collection)
        return runner, history, results

    # -- finish ----------------------------------------------------------------------------

    def _finish_hits(
        self,
        *,
        start: prelude.Early,
        store: _core.Store | None,
        steps: list[Step],
        keyed: list[KeyAndResult],
        snapshot: _core.Snapshot,
        requests: _Requests,
        results: list[Result],
    ) -> None:
        """The end of a run that every step's cache entry answered."""
        _record_run(store, results, {step.label for step in steps}, force=False)
        history = History(start.state_dir)
        by_label = {step.label: pair for step, pair in zip(steps, keyed, strict=True)}
        for index, (step, (key, _)) in enumerate(zip(steps, keyed, strict=True)):
            # Most keys are the ones recorded last time (always, over an unchanged tree): only
            # the others need their dependencies' results and a spec.
            if key is not None and history.last_key(step.label) != key:
                deps: list[DepResult] = [(dep, *by_label[dep]) for dep in step.deps]
                history.record(step.label, key, _spec(snapshot, requests, index, deps, store))
        history.save()

    def _finish_build(
        self,
        start: prelude.Early,
        steps: list[Step],
        runner: Runner,
        history: History,
        results: list[Result],
    ) -> None:
        """The end of a run that ran steps: the run log, the cache's bound, the history."""
        store = runner.store
        cacheable = {step.label for step in steps if step.cache}
        _record_run(store, results, cacheable, force=runner.force)
        ran = any(result.outcome == "ran" and result.label in cacheable for result in results)
        if store is not None and ran:
            from once.run.cache_bound import collect  # noqa: PLC0415 - after a build only

            keys = {fp.key for fp in runner.fingerprints.values() if fp.key is not None}
            collect(store, sorted(keys))
        for result in results:  # those the runner did not hand over as they came (hits)
            _record_history(history, runner, result, flush=False)
        history.save()
        # Under the lock: no other run of this workspace is writing its state meanwhile.
        kept_state.remove_leftovers([start.state_dir, os.path.join(start.state_dir, "specs")])

    def _keep_built_keys(
        self,
        start: prelude.Early,
        *,
        plan_id: str | None,
        snapshot: _core.Snapshot,
        steps: list[Step],
        runner: Runner,
        results: list[Result],
    ) -> None:
        """Keep the keys a build used, so that the run after it (a no-op, most often) takes them
        instead of selecting, hashing and keying the whole plan again: at 1,000,000 files that
        was the first no-op after every build, at twice the cost of the next ones.

        They were computed over this run's walk, and hold for the next run only if its walk
        finds the same tree: outputs the walk ignores (`dist/` in `.gitignore`) leave it as it
        was; outputs it sees change it, and the next run keys again as before. Not after a
        failure: a skipped step still has the key planned before its dependencies ran. Nor
        when the kept plan was stale: the keys are the configuration's, not the plan's."""
        if (
            runner.store is None
            or self.plan_stale
            or any(r.outcome in ("failed", "skipped") for r in results)
        ):
            return
        keyed = [
            (runner.fingerprints[step.label].key, runner.produced(step.label)) for step in steps
        ]
        self._keep_keys(start, plan_id, snapshot, keyed)


def _record_history(history: History, runner: Runner, result: Result, *, flush: bool) -> None:
    """Remember the key of a step that succeeded, as the run used it (`flush`: its spec written
    now). Only a success: `once why` compares with the last build that worked, so after a
    failure it still names what changed since then. A step keyed after its dependencies ran
    has its key in the runner's fingerprints, and one never keyed (a dependency not cached)
    has none."""
    fingerprint = runner.fingerprints[result.label]
    if result.outcome not in ("failed", "skipped") and fingerprint.key is not None:
        history.record(result.label, fingerprint.key, lambda: fingerprint.spec(runner.saved))
        if flush:
            history.flush()


def _as_keyed(
    steps: list[Step], keyed: list[KeyAndResult], entries: list[_core.Entry | None]
) -> bool:
    """Whether every step keyed by its outputs still has the entry its dependents were keyed
    by: kept keys hold what the dependencies produced then, and a dependency may have been
    stored anew since (with --force, or after eviction) with other outputs."""
    return all(
        entry is None or not step.cutoff or entry.result == kept[1]
        for step, kept, entry in zip(steps, keyed, entries, strict=True)
    )


def _record_run(
    store: _core.Store | None, results: list[Result], cacheable: set[str], *, force: bool
) -> None:
    """Add the hits and misses of the run's `cacheable` steps to the cache's run log (`once
    cache stats`); not for `--force` runs, which say nothing about the cache. A statistic:
    never worth a warning."""
    counted = [result for result in results if result.label in cacheable]
    hits = sum(result.outcome in ("cached", "restored") for result in counted)
    misses = sum(result.outcome in ("ran", "failed") for result in counted)
    if store is None or force or not hits + misses:
        return
    try:
        record_run(store.root, hits, misses)
    except OSError:
        pass


def _save_output_stats(output_stats: _core.OutputStats) -> None:
    try:
        output_stats.save()  # what was checked need not be again
    except OSError as err:
        kept_state.unsaved("the output stats", str(err))


def _spec(
    snapshot: _core.Snapshot,
    requests: _Requests,
    index: int,
    deps: list[DepResult],
    store: _core.Store | None,
) -> Callable[[], str]:
    # A closure rather than `functools.partial`: functools (and collections) cost ~2 ms to import.
    return lambda: plans.spec_json(snapshot, requests.get()[index], deps, store)


def exit_code(results: list[Result]) -> int:
    """The exit status of a run: 1 when a step failed, else 0."""
    return 1 if any(result.outcome == "failed" for result in results) else 0
