"""The validated workspace of an earlier command, kept in `.once/` so that an unchanged
workspace is not read and validated again.

Reading the once.toml of 1,000 packages costs ~0.45 s (every file parsed, every value
checked), more than everything else a no-op run does. The copy is used only while every file
it was read from, and every folder listed to find the packages, has exactly the stat (device,
inode, size, mtime, ctime) it had when it was read; any edit, new package folder, removal or
rename changes one of them. It is written only when each of those stats is settled (see
state/stamps.py).

`marshal`, not `pickle`: the file lives in the workspace, and loading it must never run code.
Sealed (state/atomic_file.py): a damaged copy is read as no copy, never as a slightly different
workspace.
"""

from __future__ import annotations

import marshal
import sys
import time
from pathlib import Path

from once import __version__
from once.config.model import Package, RemoteSettings, Rule, Workspace
from once.errors import os_error_message
from once.state.atomic_file import read_sealed, write_sealed
from once.state.kept_state import unsaved
from once.state.stamps import Stamps, hold, settled, signature

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

CACHE_NAME = "workspace-cache"
# Bump when the layout of the encoded tuples changes.
FORMAT = 1


class Reads:
    """What a workspace was read from: the files read, and the folders listed to find the
    packages. `cacheable` is False when a listing cannot be captured (a `**` member glob)."""

    __slots__ = ("cacheable", "files", "folders", "started_ns")

    def __init__(self, started_ns: int) -> None:
        self.started_ns = started_ns
        self.files: list[Path] = []
        self.folders: list[Path] = []
        self.cacheable = True


def start_reads() -> Reads:
    return Reads(time.time_ns())


def _header(root: Path) -> tuple[Any, ...]:
    # The code that validated it is part of what it means: a new version re-reads.
    config_module = Path(__file__).parent.parent / "config" / "__init__.py"
    try:
        code = signature(config_module)
    except OSError:
        code = (0, 0, 0, 0, 0)
    return (FORMAT, RULE_FIELDS, REMOTE_FIELDS, __version__, sys.version, str(root), code)


def load(root: Path, cache_file: Path) -> Workspace | None:
    """The workspace of `root` kept in `cache_file`, or None when there is none or anything it
    was read from changed (or the file is damaged: it is then simply rebuilt)."""
    data = read_sealed(cache_file)
    if data is None:
        return None
    try:
        # Plain values only; marshal builds no objects that run code.
        header, stamps, encoded = marshal.loads(data)  # noqa: S302
        if header != _header(root) or not hold(stamps):
            return None
        return _decode(root, encoded, stamps)
    except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError):
        return None


def save(root: Path, cache_file: Path, workspace: Workspace, reads: Reads) -> Workspace:
    """Keep `workspace` for the next command, if every stat it depends on is settled and the
    workspace has its state folder already: a command that fails on a bad config (or only
    looks) must not be the one that creates it. Returns it with the stamps that vouch for it
    (`Workspace.stamps`) when it was kept."""
    if not reads.cacheable:
        return workspace
    if not cache_file.parent.is_dir():
        # Kept by the run that makes the folder (`keep`), once the configuration proved good.
        return Workspace(workspace.root, workspace.packages, workspace.remote, reads=reads)
    stamps: Stamps = []
    try:
        for path in _unique([*reads.files, *reads.folders]):
            stamp = signature(path)
            if not settled(stamp, reads.started_ns):
                return workspace  # edited just now: read it again until its stamp is past
            stamps.append((str(path), stamp))
        write_sealed(cache_file, marshal.dumps((_header(root), stamps, _encode(workspace))))
    except OSError as err:
        # A read-only checkout or a full disk: the next command reads the files again.
        unsaved("the validated configuration", os_error_message(err))
        return workspace
    return Workspace(workspace.root, workspace.packages, workspace.remote, stamps)


def keep(workspace: Workspace, state_dir: str) -> Stamps | None:
    """Keep `workspace`, read before its state folder `state_dir` was made, now that a run has
    made it; the stamps that vouch for it (None when it cannot be kept)."""
    if workspace.reads is None:
        return workspace.stamps
    return save(workspace.root, Path(state_dir) / CACHE_NAME, workspace, workspace.reads).stamps


def _unique(paths: Iterable[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


# --- encoding: plain tuples of str, bool, None, float -----------------------------------------

# The fields stored, in order; a package's path and its once.toml (`source`) are stored once per
# package, not per rule. Part of the header: a changed model never reads an older file.
RULE_FIELDS = tuple(name for name in Rule.FIELDS if name not in ("package", "source"))
REMOTE_FIELDS = tuple(name for name in RemoteSettings.FIELDS if name != "source")


def _encode(workspace: Workspace) -> tuple[Any, ...]:
    packages = tuple(
        (
            package.path,
            package.deps,
            str(package.source),
            tuple(
                tuple(getattr(rule, name) for name in RULE_FIELDS)
                for rule in package.rules.values()
            ),
        )
        for package in workspace.packages.values()
    )
    remote = workspace.remote
    encoded_remote = (
        None
        if remote is None
        else (tuple(getattr(remote, name) for name in REMOTE_FIELDS), str(remote.source))
    )
    return (packages, encoded_remote)


def _decode(root: Path, encoded: tuple[Any, ...], stamps: Stamps) -> Workspace:
    packages_data, remote_data = encoded
    packages: dict[str, Package] = {}
    for path, deps, source_text, rules_data in packages_data:
        source = Path(source_text)
        rules: dict[str, Rule] = {}
        for values in rules_data:
            rule = Rule(package=path, source=source, **dict(zip(RULE_FIELDS, values, strict=True)))
            rules[rule.name] = rule
        packages[path] = Package(path=path, deps=deps, rules=rules, source=source)
    remote = None
    if remote_data is not None:
        values, remote_source = remote_data
        remote = RemoteSettings(
            source=Path(remote_source), **dict(zip(REMOTE_FIELDS, values, strict=True))
        )
    return Workspace(root=root, packages=packages, remote=remote, stamps=stamps)
