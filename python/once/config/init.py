"""`once init`: a starter once.toml guessed from what the folder already has.

Reads `pyproject.toml` (pytest, ruff, mypy, a build backend), the `scripts` of `package.json`
and the targets of a `Makefile`, and writes one rule per step found, with comments where a
person has to decide (what a build writes). Never overwrites an existing once.toml.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli

from once.config import RULE_NAME
from once.errors import UsageError
from once.layout import CONFIG_NAME, STATE_DIR

# A Makefile target line: `name:` or `name: deps`, not `name := value` (an assignment), not a
# pattern rule (`%.o: %.c`), not a special target (`.PHONY:`).
_MAKE_TARGET = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:(?!=)")
# Output folders a build usually writes, by the tool that writes them.
_NODE_OUTPUTS = ("dist", "build", "out", ".next", "lib")
# npm runs `preX` and `postX` around `X` itself.
HOOKS = ("pre", "post")


@dataclass
class Guess:
    """One rule of the starter file."""

    name: str
    cmd: str
    source: str  # which file suggested it, for the comment above the rule
    outputs: list[str] = field(default_factory=list)


def rule_name(text: str) -> str:
    """`build:prod` -> `build-prod`: npm script names allow what rule names do not."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "step"
    return name if RULE_NAME.match(name) else f"_{name}"


def _toml_string(text: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes.
    return json.dumps(text, ensure_ascii=False)


def from_pyproject(folder: Path) -> list[Guess]:
    path = folder / "pyproject.toml"
    if not path.is_file():
        return []
    try:
        doc: dict[str, Any] = tomli.loads(path.read_text(encoding="utf-8"))
    except (tomli.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read it to guess rules: {err}") from None
    tool = doc.get("tool", {}) if isinstance(doc.get("tool"), dict) else {}
    guesses = []
    has_tests = (folder / "tests").is_dir() or (folder / "test").is_dir()
    if "pytest" in tool or has_tests:
        guesses.append(Guess("test", "python -m pytest", "pyproject.toml"))
    if "ruff" in tool:
        guesses.append(Guess("lint", "ruff check . && ruff format --check .", "pyproject.toml"))
    if "mypy" in tool:
        guesses.append(Guess("typecheck", "mypy", "pyproject.toml"))
    if "build-system" in doc:
        guesses.append(Guess("build", "python -m build", "pyproject.toml", outputs=["dist/"]))
    return guesses


def from_package_json(folder: Path) -> list[Guess]:
    path = folder / "package.json"
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read it to guess rules: {err}") from None
    scripts = doc.get("scripts") if isinstance(doc, dict) else None
    if not isinstance(scripts, dict):
        return []
    runner = _node_runner(folder)
    guesses = []
    for script in scripts:
        # Lifecycle hooks run around other scripts; they are not steps of their own.
        if any(script.startswith(hook) and script[len(hook) :] in scripts for hook in HOOKS):
            continue
        guess = Guess(rule_name(script), f"{runner} run {script}", "package.json")
        if script == "build":
            guess.outputs = [f"{name}/" for name in _NODE_OUTPUTS if (folder / name).is_dir()]
        guesses.append(guess)
    return guesses


def _node_runner(folder: Path) -> str:
    """The package manager whose lockfile is here; npm when there is none."""
    for lockfile, runner in (
        ("pnpm-lock.yaml", "pnpm"),
        ("yarn.lock", "yarn"),
        ("bun.lockb", "bun"),
    ):
        if (folder / lockfile).exists():
            return runner
    return "npm"


def from_makefile(folder: Path) -> list[Guess]:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        path = folder / name
        if path.is_file():
            break
    else:
        return []
    guesses = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _MAKE_TARGET.match(line)
        if match and match.group(1) not in ("all", "clean", "install", "distclean"):
            target = match.group(1)
            guesses.append(Guess(rule_name(target), f"make {target}", name))
    return guesses


def guess_rules(folder: Path) -> list[Guess]:
    """Every rule guessed, the first source of a name winning (pyproject, package.json, make)."""
    seen: set[str] = set()
    rules = []
    for guess in (*from_pyproject(folder), *from_package_json(folder), *from_makefile(folder)):
        if guess.name not in seen:
            seen.add(guess.name)
            rules.append(guess)
    return rules


def render(rules: list[Guess]) -> str:
    lines = [
        "# once.toml, written by `once init`: one rule per step it found. Each rule's key is",
        "# every non-ignored file of this folder unless `inputs` narrows it; declare `outputs`",
        "# so a cache hit can restore what a step writes. Reference: the README's Configuration.",
        "",
    ]
    if not rules:
        lines += [
            "# No pyproject.toml, package.json scripts or Makefile targets found; an example:",
            "# [rule.build]",
            '# cmd = "python3 build.py"',
            '# inputs = ["src/**", "build.py"]',
            '# outputs = ["dist/"]',
            "",
        ]
    for rule in rules:
        lines.append(f"# from {rule.source}")
        lines.append(f"[rule.{rule.name}]")
        lines.append(f"cmd = {_toml_string(rule.cmd)}")
        if rule.outputs:
            lines.append(f"outputs = [{', '.join(_toml_string(o) for o in rule.outputs)}]")
        elif rule.name == "build" or rule.source.endswith("akefile"):
            lines.append('# outputs = ["dist/"]  # what it writes, restored on a cache hit')
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class InitReport:
    config: Path
    rules: list[Guess]
    gitignore: Path | None  # None when it already ignored the state folder


def init(folder: Path) -> InitReport:
    """Write `folder/once.toml` and add the state folder to `folder/.gitignore`."""
    config = folder / CONFIG_NAME
    if config.exists():
        raise UsageError(f"{config} already exists; once init does not overwrite it")
    rules = guess_rules(folder)
    text = render(rules)
    # "x": fail rather than overwrite a file created between the check and the write.
    try:
        with config.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise UsageError(f"{config} already exists; once init does not overwrite it") from None
    return InitReport(config, rules, _ignore_state(folder))


def _ignore_state(folder: Path) -> Path | None:
    gitignore = folder / ".gitignore"
    line = f"{STATE_DIR}/"
    existing = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    wanted = {STATE_DIR, line, f"/{STATE_DIR}", f"/{line}"}
    if any(entry.strip() in wanted for entry in existing.splitlines()):
        return None
    separator = "" if not existing or existing.endswith("\n") else "\n"
    with gitignore.open("a", encoding="utf-8") as handle:
        handle.write(f"{separator}# once's stat cache and last keys (once init)\n{line}\n")
    return gitignore
