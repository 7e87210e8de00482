"""The fast path of `once run TARGET...`: when the command's plan is kept (plan/steps.py) and every
step is a local cache hit, key, settle and report them without importing click, the config
code or the scheduler, and exit.

A no-op run is the command people run most, and on a 100,000-file workspace its floor is the
walk `git status` also does; importing the CLI and decoding the workspace cost more than
everything else. Here, while the prelude walks, only the plan is loaded (looking up entries
meanwhile gains nothing: the lookup's tasks queue behind the walk's on the same thread pool).
The output, the run log, the history and the exit status are those of the full run, which
writes them with the same code (ui/console.py, state/cache_files.py, state/history.py).

Anything else leaves the run to the full run (run/command.py, or the CLI for another option), which
then reuses the walk: an option this path does not take, no kept plan, a malformed remote cache
variable, a step that is not a local hit (or whose entry is refused, gone or fails to restore;
the remote cache, if any, is asked then), or any surprise before the first line is printed.
"""

from __future__ import annotations

import gc
import os
import sys
import time

from once import _core
from once.errors import EXIT_INTERRUPTED, OnceError, os_error_message
from once.layout import OUTPUT_STATS
from once.plan import steps as plans
from once.plan.context import ToolProbes
from once.run import prelude
from once.run.remote_choice import check_environment
from once.state import kept_state, run_keys
from once.state.cache_files import MAX_SIZE_ENV, cache_folder, parse_size, record_run
from once.state.history import History
from once.ui.console import hit_result, summary
from once.ui.terminal import make_console

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from once.api import OutputLogs as LogMode
    from once.plan.steps import DepResult, KeyAndResult, KeyRequest, Step
    from once.ui.console import Result


