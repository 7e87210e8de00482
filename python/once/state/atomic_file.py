"""Writing a state file so that a reader sees the old contents or the new, never part of them;
and sealing one so that a reader takes back exactly the bytes written, or nothing.

Light: a no-op run (run/pipeline.py) writes its run keys and history with it."""

from __future__ import annotations

import _thread
import os

from once import _core

# A sealed file starts with the BLAKE3 (hex) of the rest.
_SEAL_SIZE = 64


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


def write_sealed(path: str | os.PathLike[str], data: bytes) -> None:
    """`write_atomic` of `data` behind its seal, for `read_sealed`."""
    write_atomic(path, _core.hash_bytes(data).encode() + data)


def write_sealed_in_place(path: str | os.PathLike[str], data: bytes) -> None:
    """`write_sealed` without the temporary file, for a file whose name fixes its contents
    (named by a digest of them): a reader of a write cut short finds its seal broken, which
    reads as no file, and the next writer writes the same bytes whole. A rename less per file:
    a cold run writes one such file per step."""
    with open(path, "wb") as file:
        file.write(_core.hash_bytes(data).encode() + data)


def read_sealed(path: str | os.PathLike[str]) -> bytes | None:
    """What `write_sealed` wrote to `path`; None when there is no such file, or its bytes are
    not exactly those written (a flipped bit, a file cut short, another program's).

    A kept plan or workspace is taken as the truth about what a step reads: a byte flipped
    inside one of its strings still decodes, to a plausible value (an input glob that selects
    nothing), and a run would hit a key that no longer covers the step's inputs."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        return None
    body = data[_SEAL_SIZE:]
    return body if data[:_SEAL_SIZE] == _core.hash_bytes(body).encode() else None
