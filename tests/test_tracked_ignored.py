"""A file git tracks is never ignored, as git never treats it as ignored: one committed with
`git add -f` although a `.gitignore` matches it (or its folder) is an input like any other,
and editing it is a miss. Real repositories made with git: index versions 2 and 4, a workspace
in a subfolder of the repository, a linked worktree whose `.git` is a file."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ONCE, Workspace

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def copy_rule(source: str) -> str:
    return f'[rule.copy]\ncmd = "cat {source} > out.txt"\ninputs = ["**"]\noutputs = ["out.txt"]\n'


def hit(ws: Workspace, cwd: Path | None = None) -> bool:
    done = ws.once("run", "copy", cwd=cwd)
    assert done.code == 0, done.err
    return "cache hit" in done.out


def test_a_tracked_file_a_gitignore_matches_is_an_input(ws: Workspace) -> None:
    ws.write({".gitignore": "*.cfg\nout.txt\n", "settings.cfg": "a\n", "once.toml": ""})
    ws.write({"once.toml": copy_rule("settings.cfg")})
    git(ws.root, "init", "-q")
    git(ws.root, "add", "-f", "settings.cfg")
    git(ws.root, "add", ".")
    assert not hit(ws)
    assert hit(ws)  # the fast path's no-op
    (ws.root / "settings.cfg").write_text("b\n")
    assert not hit(ws)  # was a hit: the file was not an input
    assert (ws.root / "out.txt").read_text() == "b\n"
    assert hit(ws)
    assert (ws.root / ".once/tracked").is_file()


def test_an_ignored_folder_is_walked_for_its_tracked_files_only(ws: Workspace) -> None:
    ws.write({".gitignore": "build/\nout.txt\n", "once.toml": copy_rule("build/keep.txt")})
    ws.write({"build/keep.txt": "a\n", "build/junk.txt": "x\n", "build/sub/deep.txt": "d\n"})
    git(ws.root, "init", "-q")
    git(ws.root, "add", ".")
    git(ws.root, "add", "-f", "build/keep.txt", "build/sub/deep.txt")
    assert not hit(ws)
    (ws.root / "build/junk.txt").write_text("y\n")  # untracked and ignored: not an input
    assert hit(ws)
    (ws.root / "build/sub/deep.txt").write_text("e\n")
    assert not hit(ws)
    (ws.root / "build/keep.txt").write_text("b\n")
    assert not hit(ws)
    assert (ws.root / "out.txt").read_text() == "b\n"
    dry = ws.once("run", "copy", "--dry-run", "--json")
    assert "build/keep.txt" in dry.out
    assert "build/junk.txt" not in dry.out


def test_index_version_4_and_a_workspace_below_the_top_of_the_repository(
    tmp_path: Path,
) -> None:
    top = tmp_path / "repo"
    root = top / "apps" / "ws"
    root.mkdir(parents=True)
    ws = Workspace(root, tmp_path / "cache")
    ws.write({"once.toml": copy_rule("conf/local.cfg"), "conf/local.cfg": "a\n"})
    # Paths sharing long prefixes, so that version 4 compresses them.
    ws.write({f"conf/local-{n}.cfg": f"{n}\n" for n in range(5)})
    (root / ".gitignore").write_text("*.cfg\nout.txt\n")
    git(top, "init", "-q")
    git(top, "add", ".")
    git(top, "add", "-f", "apps/ws/conf/local.cfg", "apps/ws/conf/local-3.cfg")
    git(top, "update-index", "--index-version", "4")
    assert (top / ".git/index").read_bytes()[4:8] == b"\0\0\0\4"
    assert not hit(ws)
    (root / "conf/local-1.cfg").write_text("untracked\n")
    assert hit(ws)
    (root / "conf/local-3.cfg").write_text("tracked\n")
    assert not hit(ws)
    (root / "conf/local.cfg").write_text("b\n")
    assert not hit(ws)
    assert (root / "out.txt").read_text() == "b\n"


def test_a_linked_worktree_whose_git_is_a_file(tmp_path: Path) -> None:
    main = tmp_path / "main"
    main.mkdir()
    (main / ".gitignore").write_text("*.cfg\nout.txt\n")
    (main / "settings.cfg").write_text("a\n")
    (main / "once.toml").write_text(copy_rule("settings.cfg"))
    git(main, "init", "-q")
    git(main, "add", ".")
    git(main, "add", "-f", "settings.cfg")
    git(main, "commit", "-q", "-m", "first")
    linked = tmp_path / "linked"
    git(main, "worktree", "add", "-q", str(linked))
    assert (linked / ".git").is_file()
    ws = Workspace(linked, tmp_path / "cache")
    assert not hit(ws)
    assert hit(ws)
    (linked / "settings.cfg").write_text("b\n")
    assert not hit(ws)
    assert (linked / "out.txt").read_text() == "b\n"


def test_onceignore_still_leaves_a_tracked_file_out(ws: Workspace) -> None:
    ws.write({".gitignore": "*.cfg\nout.txt\n", ".onceignore": "settings.cfg\n"})
    ws.write({"settings.cfg": "a\n", "once.toml": copy_rule("settings.cfg")})
    git(ws.root, "init", "-q")
    git(ws.root, "add", "-f", "settings.cfg")
    assert not hit(ws)
    (ws.root / "settings.cfg").write_text("b\n")
    assert hit(ws)


def test_a_file_ignored_after_it_was_committed(ws: Workspace) -> None:
    """The .gitignore changes, not the index: the file stays an input."""
    ws.write({".gitignore": "out.txt\n", "data.txt": "a\n", "once.toml": copy_rule("data.txt")})
    git(ws.root, "init", "-q")
    git(ws.root, "add", ".")
    assert not hit(ws)
    (ws.root / ".gitignore").write_text("out.txt\ndata.txt\n")
    assert not hit(ws)  # .gitignore is an input of `**`
    (ws.root / "data.txt").write_text("b\n")
    assert not hit(ws)
    assert (ws.root / "out.txt").read_text() == "b\n"


def test_no_repository_keeps_ignored_files_out(ws: Workspace) -> None:
    ws.write({".gitignore": "*.cfg\nout.txt\n", "settings.cfg": "a\n", "src.txt": "s\n"})
    ws.write({"once.toml": copy_rule("src.txt")})
    assert not hit(ws)
    (ws.root / "settings.cfg").write_text("b\n")
    assert hit(ws)
    assert not (ws.root / ".once/tracked").exists()


def test_affected_names_a_rule_whose_tracked_ignored_input_changed(ws: Workspace) -> None:
    ws.write({".gitignore": "*.cfg\nout.txt\n", "settings.cfg": "a\n"})
    ws.write({"once.toml": copy_rule("settings.cfg").replace('["**"]', '["settings.cfg"]')})
    git(ws.root, "init", "-q")
    git(ws.root, "add", ".")
    git(ws.root, "add", "-f", "settings.cfg")
    git(ws.root, "commit", "-q", "-m", "first")
    assert ws.once("run", "copy").code == 0
    (ws.root / "settings.cfg").write_text("b\n")
    done = ws.once("run", "--affected", "--since", "HEAD")
    assert done.code == 0, done.err
    assert "copy" in done.out
    assert "cache hit" not in done.out
    assert (ws.root / "out.txt").read_text() == "b\n"


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see the files opened")
def test_a_no_op_reads_the_kept_answers_not_the_index(ws: Workspace, tmp_path: Path) -> None:
    ws.write({".gitignore": "build/\nout.txt\n", "once.toml": copy_rule("build/keep.txt")})
    ws.write({"build/keep.txt": "a\n"})
    git(ws.root, "init", "-q")
    git(ws.root, "add", ".")
    git(ws.root, "add", "-f", "build/keep.txt")
    time.sleep(0.1)  # past the racy-timestamp margin: the index's stat may vouch for it
    assert not hit(ws)
    assert hit(ws)
    trace = tmp_path / "trace"
    done = subprocess.run(
        ["strace", "-f", "-e", "trace=openat", "-o", str(trace), ONCE, "run", "copy"],
        cwd=ws.root,
        env={**os.environ, "ONCE_CACHE_DIR": str(ws.cache)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "cache hit" in done.stdout
    opened = trace.read_text()
    assert ".once/tracked" in opened
    assert ".git/index" not in opened
