"""`once run --affected [--since REF]` in real git repositories."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import Workspace, three_packages


def git(ws: Workspace, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ws.root, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(ws: Workspace) -> Workspace:
    """three_packages committed on `main`, built once (so the cache holds every rule), and a
    feature branch checked out."""
    three_packages(ws)
    ws.write({".gitignore": "dist/\nout/\n"})
    git(ws, "init", "-q", "-b", "main")
    git(ws, "config", "user.email", "t@example.com")
    git(ws, "config", "user.name", "t")
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "start")
    assert ws.once("run", "build").code == 0
    ws.ran()
    git(ws, "checkout", "-q", "-b", "feature")
    return ws


def test_a_committed_change_runs_its_rule_and_dependents(repo: Workspace) -> None:
    (repo.root / "libs/b/src/b.txt").write_text("changed\n")
    git(repo, "commit", "-q", "-am", "change b")
    done = repo.once("run", "--affected")
    assert done.code == 0, done.err
    assert "1 changed file since the merge base with main (" in done.out
    assert "2 affected rules" in done.out
    assert sorted(repo.ran()) == ["app", "b"]
    # a is not affected: it is there only because app needs its outputs, and was a hit.
    assert "//libs/a:build: cache hit" in done.out


def test_uncommitted_and_untracked_files_count(repo: Workspace) -> None:
    (repo.root / "libs/a/src/new.txt").write_text("untracked\n")
    done = repo.once("run", "build", "--affected")
    assert done.code == 0, done.err
    assert sorted(repo.ran()) == ["a", "app"]


def test_a_change_outside_every_input_affects_nothing(repo: Workspace) -> None:
    (repo.root / "libs/a/NOTES.md").write_text("not an input of //libs/a:build\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "notes")
    done = repo.once("run", "--affected")
    assert done.code == 0, done.err
    assert "0 affected rules" in done.out
    assert repo.ran() == []


def test_a_changed_once_toml_affects_its_package(repo: Workspace) -> None:
    toml = repo.root / "libs/b/once.toml"
    toml.write_text(toml.read_text() + "# a comment\n")
    done = repo.once("run", "--affected", "--dry-run")
    assert done.code == 0, done.err
    lines = [line.split(":")[0] + ":" + line.split(":")[1] for line in done.out.splitlines()[1:]]
    assert lines == ["//libs/a:build", "//libs/b:build", "//app:build"]


def test_since_names_the_base_and_targets_narrow(repo: Workspace) -> None:
    (repo.root / "libs/a/src/one.txt").write_text("uno\n")
    git(repo, "commit", "-q", "-am", "a")
    first = git(repo, "rev-parse", "HEAD")
    (repo.root / "libs/b/src/b.txt").write_text("bee2\n")
    git(repo, "commit", "-q", "-am", "b")
    # Since the first commit only b changed; narrowed to b's rule, app does not run.
    done = repo.once("run", "//libs/b:build", "--since", first)
    assert done.code == 0, done.err
    assert repo.ran() == ["b"]
    assert f"since {first}" in done.out


def test_default_base_falls_back_to_master(repo: Workspace) -> None:
    git(repo, "branch", "-m", "main", "master")
    (repo.root / "libs/b/src/b.txt").write_text("changed\n")
    assert repo.once("run", "--affected").code == 0
    assert sorted(repo.ran()) == ["app", "b"]


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("none", ["--affected"], "needs a git repository"),
        ("git", ["--since", "no-such-ref"], "'no-such-ref' is not a commit"),
        ("git-nomain", ["--affected"], "no default branch to compare with"),
    ],
)
def test_errors_are_one_line(ws: Workspace, setup: str, args: list[str], message: str) -> None:
    three_packages(ws)
    if setup != "none":
        git(ws, "init", "-q", "-b", "main" if setup == "git" else "trunk")
        git(ws, "config", "user.email", "t@example.com")
        git(ws, "config", "user.name", "t")
        git(ws, "add", "-A")
        git(ws, "commit", "-q", "-m", "start")
    done = ws.once("run", *args)
    assert done.code == 2
    assert done.err.count("\n") == 1, done.err
    assert done.err.startswith("once: error: ")
    assert message in done.err
    assert ws.ran() == []


def test_dry_run_json_stays_json(repo: Workspace) -> None:
    (repo.root / "libs/b/src/b.txt").write_text("changed\n")
    done = repo.once("run", "--affected", "--dry-run", "--json")
    assert done.code == 0, done.err
    labels = [action["label"] for action in json.loads(done.out)["actions"]]
    assert labels == ["//libs/a:build", "//libs/b:build", "//app:build"]
    assert "2 affected rules" in done.err
