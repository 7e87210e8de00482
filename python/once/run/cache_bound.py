"""The cache's size bound, and the collection at the end of a `once run` that wrote to the
cache (run/pipeline.py): down to the bound, or a count of the store started in the background."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from once import _core
from once.state.cache_files import CACHE_DIR_ENV, configured_max_size

# The default bound: a tenth of the cache's file system (Nx's default), at most 10 GiB so a
# big disk does not mean an unbounded-looking cache (Bazel's and Turborepo's users reported
# 63 GB and 206 GB before those tools had a bound).
DEFAULT_FRACTION = 10
DEFAULT_CEILING = 10 << 30


def default_max_bytes(cache_dir: Path) -> int:
    """A tenth of the size of the file system the cache lives on, at most 10 GiB."""
    probe = cache_dir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent  # the cache folder is made on first use
    fs = os.statvfs(probe)
    return min(fs.f_blocks * fs.f_frsize // DEFAULT_FRACTION, DEFAULT_CEILING)


def max_cache_bytes(cache_dir: Path, environ: Mapping[str, str] = os.environ) -> int:
    """The size bound: `$ONCE_CACHE_MAX_SIZE` when set, else `default_max_bytes`."""
    configured = configured_max_size(environ)
    return configured if configured is not None else default_max_bytes(cache_dir)


def collect(store: _core.Store, protected: list[str]) -> None:
    """Collect the cache down to its bound after a run that wrote to it, never evicting an
    entry of `protected` (this run's keys). It may not fail the build: a problem is at most
    one warning."""
    cache_dir = Path(store.root)
    try:
        max_bytes = max_cache_bytes(cache_dir)
        # Not waiting: a busy store means another run is saving, and its end collects.
        report = store.gc(max_bytes, protected, wait=False, count_later=True)
    except OSError as err:
        print(f"once: warning: could not collect the cache: {err}", file=sys.stderr)
        return
    if report["count_due"]:
        count_in_background(cache_dir)
    if report["evicted_entries"]:
        print(
            f"once: cache over its bound of {human_bytes(max_bytes)}: evicted the least recently "
            "used "
            f"{quantity(report['evicted_entries'], 'entry', 'entries')}, "
            f"freed {human_bytes(report['freed_bytes'])}",
            file=sys.stderr,
        )


def count_in_background(cache_dir: Path) -> None:
    """Start `once cache gc` for `cache_dir` as a process of its own, and return at once. The
    hourly full count stats every file of the store (seconds for a large one): done here it
    made the run that happened to fall on the hour many times slower than the others. The
    collection waits for any run saving meanwhile, and evicts only what is over the bound."""
    import subprocess  # noqa: PLC0415 - only when a count is due

    with contextlib.suppress(OSError):  # a count not started is due again next run
        subprocess.Popen(
            [sys.executable, "-m", "once", "cache", "gc"],
            env={**os.environ, CACHE_DIR_ENV: str(cache_dir)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not stopped by the terminal's Ctrl-C meant for a build
        )


def human_bytes(count: int) -> str:
    """`512 B`, `1.5 KiB`, `10.0 GiB`."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def quantity(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"
