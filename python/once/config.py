"""Read `once.toml` files into a validated `Workspace` of packages and rules.

Every problem is a `ConfigError` naming the file, the line where it can be found, and the
offending name, so that a user never sees a traceback for a typo.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from once.errors import ConfigError

CONFIG_NAME = "once.toml"
# The workspace's own state (stat cache, last keys); never an input, never walked.
STATE_DIR = ".once"

ROOT_KEYS = ("workspace", "package", "rule")
WORKSPACE_KEYS = ("members",)
PACKAGE_KEYS = ("deps",)
RULE_KEYS = ("cmd", "inputs", "outputs", "deps", "env", "pass_env", "tools", "cache")
LIST_KEYS = ("inputs", "outputs", "deps", "env", "pass_env", "tools")
RULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Rule:
    """One `[rule.NAME]` table of a package, validated but not yet resolved into an action."""

    package: str  # package path relative to the workspace root, "" for the root
    name: str
    cmd: str
    inputs: tuple[str, ...] | None  # None: every non-ignored file of the package
    outputs: tuple[str, ...]
    deps: tuple[str, ...]
    env: tuple[str, ...]
    pass_env: tuple[str, ...]
    tools: tuple[str, ...]
    cache: bool
    source: Path  # the once.toml it came from, for error messages

    @property
    def label(self) -> str:
        return f"//{self.package}:{self.name}"


@dataclass(frozen=True)
class Package:
    path: str  # relative to the workspace root, "/"-separated, "" for the root
    deps: tuple[str, ...]  # paths of the packages this one depends on
    rules: dict[str, Rule] = field(default_factory=dict)
    source: Path = Path()

    @property
    def label(self) -> str:
        return f"//{self.path}"


@dataclass(frozen=True)
class Workspace:
    root: Path
    packages: dict[str, Package]  # by path

    def rule(self, label: str) -> Rule | None:
        package, _, name = label.removeprefix("//").partition(":")
        found = self.packages.get(package)
        return found.rules.get(name) if found else None


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` whose once.toml has `[workspace]`, else the
    nearest with any once.toml (a single-package project)."""
    nearest: Path | None = None
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            nearest = nearest or folder
            if re.search(r"^\s*\[workspace\]", _read(candidate), re.MULTILINE):
                return folder
    if nearest is None:
        raise ConfigError(start, f"no {CONFIG_NAME} here or in any parent folder")
    return nearest


def load_workspace(start: Path) -> Workspace:
    root = find_root(start.resolve())
    root_file = root / CONFIG_NAME
    text = _read(root_file)
    doc = _parse(root_file, text)
    _check_keys(root_file, text, doc, ROOT_KEYS, where="top level")
    members = _members(root, root_file, text, doc.get("workspace", {}))

    packages = {"": _package(root, "", root_file, text, doc)}
    for member in members:
        member_file = root / member / CONFIG_NAME
        member_text = _read(member_file)
        member_doc = _parse(member_file, member_text)
        _check_keys(member_file, member_text, member_doc, ("package", "rule"), where="top level")
        packages[member] = _package(root, member, member_file, member_text, member_doc)
    _check_package_deps(packages)
    return Workspace(root=root, packages=packages)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(path, f"not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise ConfigError(path, err.strerror or str(err)) from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        # The message ends with "(at line L, column C)"; lift the line into the location.
        match = re.search(r"\(at line (\d+), column \d+\)$", str(err))
        message = str(err)
        line = None
        if match:
            line = int(match.group(1))
            message = message[: match.start()].rstrip()
        raise ConfigError(path, f"invalid TOML: {message}", line) from None


def _line_of(text: str, table: str | None, key: str | None = None) -> int | None:
    """Best-effort line number of `[table]` (or of `key = ...` inside it) in a TOML text."""
    lines = text.splitlines()
    start = 0
    if table is not None:
        header = re.compile(
            r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, table.split("."))) + r"\s*\]"
        )
        for number, line in enumerate(lines):
            if header.match(line):
                start = number
                break
        else:
            return None
        if key is None:
            return start + 1
    if key is None:
        return None
    assignment = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for number in range(start + (table is not None), len(lines)):
        if table is not None and re.match(r"^\s*\[", lines[number]):
            break
        if assignment.match(lines[number]):
            return number + 1
    return start + 1 if table is not None else None


