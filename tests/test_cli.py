"""`once hash` against b3sum, and the small CLI contract."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ONCE, Workspace

B3SUM = shutil.which("b3sum")
needs_b3sum = pytest.mark.skipif(
    B3SUM is None and os.environ.get("CI") != "true",
    reason="b3sum not installed (.ci/run installs it; in CI this test must run)",
)


@needs_b3sum
def test_hash_matches_b3sum(tmp_path: Path) -> None:
    sizes = [0, 1, 1023, 1024, 1025, 64 * 1024, 128 * 1024 + 1, 3 * 1024 * 1024 + 7]
    files = []
    for size in sizes:
        path = tmp_path / f"f{size}.bin"
        path.write_bytes(os.urandom(size))
        files.append(path.name)
    nested = tmp_path / "dir" / "sub"
    nested.mkdir(parents=True)
    (nested / "x.txt").write_text("x")
    (tmp_path / "dir" / ".hidden").write_text("h")

    ours = subprocess.run(
        [ONCE, "hash", *files], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    theirs = subprocess.run(
        [B3SUM or "b3sum", *files], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert ours.stdout == theirs.stdout

    walked = subprocess.run(
        [ONCE, "hash", "dir"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    expected = subprocess.run(
        [B3SUM or "b3sum", "dir/.hidden", "dir/sub/x.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert walked.stdout == expected.stdout

    # Each line names the file as it was given, as b3sum's do.
    given = subprocess.run(
        [ONCE, "hash", "./dir", "dir/sub/"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = subprocess.run(
        [B3SUM or "b3sum", "./dir/.hidden", "./dir/sub/x.txt", "dir/sub/x.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert given.stdout == expected.stdout


def test_hash_missing_file_is_one_line_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [ONCE, "hash", "nope"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "once: error: nope: no such file or directory"


def test_version(ws: Workspace) -> None:
    for argv in (["--version"], ["-C", str(ws.root), "--version"]):
        done = ws.once(*argv)
        assert done.code == 0
        assert done.out.startswith("once 0.")


def test_help_lists_commands(ws: Workspace) -> None:
    done = ws.once("--help")
    assert done.code == 0
    assert "run" in done.out
    assert "hash" in done.out


def test_minus_c_missing_folder(ws: Workspace) -> None:
    done = ws.once("-C", str(ws.root / "nope"), "run", "x")
    assert done.code == 2
    assert "Traceback" not in done.err
