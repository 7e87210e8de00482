"""What a `once run` starts before click and the rest of the front are even imported: it takes
the workspace lock and walks the workspace on a background thread (the walk runs in Rust with
the GIL released) while Python imports the CLI and reads the configuration.

Importing the front costs ~70 ms and the walk of a 100,000-file workspace ~150 ms; one after
the other they were most of a no-op run. The walk starts only once the lock is held, exactly
as it would later: a run that waited for another one sees what that one left. Only for a plain
`once run` in a workspace that has run before (its state folder exists), so that a first run
with a bad config still writes nothing; anything unexpected simply leaves the work to the
usual path. Imports here stay light: this module runs before everything else.
"""

from __future__ import annotations

import os

from once import _core, layout, lock

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from pathlib import Path

# Flags after which `run` does not take the lock or walk (it prints and exits).
_NO_RUN = frozenset(("--dry-run", "--help", "-h"))


class Early:
    """A run's lock and walk, started before the front is imported; `argv` is the command
    after the program name (and `-C DIR`), `cwd` the resolved folder it runs in."""

    def __init__(self, root: str, state_dir: str, fd: int, cwd: str, argv: list[str]) -> None:
        self.root = root
        self.state_dir = state_dir
        self.fd: int | None = fd
        self.cwd = cwd
        self.argv = argv
        # On a thread of the extension's own (a run that stops early, on a bad target, does
        # not wait for it). The stat cache needs no rule either: unchanged files get their
        # digests there too.
        self._pending: _core.PendingScan | None = _core.Snapshot.start_scan(
            root, [layout.STATE_DIR], os.path.join(state_dir, layout.STAT_CACHE)
        )
        self._snapshot: _core.Snapshot | OSError | None = None

    def snapshot(self) -> _core.Snapshot:
        """The walk's snapshot, once it is done; its error (each time asked) if it failed."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                self._snapshot = pending.wait()
            except OSError as err:
                self._snapshot = err
        if isinstance(self._snapshot, OSError):
            raise self._snapshot
        assert self._snapshot is not None  # noqa: S101 - set when the wait ended
        return self._snapshot


_early: Early | None = None


def start(argv: list[str]) -> None:
    """Take the lock and start the walk when `argv` (without the program name) is a run."""
    global _early  # noqa: PLW0603 - one prelude per process, handed to the session once
    directory = os.getcwd()
    if argv[:1] == ["-C"] and len(argv) >= 2:
        directory, argv = os.path.join(directory, argv[1]), argv[2:]
    if argv[:1] != ["run"] or _NO_RUN.intersection(argv):
        return
    try:
        cwd = os.path.realpath(directory)
        root = layout.find_root(cwd, _read)
        if root is None:
            return
        state_dir = os.path.join(root, layout.STATE_DIR)
        if not os.path.isdir(state_dir):
            return
        _early = Early(root, state_dir, lock.acquire(state_dir), cwd, argv)
    except (OSError, ValueError):
        return  # the usual path meets the same problem and reports it properly


def started() -> Early | None:
    """What `start` began, until the session claims it."""
    return _early


def _read(path: str) -> str:
    with open(path, encoding="utf-8-sig") as file:
        return file.read()


def claim_lock(state_dir: Path) -> int | None:
    """The descriptor holding the lock of `state_dir`, if the prelude took it; the caller
    releases it. A prelude for another folder (the root was found differently) is dropped."""
    global _early  # noqa: PLW0603
    early = _early
    if early is None or early.fd is None:
        return None
    fd, early.fd = early.fd, None
    if early.state_dir != str(state_dir):
        _early = None
        os.close(fd)
        return None
    return fd


def claim_snapshot(root: Path) -> _core.Snapshot | None:
    """The snapshot the prelude walked under the lock `claim_lock` handed over, once."""
    global _early  # noqa: PLW0603
    early = _early
    if early is None or early.root != str(root) or early.fd is not None:
        return None  # not walked, or walked for a lock nobody claimed
    _early = None
    return early.snapshot()
