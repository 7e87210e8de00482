"""Read `once.toml` files into a validated `Workspace` of packages and rules.

Every problem is a `ConfigError` naming the file, the line where it can be found, and the
offending key or value, so that a user never sees a traceback for a typo. Everything that can be
checked from the files alone is checked here, for every package, whatever the command's targets:
a once.toml is either valid or not. Resolving rule `deps` into labels is `plan/graph.py`'s job.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
import re
import shlex
import sys
from pathlib import Path, PurePosixPath

from once import _core, layout
from once.config.model import RULE_FIELDS, Package, RemoteSettings, Rule, Workspace
from once.errors import ConfigError
from once.layout import CONFIG_NAME, STATE_DIR, WORKSPACE_PREFIX, is_glob
from once.plan.context import ENV_MODES
from once.run.remote_choice import REMOTE_TIMEOUT_RANGE, remote_timeout_fits, remote_url_problem
from once.state import workspace_cache
from once.value import Value

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any, Final

ROOT_KEYS = ("workspace", "package", "rule", "remote")
MEMBER_KEYS = ("package", "rule")
WORKSPACE_KEYS = ("members", "inputs", "env_mode", "lockfiles")
PACKAGE_KEYS = ("deps",)
REMOTE_KEYS = ("url", "read_only", "token_env", "endpoint", "region", "timeout")
# What the remote cache can talk to (the backends of rust/once-core/src/remote).
RULE_KEYS = ("cmd", "inputs", "outputs", "deps", "env", "pass_env", "tools", "cache")
LIST_KEYS = ("inputs", "outputs", "deps", "env", "pass_env", "tools")
# `\Z`, not `$`: `$` also matches before a final newline, which would let `"a\n"` through.
RULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
# POSIX portable variable names, plus the `*` and `?` wildcards of a pattern such as `API_*`.
ENV_PATTERN = re.compile(r"^[A-Za-z_*?][A-Za-z0-9_*?]*\Z")
# No path, argument, variable name or URL can hold one: the OS cuts a C string at it.
NUL_PROBLEM = "holds a NUL character, which no path, command or name can hold"


class Source(Value):
    """One once.toml's text, kept so that every error can point at the line it is about."""

    __slots__ = ("path", "text")
    FIELDS = ("path", "text")

    def __init__(self, path: Path, text: str) -> None:
        self.path: Final = path
        self.text: Final = text

    def error(self, message: str, *keys: str, value: str | None = None) -> ConfigError:
        """An error located at the key path `keys` (and within it at `value`, if given)."""
        return ConfigError(self.path, message, locate(self.text, keys, value))


def source_error(path: Path, message: str, *keys: str, value: str | None = None) -> ConfigError:
    """`Source.error` for a file read earlier; for checks that run after loading (plan/graph.py)."""
    return Source(path, _read(path)).error(message, *keys, value=value)


class CycleError(Exception):
    """Raised by `dependency_order`; `path` starts and ends with the same node."""

    def __init__(self, path: list[str]) -> None:
        super().__init__(" -> ".join(path))
        self.path = path


