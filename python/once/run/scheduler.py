"""Run an action graph: restore what the cache has, run the rest with bounded parallelism."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from once import _core
from once.errors import OnceError, os_error_message
from once.layout import OUTPUT_STATS, STATE_DIR, is_glob
from once.plan.context import command_env, env_mode
from once.run.settle import Settled, produces, warn_refused
from once.run.workers import Workers
from once.state.kept_state import unsaved
from once.ui.console import Console, Result, hit_line

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from once.api import Outcome
    from once.config.model import Workspace
    from once.plan.graph import Action
    from once.plan.keys import Fingerprint
    from once.run.remote import RemoteCache

# How long commands get to exit after SIGTERM on Ctrl-C before they are killed.
INTERRUPT_GRACE_SECONDS = 3.0
INTERRUPTED = 130  # exit status given to a command that was never started because of Ctrl-C


def unwritten_outputs(package_dir: str, outputs: list[str]) -> list[str]:
    """The declared outputs that name nothing on disk after the command: a plain path that
    does not exist, or a glob matching nothing (`{a,b}` globs, which the standard glob cannot
    read, are taken as written)."""
    missing = []
    for output in outputs:
        if "{" in output:
            continue
        if is_glob(output):
            written = next(Path(package_dir).glob(output.rstrip("/")), None) is not None
        else:
            # Joined as strings, not Paths: this runs for every output of every step that ran.
            written = os.path.lexists(f"{package_dir}/{output}")
        if not written:
            missing.append(output)
    return missing


def _ignore(_: object) -> None:
    pass


class Runner:
    """Executes actions in dependency order; one instance per `once run`."""

    def __init__(
        self,
        workspace: Workspace,
        fingerprints: dict[str, Fingerprint],
        store: _core.Store | None,
        console: Console,
        *,
        force: bool = False,
        snapshot: _core.Snapshot | None = None,
        link: str = "copy",  # how hits restore files: "copy" (reflink where possible) or "hardlink"
        remote: RemoteCache | None = None,  # asked on a local miss, given what a run saves
        settled: Settled | None = None,  # what the bulk pass settled (run/settle.py)
        # Called with each result as it comes, while others run, one result at a time (on the
        # thread that ran the step, or the scheduling thread for results settled before).
        on_result: Callable[[Result], object] | None = None,
    ) -> None:
        self._on_result = on_result if on_result is not None else _ignore
        settled = settled if settled is not None else Settled()
        self._settled = settled
        self.remote = remote
        self.link = link
        self.workspace = workspace
        self._root = str(workspace.root)  # as the core takes it, made once for every step
        self.snapshot = snapshot
        self.fingerprints = fingerprints
        self.store = store
        # Kept when caching turns off mid-run: saves handed over before still need finishing.
        self._saving_store = store
        self.console = console
        self.force = force
        self._commands = _core.Commands()  # started here, all stopped by `interrupt`
        self._cache_warned = False
        # Steps whose local entry the bulk pass already found unusable (refused, or a blob
        # gone): they run without asking the cache again, as they would have before.
        self._uncached = settled.uncached
        self._absent = settled.absent  # keys the bulk lookup did not find
        self._envs: dict[
            tuple[str, tuple[str, ...], tuple[str, ...]], tuple[_core.CommandEnv, list[str]]
        ] = {}
        # What each finished step gives its dependents' keys, as it turned out in this run
        # (see `_core.action_keys`): None when unknown (it ran and was not cached). Written by
        # the step's own worker before its dependents start.
        self._produced: dict[str, str | None] = dict(settled.produced)
        # The entries this run saved, by key: the history's specs list a dependency's outputs
        # from them before the store has them in place.
        self.saved: dict[str, _core.Entry] = {}
        # Lets a hit whose outputs are in place be confirmed by stat, without reading them.
        self.output_stats = _core.OutputStats(str(workspace.root / STATE_DIR / OUTPUT_STATS))

    def run(self, actions: list[Action], jobs: int) -> list[Result]:
        """Run every step the bulk pass did not settle, in dependency order, `jobs` at a time;
        the result of each of `actions`, settled or run."""
        results = dict(self._settled.results)
        try:
            self._schedule(actions, results, jobs)
        finally:
            self._finish_saves()
            # Losing these records costs one re-hash of the outputs next run, no more.
            try:
                self.output_stats.save()
            except OSError as err:
                unsaved("the output stats", os_error_message(err))
        return [results[action.rule.label] for action in actions]

    def _schedule(self, actions: list[Action], results: dict[str, Result], jobs: int) -> None:
        """Run the steps not in `results` yet in dependency order, `jobs` at a time."""
        if len(results) == len(actions):
            return  # everything was settled in bulk
        by_label = {action.label: action for action in actions if action.label not in results}
        # Per action not yet started: how many of its dependencies have not finished.
        unfinished = {
            label: sum(dep not in results for dep in action.deps)
            for label, action in by_label.items()
        }
        dependents: dict[str, list[str]] = {label: [] for label in by_label}
        for action in by_label.values():
            for dep in action.deps:
                if dep in dependents:
                    dependents[dep].append(action.label)
        ready = [by_label[label] for label, count in unfinished.items() if count == 0]
        for action in ready:
            del unfinished[action.label]

        def skip_dependents(label: str) -> None:
            for child in dependents[label]:
                if child not in results:
                    results[child] = Result(child, "skipped", 0.0)
                    self.console.finished(results[child])
                    unfinished.pop(child, None)
                    self.console.status(f"{child}: skipped, {label} failed")
                    skip_dependents(child)

        def done(result: Result) -> list[Action]:
            """Record a finished step; the dependents it made ready."""
            results[result.label] = result
            self.console.finished(result)
            self._on_result(result)
            if result.outcome == "failed":
                skip_dependents(result.label)
            now_ready = []
            for child in dependents[result.label]:
                if child in unfinished:
                    unfinished[child] -= 1
                    if unfinished[child] == 0:
                        del unfinished[child]
                        now_ready.append(by_label[child])
            return now_ready

        workers = Workers(self._execute_or_refuse, done, jobs)
        try:
            workers.start(ready)
            workers.wait()
        except BaseException:
            workers.cancel()
            self.interrupt()
            raise
        finally:
            workers.close()

    def interrupt(self) -> None:
        """Stop every running command with its whole process group: TERM, then KILL for
        whatever is still there after a grace period. No command starts after this."""
        self._commands.stop(INTERRUPT_GRACE_SECONDS)

    def _execute_or_refuse(self, action: Action) -> Result:
        """`_execute`, with an output reached through a symlink as the user's error it is: no
        restore, removal or save may follow that link, and no other run would do better."""
        try:
            return self._execute(action)
        except _core.SymlinkedOutputError as err:
            raise OnceError(f"{action.label}: {err}") from None

    def _result(self, label: str, entry: _core.Entry | None) -> str | None:
        """What step `label` gives its dependents' keys, given the entry it was restored from
        or saved as (None: not cached)."""
        fingerprint = self.fingerprints[label]
        return produces(fingerprint.request.cutoff, fingerprint.result, entry)

    def produced(self, label: str) -> str | None:
        """What step `label` gave its dependents' keys in this run: with its key as the run used
        it (`fingerprints`), the pair `_core.action_keys` would give over the same tree with the
        entries the run left. None when unknown (it ran and was not cached, or has not run)."""
        return self._produced.get(label)

    def _keyed(self, action: Action) -> Fingerprint | None:
        """The step's fingerprint keyed by what its dependencies produced in this run (the
        planned one when they produced what it was planned with); None when one of them has
        no known result (it ran and was not cached)."""
        label = action.label
        planned = self.fingerprints[label]
        actual = [(dep, self.fingerprints[dep].key, self._produced.get(dep)) for dep in action.deps]
        if any(result is None for _, _, result in actual):
            return None
        if planned.key is not None and [r for *_, r in planned.deps] == [r for *_, r in actual]:
            return planned
        fingerprint = planned.rekeyed(actual)
        self.fingerprints[label] = fingerprint  # the key the run used, for history and uploads
        return fingerprint

    def _execute(self, action: Action) -> Result:
        started = time.monotonic()
        rule = action.rule
        fingerprint = self._keyed(action)
        root = self._root
        # A string, not a Path per step (see `unwritten_outputs`); "." is the root package.
        package_dir = root if rule.package == "." else f"{root}/{rule.package}"
        outputs = list(rule.outputs)
        key = fingerprint.key if fingerprint is not None else None
        cache = rule.cache and key is not None
        if (
            self.store is not None
            and key is not None
            and cache
            and not self.force
            and action.label not in self._uncached
            # Looked up moments ago in bulk, not there: asking again is a miss (or, should a run
            # elsewhere have saved it since, a miss that costs one run of the command).
            and (key not in self._absent or self.remote is not None)
        ):
            hit = self._from_cache(self.store, action, key, started)
            if hit is not None:
                return hit

        if self.store is not None:
            # Outputs restored as read-only hard links share bytes with the store: give the
            # command private copies, or rewriting one in place would rewrite the blob.
            self.store.unshare_outputs(root, rule.package, outputs)
        env, withheld = self._command_env(rule.env_mode, rule.env, rule.pass_env)
        self.console.started(action.label, rule.cmd)
        exit_code, log = self._spawn(action, package_dir, env)
        duration_ms = int((time.monotonic() - started) * 1000)
        if exit_code != 0:
            self.console.failed(action.label, log)
            self.console.status(f"{action.label}: failed with exit code {exit_code}")
            if withheld:
                # Last, where a reader of a failed build looks: a variable the command needed
                # but did not see is the first thing to rule out.
                self.console.status(
                    f"{action.label}: ran in a strict environment without {', '.join(withheld)} "
                    "(declare what it needs in env or pass_env, or set "
                    '[workspace] env_mode = "loose")'
                )
            return Result(action.label, "failed", time.monotonic() - started)
        saved: _core.Entry | None = None
        for output in unwritten_outputs(package_dir, outputs):
            # Still stored (an output may be optional), but a typo here is a hit that restores
            # nothing: say so.
            print(
                f"once: warning: {action.label}: declared output {output!r} was not written "
                "by its command",
                file=sys.stderr,
            )
        if fingerprint is None or key is None:
            if self.store is not None and rule.cache:
                # Its key would hold what a dependency produced, which nobody knows: a result
                # filed under a guess could be restored for the wrong inputs.
                print(
                    f"once: warning: {action.label}: not cached: its dependency "
                    f"{self._unknown(action)} was not cached",
                    file=sys.stderr,
                )
            self._produced[action.label] = None
            return Result(action.label, "ran", time.monotonic() - started)
        unsafe = self._inputs_moved(fingerprint) if self.store is not None and cache else None
        if unsafe is not None:
            # Caching now would file outputs made from new contents under the old key.
            print(f"once: warning: {action.label}: not cached: {unsafe}", file=sys.stderr)
        elif self.store is not None and cache:
            try:
                saved = self.store.save(
                    key,
                    root,
                    rule.package,
                    outputs,
                    log,
                    exit_code,
                    duration_ms,
                    # Made durable on the store's threads while the next steps run (see
                    # `_finish_saves`); an upload needs the entry in place first.
                    deferred=self.remote is None,
                )
                self.saved[key] = saved
                self._share(key)  # never raises: the upload runs in the background
            except OSError as err:
                self._warn_cache_off(err)
            except _core.UnsafePathError as err:  # say an output symlink to an absolute path
                raise OnceError(f"{action.label}: not cached: {err}") from None
        self._produced[action.label] = self._result(action.label, saved)
        return Result(action.label, "ran", time.monotonic() - started)

    def _command_env(
        self, configured_mode: str, env: tuple[str, ...], pass_env: tuple[str, ...]
    ) -> tuple[_core.CommandEnv, list[str]]:
        """`command_env` for a rule, worked out (and converted for the core) once per run for
        each set of declarations: matching every variable against every pattern per step cost
        more than its `sh`."""
        declared = (configured_mode, env, pass_env)
        known = self._envs.get(declared)
        if known is None:
            mode = env_mode(configured_mode, os.environ)
            variables, withheld = command_env(mode, env, pass_env, os.environ)
            known = (_core.CommandEnv(list(variables.items())), withheld)
            self._envs[declared] = known
        return known

    def _unknown(self, action: Action) -> str:
        """The first dependency of `action` whose result is unknown in this run."""
        return next((dep for dep in action.deps if self._produced.get(dep) is None), "?")

    def _inputs_moved(self, fingerprint: Fingerprint) -> str | None:
        """Why the step's result may not be filed under its key, computed before it ran: an
        input file added, removed or changed since the walk the key came from."""
        if self.snapshot is None:
            return None
        try:
            changed = self.snapshot.changed_since_scan(fingerprint.inputs)
        except OSError as err:
            # Unsure what the command saw: a miss next time costs less than a wrong hit.
            return f"its inputs could not be walked again ({os_error_message(err)})"
        if not changed:
            return None
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        return f"its inputs changed while it ran ({changed[0]}{more})"

    def _from_cache(
        self, store: _core.Store, action: Action, key: str, started: float
    ) -> Result | None:
        """Restore the action from the local store if it has it; None on a miss."""
        rule = action.rule
        entry = self._lookup(store, key, action.label)
        if entry is None:
            return None
        root, outputs = str(self.workspace.root), list(rule.outputs)
        try:
            outcome: Outcome = "cached"
            if not store.outputs_match(entry, root, rule.package, outputs, self.output_stats):
                store.restore(entry, root, rule.package, outputs, self.link)
                outcome = "restored"
            log = store.read_log(entry) if self.console.replays else b""
        except _core.UnsafePathError as err:
            warn_refused(action.label, entry, str(err))
            return None
        except FileNotFoundError:
            return None  # a blob collected by another process since the lookup: a miss
        store.touch(entry.key)  # last use, for least-recently-used eviction
        self._produced[action.label] = self._result(action.label, entry)
        result = Result(
            action.label, outcome, time.monotonic() - started, saved_ms=entry.duration_ms
        )
        self.console.status(hit_line(result))
        if self.console.replays:
            self.console.lines(action.label, log)
        return result

    def _lookup(self, store: _core.Store, key: str, label: str) -> _core.Entry | None:
        """The local entry, else what the remote cache has (downloaded into `store`)."""
        entry = store.lookup(key)
        if entry is None and self.remote is not None:
            entry = self.remote.fetch(store, key, label)
        return entry

    def _share(self, key: str) -> None:
        """Upload a just-saved entry to the remote cache, in the background."""
        if self.remote is not None and self.store is not None:
            self.remote.push(self.store, key)

    def _spawn(self, action: Action, cwd: str, env: _core.CommandEnv) -> tuple[int, bytes]:
        """Run the command with `sh -c` in a session of its own, its output shown as it comes
        when the console shows it live."""
        ran = self._commands.run(action.rule.cmd, cwd, env, self.console.live_output(action.label))
        if ran is None:
            return INTERRUPTED, b""
        return ran.exit_code, ran.log

    def _finish_saves(self) -> None:
        """Wait until every save of this run is durable and its entry in place: the run's end
        (collection, history, the summary) and the next run count on them."""
        if self._saving_store is None:
            return
        try:
            self._saving_store.finish_saves()
        except OSError as err:
            self._warn_cache_off(err)

    def _warn_cache_off(self, err: OSError) -> None:
        if not self._cache_warned:
            self._cache_warned = True
            print(f"once: warning: caching is off for this run: {err}", file=sys.stderr)
        self.store = None
