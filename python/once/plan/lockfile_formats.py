"""Parsers of the lockfiles once slices (plan/lockfiles.py): each gives, for a package, the digest
of the part of the lockfile it resolves, or None when it cannot tell (then the whole file enters
the key).

Imported only when a lockfile changed since its slices were kept: parsing a large
pnpm-lock.yaml costs far more than a no-op run."""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

import tomli

from once import _core

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from once.plan.lockfiles import Slicer

    # What the parsers written in Python give: given the package's folder relative to the
    # lockfile's and its manifest's bytes, the entries of the lockfile it resolves, each under
    # a name unique in the lockfile (None: the whole file). `_digested` makes it a Slicer.
    Entries = Callable[[str, bytes | None], dict[str, object] | None]

# Dependency groups a package's own entry lists (devDependencies count: tests run with them).
_NODE_GROUPS = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")
# What an installed package pulls in.
_INSTALLED_GROUPS = ("dependencies", "optionalDependencies", "peerDependencies")


def parse_file(path: str) -> tuple[str, Slicer | None] | None:
    """The digest of the lockfile at `path` and its slicer (None: it is read whole), from one
    read; None when it cannot be read."""
    name = Path(path).name
    try:
        if name == "pnpm-lock.yaml":
            # Read by the core a buffer at a time: the file is never whole in memory.
            digest, digests = _core.pnpm_file_slice_digests(path)
            return digest, _pnpm_slicer(digests)
        data = Path(path).read_bytes()
    except OSError:
        return None
    return _core.hash_bytes(data), parse(name, data)


def parse(name: str, data: bytes) -> Slicer | None:
    """The slicer of lockfile `name` holding `data`; None when it is read whole."""
    if name == "pnpm-lock.yaml":
        return _pnpm(data)
    parser = _PARSERS.get(name)
    if parser is None:
        return None
    try:
        entries = parser(data)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError):
        return None  # not the format it claims to be: the whole file
    return None if entries is None else _digested(entries)


def _digested(entries: Entries) -> Slicer:
    known: dict[str, str] = {}  # each entry's line, made once per lockfile

    def slice_of(where: str, manifest: bytes | None) -> str | None:
        try:
            found = entries(where, manifest)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError):
            return None  # a shape the parser does not know: the whole file
        return None if found is None else _entries_digest(found, known)

    return slice_of


def _entries_digest(entries: dict[str, object], known: dict[str, str]) -> str:
    """The digest of a slice: of its entries' names and digests (a shared dependency is in most
    packages' slices: `known` keeps each entry's line)."""
    lines = []
    for name, entry in entries.items():
        line = known.get(name)
        if line is None:
            text = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
            line = known[name] = f"{json.dumps(name)} {_core.hash_bytes(text.encode())}\n"
        lines.append(line)
    lines.sort()
    return _core.hash_bytes("".join(lines).encode())


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _folder(where: str) -> str:
    """A package folder relative to the lockfile's, normalized ("." for the same)."""
    return posixpath.normpath(where)


# --- pnpm-lock.yaml -----------------------------------------------------------------------


def _pnpm(data: bytes) -> Slicer | None:
    return _pnpm_slicer(_core.pnpm_slice_digests(data))


def _pnpm_slicer(digests: dict[str, str | None] | None) -> Slicer | None:
    # Sliced in the core (rust/once-core/src/pnpm_slices.rs), every importer at once: a tree of
    # Python objects of a 6 MB lockfile took 4 s and 280 MB to build.
    if digests is None:
        return None

    def slice_of(where: str, _: bytes | None) -> str | None:
        return digests.get(_folder(where))

    return slice_of


# --- package-lock.json, npm-shrinkwrap.json (v2, v3) ----------------------------------------


def _npm(data: bytes) -> Entries | None:
    doc = json.loads(data)
    packages = _dict(doc.get("packages"))
    if not packages:
        return None  # lockfile v1 names no workspace: the whole file

    def slice_of(where: str, _: bytes | None) -> dict[str, object] | None:
        start = "" if _folder(where) == "." else _folder(where)
        if start not in packages:
            return None
        taken: dict[str, object] = {}
        pending = [start]
        while pending:
            location = pending.pop()
            if location in taken:
                continue
            entry = _dict(packages.get(location))
            taken[location] = entry
            if entry.get("link"):
                target = entry.get("resolved")
                if not isinstance(target, str) or target not in packages:
                    return None
                pending.append(target)
                continue
            own = location == start or "node_modules/" not in f"{location}/"
            for group in _NODE_GROUPS if own else _INSTALLED_GROUPS:
                for name in _dict(entry.get(group)):
                    found = _node_resolve(location, name, packages)
                    if found is not None:
                        pending.append(found)
                    elif group == "dependencies":
                        return None  # a dependency the lockfile does not place
        return {
            "head": doc.get("lockfileVersion"),
            **{f"package {key}": value for key, value in taken.items()},
        }

    return slice_of