def dependency_order(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """Every node of `edges` after the nodes it points to; a cycle raises `CycleError`.

    Iterative, not recursive: a chain of a thousand packages must not hit Python's recursion
    limit. Nodes start in sorted order so the cycle reported is the same on every run.
    """
    done: set[str] = set()
    order: list[str] = []
    for start in sorted(edges):
        if start in done:
            continue
        stack = [(start, iter(edges[start]))]
        on_path = {start}
        while stack:
            node, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                stack.pop()
                on_path.discard(node)
                done.add(node)
                order.append(node)
            elif child in on_path:
                path = [name for name, _ in stack]
                raise CycleError([*path[path.index(child) :], child])
            elif child not in done:
                on_path.add(child)
                stack.append((child, iter(edges[child])))
    return order


# --- loading ------------------------------------------------------------------------------


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` whose once.toml has `[workspace]`, else the
    nearest with any once.toml (a single-package project)."""
    found = layout.find_root(str(start), lambda path: _read(Path(path)))
    if found is None:
        raise ConfigError(start, f"no {CONFIG_NAME} here or in any parent folder")
    return Path(found)


def load_workspace(start: Path) -> Workspace:
    """The validated workspace around `start`: from `.once/` when no once.toml and no folder
    listed to find them changed since it was last read (see workspace_cache), else read."""
    root = find_root(start.resolve())
    cache_file = root / STATE_DIR / workspace_cache.CACHE_NAME
    cached = workspace_cache.load(root, cache_file)
    if cached is not None:
        return cached
    reads = workspace_cache.start_reads()
    return workspace_cache.save(root, cache_file, read_workspace(root, reads), reads)


def read_workspace(root: Path, reads: workspace_cache.Reads) -> Workspace:
    """Read and validate every once.toml of the workspace at `root`, noting in `reads` each
    file read and each folder listed."""
    reads.files.append(root / CONFIG_NAME)
    root_source = _load(root / CONFIG_NAME)
    doc = _parse(root_source)
    _check_keys(root_source, doc, ROOT_KEYS)
    packages = {"": _package("", root_source, doc)}
    for member in _members(root, root_source, doc.get("workspace", {}), reads):
        reads.files.append(root / member / CONFIG_NAME)
        source = _load(root / member / CONFIG_NAME)
        member_doc = _parse(source)
        if "remote" in member_doc:
            raise source.error(
                f"[remote] belongs only in the workspace root's {CONFIG_NAME} "
                f"({root_source.path}): one workspace shares one cache",
                "remote",
            )
        if "workspace" in member_doc:
            raise source.error(
                f"[workspace] belongs only in the workspace root's {CONFIG_NAME} "
                f"({root_source.path}); nested workspaces are not supported",
                "workspace",
            )
        _check_keys(source, member_doc, MEMBER_KEYS)
        packages[member] = _package(member, source, member_doc)
    _check_package_deps(packages)
    settings = doc.get("workspace", {})
    shared = _workspace_inputs(root_source, settings)
    mode = _env_mode(root_source, settings)
    lockfiles = _lockfiles(root_source, settings)
    if shared or mode != "strict" or lockfiles is not None:
        packages = {
            path: _with_workspace_settings(package, shared, mode, lockfiles)
            for path, package in packages.items()
        }
    remote = _remote(root_source, doc["remote"]) if "remote" in doc else None
    return Workspace(root=root, packages=packages, remote=remote)


def _workspace_inputs(source: Source, workspace: object) -> tuple[str, ...]:
    """`[workspace] inputs`: globs relative to the root that every rule's key holds (a root
    lockfile, `tsconfig.base.json`), as `//` inputs."""
    table = _table(source, workspace, "workspace")
    patterns = _string_list(source, table.get("inputs", []), "workspace", "inputs")
    for pattern in patterns:
        problem = _input_problem(pattern.removeprefix(WORKSPACE_PREFIX))
        if problem:
            raise source.error(
                f"workspace.inputs: {pattern!r} {problem}", "workspace", "inputs", value=pattern
            )
    return tuple(WORKSPACE_PREFIX + pattern.removeprefix(WORKSPACE_PREFIX) for pattern in patterns)


def _env_mode(source: Source, workspace: object) -> str:
    """`[workspace] env_mode`: "strict" (the default), or "loose" for commands that see the
    whole environment."""
    mode = _table(source, workspace, "workspace").get("env_mode", "strict")
    if mode not in ENV_MODES:
        shown = repr(mode) if isinstance(mode, str) else _toml_type(mode)
        raise source.error(
            f'workspace.env_mode must be "strict" or "loose", not {shown}',
            "workspace",
            "env_mode",
        )
    return str(mode)


def _lockfiles(source: Source, workspace: object) -> tuple[str, ...] | None:
    """`[workspace] lockfiles`: true (the default) finds the lockfiles governing each package
    (None); false, none (); a list names them, relative to the root."""
    value = _table(source, workspace, "workspace").get("lockfiles", True)
    if isinstance(value, bool):
        return None if value else ()
    if not isinstance(value, list):
        raise source.error(
            f"workspace.lockfiles must be true, false or a list of paths, not {_toml_type(value)}",
            "workspace",
            "lockfiles",
        )
    paths = _string_list(source, value, "workspace", "lockfiles")
    for path in paths:
        plain = path.removeprefix(WORKSPACE_PREFIX)
        problem = _input_problem(plain) or ("is a glob, not a path" if is_glob(plain) else None)
        if problem:
            raise source.error(
                f"workspace.lockfiles: {path!r} {problem}", "workspace", "lockfiles", value=path
            )
    return tuple(dict.fromkeys(path.removeprefix(WORKSPACE_PREFIX) for path in paths))


def _with_workspace_settings(
    package: Package, shared: tuple[str, ...], mode: str, lockfiles: tuple[str, ...] | None
) -> Package:
    rules = {
        name: Rule(
            **{
                field: getattr(rule, field)
                for field in RULE_FIELDS
                if field not in ("workspace_inputs", "env_mode", "lockfiles")
            },
            workspace_inputs=shared,
            env_mode=mode,
            lockfiles=lockfiles,
        )
        for name, rule in package.rules.items()
    }
    return Package(path=package.path, deps=package.deps, rules=rules, source=package.source)


def _load(path: Path) -> Source:
    return Source(path, _read(path))


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(path, err.strerror or str(err)) from None
    try:
        # utf-8-sig: a byte-order mark, as some Windows editors write, is not a mistake.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            path, f"not UTF-8 text: byte {data[err.start]:#04x} ({err.reason})", line
        ) from None


