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

from once import _core, layout
from once.run.options import NO_RUN, parse_plain
from once.state import lock

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from once.plan.steps import KeyAndResult, KeyRequest, Step
    from once.run.options import PlainRun

    # What the fast path worked out before it left a run to the CLI (see `claim_keys`).
    Keyed = tuple[list[Step], list[KeyAndResult], Callable[[], tuple[list[KeyRequest], int]]]


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
            root,
            [layout.STATE_DIR],
            os.path.join(state_dir, layout.STAT_CACHE),
            os.path.join(state_dir, layout.TRACKED_CACHE),
        )
        self._snapshot: _core.Snapshot | OSError | None = None
        # Set by the fast path (run/quick.py) when it keyed the run's plan and then left the run
        # to the CLI (a miss): the steps, their keys, and their key requests on demand; and
        # the store's entry (or None) for each of those keys; by key, the hits it settled
        # (kept or restored) before a step it could not settle sent the run to the CLI.
        self.keyed: Keyed | None = None
        self.entries: list[_core.Entry | None] | None = None
        self.settled: dict[str, _core.SettledHit] = {}
        # Set once its parts went to a session, or it was for another folder: claims get None.
        self._dropped = False
        # The run's targets and options when it is a plain run (`run_options.parse_plain`).
        self.plain: PlainRun | None = None

    def claim_lock(self, state_dir: Path) -> int | None:
        """The descriptor holding the lock of `state_dir`, if this prelude took it; the caller
        releases it. A prelude for another folder (the root was found differently) is dropped."""
        fd = self.fd
        if fd is None or self._dropped:
            return None
        self.fd = None
        if self.state_dir != str(state_dir):
            self._dropped = True
            os.close(fd)
            return None
        return fd

    def keyed_steps(self) -> list[Step] | None:
        """The steps of the kept plan the fast path loaded and keyed, if it did."""
        return self.keyed[0] if self.keyed is not None else None

    def claim_keys(
        self, root: Path, steps: list[Step]
    ) -> tuple[list[KeyAndResult], list[KeyRequest], int] | None:
        """The (key, result) pairs and key requests (and the count of files hashed for them)
        that the fast path worked out for exactly `steps` in the workspace at `root`, under the
        lock `claim_lock` handed over; once, and before `claim_snapshot`. The edit-and-run
        case: the fast path keys the plan, finds a miss, and the run need not key it again
        (~40 ms at 100,000 files)."""
        if self._dropped or self.root != str(root) or self.fd is not None or self.keyed is None:
            return None
        kept_steps, keys, requests = self.keyed
        self.keyed = None
        if kept_steps != steps:
            self.entries = None
            return None
        return (keys, *requests())

    def claim_entries(
        self, keys: list[str | None]
    ) -> tuple[dict[str, _core.Entry | None], dict[str, _core.SettledHit]] | None:
        """By key, the entry (or None) the fast path found for each of `keys`, the keys
        `claim_keys` handed over, looked up moments before under the same lock; and the hits
        it settled already; once. The run settles its hits with the entries rather than
        reading every entry again (~10 ms at 1,500 steps), and reports the settled ones as they
        were settled: a hit restored there is "restored", not found in place again as
        "cached"."""
        if self.entries is None:
            return None
        entries, self.entries = self.entries, None
        settled, self.settled = self.settled, {}
        found = {key: entry for key, entry in zip(keys, entries, strict=True) if key is not None}
        return found, settled

    def claim_snapshot(self, root: Path) -> _core.Snapshot | None:
        """The snapshot walked under the lock `claim_lock` handed over, once."""
        if self._dropped or self.root != str(root) or self.fd is not None:
            return None  # not walked, or walked for a lock nobody claimed
        self._dropped = True
        return self.snapshot()

    def release(self) -> None:
        """Give back the lock if nobody claimed it (a run that stopped before its session)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self._dropped = True

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


def start(argv: list[str]) -> Early | None:
    """Take the lock and start the walk when `argv` (without the program name) is a run; the
    `Early` is handed along to the run (fast path, full run or CLI), which claims its parts."""
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
        early = Early(root, state_dir, lock.acquire(state_dir), cwd, argv)
    except (OSError, ValueError):
        return None  # the usual path meets the same problem and reports it properly
    # Parsed while the walk runs: a plain run is answered without click, anything else by it.
    early.plain = parse_plain(argv)
    return early


def _read(path: str) -> str:
    with open(path, encoding="utf-8-sig") as file:
        return file.read()
