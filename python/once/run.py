"""Run an action graph: restore what the cache has, run the rest with bounded parallelism."""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from once import _core
from once.fingerprint import Fingerprint
from once.graph import Action
from once.layout import STATE_DIR
from once.model import Workspace

if TYPE_CHECKING:
    import subprocess
    from concurrent.futures import Future

    from once.remote import RemoteCache

# How long commands get to exit after SIGTERM on Ctrl-C before they are killed.
INTERRUPT_GRACE_SECONDS = 3.0
INTERRUPTED = 130  # exit status given to a command that was never started because of Ctrl-C
# In the workspace state folder: stats and digests of outputs as last checked (OutputStats).
OUTPUT_STATS = "outputs"


class Outcome(enum.Enum):
    RAN = "ran"
    CACHED = "cached"  # hit, outputs already on disk as the cache has them
    RESTORED = "restored"  # hit, outputs restored from the cache
    FAILED = "failed"
    SKIPPED = "skipped"  # a dependency failed


@dataclass(frozen=True)
class Result:
    label: str
    outcome: Outcome
    seconds: float
    saved_ms: int = 0  # for hits: how long the original run took


def open_store(*, quiet: bool = False) -> _core.Store | None:
    """The local store, or None (with one warning) when its folder cannot be used: the build
    then runs without caching rather than failing."""
    try:
        return _core.Store(str(default_cache_dir()))
    except OSError as err:
        if not quiet:
            print(f"once: warning: caching is off for this run: {err}", file=sys.stderr)
        return None


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """`$ONCE_CACHE_DIR`, else `$XDG_CACHE_HOME/once`, else `~/.cache/once`."""
    if environ.get("ONCE_CACHE_DIR"):
        return Path(environ["ONCE_CACHE_DIR"])
    xdg = environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "once"


class LogMode(enum.Enum):
    """Which command output to show (Turborepo's `--output-logs`)."""

    FULL = "full"  # live output of commands, and the replayed log of every hit
    NEW_ONLY = "new-only"  # live output of commands that run; hits stay quiet
    ERRORS_ONLY = "errors-only"  # only the log of a command that failed
    NONE = "none"  # no command output at all


class Console:
    """Serializes output of parallel actions, each line prefixed by its action's label."""

    def __init__(self, stream: BinaryIO, mode: LogMode = LogMode.FULL) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.mode = mode

    @property
    def replays(self) -> bool:
        return self.mode is LogMode.FULL

    def live(self, label: str, data: bytes) -> None:
        """Output of a running command, as it comes."""
        if self.mode in (LogMode.FULL, LogMode.NEW_ONLY):
            self.lines(label, data)

    def failed(self, label: str, log: bytes) -> None:
        """The whole log of a failed command, where it was not shown live."""
        if self.mode is LogMode.ERRORS_ONLY:
            self.lines(label, log)

    def lines(self, label: str, data: bytes) -> None:
        if data:
            self._write(prefixed(label, data))

    def hits(self, hits: list[tuple[Result, bytes]]) -> None:
        """Many cache hits settled at once, each with its log (empty unless replayed): their
        status lines and logs in one write, then their progress events."""
        if not hits:
            return
        body = bytearray()
        for result, log in hits:
            body += hit_line(result).encode() + b"\n"
            if log and self.replays:
                body += prefixed(result.label, log)
        self._write(bytes(body))
        self.finished_many([result for result, _ in hits])

    def status(self, text: str) -> None:
        self._write(text.encode() + b"\n")

    # Progress events, so a live display (progress.py) can count steps without parsing lines.
    def started(self, label: str, cmd: str) -> None:
        """A command is about to run (not called for cache hits)."""
        self.status(f"{label}: running {cmd}")

    def finished(self, result: Result) -> None:
        """A step ended: ran, hit, failed or skipped."""

    def finished_many(self, results: list[Result]) -> None:
        """Several steps ended at once (hits settled in bulk)."""
        for result in results:
            self.finished(result)

    def close(self) -> None:
        """The run is over (or interrupted): leave the terminal clean for the summary."""

    def _write(self, data: bytes) -> None:
        with self._lock:
            self._stream.write(data)
            self._stream.flush()


