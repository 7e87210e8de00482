"""Settle every step the local cache can answer, in one call into the core: a step whose entry
is found and whose dependencies are settled here too, each producing what the step was keyed
by. A no-op run and a restore are made of this alone; the scheduler (run/scheduler.py)
continues from what it settled, never from the start.

Light: a run of hits loads this and not the scheduler."""

from __future__ import annotations

import sys

from once import _core
from once.ui.console import Result, hit_result

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Sequence

    from once.plan.steps import KeyAndResult, Step


class Settled:
    """What the bulk pass settled, and what it learnt of the steps it left."""

    __slots__ = ("absent", "hits", "produced", "results", "uncached")

    def __init__(self) -> None:
        # By label, each settled step's result, and (in the order they settled) with its log.
        self.results: dict[str, Result] = {}
        self.hits: list[tuple[Result, bytes]] = []
        # What each settled step gives its dependents' keys (see `_core.action_keys`).
        self.produced: dict[str, str | None] = {}
        # Steps whose entry was refused or lost a blob: they run without asking again.
        self.uncached: set[str] = set()
        # Keys the lookup did not find.
        self.absent: set[str] = set()

    def complete(self, steps: Sequence[Step]) -> bool:
        return len(self.results) == len(steps)


def lookup(store: _core.Store, keyed: Sequence[KeyAndResult]) -> list[_core.Entry | None]:
    """The entry of each step's key; None for a miss or a step not keyed yet."""
    found = iter(store.lookup_many([key for key, _ in keyed if key is not None]))
    return [next(found) if key is not None else None for key, _ in keyed]


def produces(cutoff: bool, planned: str | None, entry: _core.Entry | None) -> str | None:
    """What a step gives its dependents' keys, given the entry it was restored from or saved
    as (None: not cached) and its planned result: with early cutoff (`Step.cutoff`) its
    outputs' digest, else its key's."""
    if cutoff:
        return entry.result if entry is not None else None
    return planned


def settle(
    store: _core.Store,
    root: str,
    steps: Sequence[Step],
    keyed: Sequence[KeyAndResult],
    entries: Sequence[_core.Entry | None],
    *,
    link: str,
    output_stats: _core.OutputStats,
    replays: bool,
) -> Settled:
    """Settle the hits among `steps` (in dependency order, keyed `keyed`, whose entries are
    `entries`): each is confirmed in place by stat or restored, in waves (a step after its
    dependencies), on the core's threads."""
    settled = Settled()
    index = {step.label: n for n, step in enumerate(steps)}
    # Wave: settled after its dependencies' (the order the scheduler would keep). A step whose
    # dependency is not settled here, or produced other outputs than the step was keyed by
    # (stored anew since), is left to the scheduler, which keys it again.
    waves: dict[str, int] = {}
    produced: dict[str, str | None] = {}
    bulk: list[tuple[Step, _core.Entry]] = []
    for step, (key, planned), entry in zip(steps, keyed, entries, strict=True):
        if not step.cache or key is None:
            continue
        if entry is None:
            settled.absent.add(key)
            continue
        wave = 0
        for dep in step.deps:
            if dep not in waves or produced[dep] != keyed[index[dep]][1]:
                break
            wave = max(wave, waves[dep] + 1)
        else:
            waves[step.label] = wave
            produced[step.label] = produces(step.cutoff, planned, entry)
            bulk.append((step, entry))
    if not bulk:
        return settled
    reports = store.settle_hits(
        root,
        [(entry, step.package, list(step.outputs), waves[step.label]) for step, entry in bulk],
        link,
        output_stats,
        read_logs=replays,
    )
    results = settled.results
    for (step, entry), report in zip(bulk, reports, strict=True):
        label, state = step.label, report.state
        if state == _core.SettleState.Refused:
            warn_refused(label, entry, report.message)
            settled.uncached.add(label)
        elif state == _core.SettleState.Gone:
            settled.uncached.add(label)
        # A hit reports only when its dependencies did: after one that must run, it waits
        # for it (and is skipped if it fails), confirmed again by the scheduler.
        elif state != _core.SettleState.Failed and all(dep in results for dep in step.deps):
            restored = state == _core.SettleState.Restored
            result = hit_result(label, restored, report.seconds, entry.duration_ms)
            results[label] = result
            settled.produced[label] = produced[label]
            settled.hits.append((result, report.log or b""))
    return settled


def warn_refused(label: str, entry: _core.Entry, reason: str | None) -> None:
    # A crafted or foreign entry, refused before anything was touched: a miss, and the
    # command's own save replaces the entry.
    print(
        f"once: warning: {label}: refusing its cache entry {entry.key[:12]} ({reason}); "
        "running the command",
        file=sys.stderr,
    )
