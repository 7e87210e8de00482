"""A user's files are never lost to outputs: nothing written or deleted through a symlinked
folder, an output symlink leaving the workspace refused at save, an output folder that is a
mount point restored into, and `once`'s own temporary files never taken for outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ONCE, Workspace, end_commands_left_in


def files_below(root: Path) -> dict[str, bytes]:
    """Every file and link below `root` (links not followed), with its bytes or target."""
    found: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = str(path.readlink()).encode()
            elif path.is_file():
                found[rel] = path.read_bytes()
    return found


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("once: error: "), err
    return lines[0]


def test_nothing_is_written_or_deleted_through_a_symlinked_folder(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": (
                f'[rule.build]\ncmd = "{ws.marker("build")} && mkdir -p build/gen '
                '&& cat in.txt > build/gen/out.txt"\ninputs = ["in.txt"]\n'
                'outputs = ["build/gen/"]\n'
            ),
            "in.txt": "one\n",
        }
    )
    assert ws.once("run", "build").code == 0
    # `build` now leads out of the package, to a folder with a file the user cares about.
    shutil.rmtree(ws.root / "build")
    outside = ws.root.parent / "outside"
    (outside / "gen").mkdir(parents=True)
    (outside / "gen/precious.txt").write_text("precious\n")
    (ws.root / "build").symlink_to("../outside", target_is_directory=True)
    ws.ran()
    before = files_below(outside)

    hit = ws.once("run", "build")
    assert hit.code == 2, (hit.out, hit.err)
    line = one_error_line(hit.err)
    assert "//:build: output build/gen is reached through the symlink build -> ../outside" in line
    assert files_below(outside) == before
    # A miss refuses before its command runs: the command would write through the link too.
    (ws.root / "in.txt").write_text("two\n")
    miss = ws.once("run", "build")
    assert miss.code == 2, (miss.out, miss.err)
    assert "reached through the symlink build -> ../outside" in one_error_line(miss.err)
    assert ws.ran() == []
    assert files_below(outside) == before


def test_an_output_symlink_leaving_the_workspace_is_an_error_and_not_cached(
    ws: Workspace, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ws.write(
        {
            "once.toml": (
                f'[rule.build]\ncmd = "{ws.marker("build")} && ln -sfn {elsewhere} out"\n'
                'outputs = ["out"]\n'
            )
        }
    )
    for _ in range(2):
        done = ws.once("run", "build")
        assert done.code == 2, (done.out, done.err)
        line = one_error_line(done.err)
        assert f"//:build: not cached: refusing path outside the workspace: out -> {elsewhere}" in (
            line
        )
    assert ws.ran() == ["build", "build"]


def test_a_symlink_among_outputs_pointing_out_of_the_package_is_restored_as_one(
    ws: Workspace,
) -> None:
    ws.write(
        {
            "once.toml": '[workspace]\nmembers = ["app"]\n',
            "shared/data.txt": "shared\n",
            "app/once.toml": (
                '[rule.build]\ncmd = "mkdir -p out && ln -sfn ../../shared/data.txt out/data"\n'
                'outputs = ["out/"]\n'
            ),
        }
    )
    assert ws.once("run", "build").code == 0
    shutil.rmtree(ws.root / "app/out")
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert "1 restored" in done.out, done.out
    assert files_below(ws.root / "app/out") == {"data": b"../../shared/data.txt"}
    assert files_below(ws.root / "shared") == {"data.txt": b"shared\n"}


@pytest.fixture
def mounted_out(ws: Workspace) -> Iterator[Path]:
    """`out/` in the workspace as a tmpfs of its own, like a container volume (needs root)."""
    mount = ws.root / "out"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr!r}")
        pytest.skip(f"mounting a tmpfs was refused: {done.stderr!r}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_an_output_folder_that_is_a_mount_point_is_restored_into(
    ws: Workspace, mounted_out: Path, link: str
) -> None:
    ws.write(
        {
            "once.toml": (
                '[rule.build]\ncmd = "mkdir -p out/sub && echo a > out/sub/a.txt"\n'
                'outputs = ["out/"]\n'
            )
        }
    )
    assert ws.once("run", "build").code == 0
    (mounted_out / "sub/a.txt").write_text("edited\n")
    (mounted_out / "stale.txt").write_text("stale\n")
    done = ws.once("run", "build", f"--link={link}")
    assert done.code == 0, done.err
    assert "1 restored" in done.out, done.out
    assert os.path.ismount(mounted_out)
    assert files_below(mounted_out) == {"sub/a.txt": b"a\n"}
    again = ws.once("run", "build", f"--link={link}")
    assert "all 1 steps cached (0 restored)" in again.out, again.out


def temp_names(root: Path) -> list[str]:
    return [rel for rel in files_below(root) if Path(rel).name.startswith(".tmp-")]


def test_temporary_files_a_kill_left_among_outputs_are_never_cached(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": (
                '[rule.build]\ncmd = "mkdir -p out && cat in.txt > out/a.txt"\n'
                'inputs = ["in.txt"]\noutputs = ["out/"]\n'
            ),
            "in.txt": "one\n",
        }
    )
    assert ws.once("run", "build").code == 0
    # What a `once` killed while replacing an output leaves beside it.
    (ws.root / "out/.tmp-4242-7").write_text("half a copy\n")
    (ws.root / "in.txt").write_text("two\n")
    assert ws.once("run", "build").code == 0
    assert temp_names(ws.root) == []
    shutil.rmtree(ws.root / "out")
    done = ws.once("run", "build")
    assert "1 restored" in done.out, done.out
    assert temp_names(ws.root) == []


def copying(out: Path) -> bool:
    """Whether outputs restored as hard links are being copied: a temporary file is there, or
    one of a sample of the links is a file of its own already."""
    paths = list(out.iterdir())
    if any(path.name.startswith(".tmp-") for path in paths):
        return True
    for path in paths[:: max(1, len(paths) // 8)]:
        try:
            if path.stat().st_nlink == 1:
                return True
        except FileNotFoundError:
            pass  # a temporary file, renamed since
    return False


def test_a_kill_while_outputs_are_made_private_leaves_nothing_among_them(ws: Workspace) -> None:
    """Outputs restored as hard links are copied before a command runs (see `--link`); those
    copies are made outside the outputs, so a kill midway leaves nothing there to be cached."""
    files = 2000
    ws.write(
        {
            "once.toml": (
                f'[rule.build]\ncmd = "{ws.marker("build")} && mkdir -p out && '
                # Past what an entry carries (1 KiB): blobs, restored as hard links.
                f'for i in $(seq {files}); do printf %05000d $i > out/f$i; done"\n'
                'inputs = ["in.txt"]\noutputs = ["out/"]\n'
            ),
            "in.txt": "one\n",
        }
    )
    assert ws.once("run", "build").code == 0
    env = {**os.environ, "ONCE_CACHE_DIR": str(ws.cache)}
    killed_midway = 0
    for _ in range(3):
        shutil.rmtree(ws.root / "out")
        (ws.root / "in.txt").write_text("one\n")
        assert ws.once("run", "build", "--link=hardlink").code == 0
        assert (ws.root / "out/f1").stat().st_nlink > 1
        ws.ran()
        # A miss: its outputs are made private copies first, then the command runs.
        (ws.root / "in.txt").write_text("two\n")
        proc = subprocess.Popen([ONCE, "run", "build"], cwd=ws.root, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not copying(ws.root / "out"):
            pass
        proc.kill()
        proc.wait()
        end_commands_left_in(ws.root)
        if not ws.ran():
            killed_midway += 1
        assert temp_names(ws.root / "out") == []
    assert killed_midway > 0, "no kill landed before the command ran"