def _node_resolve(location: str, name: str, packages: dict[str, object]) -> str | None:
    """Where node finds `name` from the package at `location`: its own node_modules, then
    each enclosing folder's, up to the lockfile's."""
    parts = location.split("/") if location else []
    while True:
        candidate = "/".join([*parts, "node_modules", name])
        if candidate in packages:
            return candidate
        if not parts:
            return None
        parts.pop()
        if len(parts) >= 2 and parts[-1].startswith("@") and parts[-2] == "node_modules":
            parts.pop()  # out of a scope folder (`node_modules/@scope/name`)
        if parts and parts[-1] == "node_modules":
            parts.pop()


# --- yarn.lock (v1 and berry), bun.lock ------------------------------------------------------


def _manifest_deps(manifest: bytes | None) -> list[tuple[str, str]] | None:
    """(name, range) of every dependency a package.json declares."""
    if manifest is None:
        return None
    doc = json.loads(manifest)
    return [
        (name, str(spec)) for group in _NODE_GROUPS for name, spec in _dict(doc.get(group)).items()
    ]


def _yarn(data: bytes) -> Entries | None:
    text = data.decode()
    if "__metadata:" in text:
        return _yarn_berry(data)
    entries = _yarn_classic(text)

    def slice_of(_: str, manifest: bytes | None) -> dict[str, object] | None:
        declared = _manifest_deps(manifest)
        if declared is None:
            return None
        return _yarn_closure(entries, declared, lambda name, spec: f"{name}@{spec}")

    return slice_of


def _yarn_classic(text: str) -> dict[str, dict[str, object]]:
    """yarn.lock v1: `"a@^1", a@^1.1:` headers, then indented `version "1.2.3"` lines and a
    `dependencies:` block of `name "range"` lines. Every descriptor maps to its block."""
    entries: dict[str, dict[str, object]] = {}
    block: dict[str, object] = {}
    section: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        if indent == 0:
            if not body.endswith(":"):
                raise ValueError(f"not a yarn.lock header: {body!r}")
            block = {}
            section = None
            for descriptor in body[:-1].split(","):
                entries[descriptor.strip().strip('"')] = block
        elif indent == 2:
            section = None
            if body.endswith(":"):
                section = {}
                block[body[:-1]] = section
            else:
                key, _, value = body.partition(" ")
                block[key] = value.strip('"')
        elif section is not None:
            key, _, value = body.partition(" ")
            section[key.strip('"')] = value.strip('"')
    return entries


def _yarn_berry(data: bytes) -> Entries | None:
    # YAML, read by the core as PyYAML's base loader reads it: every scalar a string (a
    # lockfile never means numbers or dates).
    doc = _dict(_core.load_yaml(data))
    entries: dict[str, dict[str, object]] = {}
    workspaces: dict[str, dict[str, object]] = {}
    for header, block in doc.items():
        if header == "__metadata" or not isinstance(block, dict):
            continue
        for descriptor in header.split(","):
            entries[descriptor.strip()] = block
            _, _, reference = descriptor.strip()[1:].partition("@")
            if reference.startswith("workspace:"):
                workspaces[posixpath.normpath(reference[len("workspace:") :])] = block

    def slice_of(where: str, _: bytes | None) -> dict[str, object] | None:
        own = workspaces.get(_folder(where))
        if own is None:
            return None
        declared = [(name, str(spec)) for name, spec in _dict(own.get("dependencies")).items()]
        closure = _yarn_closure(entries, declared, _berry_descriptor)
        if closure is None:
            return None
        return {"head": doc.get("__metadata"), "own": own, **closure}

    return slice_of


def _berry_descriptor(name: str, spec: str) -> str:
    # Berry writes a plain range as `npm:RANGE`; a protocol (`workspace:`, `patch:`) stays.
    return f"{name}@{spec}" if re.match(r"^[a-z]+:", spec) else f"{name}@npm:{spec}"


def _yarn_closure(
    entries: dict[str, dict[str, object]],
    declared: list[tuple[str, str]],
    descriptor: Callable[[str, str], str],
) -> dict[str, object] | None:
    taken: dict[str, object] = {}
    pending = list(declared)
    while pending:
        name, spec = pending.pop()
        key = descriptor(name, spec)
        if f"entry {key}" in taken:
            continue
        block = entries.get(key)
        if block is None:
            if spec.startswith(("workspace:", "file:", "link:", "portal:")):
                continue  # another package of the workspace: its own files are its inputs
            return None
        taken[f"entry {key}"] = block
        for group in ("dependencies", "optionalDependencies", "peerDependencies"):
            pending.extend((dep, str(range_)) for dep, range_ in _dict(block.get(group)).items())
    return taken


