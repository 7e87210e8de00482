"""config.glob_regex must read a glob as the Rust core does, or the overlap checks would flag
outputs that do not overlap (or miss ones that do) and bad globs would slip past validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from once import _core
from once.config import glob_regex

from tests.helpers import write_tree

FILES = [
    "src/a.txt",
    "src/b.txt",
    "src/c.md",
    "src/ab.txt",
    "src/sub/c.txt",
    "src/sub/deep/d.txt",
    "dist/out.js",
    "dist/nested/x.js",
    "top.txt",
    "weird[1].txt",
]

PATTERNS = [
    "**",
    "src/**",
    "src/*.txt",
    "**/*.txt",
    "src/**/*.txt",
    "dist/",
    "dist",
    "./src/a.txt",
    "src/{a,b}.txt",
    "src/{a,sub/*}.txt",
    "src/[ab].txt",
    "src/[!a].txt",
    "src/[a-b]?.txt",
    "src/?.txt",
    "*/sub/c.txt",
    "src/a**.txt",
    "weird\\[1\\].txt",
    "*.txt",
]


def rust_matches(root: Path, pattern: str) -> set[str]:
    snapshot = _core.Snapshot.scan(str(root), [])
    selected = snapshot.select("", [pattern], [])
    snapshot.hash([selected])
    return {path for path, _, _ in snapshot.inputs(selected)}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_glob_regex_matches_what_the_core_selects(tmp_path: Path, pattern: str) -> None:
    write_tree(tmp_path, dict.fromkeys(FILES, "x\n"))
    python = {path for path in FILES if glob_regex(pattern).fullmatch(path)}
    assert python == rust_matches(tmp_path, pattern)


@pytest.mark.parametrize("pattern", ["src/[a", "[]", "[!]", "[z-a]", "{a,b", "a,b}", "x\\"])
def test_glob_regex_refuses_what_the_core_refuses(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(_core.GlobError):
        rust_matches(tmp_path, pattern)
    with pytest.raises(ValueError, match=r"."):
        glob_regex(pattern)