def _parse(source: Source) -> dict[str, Any]:
    # Imported here: a workspace answered by workspace_cache parses no file. tomli rather than
    # the standard tomllib (the same parser, pure Python): its compiled wheels parse 2.5x
    # faster, and reading every once.toml is most of a cold run's start.
    import tomli  # noqa: PLC0415

    try:
        return tomli.loads(source.text)
    except RecursionError:
        # tomli refuses arrays and inline tables nested past its limit this way.
        raise ConfigError(
            source.path,
            "invalid TOML: arrays or inline tables nested too deeply",
            _deepest_line(source.text),
        ) from None
    except tomli.TOMLDecodeError as err:
        # The message ends with "(at line L, column C)" or "(at end of document)"; lift the
        # line into the location so the message reads like every other one.
        message = str(err)
        line = None
        match = re.search(r"\s*\(at (?:line (\d+), column \d+|end of document)\)$", message)
        if match:
            line = int(match.group(1)) if match.group(1) else max(1, len(source.text.splitlines()))
            message = message[: match.start()]
        raise ConfigError(source.path, f"invalid TOML: {message}", line) from None
    except ValueError as err:
        # tomli's int() refuses an integer of more digits than Python converts (4,300 by
        # default), raising a plain ValueError rather than TOMLDecodeError.
        limit = sys.get_int_max_str_digits()
        long_number = re.search(rf"[0-9](?:_?[0-9]){{{limit},}}", source.text)
        if long_number is None:
            raise ConfigError(source.path, f"invalid TOML: {err}") from None
        raise ConfigError(
            source.path,
            f"invalid TOML: an integer of more than {limit} digits",
            source.text.count("\n", 0, long_number.start()) + 1,
        ) from None


def _deepest_line(text: str) -> int | None:
    """The line where arrays and inline tables are nested deepest, skipping strings and
    comments well enough to point at the culprit of a RecursionError."""
    depth = deepest = 0
    line = 1
    found = None
    for token in re.finditer(r"""\n|#[^\n]*|"(?:\\.|[^"\\\n])*"|'[^'\n]*'|[\[{]|[\]}]""", text):
        char = token.group()[0]
        if char == "\n":
            line += 1
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, found = depth, line
        elif char in "]}":
            depth -= 1
    return found


# --- locating a key in the text -------------------------------------------------------------

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?")
_ASSIGNMENT = re.compile(rf"^\s*({_DOTTED})\s*=")


def _key_parts(dotted: str) -> tuple[str, ...]:
    return tuple(
        bare or double or single
        for bare, double, single in re.findall(r"""([A-Za-z0-9_-]+)|"([^"]*)"|'([^']*)'""", dotted)
    )


def locate(text: str, keys: Sequence[str], value: str | None = None) -> int | None:
    """Best-effort 1-based line of the key path `keys` in a TOML text.

    A key can be written as `[a.b]` + `c = `, as `[a]` + `b.c = `, or inside an inline table;
    the line whose full key path equals `keys` or lies under it wins, else the deepest line on
    the way to it (the table header, or the inline table holding it). With `value`, the line
    within the key's value (a multi-line list) that spells that string.
    """
    target = tuple(keys)
    if not target:
        return None
    # Only "\n" ends a line in TOML; splitlines() would also split at a U+2028 in a string.
    lines = text.split("\n")
    table: tuple[str, ...] = ()
    best: tuple[int, int] | None = None  # (depth matched, line index)
    for index, line in enumerate(lines):
        header = _HEADER.match(line)
        if header:
            table = _key_parts(header.group(1))
            path = table
        else:
            assignment = _ASSIGNMENT.match(line)
            if not assignment:
                continue
            path = table + _key_parts(assignment.group(1))
        if path == target:
            return _value_line(lines, index, value) + 1 if header is None else index + 1
        if path[: len(target)] == target:
            return index + 1  # `[rules.a]` is where an unknown `rules` first appears
        depth = len(path)
        if target[:depth] == path and (best is None or depth > best[0]):
            best = (depth, index)
    return best[1] + 1 if best else None


def _value_line(lines: list[str], start: int, value: str | None) -> int:
    """The line from `start` on, before the next key or table, that spells `value` quoted."""
    if value is None:
        return start
    import json  # noqa: PLC0415 - only an error message needs it

    # JSON escapes control characters as TOML does (`"\u0000"`, `"\n"`).
    spellings = (f'"{value}"', f"'{value}'", repr(value), json.dumps(value, ensure_ascii=False))
    for index in range(start, len(lines)):
        if index > start and (_HEADER.match(lines[index]) or _ASSIGNMENT.match(lines[index])):
            break
        if any(spelling in lines[index] for spelling in spellings):
            return index
    return start


# --- shapes and types ---------------------------------------------------------------------