def run(early: prelude.Early) -> int | None:
    """The exit status of the run the prelude started, when this path answered it; None to
    leave it to the full run, handed `early` (nothing has been printed then)."""
    plain = early.plain
    if plain is None:
        return None
    targets, mode = plain.targets, plain.output_logs
    started = time.monotonic()
    # A short-lived process making thousands of small tuples: the cyclic collector would
    # only walk them (a few ms) to find nothing to free.
    gc.disable()
    try:
        hits = _settle(early, targets, mode)
    except KeyboardInterrupt:
        print("once: error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError, EOFError, OnceError, plans.SourceUnderOutputGlob):
        hits = None  # what a user can cause: the full run meets it again and words it
    except Exception as err:
        print(
            f"once: warning: the no-op path failed ({type(err).__name__}: {err}); "
            "running the full path",
            file=sys.stderr,
        )
        hits = None
    if hits is None:
        gc.enable()  # the full run may run for hours
        return None
    try:
        _report(early, hits, mode, started)
    except OSError as err:
        print(f"once: error: {os_error_message(err)}", file=sys.stderr)
        return 1
    return 0


class _Requests:
    """The steps' requests for `_core.action_keys`, made on first use: selecting and hashing
    their inputs is skipped when the keys are known already (state/run_keys.py), and then only a
    step whose key changed since its last run needs its request (for `once why`)."""

    def __init__(
        self,
        early: prelude.Early,
        steps: list[Step],
        snapshot: _core.Snapshot,
        context: plans.KeyContext,
    ) -> None:
        self._early = early
        self._steps = steps
        self._snapshot = snapshot
        self._context = context
        self._requests: list[KeyRequest] | None = None
        self.files_read = 0

    def get(self) -> list[KeyRequest]:
        if self._requests is None:
            inputs = plans.select_inputs(self._snapshot, self._steps)
            self.files_read, slices = plans.hash_inputs(
                self._early.root, self._snapshot, self._steps, inputs
            )
            self._requests = plans.key_requests(self._steps, inputs, self._context, slices)
        return self._requests

    def with_files_read(self) -> tuple[list[KeyRequest], int]:
        return self.get(), self.files_read


class _Hits:
    """Every step of the run, settled: what the report needs."""

    def __init__(
        self,
        *,
        steps: list[Step],
        requests: _Requests,
        keys: list[KeyAndResult],
        snapshot: _core.Snapshot,
        store: _core.Store,
        results: list[tuple[Result, bytes]],
    ) -> None:
        self.steps = steps
        self.requests = requests
        self.keys = keys
        self.snapshot = snapshot
        self.store = store
        self.results = results


def _settle(early: prelude.Early, targets: list[str], mode: LogMode) -> _Hits | None:
    # A remote cache is asked only on a local miss, which this path leaves to the full run;
    # a malformed remote variable is left to it too, to be refused there as on any run.
    check_environment(os.environ)
    bound = os.environ.get(MAX_SIZE_ENV, "").strip()
    if bound:
        parse_size(bound)  # malformed: the CLI refuses it (exit 2) before the run
    plan_key = (early.cwd, tuple(targets))
    kept = plans.load(early.state_dir, plan_key)
    if not kept or not kept[0]:
        return None
    steps, plan_id = kept
    store = _core.Store(cache_folder())
    context = plans.key_context(steps, os.environ, ToolProbes(early.root))  # during the walk
    # Settled in waves: a step after its dependencies, as the scheduler would. Worked out
    # during the walk too (~3 ms at 1,500 steps, on the core the walk leaves idle at times).
    waves: dict[str, int] = {}
    for step in steps:
        waves[step.label] = max((waves[dep] + 1 for dep in step.deps), default=0)
    snapshot = early.snapshot()
    requests = _Requests(early, steps, snapshot, context)
    keyed = run_keys.known(early.state_dir, plan_key, plan_id, snapshot.tree_digest(), context)
    entries = _lookup(store, keyed) if keyed is not None else None
    if keyed is None or entries is None or not _as_keyed(steps, keyed, entries):
        keyed = _core.action_keys(snapshot, requests.get(), store)
        entries = _lookup(store, keyed)
        if all(key is not None for key, _ in keyed):
            # After hashing: the tree now has every selected file's digest.
            tree = snapshot.tree_digest()
            run_keys.keep(
                early.state_dir, plan_key, plan_id=plan_id, tree=tree, context=context, keys=keyed
            )
    # Should a step miss, the CLI runs it with these keys rather than keying again.
    early.keyed = (steps, keyed, requests.with_files_read)
    early.entries = entries
    wanted = []
    for step, entry in zip(steps, entries, strict=True):
        if entry is None:
            return None
        wanted.append((entry, step.package, list(step.outputs), waves[step.label]))
    output_stats = _core.OutputStats(os.path.join(early.state_dir, OUTPUT_STATS))
    try:
        reports = store.settle_hits(
            early.root, wanted, "copy", output_stats, read_logs=mode == "full"
        )
    finally:
        try:
            output_stats.save()  # as the runner does: what was checked need not be again
        except OSError as err:
            kept_state.unsaved("the output stats", os_error_message(err))
    settled = (_core.SettleState.Cached, _core.SettleState.Restored)
    if any(report.state not in settled for report in reports):
        # The others are settled, some restored: the run continues from there, not anew.
        early.settled = {
            entry.key: report
            for (entry, *_), report in zip(wanted, reports, strict=True)
            if report.state in settled
        }
        return None
    results = [
        (
            hit_result(
                step.label,
                report.state == _core.SettleState.Restored,
                report.seconds,
                entry.duration_ms,
            ),
            report.log or b"",
        )
        for step, (entry, *_), report in zip(steps, wanted, reports, strict=True)
    ]
    return _Hits(
        steps=steps,
        requests=requests,
        keys=keyed,
        snapshot=snapshot,
        store=store,
        results=results,
    )


def _lookup(store: _core.Store, keyed: list[KeyAndResult]) -> list[_core.Entry | None]:
    """The entry of each step's key; None for a miss or a step not keyed yet."""
    found = iter(store.lookup_many([key for key, _ in keyed if key is not None]))
    return [next(found) if key is not None else None for key, _ in keyed]


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


def _report(early: prelude.Early, hits: _Hits, mode: LogMode, started: float) -> None:
    """Print, record and release as the end of a full run does (cli.run, session.execute)."""
    console = make_console(sys.stdout.buffer, mode, len(hits.steps))
    try:
        console.hits(hits.results)
    finally:
        console.close()
    try:
        record_run(hits.store.root, len(hits.results), 0)
    except OSError:
        pass  # as the full run: the run log is for `once cache stats`, never worth failing for
    history = History(early.state_dir)
    # Most keys are the ones recorded last time (always, over an unchanged tree): only the
    # others need their dependencies' keys and a spec (~2 ms for 1,500 steps otherwise).
    changed = [
        index
        for index, (step, (key, _)) in enumerate(zip(hits.steps, hits.keys, strict=True))
        if history.last_key(step.label) != key
    ]
    if changed:
        keyed = dict(zip((step.label for step in hits.steps), hits.keys, strict=True))
        for index in changed:
            step = hits.steps[index]
            key = keyed[step.label][0]
            if key is None:
                continue  # never here: every step is a hit, so every key is known
            deps: list[DepResult] = [(dep, *keyed[dep]) for dep in step.deps]
            history.record(step.label, key, _spec(hits, index, deps))
    history.save()
    if early.fd is not None:
        os.close(early.fd)  # the lock: released before the summary, as the session does
        early.fd = None
    console.status(summary([result for result, _ in hits.results], time.monotonic() - started))


def _spec(hits: _Hits, index: int, deps: list[DepResult]) -> Callable[[], str]:
    # A closure rather than `functools.partial`: functools (and collections) cost ~2 ms to import.
    return lambda: plans.spec_json(hits.snapshot, hits.requests.get()[index], deps, hits.store)
