"""`once cache {stats,gc,clear,verify}`: the local cache's size, hit rate and upkeep (its bound,
and what every run does with it, are in run/cache_bound.py).

Imports only click (and the standard library) up front, like cli/: the extension and the run
machinery load inside the commands, so `once --version` does not pay for them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from once.run.cache_bound import human_bytes, max_cache_bytes, quantity
from once.state.cache_files import MAX_SIZE_ENV, RUNS_FILE, cache_folder, parse_size

if TYPE_CHECKING:
    from once import _core

# `once cache stats` reports the hit rate of the last RECENT_RUNS runs of the run log.
RECENT_RUNS = 20
SIZE_HELP = "SIZE is bytes, or a number with K, M, G or T (powers of 1024), e.g. 500M, 2G."


def _count(value: object) -> int:
    """A number of a run record: once writes only counts and Unix seconds, so anything else
    (Infinity, 1e308, a string) is a damaged line."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
        raise ValueError(value)
    return value


def recent_runs(cache_dir: Path, count: int = RECENT_RUNS) -> list[dict[str, int]]:
    """The last `count` runs' records, oldest first; malformed lines are skipped."""
    try:
        lines = (cache_dir / RUNS_FILE).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    runs = []
    for line in reversed(lines):
        try:
            record = json.loads(line)
            runs.append({name: _count(record[name]) for name in ("time", "hits", "misses")})
        except (ValueError, KeyError, TypeError):
            continue
        if len(runs) == count:
            break
    return runs[::-1]


def _size_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """A callback rather than a `click.ParamType`, which is generic only in newer clicks."""
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _open_store() -> tuple[_core.Store, Path]:
    from once import _core  # noqa: PLC0415 - see the module docstring

    cache_dir = _cache_dir()
    return _core.Store(str(cache_dir)), cache_dir


def _emit(as_json: bool, data: Mapping[str, object], text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


_JSON_HELP = "Print the result as JSON."
_WHERE = (
    "The cache is $ONCE_CACHE_DIR, else $XDG_CACHE_HOME/once, else ~/.cache/once. Its size "
    f"bound is ${MAX_SIZE_ENV} when set, else a tenth of its file system, at most 10 GiB."
)


@click.group("cache", context_settings={"help_option_names": ["-h", "--help"]}, epilog=_WHERE)
def cache_group() -> None:
    """Inspect and maintain the local cache.

    Every `once run` that stores something evicts least-recently-used entries until the cache
    is within its size bound, never those the run itself used; these commands show the cache
    and repair or empty it by hand."""


@cache_group.command(epilog=_WHERE)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def stats(as_json: bool) -> None:
    """Show entries, blobs, bytes against the size bound, and the hit rate of recent runs.

    The hit rate counts cacheable steps of the last 20 `once run`s (not --force runs): steps
    restored or already up to date, over those plus steps that ran or failed."""
    bound = max_cache_bytes(_cache_dir())
    store, cache_dir = _open_store()
    usage = store.usage()
    runs = recent_runs(cache_dir)
    hits = sum(run["hits"] for run in runs)
    misses = sum(run["misses"] for run in runs)
    rate = hits / (hits + misses) if hits + misses else None
    data = {
        "cache_dir": str(cache_dir),
        **usage,
        "max_bytes": bound,
        "recent_runs": len(runs),
        "hits": hits,
        "misses": misses,
        "hit_rate": rate,
    }
    percent = f" ({100 * usage['bytes'] / bound:.0f}%)" if bound else ""
    if rate is None:
        hit_line = "hit rate:  no runs recorded yet"
    else:
        hit_line = (
            f"hit rate:  {100 * rate:.0f}% over the last {quantity(len(runs), 'run', 'runs')} "
            f"({quantity(hits, 'hit', 'hits')}, {quantity(misses, 'miss', 'misses')})"
        )
    text = "\n".join(
        [
            f"cache:     {cache_dir}",
            f"entries:   {usage['entries']}",
            f"blobs:     {usage['blobs']}",
            f"size:      {human_bytes(usage['bytes'])} of {human_bytes(bound)}{percent}",
            hit_line,
        ]
    )
    _emit(as_json, data, text)


@cache_group.command(epilog=f"{SIZE_HELP} {_WHERE}")
@click.option(
    "--max-size",
    metavar="SIZE",
    default=None,
    callback=_size_option,
    help=f"Collect down to SIZE instead of the bound (${MAX_SIZE_ENV} or the default).",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def gc(max_size: int | None, as_json: bool) -> None:
    """Collect the cache down to its size bound now.

    Deletes blobs no entry names and leftovers of killed processes, then least-recently-used
    entries (and the blobs only they name) until the cache fits. Waits for runs that are
    saving to the cache at the same moment."""
    bound = max_size if max_size is not None else max_cache_bytes(_cache_dir())
    store, _ = _open_store()
    report = store.gc(bound, [], wait=True, sweep=True)
    text = (
        f"once: evicted {quantity(report['evicted_entries'], 'entry', 'entries')}, removed "
        f"{quantity(report['removed_blobs'] + report['removed_temps'], 'file', 'files')} "
        f"no entry needed, freed {human_bytes(report['freed_bytes'])}; the cache holds "
        f"{human_bytes(report['bytes_after'])} of {human_bytes(bound)}"
    )
    _emit(as_json, {**report, "max_bytes": bound}, text)


@cache_group.command(epilog=_WHERE)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def clear(as_json: bool) -> None:
    """Delete every entry and blob; the cache folder stays.

    The next run of every step is a miss. The record of recent runs' hit rates is kept. Waits
    for runs that are saving to the cache at the same moment."""
    store, cache_dir = _open_store()
    removed = store.clear()
    text = (
        f"once: cleared {cache_dir}: {quantity(removed['entries'], 'entry', 'entries')}, "
        f"{quantity(removed['blobs'], 'blob', 'blobs')}, {human_bytes(removed['bytes'])}"
    )
    _emit(as_json, removed, text)


@cache_group.command(epilog=_WHERE)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def verify(as_json: bool) -> None:
    """Re-hash every blob and drop what is corrupt, so every remaining entry is a sound hit.

    Deletes blobs whose bytes no longer match their BLAKE3 name, symlinks where a blob or an
    entry belongs (never followed), and entries whose checksum does not hold (edited, or copied
    from another key), that name a missing or corrupt blob, carry small outputs whose bytes do
    not match their digests, do not decode, or hold a malformed manifest (a path twice, outside
    the workspace, below a file). Exits 0 once
    the cache is consistent (also when something had to be deleted), 1 when it could not be
    checked or repaired."""
    store, _ = _open_store()
    report = store.verify()
    text = (
        f"once: checked {quantity(report['blobs'], 'blob', 'blobs')} "
        f"({human_bytes(report['blob_bytes'])}) and "
        f"{quantity(report['entries'], 'entry', 'entries')}: removed "
        f"{quantity(report['corrupt_blobs'], 'corrupt blob', 'corrupt blobs')} and "
        f"{quantity(report['removed_entries'], 'unsound entry', 'unsound entries')}; "
        "the cache is consistent"
    )
    _emit(as_json, report, text)


def _cache_dir() -> Path:
    return Path(cache_folder())