def prefixed(label: str, data: bytes) -> bytes:
    """Each line of `data` prefixed by its step's label."""
    prefix = f"{label} |".encode()
    return b"".join(
        prefix + (b" " + line if line else b"") + b"\n" for line in data.rstrip(b"\n").split(b"\n")
    )


def hit_line(result: Result) -> str:
    """The status line of a cache hit: restoring's time beside the original run's, which is
    what the cache is worth."""
    return (
        f"{result.label}: cache hit ({result.outcome.value}) in "
        f"{result.seconds:.2f}s, saved {result.saved_ms / 1000:.2f}s"
    )


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
    ) -> None:
        self.remote = remote
        self.link = link
        self.workspace = workspace
        self.snapshot = snapshot
        self.fingerprints = fingerprints
        self.store = store
        self.console = console
        self.force = force
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._procs_lock = threading.Lock()
        self._stopping = False  # set on interrupt: no new command may start
        self._cache_warned = False
        # Steps whose local entry the bulk pass already found unusable (refused, or a blob
        # gone): they run without asking the cache again, as they would have before.
        self._uncached: set[str] = set()
        # Lets a hit whose outputs are in place be confirmed by stat, without reading them.
        self.output_stats = _core.OutputStats(str(workspace.root / STATE_DIR / OUTPUT_STATS))

    def run(self, actions: list[Action], jobs: int) -> list[Result]:
        try:
            results = self._settle_in_bulk(actions)
            self._schedule(actions, results, jobs)
        finally:
            # Losing these records costs one re-hash of the outputs next run, no more.
            with contextlib.suppress(OSError):
                self.output_stats.save()
        return [results[action.rule.label] for action in actions]

    def _settle_in_bulk(self, actions: list[Action]) -> dict[str, Result]:
        """Settle, in two calls into the core, every step that is a local hit and whose
        dependencies are all settled here too: what a no-op run or a restore is made of.

        Everything else (misses, remote fetches, steps after one that must run) is left to
        `_schedule`, so a dependency that runs, or fails, gates its dependents as before."""
        store = self.store
        if store is None or self.force:
            return {}
        # Each label read once: `Action.label` is a property, and 10,000 rules are many reads.
        cacheable = [(action.label, action) for action in actions if action.rule.cache]
        keys = [self.fingerprints[label].key for label, _ in cacheable]
        found = {
            label: entry
            for (label, _), entry in zip(cacheable, store.lookup_many(keys), strict=True)
            if entry is not None
        }
        # Wave: settled after its dependencies' (the order the scheduler would keep). Actions
        # come in dependency order; one whose dependency is not settled here is not either.
        waves: dict[str, int] = {}
        bulk: list[tuple[str, Action, _core.Entry]] = []
        for label, action in cacheable:
            entry = found.get(label)
            if entry is None:
                continue
            wave = 0
            for dep in action.deps:
                if dep not in waves:
                    break
                wave = max(wave, waves[dep] + 1)
            else:
                waves[label] = wave
                bulk.append((label, action, entry))
        if not bulk:
            return {}
        reports = store.settle_hits(
            str(self.workspace.root),
            [
                (entry, action.rule.package, list(action.rule.outputs), waves[label])
                for label, action, entry in bulk
            ],
            self.link,
            self.output_stats,
            read_logs=self.console.replays,
        )
        results: dict[str, Result] = {}
        hits: list[tuple[Result, bytes]] = []
        for (label, action, entry), (state, message, log, seconds) in zip(
            bulk, reports, strict=True
        ):
            if state == "refused":
                self._warn_refused(label, entry, message)
                self._uncached.add(label)
            elif state == "gone":
                self._uncached.add(label)
            # A hit reports only when its dependencies did: after one that must run, it waits
            # for it (and is skipped if it fails), confirmed again by the normal path.
            elif state != "failed" and all(dep in results for dep in action.deps):
                outcome = Outcome.CACHED if state == "cached" else Outcome.RESTORED
                result = Result(label, outcome, seconds, saved_ms=entry.duration_ms)
                results[label] = result
                hits.append((result, log or b""))
        self.console.hits(hits)
        return results

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
        ready = [label for label, count in unfinished.items() if count == 0]
        # Each finished action is handed back through this queue. Waiting on the set of
        # running futures instead (`wait(FIRST_COMPLETED)`) locks every one of them per
        # wake-up: quadratic, 9 of the 10 s of a no-op run of 10,000 rules (cProfile).
        finished: queue.SimpleQueue[tuple[str, Future[Result]]] = queue.SimpleQueue()
        running = 0

        def hand_back(label: str, future: Future[Result]) -> None:
            finished.put((label, future))

        def skip_dependents(label: str) -> None:
            for child in dependents[label]:
                if child not in results:
                    results[child] = Result(child, Outcome.SKIPPED, 0.0)
                    self.console.finished(results[child])
                    unfinished.pop(child, None)
                    self.console.status(f"{child}: skipped, {label} failed")
                    skip_dependents(child)

        # Imported here: a run answered wholly by `_settle_in_bulk` never needs a thread pool.
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            try:
                while ready or running:
                    for label in ready:
                        del unfinished[label]
                        future = pool.submit(self._execute, by_label[label])
                        future.add_done_callback(functools.partial(hand_back, label))
                        running += 1
                    ready = []
                    label, future = finished.get()
                    running -= 1
                    result = future.result()
                    results[label] = result
                    self.console.finished(result)
                    if result.outcome is Outcome.FAILED:
                        skip_dependents(label)
                    for child in dependents[label]:
                        if child in unfinished:
                            unfinished[child] -= 1
                            if unfinished[child] == 0:
                                ready.append(child)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                self.interrupt()
                raise

    def interrupt(self) -> None:
        """Stop every running command with its whole process group: TERM, then KILL for
        whatever is still there after a grace period."""
        import subprocess  # noqa: PLC0415 - see _spawn

        with self._procs_lock:
            self._stopping = True
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            # The group may outlive its leader (a backgrounded child), so always KILL it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _execute(self, action: Action) -> Result:
        started = time.monotonic()
        rule = action.rule
        fingerprint = self.fingerprints[action.label]
        package_dir = self.workspace.root / rule.package
        outputs = list(rule.outputs)
        if (
            self.store is not None
            and rule.cache
            and not self.force
            and action.label not in self._uncached
        ):
            hit = self._from_cache(self.store, action, fingerprint.key, started)
            if hit is not None:
                return hit

        if self.store is not None:
            # Outputs restored as read-only hard links share bytes with the store: give the
            # command private copies, or rewriting one in place would rewrite the blob.
            self.store.unshare_outputs(str(self.workspace.root), rule.package, outputs)
        self.console.started(action.label, rule.cmd)
        exit_code, log = self._spawn(action, package_dir)
        duration_ms = int((time.monotonic() - started) * 1000)
        if exit_code != 0:
            self.console.failed(action.label, log)
            self.console.status(f"{action.label}: failed with exit code {exit_code}")
            return Result(action.label, Outcome.FAILED, time.monotonic() - started)
        edited = self.snapshot.changed_since_scan(fingerprint.inputs) if self.snapshot else []
        if edited:
            # Caching now would file outputs made from new contents under the old key.
            more = f" and {len(edited) - 1} more" if len(edited) > 1 else ""
            self.console.status(
                f"{action.label}: not cached: inputs changed while it ran ({edited[0]}{more})"
            )
        elif self.store is not None and rule.cache:
            try:
                self.store.save(
                    fingerprint.key,
                    str(self.workspace.root),
                    rule.package,
                    outputs,
                    log,
                    exit_code,
                    duration_ms,
                )
                self._share(fingerprint.key)  # never raises: the upload runs in the background
            except OSError as err:
                self._warn_cache_off(err)
        return Result(action.label, Outcome.RAN, time.monotonic() - started)

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
            if store.outputs_match(entry, root, rule.package, outputs, self.output_stats):
                outcome = Outcome.CACHED
            else:
                store.restore(entry, root, rule.package, outputs, self.link)
                outcome = Outcome.RESTORED
            log = store.read_blob(entry.log) if self.console.replays else b""
        except _core.UnsafePathError as err:
            self._warn_refused(action.label, entry, str(err))
            return None
        except FileNotFoundError:
            return None  # a blob collected by another process since the lookup: a miss
        store.touch(entry.key)  # last use, for least-recently-used eviction
        result = Result(
            action.label, outcome, time.monotonic() - started, saved_ms=entry.duration_ms
        )
        self.console.status(hit_line(result))
        if self.console.replays:
            self.console.lines(action.label, log)
        return result

    @staticmethod
    def _warn_refused(label: str, entry: _core.Entry, reason: str | None) -> None:
        # A crafted or foreign entry, refused before anything was touched: a miss, and the
        # command's own save replaces the entry.
        print(
            f"once: warning: {label}: refusing its cache entry {entry.key[:12]} ({reason}); "
            "running the command",
            file=sys.stderr,
        )

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

    def _spawn(self, action: Action, cwd: Path) -> tuple[int, bytes]:
        """Run the command with `sh -c` in its own process group, streaming prefixed lines."""
        # Imported here: a run of cache hits starts no command (~3 ms of start-up).
        import subprocess  # noqa: PLC0415

        with self._procs_lock:
            if self._stopping:
                return INTERRUPTED, b""
            proc = subprocess.Popen(
                ["sh", "-c", action.rule.cmd],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so an interrupt can stop the command and its children
            )
            self._procs.add(proc)
        log = bytearray()
        try:
            assert proc.stdout is not None  # noqa: S101 - guaranteed by stdout=PIPE
            for line in proc.stdout:
                log += line
                self.console.live(action.label, line)
            return proc.wait(), bytes(log)
        finally:
            # Closed here, not by exit: a long-lived caller (the Python API) runs many steps.
            if proc.stdout is not None:
                proc.stdout.close()
            with self._procs_lock:
                self._procs.discard(proc)

    def _warn_cache_off(self, err: OSError) -> None:
        if not self._cache_warned:
            self._cache_warned = True
            print(f"once: warning: caching is off for this run: {err}", file=sys.stderr)
        self.store = None