def _toml_type(value: object) -> str:
    if isinstance(value, list):
        return "a list containing " + ", ".join(sorted({_toml_type(v) for v in value}))
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _close_match(word: str, choices: list[str]) -> list[str]:
    import difflib  # noqa: PLC0415 - only an error message needs it

    return difflib.get_close_matches(word, choices, n=1)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or "" when none is close."""
    hint = _close_match(word, list(choices))
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _check_keys(
    source: Source, table: Mapping[str, Any], allowed: tuple[str, ...], *where: str
) -> None:
    name = f"in [{'.'.join(where)}]" if where else "at top level"
    for key in table:
        if key not in allowed:
            raise source.error(
                f"unknown key {key!r} {name}{did_you_mean(key, allowed)}; "
                f"allowed: {', '.join(allowed)}",
                *where,
                key,
            )


def _table(source: Source, value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise source.error(f"{key!r} must be a [{key}] table, got {_toml_type(value)}", key)
    return value


def _string_list(source: Source, value: object, *keys: str) -> tuple[str, ...]:
    """A list of non-empty, distinct strings: an empty or repeated entry is always a slip."""
    if value == []:
        return ()  # most of a rule's lists are left out: 6 per rule, 60,000 at 10,000 rules
    name = ".".join(keys)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise source.error(f"{name} must be a list of strings, got {_toml_type(value)}", *keys)
    seen: set[str] = set()
    for item in value:
        if "\0" in item:
            raise source.error(f"{name}: {item!r} {NUL_PROBLEM}", *keys, value=item)
        if not item.strip():
            raise source.error(f"{name} has an empty entry {item!r}", *keys, value=item)
        if item in seen:
            raise source.error(f"{name} lists {item!r} twice", *keys, value=item)
        seen.add(item)
    return tuple(value)


# --- [workspace] --------------------------------------------------------------------------


def _members(
    root: Path, source: Source, workspace: object, reads: workspace_cache.Reads
) -> list[str]:
    """Package folders named by `members`, relative to the root, each holding a once.toml."""
    table = _table(source, workspace, "workspace")
    _check_keys(source, table, WORKSPACE_KEYS, "workspace")
    patterns = _string_list(source, table.get("members", []), "workspace", "members")
    named_by: dict[str, str] = {}  # member folder -> the pattern that named it first
    for pattern in patterns:
        for member in _expand_member(root, source, pattern):
            named_by.setdefault(member, pattern)
        _note_listed(root, pattern, reads)
    _check_member_folders(root, source, named_by)
    return sorted(named_by)


def _expand_member(root: Path, source: Source, pattern: str) -> list[str]:
    def error(problem: str) -> ConfigError:
        return source.error(
            f"workspace.members: {pattern!r} {problem}", "workspace", "members", value=pattern
        )

    if PurePosixPath(pattern).is_absolute() or Path(pattern).is_absolute():
        raise error("is an absolute path; members are folders relative to the workspace root")
    if ".." in PurePosixPath(pattern).parts:
        raise error("leaves the workspace through '..'; members must be folders inside it")
    if posixpath.normpath(pattern) == ".":
        raise error("is the workspace root itself; its rules go in this file as [rule.NAME] tables")
    if not is_glob(pattern):
        # A plain path names one package: anything but a folder with a once.toml is a typo.
        folder = root / pattern
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise error(what + _did_you_mean_member(root, pattern))
        if not (folder / CONFIG_NAME).is_file():
            raise error(f"has no {CONFIG_NAME}")
        return [folder.relative_to(root).as_posix()]
    try:
        folders, _ = _glob_folders(root, pattern)
    except _core.GlobError as err:
        raise error(f"is not a valid glob: {str(err).rpartition(': ')[2]}") from None
    members = [folder for folder in folders if (folder / CONFIG_NAME).is_file()]
    if members:
        # Folders without a once.toml are skipped, as pnpm and Cargo skip folders without a
        # manifest under a glob: `libs/*` may well hold a README or a scratch folder.
        return [member.relative_to(root).as_posix() for member in members]
    if folders:
        raise error(f"matches {len(folders)} folder(s), but none has a {CONFIG_NAME}")
    raise error("matches no folder" + _did_you_mean_member(root, pattern))


def _note_listed(root: Path, pattern: str, reads: workspace_cache.Reads) -> None:
    """Note the folders listed to expand a member glob, and every folder it matches
    that has no once.toml: a package added, removed or renamed under them changes their stat.
    A package folder's own stat is not noted: its once.toml's stat says all, and the folder's
    changes with every output a step creates or deletes in it (a restore, a `rm -rf dist`).
    A `**` lists folders at any depth; such a workspace is simply not cached."""
    if not is_glob(pattern):
        return  # a plain path: its once.toml's own stat says all
    if "**" in pattern:
        reads.cacheable = False
        return
    folders, listed = _glob_folders(root, pattern)
    reads.folders.extend(listed)
    reads.folders.extend(folder for folder in folders if not (folder / CONFIG_NAME).is_file())


def _glob_folders(root: Path, pattern: str) -> tuple[list[Path], list[Path]]:
    """The folders below `root` that the member glob `pattern` matches (by the core's glob
    engine, as inputs are matched), and the folders listed to find them. Only the folders
    below the pattern's literal leading folders are listed, no deeper than it has parts
    (unless it has a `**`); a symlinked folder is matched but not listed, so a link cycle
    cannot loop."""
    parts = PurePosixPath(pattern.rstrip("/")).parts
    first = next(index for index, part in enumerate(parts) if is_glob(part))
    matcher = compiled("/".join(parts))
    depth = None if any("**" in part for part in parts) else len(parts) - first
    base = root.joinpath(*parts[:first])
    found: list[Path] = []
    listed: list[Path] = []
    pending = [(base, 0)] if base.is_dir() else []
    while pending:
        folder, level = pending.pop()
        listed.append(folder)
        for entry in os.scandir(folder):
            if not entry.is_dir():
                continue
            path = Path(entry.path)
            if matcher.is_match(path.relative_to(root).as_posix()):
                found.append(path)
            if (depth is None or level + 1 < depth) and not entry.is_symlink():
                pending.append((path, level + 1))
    return sorted(found), listed


def _did_you_mean_member(root: Path, pattern: str) -> str:
    """Correct the first plain folder name of `pattern` that does not exist, if a sibling
    folder is spelled nearly the same: `libz/*` -> `libs/*`."""
    parts = PurePosixPath(pattern).parts
    folder = root
    for index, part in enumerate(parts):
        if is_glob(part):
            return ""  # past the first wildcard every spelling might be meant
        if (folder / part).is_dir():
            folder = folder / part
            continue
        siblings = [
            child.name
            for child in folder.iterdir()
            if child.is_dir() and not child.name.startswith(".")
        ]
        hint = _close_match(part, siblings)
        if not hint:
            return ""
        return f" (did you mean {'/'.join([*parts[:index], hint[0], *parts[index + 1 :]])!r}?)"
    return ""


def _check_member_folders(root: Path, source: Source, named_by: Mapping[str, str]) -> None:
    """Members reached through symlinks: one outside the workspace would never be walked, so
    its files could not be inputs; two that are one folder would be one package built twice
    under two labels, each restoring over the other's outputs."""
    real: dict[Path, str] = {}
    for member, pattern in sorted(named_by.items()):
        folder = (root / member).resolve()
        if not folder.is_relative_to(root):
            raise source.error(
                f"workspace.members: {member!r} is a symlink to {str(folder)!r}, outside the "
                "workspace; its files would never be inputs",
                "workspace",
                "members",
                value=pattern,
            )
        if folder in real:
            raise source.error(
                f"workspace.members: {member!r} and {real[folder]!r} are the same folder "
                "(a symlink?); list it once",
                "workspace",
                "members",
                value=pattern,
            )
        real[folder] = member


