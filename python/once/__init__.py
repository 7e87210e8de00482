"""once: a build cache that runs every step once.

It fingerprints each step's inputs with BLAKE3 and, when the same fingerprint was built
before, restores the outputs and replays the log instead of running the command.
"""

from __future__ import annotations

from once._core import __version__

__all__ = ["__version__"]
