"""Stats that vouch for a copy: a copy of what was read from some files (the validated
workspace, a run's plan) stays good while each of them has exactly the stat it had when read.

A stat vouches only once it is settled: stamped clearly before the read began (the
racy-timestamp rule of the stat cache, `_core.settled`), so an edit landing in the same clock
tick as the read cannot hide behind an unchanged stat. Light: `run/pipeline.py` checks stamps
before anything loads."""

from __future__ import annotations

import os

from once import _core

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Iterable

Signature = tuple[int, int, int, int, int]  # dev, ino, size, mtime_ns, ctime_ns
Stamps = list[tuple[str, Signature]]  # (path, its signature when read)


def signature(path: str | os.PathLike[str]) -> Signature:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(sig: Signature, started_ns: int) -> bool:
    """Whether `sig`, taken after a read that began at `started_ns`, can vouch for it: the
    stat cache's racy-timestamp rule, from the core, so there is one."""
    _, _, _, mtime_ns, ctime_ns = sig
    return _core.settled(mtime_ns, ctime_ns, started_ns)


def hold(stamps: Iterable[tuple[str, Signature]]) -> bool:
    """Whether every path still has its signature (a path gone does not)."""
    try:
        return all(signature(path) == sig for path, sig in stamps)
    except OSError:
        return False
