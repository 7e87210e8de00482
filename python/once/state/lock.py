"""One `once run` at a time per workspace: runs of one workspace write the same outputs."""

from __future__ import annotations

import fcntl
import os
import sys

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

LOCK_NAME = "lock"


def ensure_state_dir(state_dir: Path) -> Path:
    """Create the workspace's state folder, ignored by git without the user having to say so."""
    if not state_dir.is_dir():
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / ".gitignore").write_text(
            "# written by once: its state is never committed\n*\n"
        )
    return state_dir


def acquire(state_dir: str) -> int:
    """Lock the workspace whose state folder (which must exist) is `state_dir`, saying so on
    stderr while waiting; returns the descriptor holding the lock (closing it releases it).

    flock is released by the kernel when the process dies, so a `kill -9` never leaves a
    stale lock behind."""
    fd = os.open(os.path.join(state_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            print(
                f"once: waiting for another once run in this workspace (pid {holder})",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass  # a full disk: the pid only tells a waiting run whom it waits for
    except BaseException:
        os.close(fd)
        raise
    return fd


class workspace_lock:
    """Hold the workspace lock for the block: `held` when the prelude took it already (a second
    flock on a new descriptor would wait for the first forever), else taken on entry.

    A class rather than a `contextlib.contextmanager`: this module loads before the walk starts
    (run/prelude.py), and contextlib costs ~2 ms of that."""

    def __init__(self, state_dir: Path, held: int | None = None) -> None:
        self._state_dir = state_dir
        self._fd = held

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = acquire(str(ensure_state_dir(self._state_dir)))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
