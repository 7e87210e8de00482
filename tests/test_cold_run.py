"""A cold run's saves: made durable on the store's threads while later steps run, every entry
in place when `once run` exits, and a run killed while saving leaves only sound entries. Named
inputs, checked after their command by stat, find what a walk finds."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import ONCE, Workspace, end_commands_left_in

STEPS = 60


def many_steps(ws: Workspace, steps: int = STEPS) -> None:
    """`steps` independent rules, each with one named input and one output of its own."""
    body = []
    files = {}
    for n in range(steps):
        files[f"in{n}.txt"] = f"input {n}\n"
        body += [
            f"[rule.s{n}]",
            f'cmd = "{ws.marker(f"s{n}")} && tr a-z A-Z < in{n}.txt > out{n}.txt"',
            f'inputs = ["in{n}.txt"]',
            f'outputs = ["out{n}.txt"]',
            "",
        ]
    ws.write({"once.toml": "\n".join(body), **files})


def targets(steps: int = STEPS) -> list[str]:
    return [f"s{n}" for n in range(steps)]


def temporary_files(cache: Path) -> list[Path]:
    return [path for path in cache.rglob(".tmp-*") if path.is_file()]


def test_every_entry_of_a_run_is_in_place_when_it_exits(ws: Workspace) -> None:
    many_steps(ws)
    done = ws.once("run", "-j", "2", *targets())
    assert done.code == 0, done.err
    assert sorted(ws.ran()) == sorted(targets())
    assert temporary_files(ws.cache) == []
    for n in range(STEPS):
        (ws.root / f"out{n}.txt").unlink()
    done = ws.once("run", "-j", "2", *targets())
    assert done.code == 0, done.err
    assert ws.ran() == []  # every step restored: every entry was written before the exit
    assert f"all {STEPS} steps cached ({STEPS} restored)" in done.out
    assert (ws.root / "out7.txt").read_text() == "INPUT 7\n"


def test_a_run_killed_while_saving_leaves_only_sound_entries(ws: Workspace) -> None:
    """SIGKILL of `once` while its saves are being flushed: what is in the store afterwards is
    whole (verify finds nothing to drop), and the next run restores or runs every step, each
    output right."""
    for attempt in range(4):
        many_steps(ws, 200)
        ws.ran()
        proc = subprocess.Popen(
            [ONCE, "run", "-j", "2", *targets(200)],
            cwd=ws.root,
            env={**os.environ, "ONCE_CACHE_DIR": str(ws.cache)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        # Killed once some steps have finished (and are being saved), at a point that moves
        # with each attempt.
        while time.monotonic() < deadline and proc.poll() is None:
            if ws.ran_log.exists() and len(ws.ran_log.read_text().split()) >= 20 + 30 * attempt:
                break
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        end_commands_left_in(ws.root)
        verified = ws.once("cache", "verify")
        assert verified.code == 0, verified.err
        assert "removed 0 corrupt blobs and 0 unsound entries" in verified.out, verified.out
        done = ws.once("run", "-j", "2", *targets(200))
        assert done.code == 0, done.err
        for n in range(200):
            assert (ws.root / f"out{n}.txt").read_text() == f"INPUT {n}\n"
        for n in range(200):
            (ws.root / f"out{n}.txt").unlink()
        # Every entry written is sound: the run after restores all of them.
        done = ws.once("run", "-j", "2", *targets(200))
        assert done.code == 0, done.err
        assert "all 200 steps cached (200 restored)" in done.out, done.out
        ws.ran()
        (ws.root / "once.toml").write_text("")
        for path in ws.root.glob("*.txt"):
            path.unlink()
        for entry in (ws.cache / "ac").rglob("*.json"):
            entry.unlink()  # the next attempt starts cold again


def test_a_named_input_the_command_creates_or_removes_is_not_cached(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": (
                '[rule.make]\ncmd = "echo made > extra.txt && cp in.txt out.txt"\n'
                'inputs = ["in.txt", "extra.txt"]\noutputs = ["out.txt"]\n\n'
                '[rule.drop]\ncmd = "cp gone.txt dropped.txt && rm gone.txt"\n'
                'inputs = ["gone.txt"]\noutputs = ["dropped.txt"]\n'
            ),
            "in.txt": "in\n",
            "gone.txt": "gone\n",
        }
    )
    done = ws.once("run", "make", "drop")
    assert done.code == 0, done.err
    assert "//:make: not cached: its inputs changed while it ran (extra.txt)" in done.err
    assert "//:drop: not cached: its inputs changed while it ran (gone.txt)" in done.err
    # Back to the trees the keys were computed from: nothing was filed under those keys.
    (ws.root / "extra.txt").unlink()
    (ws.root / "gone.txt").write_text("gone\n")
    done = ws.once("run", "make", "drop")
    assert done.code == 0, done.err
    assert "cache hit" not in done.out


def test_small_and_large_outputs_and_logs_are_saved_whole(ws: Workspace) -> None:
    """Saves keep small blobs (16 KiB or less) in memory until their commit and copy larger
    ones at once: outputs and logs on either side of the line, several to a step, all come
    back byte for byte, and the store holds nothing unsound and no temporary file."""
    sizes = [0, 1, 16 * 1024, 16 * 1024 + 1, 100 * 1024]
    body = []
    for n, size in enumerate(sizes):
        # A log as long as the output (`seq` prints it) and two outputs: the file and a copy.
        body += [
            f"[rule.s{n}]",
            f"cmd = \"head -c {size} /dev/zero | tr '\\\\0' {chr(97 + n)} > out{n}.txt"
            f' && cp out{n}.txt copy{n}.txt && seq 1 {size // 5 + 1}"',
            f'outputs = ["out{n}.txt", "copy{n}.txt"]',
            "",
        ]
    ws.write({"once.toml": "\n".join(body)})
    steps = [f"s{n}" for n in range(len(sizes))]
    done = ws.once("run", "-j", "2", *steps)
    assert done.code == 0, done.err
    for n, size in enumerate(sizes):
        assert (ws.root / f"out{n}.txt").read_bytes() == chr(97 + n).encode() * size
        (ws.root / f"out{n}.txt").unlink()
        (ws.root / f"copy{n}.txt").unlink()
    assert temporary_files(ws.cache) == []
    done = ws.once("run", "-j", "2", "--output-logs=full", *steps)
    assert done.code == 0, done.err
    assert f"all {len(sizes)} steps cached ({len(sizes)} restored)" in done.out, done.out
    for n, size in enumerate(sizes):
        expected = chr(97 + n).encode() * size
        assert (ws.root / f"out{n}.txt").read_bytes() == expected
        assert (ws.root / f"copy{n}.txt").read_bytes() == expected
    replayed = [line for line in done.out.splitlines() if line.startswith("//:s4 | ")]
    assert replayed == [f"//:s4 | {n}" for n in range(1, 100 * 1024 // 5 + 2)]
    verified = ws.once("cache", "verify")
    assert verified.code == 0, verified.err
    assert "removed 0 corrupt blobs and 0 unsound entries" in verified.out, verified.out