def _check_keys(
    path: Path,
    text: str,
    table: dict[str, Any],
    allowed: tuple[str, ...],
    *,
    where: str,
    table_name: str | None = None,
) -> None:
    for key in table:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            line = _line_of(text, table_name, key) or _line_of(text, key)
            raise ConfigError(
                path,
                f"unknown key {key!r} in {where}{suggestion}; allowed: {', '.join(allowed)}",
                line,
            )


def _members(root: Path, path: Path, text: str, workspace: object) -> list[str]:
    if not isinstance(workspace, dict):
        raise ConfigError(path, "[workspace] must be a table", _line_of(text, None, "workspace"))
    _check_keys(path, text, workspace, WORKSPACE_KEYS, where="[workspace]", table_name="workspace")
    patterns = _string_list(path, text, "workspace", "members", workspace.get("members", []))
    found: set[str] = set()
    for pattern in patterns:
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ConfigError(
                path,
                f"workspace member {pattern!r} must stay inside the workspace",
                _line_of(text, "workspace", "members"),
            )
        for match in root.glob(pattern):
            if match.is_dir() and (match / CONFIG_NAME).is_file() and match != root:
                found.add(match.relative_to(root).as_posix())
    return sorted(found)


def _string_list(path: Path, text: str, table: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(
            path,
            f"{table}.{key} must be a list of strings, got {_toml_type(value)}",
            _line_of(text, table, key),
        )
    return tuple(value)


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


def _package(root: Path, package: str, path: Path, text: str, doc: dict[str, Any]) -> Package:
    meta = doc.get("package", {})
    if not isinstance(meta, dict):
        raise ConfigError(path, "[package] must be a table", _line_of(text, None, "package"))
    _check_keys(path, text, meta, PACKAGE_KEYS, where="[package]", table_name="package")
    deps = tuple(
        dep.removeprefix("//").strip("/")
        for dep in _string_list(path, text, "package", "deps", meta.get("deps", []))
    )
    rules_table = doc.get("rule", {})
    if not isinstance(rules_table, dict):
        raise ConfigError(
            path, "rule must be a table of [rule.NAME] tables", _line_of(text, None, "rule")
        )
    rules = {name: _rule(package, name, path, text, body) for name, body in rules_table.items()}
    return Package(path=package, deps=deps, rules=rules, source=path)


def _rule(package: str, name: str, path: Path, text: str, body: object) -> Rule:
    table = f"rule.{name}"
    line = _line_of(text, table)
    if not RULE_NAME.match(name):
        raise ConfigError(path, f"rule name {name!r} may hold only letters, digits, _ . -", line)
    if not isinstance(body, dict):
        raise ConfigError(path, f"[{table}] must be a table, got {_toml_type(body)}", line)
    _check_keys(path, text, body, RULE_KEYS, where=f"[{table}]", table_name=table)
    cmd = body.get("cmd")
    if not isinstance(cmd, str):
        message = (
            "missing 'cmd'" if cmd is None else f"'cmd' must be a string, got {_toml_type(cmd)}"
        )
        raise ConfigError(path, f"[{table}] {message}", _line_of(text, table, "cmd"))
    if not cmd.strip():
        raise ConfigError(path, f"[{table}] 'cmd' is empty", _line_of(text, table, "cmd"))
    lists = {key: _string_list(path, text, table, key, body.get(key, [])) for key in LIST_KEYS}
    cache = body.get("cache", True)
    if not isinstance(cache, bool):
        raise ConfigError(
            path,
            f"{table}.cache must be true or false, got {_toml_type(cache)}",
            _line_of(text, table, "cache"),
        )
    for output in lists["outputs"]:
        if Path(output).is_absolute() or ".." in Path(output).parts or not output.strip("/"):
            raise ConfigError(
                path,
                f"{table}.outputs: {output!r} must be a path inside the package",
                _line_of(text, table, "outputs"),
            )
    return Rule(
        package=package,
        name=name,
        cmd=cmd,
        inputs=lists["inputs"] if "inputs" in body else None,
        outputs=lists["outputs"],
        deps=lists["deps"],
        env=lists["env"],
        pass_env=lists["pass_env"],
        tools=lists["tools"],
        cache=cache,
        source=path,
    )


def _check_package_deps(packages: dict[str, Package]) -> None:
    for package in packages.values():
        for dep in package.deps:
            if dep not in packages:
                hint = difflib.get_close_matches(dep, list(packages), n=1)
                suggestion = f" (did you mean '//{hint[0]}'?)" if hint else ""
                raise ConfigError(
                    package.source,
                    f"package.deps names unknown package '//{dep}'{suggestion}",
                    _line_of(_read(package.source), "package", "deps"),
                )
