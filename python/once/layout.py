"""Where a workspace is: the names every part of once agrees on, and the search for the root.

Kept free of heavy imports: `prelude` finds the root before click or the config code load."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable

CONFIG_NAME = "once.toml"
# The workspace's own state (stat cache, last keys, lock); never an input, never walked.
STATE_DIR = ".once"
# In the state folder: each file's stat and digest as last seen (rust/once-core/src/statcache.rs).
STAT_CACHE = "statcache"
# In the state folder: the files git tracks at or below each ignored path the walk met, under
# the stat of git's index (rust/once-core/src/tracked.rs).
TRACKED_CACHE = "tracked"
# In the state folder: stats and digests of outputs as last checked (OutputStats).
OUTPUT_STATS = "outputs"
# The characters that make a pattern a glob rather than a literal path, as the core reads it
# (`GLOB_SYNTAX` in rust/once-core/src/select.rs).
GLOB_SYNTAX = frozenset("*?[]{}\\")


def is_glob(pattern: str) -> bool:
    return not GLOB_SYNTAX.isdisjoint(pattern)


# An input starting with this names files from the workspace root, not the package folder.
WORKSPACE_PREFIX = "//"
# The remote cache's URL, when the environment names one (run/remote.py).
REMOTE_URL_ENV = "ONCE_REMOTE"


def find_root(start: str, read: Callable[[str], str]) -> str | None:
    """The nearest folder at or above `start` (a resolved path) whose once.toml has
    `[workspace]`, else the nearest with any once.toml (a single-package project); None when
    there is none. `read` gives a once.toml's text (or raises)."""
    nearest: str | None = None
    folder = start
    while True:
        candidate = os.path.join(folder, CONFIG_NAME)
        if os.path.isfile(candidate):
            nearest = nearest or folder
            if _has_workspace_table(read(candidate)):
                return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return nearest
        folder = parent


def _has_workspace_table(text: str) -> bool:
    # A line-by-line look rather than a regex: `re` is not loaded this early (run/prelude.py).
    return any(line.lstrip().startswith("[workspace]") for line in text.splitlines())
