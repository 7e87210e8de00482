"""The prelude of `once run`: the lock and the walk taken before the CLI is imported, handed
to the session, and never taken where the usual path would not take them."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from once import _core
from once.run import prelude
from once.state.lock import LOCK_NAME

from tests.helpers import write_tree


@pytest.fixture
def started() -> Iterator[list[prelude.Early]]:
    """The preludes a test starts, released after it (as the process exit would)."""
    preludes: list[prelude.Early] = []
    yield preludes
    for early in preludes:
        early.release()


def start(started: list[prelude.Early], argv: list[str]) -> prelude.Early:
    early = prelude.start(argv)
    assert early is not None
    started.append(early)
    return early


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_tree(
        tmp_path,
        {
            "once.toml": '[workspace]\nmembers = ["app"]\n',
            "app/once.toml": '[rule.build]\ncmd = "true"\n',
            "app/src/main.txt": "hello\n",
        },
    )
    (tmp_path / ".once").mkdir()
    monkeypatch.chdir(tmp_path / "app")
    return tmp_path.resolve()


def locked_elsewhere(state_dir: Path) -> bool:
    """Whether another open file description cannot take the workspace lock now."""
    fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_run_takes_the_lock_and_walks(workspace: Path, started: list[prelude.Early]) -> None:
    early = start(started, ["run", "build"])
    state_dir = workspace / ".once"
    assert locked_elsewhere(state_dir)
    snapshot = early.snapshot()
    fresh = _core.Snapshot.scan(str(workspace), [".once"])
    assert snapshot.file_count == fresh.file_count == 3
    assert early.snapshot() is snapshot  # walked once
    early.release()
    assert not locked_elsewhere(state_dir)


def test_dash_c_names_the_folder(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, started: list[prelude.Early]
) -> None:
    monkeypatch.chdir(workspace.parent)
    start(started, ["-C", workspace.name, "run", "build"])
    assert locked_elsewhere(workspace / ".once")


@pytest.mark.parametrize(
    "argv",
    [["run", "--dry-run", "build"], ["run", "--help"], ["status"], ["graph"], ["run", "-h"]],
)
def test_other_commands_take_nothing(workspace: Path, argv: list[str]) -> None:
    assert prelude.start(argv) is None
    assert not locked_elsewhere(workspace / ".once")


def test_a_first_run_writes_nothing(workspace: Path) -> None:
    (workspace / ".once").rmdir()
    assert prelude.start(["run", "build"]) is None
    assert not (workspace / ".once").exists()


def test_a_run_without_a_prelude_makes_the_state_folder_ignored_by_git(
    workspace: Path, started: list[prelude.Early]
) -> None:
    """`begin`: a workspace's first run takes its lock and walk once its config is read."""
    (workspace / ".once").rmdir()
    early = prelude.begin(str(workspace), str(workspace / "app"))
    started.append(early)
    assert (workspace / ".once/.gitignore").read_text().splitlines()[-1] == "*"
    assert locked_elsewhere(workspace / ".once")
    assert early.snapshot().file_count == 3


def test_a_walk_failure_reaches_the_run(workspace: Path, started: list[prelude.Early]) -> None:
    (workspace / "app" / os.fsdecode(b"bad-\xff-name")).write_text("x")
    early = start(started, ["run", "build"])
    with pytest.raises(OSError, match="UTF-8"):
        early.snapshot()
    with pytest.raises(OSError, match="UTF-8"):
        early.snapshot()  # each time asked


@pytest.mark.parametrize(
    ("argv", "asked"),
    [
        (["run", "build"], ("", ["build"])),
        (["-C", "app", "run", "a"], ("app", ["a"])),
        (["-C", "nosuch", "run", "a"], None),
        (["status", "a"], None),
    ],
)
def test_a_run_is_parsed_with_its_folder(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    asked: tuple[str, list[str]] | None,
) -> None:
    monkeypatch.chdir(workspace)
    parsed = prelude.parse(argv)
    found = (os.path.relpath(parsed[0], workspace), parsed[1].targets) if parsed else None
    expected = (os.path.normpath(asked[0] or "."), asked[1]) if asked else None
    assert found == expected
