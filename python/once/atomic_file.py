"""Writing a state file so that a reader sees the old contents or the new, never part of them.

Light: the fast path (quick.py) writes its run keys and history with it."""

from __future__ import annotations

import _thread
import os


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` through a temporary file beside it (named for this process
    and thread, so concurrent writers never share one). On failure the temporary file is
    removed and the OSError raised; `path` is as it was."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    temp = os.path.join(folder, f".{name}.{os.getpid()}.{_thread.get_ident()}.tmp")
    try:
        with open(temp, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except OSError:
        try:
            os.unlink(temp)
        except OSError:
            pass  # never written, or gone
        raise
