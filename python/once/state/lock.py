"""One `once run` at a time per workspace: runs of one workspace write the same outputs."""

from __future__ import annotations

import fcntl
import os
import sys

LOCK_NAME = "lock"


def ensure_state_dir(state_dir: str) -> str:
    """Create the workspace's state folder, ignored by git without the user having to say so:
    only a command that runs steps calls this, so `status`, `why` and dry runs create nothing."""
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, exist_ok=True)
        with open(os.path.join(state_dir, ".gitignore"), "w", encoding="utf-8") as file:
            file.write("# written by once: its state is never committed\n*\n")
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
