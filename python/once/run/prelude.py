"""What a `once run` starts before click and the rest of the front are even imported: it takes
the workspace lock and walks the workspace on a background thread (the walk runs in Rust with
the GIL released) while Python imports the CLI and reads the configuration.

Importing the front costs ~70 ms and the walk of a 100,000-file workspace ~150 ms; one after
the other they were most of a no-op run. The walk starts only once the lock is held, exactly
as it would later: a run that waited for another one sees what that one left. Only for a
`once run` in a workspace that has run before (its state folder exists), so that a first run
with a bad config still writes nothing (its lock and walk are taken by the run itself, `begin`,
once the configuration is read). Imports here stay light: this module runs before everything
else.
"""

from __future__ import annotations

import os

from once import _core, layout
from once.run.options import NO_RUN, parse_run
from once.state import lock

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from once.run.options import RunRequest


class Early:
    """A run's lock and walk: the workspace at `root` locked (through `fd`, its state folder
    `state_dir`) and walked on a thread of the core's. Started before the front is imported
    (`start`), or by the run itself when it was not (`begin`). `cwd`: the resolved folder the
    run was asked in."""

    def __init__(self, root: str, state_dir: str, fd: int, cwd: str) -> None:
        self.root = root
        self.state_dir = state_dir
        self.fd: int | None = fd
        self.cwd = cwd
        # On a thread of the extension's own (a run that stops early, on a bad target, does
        # not wait for it). The stat cache needs no rule either: unchanged files get their
        # digests there too.
        self._pending: _core.PendingScan | None = _core.Snapshot.start_scan(
            root,
            [layout.STATE_DIR],
            os.path.join(state_dir, layout.STAT_CACHE),
            os.path.join(state_dir, layout.TRACKED_CACHE),
        )
        self._snapshot: _core.Snapshot | OSError | None = None

    def release(self) -> None:
        """Give back the lock (the run's end, or a run that stopped before it ran anything)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

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


def begin(root: str, cwd: str) -> Early:
    """Lock and start walking the workspace at `root` (its state folder made, ignored by git,
    if this is its first run): what `start` does before the front is imported, for a run
    that did not (its first, or one from the Python API)."""
    state_dir = lock.ensure_state_dir(os.path.join(root, layout.STATE_DIR))
    return Early(root, state_dir, lock.acquire(state_dir), cwd)


def start(argv: list[str]) -> Early | None:
    """Take the lock and start the walk when `argv` (without the program name) is a run in a
    workspace that has run before; the `Early` is handed to the run (run/pipeline.py), which
    releases it."""
    directory = os.getcwd()
    if argv[:1] == ["-C"] and len(argv) >= 2:
        directory, argv = os.path.join(directory, argv[1]), argv[2:]
    if argv[:1] != ["run"] or NO_RUN.intersection(argv):
        return None
    try:
        cwd = os.path.realpath(directory)
        root = layout.find_root(cwd, _read)
        if root is None:
            return None
        state_dir = os.path.join(root, layout.STATE_DIR)
        if not os.path.isdir(state_dir):
            return None
        return Early(root, state_dir, lock.acquire(state_dir), cwd)
    except (OSError, ValueError):
        return None  # the usual path meets the same problem and reports it properly


def parse(argv: list[str]) -> tuple[str, RunRequest] | None:
    """The folder a run is asked in and what it asks, when `argv` (without the program name)
    is a valid run (`options.parse_run`); None for anything else, which click parses."""
    directory = os.getcwd()
    if argv[:1] == ["-C"] and len(argv) >= 2:
        directory, argv = os.path.join(directory, argv[1]), argv[2:]
        if not os.path.isdir(directory):
            return None  # click words it
    request = parse_run(argv)
    return (directory, request) if request is not None else None


def _read(path: str) -> str:
    with open(path, encoding="utf-8-sig") as file:
        return file.read()
