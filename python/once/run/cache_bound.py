"""The cache's size bound, and what the end of every `once run` does with the cache: record
its hits and misses, and collect the cache down to the bound.

Without click: a plain `once run` loads this (run/session.py) without the command line."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from once.errors import UsageError
from once.state.cache_files import CACHE_DIR_ENV, MAX_SIZE_ENV, parse_size, record_run

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from once.plan.graph import Action
    from once.run.scheduler import Runner
    from once.ui.console import Result

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
    """The size bound: `$ONCE_CACHE_MAX_SIZE` when set, else `default_max_bytes`. A malformed
    value is a usage error (exit 2), raised before anything runs."""
    raw = environ.get(MAX_SIZE_ENV, "").strip()
    if not raw:
        return default_max_bytes(cache_dir)
    try:
        return parse_size(raw)
    except ValueError as err:
        raise UsageError(f"{MAX_SIZE_ENV}: {err}") from None


def run_cache_bound() -> int:
    """The bound for this `once run`'s collection; called first thing, so a malformed
    `$ONCE_CACHE_MAX_SIZE` stops the run (exit 2) before it does anything."""
    from once.run.scheduler import default_cache_dir  # noqa: PLC0415 - see the module docstring

    return max_cache_bytes(default_cache_dir())


def finish_run(
    runner: Runner, actions: list[Action], results: list[Result], max_bytes: int
) -> None:
    """What the end of every `once run` does with the cache: record its hits and misses (not for
    `--force` runs, which say nothing about the cache), and when it wrote anything, collect the
    cache down to `max_bytes`, never evicting an entry of this run's steps.

    Neither may fail the build: a problem is at most one warning."""

    store = runner.store
    if store is None:  # caching was off for this run; the warning was given then
        return
    cacheable = {action.label for action in actions if action.rule.cache}
    counted = [result for result in results if result.label in cacheable]
    hits = sum(result.outcome in ("cached", "restored") for result in counted)
    misses = sum(result.outcome in ("ran", "failed") for result in counted)
    cache_dir = Path(store.root)
    if not runner.force and hits + misses:
        # A statistic: losing it is no reason to warn (the store warns of an unusable folder).
        with contextlib.suppress(OSError):
            record_run(cache_dir, hits, misses)
    if not any(result.outcome == "ran" for result in counted):
        return
    protected = sorted({fp.key for fp in runner.fingerprints.values() if fp.key is not None})
    try:
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
