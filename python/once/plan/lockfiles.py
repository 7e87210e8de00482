"""Lockfiles in keys: which lockfiles govern a package, and the part of each (its slice) that
the package resolves, so that a dependency bump reruns the packages that use the dependency and
no other, and a pull request that only bumps a dependency still tests what it touches.

A package is governed, per ecosystem, by the lockfiles of the nearest folder at or above it (up
to the workspace root) that holds one: pnpm-lock.yaml, package-lock.json, npm-shrinkwrap.json,
yarn.lock, bun.lock, bun.lockb (JavaScript); uv.lock, poetry.lock, requirements.txt,
requirements-dev.txt, requirements-test.txt (Python); Cargo.lock (Rust); go.sum (Go). A package
whose folder has a manifest of other ecosystems only (a Rust crate under a pnpm workspace) is
not governed by that ecosystem's lockfile.

Sliced: pnpm-lock.yaml (the package's importer and the packages it reaches), package-lock.json
and npm-shrinkwrap.json v2/v3 (the workspace entry and what node resolution reaches from it),
yarn.lock v1 and v2+ (the package.json dependencies resolved through it), bun.lock (the workspace
entry and its packages), uv.lock (the project and its dependencies), Cargo.lock (the crate and
its dependencies). Whole: bun.lockb, poetry.lock, requirements files, go.sum, and any lockfile
that cannot be parsed or does not name the package: never less than the package could use.

Slices are kept in `.once/lockfiles` by the lockfile's and the manifest's digests (which the
stat cache gives without reading either), so a lockfile is parsed only when it changed. A run
over an unchanged tree does not come here at all (state/run_keys.py)."""

from __future__ import annotations

import gc
import marshal
import os
import posixpath
import sys

from once import __version__, _core
from once.layout import STATE_DIR
from once.state.atomic_file import read_sealed, write_sealed
from once.state.stamps import signature

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterable, Sequence

    from once.plan.steps import Step

    # A parsed lockfile: given the package's folder relative to the lockfile's ("." for the
    # same) and its manifest's bytes, the digest of the part of the lockfile it resolves (None:
    # the whole file).
    Slicer = Callable[[str, bytes | None], str | None]

# Lockfile names, by the ecosystem they belong to.
LOCKFILE_NAMES = {
    "pnpm-lock.yaml": "node",
    "package-lock.json": "node",
    "npm-shrinkwrap.json": "node",
    "yarn.lock": "node",
    "bun.lock": "node",
    "bun.lockb": "node",
    "uv.lock": "python",
    "poetry.lock": "python",
    "Cargo.lock": "rust",
    "go.sum": "go",
}
# What makes a folder a package of an ecosystem.
MANIFESTS = {
    "node": "package.json",
    "python": "pyproject.toml",
    "rust": "Cargo.toml",
    "go": "go.mod",
}
_MANIFEST_NAMES = frozenset(MANIFESTS.values())
# pip-tools' compiled requirements, by the names it is usually run to write: exact names, so
# that finding them is a set lookup per walked file (`Snapshot.select_named`), never a glob
# (`**/requirements*.txt`) matched against every path on every run that keys (globs for the
# lockfile names cost 12 ms of a one-file-changed run at 10,000 files).
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-test.txt")
SLICES_NAME = "lockfiles"
# Bump when what a slice holds changes: kept slices of another format are worked out again.
FORMAT = 2

# (lockfile path, its digest) -> {(package, manifest digest): what enters the key}
_Kept = dict[tuple[str, str], dict[tuple[str, str], str]]


def ecosystem(path: str) -> str | None:
    """The ecosystem of a lockfile by its name, or None when it is not a lockfile."""
    name = posixpath.basename(path)
    return "python" if name in REQUIREMENTS else LOCKFILE_NAMES.get(name)


def select(snapshot: _core.Snapshot, steps: Sequence[Step]) -> _core.FileSet | None:
    """The lockfiles and manifests the steps' keys may need, to hash with their inputs,
    wherever they lie (only those in a package folder or above matter; the others cost one
    stat per run); None when every step has lockfiles turned off."""
    if all(step.lockfiles == () for step in steps):
        return None
    named = {path for step in steps if step.lockfiles for path in step.lockfiles}
    names = {posixpath.basename(path) for path in named} | _MANIFEST_NAMES
    if any(step.lockfiles is None for step in steps):
        names.update(LOCKFILE_NAMES, REQUIREMENTS)
    return snapshot.select_named(sorted(names))