def _bun(data: bytes) -> Entries | None:
    # bun.lock is JSON with trailing commas.
    doc = json.loads(re.sub(r",(\s*[}\]])", r"\1", data.decode()))
    workspaces = _dict(doc.get("workspaces"))
    packages = _dict(doc.get("packages"))

    def slice_of(where: str, _: bytes | None) -> dict[str, object] | None:
        start = "" if _folder(where) == "." else _folder(where)
        own = workspaces.get(start)
        if not isinstance(own, dict):
            return None
        taken: dict[str, object] = {}
        pending = [name for group in _NODE_GROUPS for name in _dict(own.get(group))]
        while pending:
            name = pending.pop()
            if f"package {name}" in taken:
                continue
            entry = packages.get(name)
            if not isinstance(entry, list):
                return None
            taken[f"package {name}"] = entry
            info = next((part for part in entry if isinstance(part, dict)), {})
            for group in _INSTALLED_GROUPS:
                pending.extend(_dict(info.get(group)))
        return {"head": doc.get("lockfileVersion"), "own": own, **taken}

    return slice_of


# --- uv.lock, Cargo.lock ------------------------------------------------------------------


def _uv(data: bytes) -> Entries | None:
    doc = tomli.loads(data.decode())
    by_name = _by_name(doc.get("package"))

    def slice_of(where: str, _: bytes | None) -> dict[str, object] | None:
        start = _folder(where)
        own = [
            entry
            for entries in by_name.values()
            for entry in entries
            if any(
                isinstance(path, str) and posixpath.normpath(path) == start
                for kind, path in _dict(entry.get("source")).items()
                if kind in ("editable", "virtual", "directory")
            )
        ]
        if not own:
            return None

        def deps(entry: dict[str, object]) -> list[str]:
            found = [_dict(dep).get("name") for dep in _list(entry.get("dependencies"))]
            for table in ("optional-dependencies", "dev-dependencies"):
                for group in _dict(entry.get(table)).values():
                    found.extend(_dict(dep).get("name") for dep in _list(group))
            return [name for name in found if isinstance(name, str)]

        head = {key: doc.get(key) for key in ("version", "requires-python", "options")}
        return {"head": head, **_closure(by_name, own, deps)}

    return slice_of


def _cargo(data: bytes) -> Entries | None:
    doc = tomli.loads(data.decode())
    by_name = _by_name(doc.get("package"))

    def slice_of(_: str, manifest: bytes | None) -> dict[str, object] | None:
        if manifest is None:
            return None
        crate = _dict(tomli.loads(manifest.decode()).get("package")).get("name")
        # A workspace member has no `source`; a registry crate of the same name has one.
        own = [entry for entry in by_name.get(str(crate), []) if "source" not in entry]
        if not own:
            return None

        def deps(entry: dict[str, object]) -> list[str]:
            # "name", "name version" or "name version (source)"
            return [str(dep).split(" ", 1)[0] for dep in _list(entry.get("dependencies"))]

        return {"head": doc.get("version"), **_closure(by_name, own, deps)}

    return slice_of


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _by_name(packages: object) -> dict[str, list[dict[str, object]]]:
    by_name: dict[str, list[dict[str, object]]] = {}
    for entry in _list(packages):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            by_name.setdefault(entry["name"], []).append(entry)
    return by_name


def _closure(
    by_name: dict[str, list[dict[str, object]]],
    own: list[dict[str, object]],
    deps: Callable[[dict[str, object]], list[str]],
) -> dict[str, object]:
    """`own` and every entry its dependencies reach by name (each version of a name that
    appears more than once: more than needed, never less), by name, version and source."""
    pending = list(own)
    names_done: set[str] = set()
    taken: dict[str, object] = {}
    while pending:
        entry = pending.pop()
        key = f"package {entry['name']} {entry.get('version')} {entry.get('source')}"
        if key in taken:
            continue
        taken[key] = entry
        for name in deps(entry):
            if name in names_done:
                continue
            names_done.add(name)
            if name not in by_name:
                raise KeyError(name)  # a dependency the lockfile does not list
            pending.extend(by_name[name])
    return taken


_PARSERS: dict[str, Callable[[bytes], Entries | None]] = {
    "package-lock.json": _npm,
    "npm-shrinkwrap.json": _npm,
    "yarn.lock": _yarn,
    "bun.lock": _bun,
    "uv.lock": _uv,
    "Cargo.lock": _cargo,
}
