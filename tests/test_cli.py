"""`once hash` against b3sum, and the small CLI contract."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from once._core import hash_bytes

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


@pytest.mark.parametrize("argv", [[], ["--"]], ids=["fast path", "click"])
def test_hash_prints_the_lines_before_a_path_it_cannot_read(
    tmp_path: Path, argv: list[str]
) -> None:
    (tmp_path / "first").write_text("1")
    (tmp_path / "last").write_text("2")
    done = subprocess.run(
        [ONCE, "hash", *argv, "first", "nope", "last"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == f"{hash_bytes(b'1')}  first\n"
    assert done.stderr == "once: error: nope: no such file or directory\n"


# More files than `once hash` hashes between two writes (B3SUM_CHUNK), and more lines than a
# pipe holds.
MANY_FILES = 5000


def _many_files(root: Path) -> None:
    for i in range(MANY_FILES):
        folder = root / f"d{i // 100:02}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05}").write_text(str(i))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_hash_prints_lines_before_the_later_files_are_read(tmp_path: Path) -> None:
    """The first lines are out while a later file cannot be read yet: a FIFO nobody writes to
    until they have arrived (printing everything at the end would wait forever)."""
    _many_files(tmp_path / "tree")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with subprocess.Popen(
        [ONCE, "hash", "tree", "fifo"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        # Only a guard against waiting forever on a build that prints nothing before the end.
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        if not ready:
            proc.kill()
            proc.wait()
            pytest.fail("no line printed before the FIFO was read")
        first = proc.stdout.readline()
        # From a thread: the open waits for `once` to open the FIFO, after the rest of the
        # first lines, which fill the pipe until they are read here.
        writer = threading.Thread(target=fifo.write_bytes, args=(b"late",))
        writer.start()
        out = proc.stdout.read()
        writer.join()
        assert proc.stderr is not None
        err = proc.stderr.read()
    lines = (first + out).decode().splitlines()
    assert err == b""
    assert proc.returncode == 0
    assert len(lines) == MANY_FILES + 1
    assert lines[0] == f"{hash_bytes(b'0')}  tree/d00/f00000"
    assert lines[-1] == f"{hash_bytes(b'late')}  fifo"


@pytest.mark.parametrize("argv", [[], ["--"]], ids=["fast path", "click"])
def test_hash_into_a_reader_that_leaves_ends_quietly(tmp_path: Path, argv: list[str]) -> None:
    """`once hash tree | head -1`: no traceback, no error line, exit 1."""
    _many_files(tmp_path / "tree")
    with subprocess.Popen(
        [ONCE, "hash", *argv, "tree"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline().endswith(b"  tree/d00/f00000\n")
        proc.stdout.close()
        err = proc.stderr.read()
    assert err == b""
    assert proc.returncode == 1


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
