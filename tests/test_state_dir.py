"""`.once/` has one owner: only a command that runs steps makes it, and always with the
`.gitignore` that keeps it out of git; inspecting makes nothing. Its stamps follow the one
racy-timestamp rule the stat cache follows."""

from __future__ import annotations

import subprocess

import pytest
from once import _core
from once.state import stamps

from tests.helpers import Workspace

RULE = '[rule.build]\ncmd = "cp src/a.txt out.txt"\noutputs = ["out.txt"]\n'


def git(ws: Workspace, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@e", "-c", "user.name=t", *args],
        cwd=ws.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.parametrize(
    "command", [["status"], ["why", "build"], ["run", "build", "--dry-run"], ["graph"]]
)
def test_inspecting_makes_no_state_folder(ws: Workspace, command: list[str]) -> None:
    ws.write({"once.toml": RULE, "src/a.txt": "a\n"})
    done = ws.once(*command)
    assert done.code == 0, done.err
    assert not (ws.root / ".once").exists()


def test_a_run_makes_the_state_folder_ignored_by_git(ws: Workspace) -> None:
    ws.write({"once.toml": RULE, "src/a.txt": "a\n"})
    git(ws, "init", "-q")
    assert ws.once("status").code == 0
    assert ws.once("run", "build").code == 0
    assert (ws.root / ".once/.gitignore").is_file()
    assert ".once" not in git(ws, "status", "--porcelain", "--untracked-files=all")


def test_affected_never_counts_the_state_folder(ws: Workspace) -> None:
    ws.write({"once.toml": RULE, "src/a.txt": "a\n", ".gitignore": "out.txt\n"})
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "start")
    assert ws.once("run", "build").code == 0
    # A state folder from before it carried its own .gitignore: git lists its files.
    (ws.root / ".once/.gitignore").unlink()
    (ws.root / "src/a.txt").write_text("b\n")
    done = ws.once("run", "build", "--affected", "--since", "HEAD")
    assert done.code == 0, done.err
    assert "once: 1 changed file since HEAD" in done.out


SECOND = 1_000_000_000


@pytest.mark.parametrize(
    ("mtime", "ctime", "started", "settled"),
    [
        # exactly two ticks (20 ms) before the read began, and one nanosecond later
        (10 * SECOND + 5, 10 * SECOND + 5, 10 * SECOND + 20_000_005, True),
        (10 * SECOND + 6, 10 * SECOND + 6, 10 * SECOND + 20_000_005, False),
        # a whole-second mtime (a file system keeping seconds) beside a fine ctime
        (10 * SECOND, 10 * SECOND + 7, 10 * SECOND + 500_000_000, False),
        (10 * SECOND, 10 * SECOND, 12 * SECOND, True),
        (10 * SECOND, 10 * SECOND, 12 * SECOND - 1, False),
    ],
)
def test_stamps_follow_the_stat_caches_racy_rule(
    mtime: int, ctime: int, started: int, settled: bool
) -> None:
    assert _core.settled(mtime, ctime, started) is settled
    assert stamps.settled((0, 0, 0, mtime, ctime), started) is settled
