"""`once hash PATH...`: BLAKE3 digests in b3sum's format, printed as they are hashed. Loaded by
`__main__` before click is, and by click's `hash` command."""

from __future__ import annotations

import os
import sys

from once._core import write_b3sum
from once.errors import EXIT_FAILED


def print_b3sum(paths: list[str]) -> int:
    """Print each file's line, folders walked, as the extension hashes them; the exit status.
    A path that cannot be read raises its OSError once the lines before it are printed; a reader
    that goes away (`once hash . | head`) ends it quietly."""
    out = sys.stdout.buffer
    try:
        try:
            write_b3sum(paths, out.write)
        finally:
            out.flush()  # the lines before an error are printed before it is
    except BrokenPipeError:
        # Keep the flush at exit from failing again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return 0
