"""Where the local cache lives, the bound on its size, and the run log every `once run` appends
its hits and misses to (`once cache stats` reads it).

Imported by every run, a no-op too (run/pipeline.py): the standard library's lightest modules
only (no pathlib, re or json)."""

from __future__ import annotations

import os
import sys
import time

from once import _core
from once.errors import UsageError

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_SIZE_ENV = "ONCE_CACHE_MAX_SIZE"
# One JSON line per `once run` in the cache folder. Compacted to KEEP_RUNS lines once it passes
# RUNS_FILE_LIMIT bytes (a line is about 50 bytes), so it never grows without bound either.
RUNS_FILE = "runs.jsonl"
KEEP_RUNS = 200
RUNS_FILE_LIMIT = 64 << 10

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_BEYOND_SIZES = float(1 << 64)


CACHE_DIR_ENV = "ONCE_CACHE_DIR"


def cache_folder(environ: Mapping[str, str] = os.environ) -> str:
    """`$ONCE_CACHE_DIR`, else `$XDG_CACHE_HOME/once`, else `~/.cache/once`."""
    if environ.get(CACHE_DIR_ENV):
        return environ[CACHE_DIR_ENV]
    xdg = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "once")


def open_store(*, quiet: bool = False) -> _core.Store | None:
    """The local store, or None (with one warning unless `quiet`) when its folder cannot be
    used: the build then runs without caching rather than failing."""
    try:
        return _core.Store(cache_folder())
    except OSError as err:
        if not quiet:
            print(f"once: warning: caching is off for this run: {err}", file=sys.stderr)
        return None


def configured_max_size(environ: Mapping[str, str] = os.environ) -> int | None:
    """`$ONCE_CACHE_MAX_SIZE` in bytes, None when unset; a malformed value is a usage error
    (exit 2), raised by a run before it does anything."""
    raw = environ.get(MAX_SIZE_ENV, "").strip()
    if not raw:
        return None
    try:
        return parse_size(raw)
    except ValueError as err:
        raise UsageError(f"{MAX_SIZE_ENV}: {err}") from None


def parse_size(text: str) -> int:
    """Bytes from `500M`, `2G`, `1.5T`, `4096`, `10GiB`; ValueError when it is none of those."""
    body = text.strip().lower()
    body = body.removesuffix("ib") if body.endswith("ib") else body.removesuffix("b")
    unit = body[-1:] if body[-1:] in ("k", "m", "g", "t") else ""
    number = body[: len(body) - len(unit)].strip()
    whole, _, fraction = number.partition(".")
    if not (_digits(whole) and (_digits(fraction) or "." not in number)):
        raise ValueError(
            f"{text!r} is not a size: give bytes, or a number with K, M, G or T, e.g. 500M or 2G"
        )
    size = float(number) * _UNITS[unit]
    # The core counts bytes in 64 bits; `not <` also refuses the infinity of 400 nines.
    if not size < _BEYOND_SIZES:
        raise ValueError(f"{text!r} is too large a size: the most is 16 EiB")
    return int(size)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def record_run(cache_dir: str | os.PathLike[str], hits: int, misses: int) -> None:
    """Append this run's hits and misses to the cache's run log (one short line, written with
    O_APPEND so concurrent runs do not interleave inside a line)."""
    path = os.path.join(cache_dir, RUNS_FILE)
    line = f'{{"time": {int(time.time())}, "hits": {hits}, "misses": {misses}}}\n'
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > RUNS_FILE_LIMIT:
        # Rewritten whole and renamed into place; a line another run appends meanwhile may be
        # lost, which costs one sample of a statistic, never the cache.
        with open(path, encoding="utf-8", errors="replace") as file:
            keep = file.readlines()[-KEEP_RUNS:]
        temp = os.path.join(os.path.dirname(path), f".tmp-runs-{os.getpid()}")
        with open(temp, "w", encoding="utf-8") as file:
            file.writelines(keep)
        os.replace(temp, path)