def slices(
    root: str, snapshot: _core.Snapshot, found: _core.FileSet | None, steps: Sequence[Step]
) -> list[list[tuple[str, str]]]:
    """For each step, (lockfile path, what of it enters the key) of each lockfile governing its
    package: `slice:DIGEST` of the part the package resolves, or `whole:DIGEST`. `found` is
    `select`'s, hashed."""
    if found is None:
        return [[] for _ in steps]
    digests = {path: digest for path, digest, _ in snapshot.inputs(found)}
    named = {path for step in steps if step.lockfiles for path in step.lockfiles}
    for path in sorted(named - digests.keys()):
        # As an input glob matching nothing: a typo here is a bump no key would see.
        print(f"once: warning: [workspace] lockfiles: {path!r} is not a file", file=sys.stderr)
    resolver = _Resolver(root, digests)
    try:
        with _NoCycleCollection():
            per_step = [resolver.key_parts(step.package, step.lockfiles) for step in steps]
    finally:
        resolver.save()
    return per_step


def by_folder(present: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """The lockfiles among `present` paths, as (path, ecosystem) by folder: what `governing`
    looks up, made once for all packages."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path in present:
        kind = ecosystem(path)
        if kind is not None:
            found.setdefault(posixpath.dirname(path), []).append((path, kind))
    for here in found.values():
        here.sort()
    return found


def governing(
    package: str,
    folders: dict[str, list[tuple[str, str]]],
    named: Sequence[str] | None,
    present: Container[str],
) -> list[tuple[str, str]]:
    """(lockfile, ecosystem) of each lockfile governing `package`: per ecosystem those of the
    nearest folder at or above it that holds any (`folders`, from `by_folder`); with `named`
    lockfiles, every one of them that is `present` (a file of another name read whole)."""
    if named is not None:
        return [(path, ecosystem(path) or "named") for path in named if path in present]
    found: list[tuple[str, str]] = []
    taken: set[str] = set()
    for folder in _folders_up(package):
        here = folders.get(folder, ())
        found.extend((path, kind) for path, kind in here if kind not in taken)
        taken.update(kind for _, kind in here)
    return found


def governs(package: str, kind: str, present: Container[str]) -> bool:
    """Whether a lockfile of ecosystem `kind` governs `package` at all: not when its folder
    holds manifests of other ecosystems only (a Rust crate below a pnpm workspace)."""
    if kind not in MANIFESTS or posixpath.join(package, MANIFESTS[kind]) in present:
        return True
    return not any(
        posixpath.join(package, name) in present
        for other, name in MANIFESTS.items()
        if other != kind
    )


def present(root: str, packages: Iterable[str], extra: Iterable[str]) -> set[str]:
    """The lockfiles and manifests in the folders of `packages` and above them, found on
    disk (for `--affected`, which has no hashed walk), and `extra` paths."""
    folders = {folder for package in packages for folder in _folders_up(package)}
    found = set(extra)
    for folder in folders:
        try:
            names = os.listdir(os.path.join(root, folder))
        except OSError:
            continue
        found.update(
            posixpath.join(folder, name)
            for name in names
            if ecosystem(name) is not None or name in _MANIFEST_NAMES
        )
    return found


def read(root: str, path: str) -> bytes | None:
    """The bytes of the workspace file `path`, or None where it cannot be read."""
    return _read(os.path.join(root, path))


def parts_differ(
    root: str, path: str, packages: list[tuple[str, str]], *, old: bytes, new: bytes
) -> set[str]:
    """The `packages` ((package, ecosystem) pairs) whose part of lockfile `path` differs
    between its `old` and `new` contents (each package's manifest as it is now). Each
    version is parsed once."""
    name = posixpath.basename(path)
    differ: set[str] = set()
    with _NoCycleCollection():
        before, after = _parse(name, old), _parse(name, new)
        for package, kind in packages:
            manifest = _manifest_path(package, kind)
            manifest_data = read(root, manifest) if manifest else None
            where = posixpath.relpath(package or ".", posixpath.dirname(path) or ".")
            part_before = before(where, manifest_data) if before else None
            part_after = after(where, manifest_data) if after else None
            if part_before is None or part_after is None:
                if old != new:
                    differ.add(package)
            elif part_before != part_after:
                differ.add(package)
    return differ


def _folders_up(package: str) -> list[str]:
    folders = [package]
    while package:
        package = posixpath.dirname(package)
        folders.append(package)
    return folders


class _Resolver:
    """Works out the key parts of each package's lockfiles, from `.once/lockfiles` where it
    can, parsing each changed lockfile at most once."""

    def __init__(self, root: str, digests: dict[str, str]) -> None:
        self._root = root
        self._digests = digests  # walked lockfiles and manifests, by path
        self._folders = by_folder(digests)
        self._path = os.path.join(root, STATE_DIR, SLICES_NAME)
        self._kept = _load(self._path)
        self._changed = False
        self._parsed: dict[str, Slicer | None] = {}
        self._by_package: dict[tuple[str, tuple[str, ...] | None], list[tuple[str, str]]] = {}

    def key_parts(self, package: str, named: tuple[str, ...] | None) -> list[tuple[str, str]]:
        if named == ():
            return []
        done = self._by_package.get((package, named))
        if done is None:
            done = [
                (path, part)
                for path, kind in governing(package, self._folders, named, self._digests)
                for part in [self._part(path, kind, package)]
                if part is not None
            ]
            self._by_package[(package, named)] = done
        return done

    def _part(self, path: str, kind: str, package: str) -> str | None:
        """What of the lockfile `path` enters the key of `package`'s rules; None when the
        lockfile does not govern it (its folder is a package of other ecosystems only)."""
        if not governs(package, kind, self._digests):
            return None
        digest = self._digests[path]
        manifest = _manifest_path(package, kind)
        manifest_digest = self._digests.get(manifest, "") if manifest else ""
        kept = self._kept.setdefault((path, digest), {})
        part = kept.get((package, manifest_digest))
        if part is None:
            part, settled = self._work_out(path, digest, package, manifest, manifest_digest)
            if settled:
                kept[(package, manifest_digest)] = part
                self._changed = True
        return part

    def _work_out(
        self, path: str, digest: str, package: str, manifest: str | None, manifest_digest: str
    ) -> tuple[str, bool]:
        """(the key part, whether it may be kept): not when a file changed since it was hashed."""
        if path not in self._parsed:
            found = _parse_file(os.path.join(self._root, path))
            if found is None or found[0] != digest:
                self._parsed[path] = None
                return f"whole:{found[0] if found else _core.hash_bytes(b'')}", False
            self._parsed[path] = found[1]
        lockfile = self._parsed[path]
        if lockfile is None:
            return f"whole:{digest}", True
        manifest_data = None
        if manifest and manifest_digest:
            manifest_data = _read(os.path.join(self._root, manifest))
            if manifest_data is None or _core.hash_bytes(manifest_data) != manifest_digest:
                return f"whole:{digest}", False
        where = posixpath.relpath(package or ".", posixpath.dirname(path) or ".")
        part = lockfile(where, manifest_data)
        if part is None:
            return f"whole:{digest}", True
        return f"slice:{part}", True

    def save(self) -> None:
        if not self._changed or not os.path.isdir(os.path.dirname(self._path)):
            return
        current = {
            key: parts for key, parts in self._kept.items() if self._digests.get(key[0]) == key[1]
        }
        try:
            write_sealed(self._path, marshal.dumps((_header(), current)))  # type: ignore[arg-type]
        except OSError as err:
            from once.errors import os_error_message  # noqa: PLC0415
            from once.state.kept_state import unsaved  # noqa: PLC0415

            unsaved("the lockfile slices", os_error_message(err))  # worked out again next time


def _load(path: str) -> _Kept:
    try:
        header, kept = marshal.loads(read_sealed(path) or b"")  # noqa: S302 - plain values only
    except (EOFError, ValueError, TypeError):
        return {}
    return kept if header == _header() and isinstance(kept, dict) else {}


def _header() -> tuple[object, ...]:
    # The parsers' files by their stats (the Python parsers and the core, which slices
    # pnpm-lock.yaml): in a development checkout, a changed parser makes every kept slice
    # stale, as a new version does.
    try:
        parsers = [
            signature(path)
            for path in (
                os.path.join(os.path.dirname(__file__), "lockfile_formats.py"),
                _core.__file__,
            )
        ]
    except OSError:
        parsers = None
    return (FORMAT, __version__, parsers)


def _manifest_path(package: str, kind: str) -> str | None:
    name = MANIFESTS.get(kind)
    return posixpath.join(package, name) if name else None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def _parse_file(path: str) -> tuple[str, Slicer | None] | None:
    """The digest of the lockfile at `path` and its slicer, from one read; None when it
    cannot be read."""
    from once.plan import lockfile_formats  # noqa: PLC0415 - only when a lockfile changed

    return lockfile_formats.parse_file(path)


def _parse(path: str, data: bytes) -> Slicer | None:
    """The slicer of a lockfile, or None when it is read whole (an unknown format, or one
    that does not parse)."""
    from once.plan import lockfile_formats  # noqa: PLC0415 - only when a lockfile changed

    return lockfile_formats.parse(posixpath.basename(path), data)


class _NoCycleCollection:
    """Around the parsing and slicing of lockfiles (`slices`, `parts_differ`): the parsers
    written in Python make a million small dicts and strings and free none, and the cyclic
    collector would only walk them, again and again (a 2.8 MB pnpm-lock.yaml, when it was
    parsed in Python, took 4.0 s with it and 1.1 s without)."""

    def __enter__(self) -> None:
        self._enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *_: object) -> None:
        if self._enabled:
            gc.enable()
