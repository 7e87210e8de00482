"""Trustworthy under real conditions: edits during a run, concurrent runs, kill -9, Ctrl-C,
and a cache folder that cannot be written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ONCE, Workspace, alive, end_commands_left_in, three_packages

_SPAWNED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test() -> Iterator[None]:
    """A test that fails while its `once` still runs kills it: left running, it would fail
    the next test too (its unclosed pipes are a ResourceWarning there)."""
    yield
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def spawn(ws: Workspace, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [ONCE, *args],
        cwd=ws.root,
        env={**os.environ, "ONCE_CACHE_DIR": str(ws.cache), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _SPAWNED.append(proc)
    return proc


def wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_input_edited_while_its_rule_runs_is_not_cached(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": (
                '[rule.build]\ncmd = "' + ws.marker("build") + " && mkdir -p out && cp in.txt out/ "
                '&& echo edited >> in.txt"\ninputs = ["in.txt"]\noutputs = ["out/"]\n'
            ),
            "in.txt": "original\n",
        }
    )
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert "//:build: not cached: its inputs changed while it ran (in.txt)" in done.err
    # Back to the contents the key was computed from: nothing may be filed under that key.
    (ws.root / "in.txt").write_text("original\n")
    assert ws.once("run", "build").code == 0
    assert ws.ran() == ["build", "build"]


def test_input_added_while_its_rule_runs_is_not_cached(ws: Workspace, tmp_path: Path) -> None:
    """`cat src/*.txt` reads a file another process creates after the walk: what it made
    must not be filed under the key computed without that file."""
    started, go = tmp_path / "started", tmp_path / "go"
    ws.write(
        {
            "once.toml": (
                f'[rule.build]\ncmd = "{ws.marker("build")} && touch {started} && '
                f"while [ ! -e {go} ]; do sleep 0.01; done && "
                'mkdir -p dist && cat src/*.txt > dist/all.txt"\n'
                'inputs = ["src/**"]\noutputs = ["dist/"]\n'
            ),
            "src/one.txt": "one\n",
            ".gitignore": "scratch/\n",
        }
    )
    proc = spawn(ws, "run", "build")
    wait_for(started)
    (ws.root / "src/new.txt").write_text("new\n")
    # Not inputs: an ignored folder, and a file no glob of the rule matches.
    (ws.root / "src/scratch").mkdir()
    (ws.root / "src/scratch/tmp.txt").write_text("tmp\n")
    (ws.root / "notes.txt").write_text("notes\n")
    go.touch()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [
        "once: warning: //:build: not cached: its inputs changed while it ran (src/new.txt)"
    ], err
    assert (ws.root / "dist/all.txt").read_text() == "new\none\n"  # the outputs stay
    # Back to the tree the key was computed from: nothing may be filed under that key.
    (ws.root / "src/new.txt").unlink()
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert (ws.root / "dist/all.txt").read_text() == "one\n"
    assert ws.ran() == ["build", "build"]


def test_four_runs_at_once_on_one_workspace_and_cache(ws: Workspace) -> None:
    three_packages(ws)
    procs = [spawn(ws, "run", "build") for _ in range(4)]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    assert [code for _, code in results] == [0, 0, 0, 0], results
    assert sorted(ws.ran()) == ["a", "app", "b"]  # the lock serialized them; three hit
    assert (ws.root / "app/out/app.txt").read_text() == "one\ntwo\nbee\n"


def test_four_clones_at_once_share_one_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    clones = []
    for i in range(4):
        clone = Workspace(tmp_path / f"clone{i}" / "ws", cache)
        clone.root.mkdir(parents=True)
        three_packages(clone)
        clones.append(clone)
    procs = [spawn(clone, "run", "build") for clone in clones]
    for proc in procs:
        proc.communicate(timeout=120)
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    for clone in clones:
        assert (clone.root / "app/out/app.txt").read_text() == "one\ntwo\nbee\n"
        shutil.rmtree(clone.root / "app/out")
        done = clone.once("run", "build")
        assert "all 3 steps cached (1 restored), 0 ran" in done.out, done.out
        assert (clone.root / "app/out/app.txt").read_text() == "one\ntwo\nbee\n"


@pytest.mark.usefixtures("interruptible")
def test_ctrl_c_stops_commands_and_caches_nothing(ws: Workspace, tmp_path: Path) -> None:
    slow = tmp_path / "slow"
    slow.touch()
    child = tmp_path / "child.pid"
    ws.write(
        {
            "once.toml": (
                f'[rule.build]\ncmd = "{ws.marker("build")}; if [ -f {slow} ]; then sleep 60 & '
                f'echo $! > {child}; wait; fi; mkdir -p out && echo done > out/x"\n'
                'outputs = ["out/"]\n'
            )
        }
    )
    proc = spawn(ws, "run", "build")
    wait_for(child)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted" in err
    sleeper = int(child.read_text())
    deadline = time.monotonic() + 10
    while alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(sleeper), "the command's background child survived Ctrl-C"
    slow.unlink()
    assert ws.once("run", "build").code == 0
    assert ws.ran() == ["build", "build"]  # nothing was cached by the interrupted run


def _expected_outputs(iteration: int) -> dict[str, bytes]:
    files = {f"out/f{i:03d}.txt": f"{iteration}-{i}\n".encode() for i in range(150)}
    files["out/big.bin"] = str(iteration).encode() * (3 << 20 // max(1, len(str(iteration))))
    return files


KILL_WORKSPACE = {
    "once.toml": (
        "[rule.build]\n"
        'cmd = "python3 -c \'import os, pathlib; n = os.environ[\\"ITER\\"]; '
        'o = pathlib.Path(\\"out\\"); o.mkdir(exist_ok=True); '
        '[(o / f\\"f{i:03d}.txt\\").write_text(f\\"{n}-{i}\\\\n\\") for i in range(150)]; '
        '(o / \\"big.bin\\").write_bytes(n.encode() * (3 << 20 // len(n)))\'"\n'
        'env = ["ITER"]\noutputs = ["out/"]\n'
    ),
    "src.txt": "input\n",
}


def test_kill_9_at_many_points_never_corrupts(ws: Workspace) -> None:
    ws.write(KILL_WORKSPACE)
    started = time.monotonic()
    assert ws.once("run", "build", env={"ITER": "0"}).code == 0
    full_run = time.monotonic() - started
    points = 16
    for iteration in range(1, points + 1):
        env = {"ITER": str(iteration)}
        proc = spawn(ws, "run", "build", env=env)
        time.sleep(full_run * 1.3 * iteration / points)
        proc.kill()
        proc.communicate()
        end_commands_left_in(ws.root)
        # The next run succeeds, whatever state the kill left behind.
        done = ws.once("run", "build", env=env)
        assert done.code == 0, (iteration, done.out, done.err)
        # And a hit restores exactly what the command makes.
        shutil.rmtree(ws.root / "out")
        done = ws.once("run", "build", env=env)
        assert done.code == 0, done.err
        assert "all 1 steps cached (1 restored)" in done.out, done.out
        for rel, content in _expected_outputs(iteration).items():
            assert (ws.root / rel).read_bytes() == content, (iteration, rel)
    # Every blob left behind by all those kills still hashes to its name.
    verify = ws.once("cache", "verify", "--json")
    assert verify.code == 0, verify.err
    report = json.loads(verify.out)
    assert report["corrupt_blobs"] == 0, report
    assert report["removed_entries"] == 0, report


def test_cache_folder_unusable_still_builds_with_one_warning(ws: Workspace, tmp_path: Path) -> None:
    three_packages(ws)
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("")
    done = ws.once("run", "build", env={"ONCE_CACHE_DIR": str(not_a_folder)})
    assert done.code == 0, done.err
    assert done.err.count("caching is off for this run") == 1
    assert (ws.root / "app/out/app.txt").read_text() == "one\ntwo\nbee\n"


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system, to fill up for real (needs root to mount)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr!r}")
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_cache_still_builds_and_loses_nothing(ws: Workspace, tiny_fs: Path) -> None:
    ws.write(
        {
            "once.toml": (
                '[rule.build]\ncmd = "head -c 4000000 /dev/zero > big.bin'
                ' && echo small > small.txt"'
                '\noutputs = ["big.bin", "small.txt"]\n'
            )
        }
    )
    done = ws.once("run", "build", env={"ONCE_CACHE_DIR": str(tiny_fs)})
    assert done.code == 0, done.err
    assert done.err.count("caching is off for this run") == 1, done.err
    assert (ws.root / "big.bin").stat().st_size == 4_000_000
    assert (ws.root / "small.txt").read_text() == "small\n"
    # Nothing half-written is left to be mistaken for a hit.
    again = ws.once("run", "build", env={"ONCE_CACHE_DIR": str(tiny_fs)})
    assert again.code == 0
    assert "1 steps: 1 ran" in again.out


def fill(folder: Path) -> None:
    """Write to `folder` until its file system is full."""
    with (folder / "filler").open("wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass


def test_state_folder_on_a_full_disk_still_hits(tmp_path: Path, tiny_fs: Path) -> None:
    """`.once/` cannot take a byte more: the stat cache of a touched input, the history and the
    rest of the kept state cannot be written, and every hit still succeeds."""
    ws = Workspace(tiny_fs / "ws", tmp_path / "cache")
    ws.root.mkdir()
    ws.write(
        {
            "once.toml": (
                f'[rule.build]\ncmd = "{ws.marker("build")} && mkdir -p out && '
                'cat src/*.txt > out/all.txt"\ninputs = ["src/**"]\noutputs = ["out/"]\n'
            ),
            "src/a.txt": "a\n",
        }
    )
    assert ws.once("run", "build").code == 0
    fill(tiny_fs)
    for _ in range(3):
        (ws.root / "src/a.txt").touch()  # a new stat: its digest goes to the stat cache
        done = ws.once("run", "build")
        assert done.code == 0, done.err
        assert "all 1 steps cached" in done.out, done.out
        warnings = [line for line in done.err.splitlines() if line]
        assert len(warnings) == 1, done.err
        assert warnings[0].startswith("once: warning: could not save the "), done.err
        assert "No space left on device" in warnings[0], done.err
    assert ws.ran() == ["build"]
    assert (ws.root / "out/all.txt").read_text() == "a\n"


def test_temporary_state_files_of_killed_runs_are_removed(ws: Workspace) -> None:
    """A run killed between writing a state file and renaming it into place leaves
    `NAME.PID.N.tmp` in `.once/`; the next run that gets to the end removes it."""
    three_packages(ws)
    assert ws.once("run", "build").code == 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    state = ws.root / ".once"
    leftovers = [
        state / f"statcache.{gone.pid}.0.tmp",
        state / f".run-keys.{gone.pid}.140000000000000.tmp",
        state / "specs" / f".{'0' * 64}.json.{gone.pid}.140000000000000.tmp",
    ]
    live = state / f"outputs.{os.getpid()}.0.tmp"  # a process still writing it: it stays
    for path in [*leftovers, live]:
        path.write_bytes(b"half a state file")
    (ws.root / "libs/a/src/one.txt").write_text("changed\n")
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert [path.name for path in leftovers if path.exists()] == []
    assert live.exists()
