"""The remote cache as a `once run` uses it (which server is run/remote_choice.py's): prefetch
every key the local cache lacks when the run starts, fetch on a local miss, upload after a step
succeeds, and wait for the uploads before the run ends.

The transfers themselves are Rust (`_core.Remote`, over a tokio runtime, with the GIL
released). A remote never fails a build: the core retries, then switches the remote off for the
rest of the run; this module turns that into one warning."""

from __future__ import annotations

import os
import sys
import threading

from once import _core
from once.errors import UsageError
from once.run.cache_bound import human_bytes
from once.run.remote_choice import SIGNING_KEY_ENV, choose

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping

    from once.config.model import Workspace
    from once.plan.graph import Action
    from once.plan.keys import Plan
    from once.run.remote_choice import RemoteChoice


class RemoteCache:
    """One run's remote: fetches and uploads, and at most one warning that it went off."""

    def __init__(self, core: _core.Remote, choice: RemoteChoice) -> None:
        self._core = core
        self.choice = choice
        self._lock = threading.Lock()
        self._warned = False

    def prefetch(self, store: _core.Store, keys: list[str]) -> None:
        self._core.prefetch(store, keys)

    def fetch(self, store: _core.Store, key: str, label: str) -> _core.Entry | None:
        """The local entry for `key` after a remote hit (its blobs downloaded and re-hashed),
        else None, with a warning for what had to be ignored."""
        outcome, detail = self._core.fetch(store, key)
        if outcome == "hit":
            return store.lookup(key)
        if outcome == "unsigned":
            self._warn(f"{label}: ignoring the remote's unsigned entry ({SIGNING_KEY_ENV} is set)")
        elif outcome == "bad-signature":
            self._warn(f"{label}: ignoring the remote's entry: its signature does not match")
        elif outcome == "corrupt":
            count = int(detail)
            blobs = "blob does" if count == 1 else "blobs do"
            self._warn(
                f"{label}: {count} downloaded {blobs} not match {'its' if count == 1 else 'their'} "
                "digest; discarded, running the command"
            )
        elif outcome == "invalid":
            self._warn(f"{label}: ignoring the remote's entry: {detail}")
        self._check_off()
        return None

    def push(self, store: _core.Store, key: str) -> None:
        if not self.choice.read_only:
            self._core.push(store, key)

    def finish(self) -> None:
        """Wait for every upload, then say what moved (one line on stderr)."""
        stats = self._core.finish()
        self._check_off()
        parts = []
        if stats["entries_downloaded"]:
            parts.append(
                f"restored {stats['entries_downloaded']} entries "
                f"({stats['blobs_downloaded']} blobs, {human_bytes(stats['bytes_downloaded'])})"
            )
        if stats["corrupt_blobs"]:
            parts.append(f"discarded {stats['corrupt_blobs']} corrupt blobs")
        if stats["entries_uploaded"]:
            parts.append(
                f"uploaded {stats['entries_uploaded']} entries "
                f"({stats['blobs_uploaded']} blobs, {human_bytes(stats['bytes_uploaded'])})"
            )
        if parts:
            print(f"once: remote cache: {'; '.join(parts)}", file=sys.stderr)

    def _warn(self, message: str) -> None:
        print(f"once: warning: remote cache: {message}", file=sys.stderr)

    def _check_off(self) -> None:
        reason = self._core.off_reason
        if reason is None:
            return
        with self._lock:
            if self._warned:
                return
            self._warned = True
        self._warn(f"off for the rest of this run: {reason}")


def open_remote(
    workspace: Workspace, environ: Mapping[str, str] = os.environ, *, read_only: bool = False
) -> RemoteCache | None:
    """The run's remote cache, or None when none is configured."""
    choice = choose(workspace.remote, environ, read_only_flag=read_only)
    if choice is None:
        return None
    try:
        core = _core.Remote(
            choice.url,
            read_only=choice.read_only,
            token=choice.token,
            signing_key=choice.signing_key,
            endpoint=choice.endpoint,
            region=choice.region,
            timeout=choice.timeout,
        )
    except ValueError as err:
        raise UsageError(f"remote cache {choice.url}: {err}") from None
    return RemoteCache(core, choice)


def start_remote(
    remote: RemoteCache | None,
    store: _core.Store | None,
    actions: list[Action],
    plan: Plan,
    *,
    force: bool,
) -> RemoteCache | None:
    """The remote the run uses (None without a local store to download into), with every
    cacheable key the local store lacks already being fetched in the background."""
    if remote is None or store is None:
        return None
    if not force:
        keys = [
            key
            for action in actions
            if action.rule.cache
            for key in [plan.fingerprints[action.label].key]
            if key is not None  # keyed only after a dependency runs (or is fetched)
        ]
        remote.prefetch(store, keys)
    return remote