# --- [package] ----------------------------------------------------------------------------


def _package(package: str, source: Source, doc: dict[str, Any]) -> Package:
    meta = _table(source, doc.get("package", {}), "package")
    _check_keys(source, meta, PACKAGE_KEYS, "package")
    deps = tuple(
        _package_dep(source, package, dep)
        for dep in _string_list(source, meta.get("deps", []), "package", "deps")
    )
    rules_table = doc.get("rule", {})
    if not isinstance(rules_table, dict):
        raise source.error(
            f"rule must be a table of [rule.NAME] tables, got {_toml_type(rules_table)}", "rule"
        )
    rules = {name: _rule(package, name, source, body) for name, body in rules_table.items()}
    _check_output_clashes(source, list(rules.values()))
    return Package(path=package, deps=deps, rules=rules, source=source.path)


def _package_dep(source: Source, package: str, dep: str) -> str:
    """The package path of a `[package] deps` entry such as `//libs/core`."""
    path = dep.removeprefix("//").strip("/")
    if ":" in path:
        raise source.error(
            f"package.deps: {dep!r} is a rule label; package deps name packages "
            f"(did you mean '//{path.partition(':')[0]}'?); rule deps go in [rule.NAME] deps",
            "package",
            "deps",
            value=dep,
        )
    if path == package:
        raise source.error(
            f"package.deps: package '//{package}' depends on itself", "package", "deps", value=dep
        )
    return path


