"""What `.once/` keeps (the stat cache, output stats, plans, run keys, the validated
configuration, the history `once why` reads) only makes later runs faster or better explained:
a run that cannot write it, on a full disk or a read-only checkout, is still right. It goes
on, and says so once.

Light: a no-op run (run/pipeline.py) writes kept state too."""

from __future__ import annotations

import os
import sys

_warned = False


def unsaved(what: str, reason: object) -> None:
    """Say, once per process, that `what` could not be written to `.once/`, and why."""
    global _warned  # noqa: PLW0603 - one warning per run, whichever state failed first
    if _warned:
        return
    _warned = True
    print(
        f"once: warning: could not save {what} in .once/ ({reason}); "
        "the run goes on, the next may be slower",
        file=sys.stderr,
    )


def remove_leftovers(folders: list[str]) -> None:
    """Remove from `folders` the temporary files of processes that are gone. Kept state is
    written to `NAME.PID.N.tmp` beside it and renamed into place; a process killed in between
    leaves the file behind (a whole stat cache: 12 MB at 100,000 files), and nothing else ever
    would remove it. A live process's file, or one whose process cannot be told, stays."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            parts = entry.name.split(".")
            if len(parts) < 4 or parts[-1] != "tmp" or not parts[-3].isdigit():
                continue
            if _gone(int(parts[-3])):
                unlink_quietly(entry.path)


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # gone already, or not ours to remove: either way nothing to do


def _gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    return False
