"""Run an action graph: restore what the cache has, run the rest with bounded parallelism."""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from once import _core
from once.config import Workspace
from once.fingerprint import Fingerprint
from once.graph import Action

if TYPE_CHECKING:
    from once.remote import RemoteCache

# How long commands get to exit after SIGTERM on Ctrl-C before they are killed.
INTERRUPT_GRACE_SECONDS = 3.0
INTERRUPTED = 130  # exit status given to a command that was never started because of Ctrl-C


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
        if not data:
            return
        prefix = f"{label} |".encode()
        body = b"".join(
            prefix + (b" " + line if line else b"") + b"\n"
            for line in data.rstrip(b"\n").split(b"\n")
        )
        self._write(body)

    def status(self, text: str) -> None:
        self._write(text.encode() + b"\n")

    def _write(self, data: bytes) -> None:
        with self._lock:
            self._stream.write(data)
            self._stream.flush()


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

    def run(self, actions: list[Action], jobs: int) -> list[Result]:
        waiting = {action.label: set(action.deps) for action in actions}
        by_label = {action.label: action for action in actions}
        dependents: dict[str, list[str]] = {label: [] for label in by_label}
        for action in actions:
            for dep in action.deps:
                dependents[dep].append(action.label)
        results: dict[str, Result] = {}
        running: dict[Future[Result], str] = {}

        def skip_dependents(label: str) -> None:
            for child in dependents[label]:
                if child not in results:
                    results[child] = Result(child, Outcome.SKIPPED, 0.0)
                    waiting.pop(child, None)
                    self.console.status(f"{child}: skipped, {label} failed")
                    skip_dependents(child)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            try:
                while waiting or running:
                    ready = [label for label, deps in waiting.items() if not deps]
                    for label in ready:
                        del waiting[label]
                        running[pool.submit(self._execute, by_label[label])] = label
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        label = running.pop(future)
                        result = future.result()
                        results[label] = result
                        if result.outcome is Outcome.FAILED:
                            skip_dependents(label)
                        for child in dependents[label]:
                            if child in waiting:
                                waiting[child].discard(label)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                self.interrupt()
                raise
        return [results[action.label] for action in actions]

    def interrupt(self) -> None:
        """Stop every running command with its whole process group: TERM, then KILL for
        whatever is still there after a grace period."""
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

    # A step's whole life (hit, restore, refusal, run, save), read top to bottom in one place.
    def _execute(self, action: Action) -> Result:  # noqa: PLR0912
        started = time.monotonic()
        rule = action.rule
        fingerprint = self.fingerprints[action.label]
        package_dir = self.workspace.root / rule.package
        outputs = list(rule.outputs)
        if self.store is not None and rule.cache and not self.force:
            entry = self._lookup(self.store, fingerprint.key, action.label)
            if entry is not None:
                root = str(self.workspace.root)
                try:
                    if self.store.outputs_match(entry, root, rule.package, outputs):
                        outcome = Outcome.CACHED
                    else:
                        self.store.restore(entry, root, rule.package, outputs, self.link)
                        outcome = Outcome.RESTORED
                    log = self.store.read_blob(entry.log) if self.console.replays else b""
                except _core.UnsafePathError as err:
                    # A crafted or foreign entry, refused before anything was touched: a miss,
                    # and the command's own save replaces the entry.
                    print(
                        f"once: warning: {action.label}: refusing its cache entry "
                        f"{entry.key[:12]} ({err}); running the command",
                        file=sys.stderr,
                    )
                    entry = None
                except FileNotFoundError:
                    entry = None  # a blob collected by another process since the lookup: a miss
            if entry is not None:
                self.store.touch(entry.key)  # last use, for least-recently-used eviction
                self.console.status(f"{action.label}: cache hit ({outcome.value})")
                if self.console.replays:
                    self.console.lines(action.label, log)
                return Result(
                    action.label,
                    outcome,
                    time.monotonic() - started,
                    saved_ms=entry.duration_ms,
                )

        if self.store is not None:
            # Outputs restored as read-only hard links share bytes with the store: give the
            # command private copies, or rewriting one in place would rewrite the blob.
            self.store.unshare_outputs(str(self.workspace.root), rule.package, outputs)
        self.console.status(f"{action.label}: running {rule.cmd}")
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
            with self._procs_lock:
                self._procs.discard(proc)

    def _warn_cache_off(self, err: OSError) -> None:
        if not self._cache_warned:
            self._cache_warned = True
            print(f"once: warning: caching is off for this run: {err}", file=sys.stderr)
        self.store = None


def summary(results: list[Result], seconds: float) -> str:
    counts = dict.fromkeys(Outcome, 0)
    for result in results:
        counts[result.outcome] += 1
    hits = counts[Outcome.CACHED] + counts[Outcome.RESTORED]
    saved = sum(result.saved_ms for result in results) / 1000
    if results and hits == len(results):
        head = f"all {len(results)} steps cached ({counts[Outcome.RESTORED]} restored), 0 ran"
    else:
        head = (
            f"{len(results)} steps: {counts[Outcome.RAN]} ran, {hits} cached, "
            f"{counts[Outcome.FAILED]} failed, {counts[Outcome.SKIPPED]} skipped"
        )
    return f"once: {head} in {seconds:.2f}s (cache saved {saved:.2f}s)"