def _check_package_deps(packages: dict[str, Package]) -> None:
    for package in packages.values():
        for dep in package.deps:
            if dep not in packages:
                others = [f"//{path}" for path in packages if path != package.path]
                raise source_error(
                    package.source,
                    f"package.deps names unknown package '//{dep}'"
                    + did_you_mean(f"//{dep}", others),
                    "package",
                    "deps",
                    value=f"//{dep}",
                )
    # Turborepo, pnpm and Cargo all refuse cyclic package graphs; `^build` could not order them.
    try:
        dependency_order({path: package.deps for path, package in packages.items()})
    except CycleError as cycle:
        first = packages[cycle.path[0]]
        raise source_error(
            first.source,
            "package dependency cycle: " + " -> ".join(f"//{path}" for path in cycle.path),
            "package",
            "deps",
        ) from None


# --- [rule.NAME] --------------------------------------------------------------------------


def _rule(package: str, name: str, source: Source, body: object) -> Rule:
    table = ("rule", name)
    if not RULE_NAME.match(name):
        raise source.error(
            f"rule name {name!r} may hold only letters, digits, _ . - "
            f"(it becomes the label '//{package}:NAME')",
            *table,
        )
    if isinstance(body, list):
        raise source.error(
            f"[[rule.{name}]] is an array of tables; a rule is one table: write [rule.{name}]",
            *table,
        )
    if not isinstance(body, dict):
        raise source.error(f"rule.{name} must be a table, got {_toml_type(body)}", *table)
    _check_keys(source, body, RULE_KEYS, *table)
    lists = {key: _string_list(source, body.get(key, []), *table, key) for key in LIST_KEYS}
    inputs = lists["inputs"] if "inputs" in body else None
    cache = body.get("cache", True)
    if not isinstance(cache, bool):
        raise source.error(
            f"rule.{name}.cache must be true or false, got {_toml_type(cache)}", *table, "cache"
        )
    rule = Rule(
        package=package,
        name=name,
        cmd=_cmd(source, name, body.get("cmd")),
        inputs=inputs,
        outputs=lists["outputs"],
        deps=tuple(_rule_dep(source, name, dep) for dep in lists["deps"]),
        env=lists["env"],
        pass_env=lists["pass_env"],
        tools=lists["tools"],
        cache=cache,
        source=source.path,
    )
    _check_globs(source, rule)
    _check_outputs(source, rule)
    _check_env(source, rule)
    return rule


def _cmd(source: Source, name: str, cmd: object) -> str:
    where = ("rule", name, "cmd")
    if cmd is None:
        raise source.error(f"[rule.{name}] missing 'cmd'", "rule", name)
    if isinstance(cmd, list) and all(isinstance(word, str) for word in cmd):
        # An argv list is what other tools take; here the command is one `sh -c` string.
        raise source.error(
            f"[rule.{name}] 'cmd' must be one shell command string, got a list "
            f"(did you mean cmd = {shlex.join(cmd)!r}?)",
            *where,
        )
    if not isinstance(cmd, str):
        raise source.error(f"[rule.{name}] 'cmd' must be a string, got {_toml_type(cmd)}", *where)
    if not cmd.strip():
        raise source.error(f"[rule.{name}] 'cmd' is empty", *where)
    if "\0" in cmd:
        raise source.error(f"[rule.{name}] 'cmd' {NUL_PROBLEM}", *where)
    return cmd


def _rule_dep(source: Source, name: str, dep: str) -> str:
    """Check the spelling of a rule `deps` entry: `gen`, `^build` or `//pkg:rule`. Whether it
    names a rule that exists is checked once every package is loaded (plan/graph.py)."""

    def error(problem: str) -> ConfigError:
        return source.error(f"rule.{name}.deps: {dep!r} {problem}", "rule", name, "deps", value=dep)

    if dep.startswith("^"):
        if not RULE_NAME.match(dep[1:]):
            raise error("must be '^' and a rule name, as in '^build'")
    elif dep.startswith("//"):
        package, colon, rule = dep[2:].partition(":")
        if not colon:
            raise error(f"names a package, not a rule (did you mean '//{package}:{name}'?)")
        if ":" in rule:
            raise error("has more than one ':'; a label is '//package:rule'")
        if not RULE_NAME.match(rule):
            raise error(f"names no rule after ':'; a label is '//{package}:rule'")
    elif ":" in dep:
        package, _, rule = dep.partition(":")
        hint = f"'//{package}:{rule}'" if package else repr(rule)
        raise error(f"is not a label; labels start with '//' (did you mean {hint}?)")
    elif not RULE_NAME.match(dep):
        raise error("is not a rule name (letters, digits, _ . -)")
    return dep


# --- globs ------------------------------------------------------------------------------------


@functools.cache  # a monorepo repeats a few globs thousands of times
def compiled(*patterns: str) -> _core.Globs:
    """`patterns` compiled by the core's glob engine, the one that selects a rule's inputs, so
    validation, overlap checks, members and `--affected` read a glob exactly as the key does.
    Raises `_core.GlobError` naming the first pattern that does not parse."""
    return _core.Globs(list(patterns))