def summary(results: list[Result], seconds: float) -> str:
    """The last lines of a run: what ran, what the cache answered, what failed, and the time
    the cache saved (the sum of the recorded run times of every hit)."""
    counts = dict.fromkeys(Outcome, 0)
    for result in results:
        counts[result.outcome] += 1
    hits = counts[Outcome.CACHED] + counts[Outcome.RESTORED]
    saved = sum(result.saved_ms for result in results) / 1000
    if not results:
        return "once: nothing to run"
    if hits == len(results):
        head = f"all {len(results)} steps cached ({counts[Outcome.RESTORED]} restored), 0 ran"
    else:
        head = (
            f"{len(results)} steps: {counts[Outcome.RAN]} ran, {hits} cached, "
            f"{counts[Outcome.FAILED]} failed, {counts[Outcome.SKIPPED]} skipped"
        )
    lines = [f"once: {head} in {seconds:.2f}s (cache saved {human_seconds(saved)})"]
    failed = [result.label for result in results if result.outcome is Outcome.FAILED]
    if failed:
        # Named again at the very end: with many parallel steps the failure scrolled away.
        lines.append(f"once: failed: {', '.join(failed)}")
    return "\n".join(lines)


def human_seconds(seconds: float) -> str:
    """`0.42s`, `12.30s`, `3m05s`, `2h10m`: short enough for a summary line."""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