def _spelling(pattern: str) -> str:
    """A pattern as a path, for matching against another glob: a best-effort stand-in for
    "some file this pattern covers" (exact for plain paths, approximate for globs)."""
    return pattern.removeprefix("./").rstrip("/")


def _overlaps(first: str, second: str) -> bool:
    """Whether two globs may cover a common file: either one matches the other's spelling."""
    return bool(
        compiled(first).is_match(_spelling(second)) or compiled(second).is_match(_spelling(first))
    )


def _input_problem(pattern: str) -> str | None:
    """Why an input pattern (relative to its package, or to the root after `//`) cannot name
    files `once` can see, or None: a path leaving the workspace would match nothing, and a
    change there would be a silent hit."""
    # Strings, not PurePosixPath: making one per pattern was a third of a rule's checks.
    if pattern.startswith("/"):
        return "is an absolute path; name a workspace file as '//path/from/the/root'"
    if ".." in pattern.split("/"):
        return (
            "leaves its folder through '..'; name a workspace file as '//path/from/the/root' "
            "(files outside the workspace cannot be inputs)"
        )
    return None


def _check_globs(source: Source, rule: Rule) -> None:
    for pattern in rule.inputs or ():
        problem = _input_problem(pattern.removeprefix(WORKSPACE_PREFIX))
        if problem:
            raise source.error(
                f"rule.{rule.name}.inputs: {pattern!r} {problem}",
                "rule",
                rule.name,
                "inputs",
                value=pattern,
            )
    for key in ("inputs", "outputs"):
        for pattern in getattr(rule, key) or ():
            try:
                compiled(pattern.removeprefix(WORKSPACE_PREFIX))
            except _core.GlobError as err:
                raise source.error(
                    f"rule.{rule.name}.{key}: {err}",
                    "rule",
                    rule.name,
                    key,
                    value=pattern,
                ) from None


# --- outputs ------------------------------------------------------------------------------


def _check_outputs(source: Source, rule: Rule) -> None:
    """Outputs are restored by first deleting what they cover, so each must be a part of the
    package that no input and no once.toml lives in."""
    normal: dict[str, str] = {}  # normalized spelling -> as written
    for output in rule.outputs:
        problem = _output_problem(rule, output, normal)
        if problem:
            raise source.error(
                f"rule.{rule.name}.outputs: {output!r} {problem}",
                "rule",
                rule.name,
                "outputs",
                value=output,
            )
        normal[posixpath.normpath(output)] = output


def _output_problem(rule: Rule, output: str, normal: Mapping[str, str]) -> str | None:
    if output.startswith("/") or ".." in output.split("/"):
        return "must be a path inside the package"
    spelled = posixpath.normpath(output)
    if spelled == ".":
        return "is the package folder itself; restoring it would delete the package"
    if spelled in normal:
        return f"names the same path as {normal[spelled]!r}"
    if compiled(output).is_match(CONFIG_NAME):
        return f"covers this package's {CONFIG_NAME}; restoring would delete it"
    for pattern in rule.inputs or ():
        # Declared outputs are subtracted from the inputs (`inputs = ["**"]` with `dist/`); an
        # input wholly inside an output would be subtracted whole, and never read.
        if compiled(output).is_match(_spelling(pattern)):
            return f"covers input {pattern!r}: a rule cannot read what it writes"
    return None


def _check_output_clashes(source: Source, rules: list[Rule]) -> None:
    """Two rules of a package writing one path: restoring either would delete the other's.

    Literal outputs (nearly all of them) meet through sets: two clash when they name one path
    or one holds the other, so each is looked up with the folders above it, and the folders
    above every earlier output are kept. Only globs are matched against every earlier output.
    Matching every pair cost 0.48 s of a cold run at 100 rules per package (49,500 pairs each).
    The error is the one the pairs found first: the earliest rule, then its first clashing
    output, then the first output of the other rule it meets."""
    earlier: list[tuple[int, int, str]] = []  # (rule index, output index, output) in order
    globs: list[tuple[int, int, str]] = []  # the glob outputs among them
    # A normalized literal output, and each folder above one, -> its first writer.
    written: dict[str, tuple[int, int]] = {}
    held: dict[str, tuple[int, int]] = {}
    for index, rule in enumerate(rules):
        clashes: list[tuple[int, int, int]] = []  # (rule index, output index here, there)
        paths = [None if is_glob(output) else posixpath.normpath(output) for output in rule.outputs]
        for position, (output, path) in enumerate(zip(rule.outputs, paths, strict=True)):
            found: list[tuple[int, int]] = []
            if path is None:
                against = earlier
            else:
                against = globs
                found.extend(
                    writer
                    for folder in (path, *_folders_above(path))
                    if (writer := written.get(folder)) is not None
                )
                if (writer := held.get(path)) is not None:
                    found.append(writer)
            # In order: the first match is the earliest writer among them.
            first = next((at for at in against if _overlaps(at[2], output)), None)
            if first is not None:
                found.append((first[0], first[1]))
            if found:
                other, there = min(found)
                clashes.append((other, position, there))
        if clashes:
            other, position, there = min(clashes)
            output = rule.outputs[position]
            raise source.error(
                f"rule.{rule.name}.outputs: {output!r} overlaps {rules[other].outputs[there]!r}, "
                f"an output of rule {rules[other].name!r}; each path has one rule that writes it",
                "rule",
                rule.name,
                "outputs",
                value=output,
            )
        for position, (output, path) in enumerate(zip(rule.outputs, paths, strict=True)):
            writer = (index, position)
            earlier.append((index, position, output))
            if path is None:
                globs.append((index, position, output))
                continue
            written.setdefault(path, writer)
            for folder in _folders_above(path):
                held.setdefault(folder, writer)


def _folders_above(path: str) -> list[str]:
    """The folders holding a normalized relative path, nearest first: `a/b` for `a/b/c`."""
    folders = []
    while "/" in path:
        path = path.rpartition("/")[0]
        folders.append(path)
    return folders


# --- env ----------------------------------------------------------------------------------


def _check_env(source: Source, rule: Rule) -> None:
    for key in ("env", "pass_env"):
        for pattern in getattr(rule, key):
            if not ENV_PATTERN.match(pattern):
                raise source.error(
                    f"rule.{rule.name}.{key}: {pattern!r} is not a variable name or pattern "
                    "(letters, digits, _ and the wildcards * ?)",
                    "rule",
                    rule.name,
                    key,
                    value=pattern,
                )
    # env values enter the key and pass_env values must not: one variable cannot be both.
    for passed in rule.pass_env:
        for hashed in rule.env:
            if fnmatch.fnmatchcase(passed, hashed) or fnmatch.fnmatchcase(hashed, passed):
                raise source.error(
                    f"rule.{rule.name}.pass_env: {passed!r} is also covered by env {hashed!r}; "
                    "env is hashed into the key, pass_env is passed unhashed: keep it in one",
                    "rule",
                    rule.name,
                    "pass_env",
                    value=passed,
                )


# --- [remote] -----------------------------------------------------------------------------


def _remote(source: Source, value: object) -> RemoteSettings:
    table = _table(source, value, "remote")
    _check_keys(source, table, REMOTE_KEYS, "remote")
    strings: dict[str, str | None] = {}
    for key in ("url", "token_env", "endpoint", "region"):
        item = table.get(key)
        if item is not None and (not isinstance(item, str) or not item.strip()):
            raise source.error(
                f"remote.{key} must be a non-empty string, got {_toml_type(item)}", "remote", key
            )
        if item is not None and "\0" in item:
            raise source.error(f"remote.{key}: {item!r} {NUL_PROBLEM}", "remote", key)
        strings[key] = item
    url = strings["url"]
    if url is not None:
        problem = remote_url_problem(url)
        if problem:
            raise source.error(f"remote.url: {problem}", "remote", "url")
        if "@" in url.partition("://")[2].partition("/")[0]:
            # A once.toml is committed; a password in it is published with the repository.
            raise source.error(
                "remote.url holds credentials (user:password@): set them in $ONCE_REMOTE, or "
                "a token in the variable named by remote.token_env",
                "remote",
                "url",
            )
    token_env = strings["token_env"]
    if token_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
        raise source.error(
            f"remote.token_env: {token_env!r} is not a variable name; name the variable that "
            "holds the token, never the token itself",
            "remote",
            "token_env",
        )
    endpoint = strings["endpoint"]
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise source.error(
            f"remote.endpoint: {endpoint!r} is not an http:// or https:// URL", "remote", "endpoint"
        )
    read_only = table.get("read_only", False)
    if not isinstance(read_only, bool):
        raise source.error(
            f"remote.read_only must be true or false, got {_toml_type(read_only)}",
            "remote",
            "read_only",
        )
    timeout = table.get("timeout")
    if timeout is not None and not remote_timeout_fits(timeout):
        raise source.error(
            f"remote.timeout {REMOTE_TIMEOUT_RANGE}, got {_shown(timeout)}", "remote", "timeout"
        )
    return RemoteSettings(
        url=url,
        read_only=read_only,
        token_env=token_env,
        endpoint=endpoint,
        region=strings["region"],
        timeout=float(timeout) if timeout is not None else None,
        source=source.path,
    )


def _shown(value: object) -> str:
    """`value` for an error message. Python refuses to spell out an integer of more than 4,300
    digits (TOML's hexadecimal has no such limit), and nobody would read one."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    return repr(value)
