"""How a step's command runs: its output (bytes as written, stdout and stderr in one log, live
or not), a child it leaves in the background, how it ended. Through a real `once` subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import ONCE, Workspace, alive


def run_bytes(ws: Workspace, *args: str) -> tuple[int, bytes, bytes]:
    """`once ARGS` with its output as bytes: a command's output need not be text."""
    done = subprocess.run(
        [ONCE, *args],
        cwd=ws.root,
        env={**os.environ, "ONCE_CACHE_DIR": str(ws.cache)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def one_rule(ws: Workspace, cmd: str) -> None:
    ws.write({"once.toml": f'[rule.build]\ncmd = "{cmd}"\noutputs = ["out.txt"]\n'})


def test_output_that_is_not_utf8_is_shown_and_replayed_as_written(ws: Workspace) -> None:
    one_rule(ws, r"printf 'caf\\351 \\377\\n'; echo x > out.txt")
    code, out, err = run_bytes(ws, "run", "build")
    assert code == 0, err
    assert b"//:build | caf\xe9 \xff\n" in out
    code, out, err = run_bytes(ws, "run", "build")
    assert code == 0, err
    assert b"cache hit" in out
    assert b"//:build | caf\xe9 \xff\n" in out  # the replayed log, byte for byte


def test_last_line_without_a_newline_is_shown_whole(ws: Workspace) -> None:
    one_rule(ws, "echo x > out.txt; echo first; printf last")
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert "//:build | first\n//:build | last\n" in done.out
    replay = ws.once("run", "build")
    assert "//:build | first\n//:build | last\n" in replay.out


def test_stdout_and_stderr_in_one_log_in_the_order_written(ws: Workspace) -> None:
    one_rule(ws, "echo x > out.txt; echo one; echo two >&2; echo three; echo four >&2")
    for _ in range(2):  # run, then replayed from the cache
        done = ws.once("run", "build")
        assert done.code == 0, done.err
        assert "//:build | one\n//:build | two\n//:build | three\n//:build | four\n" in done.out


def test_blank_lines_shown_live_as_they_come(ws: Workspace) -> None:
    one_rule(ws, "echo x > out.txt; echo a; echo; echo; echo b; echo")
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert "//:build | a\n//:build |\n//:build |\n//:build | b\n//:build |\n" in done.out


def test_a_huge_log_is_kept_whole(ws: Workspace) -> None:
    # 300,000 lines, 2 MB: many reads of the pipe, many pieces of live output.
    one_rule(ws, "seq 1 300000; echo x > out.txt")
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    lines = [line for line in done.out.splitlines() if line.startswith("//:build | ")]
    assert lines == [f"//:build | {n}" for n in range(1, 300_001)]
    quiet = ws.once("run", "build", "--output-logs=none")
    assert "//:build |" not in quiet.out
    (ws.root / "out.txt").unlink()
    replay = ws.once("run", "build")
    assert "cache hit (restored)" in replay.out
    replayed = [line for line in replay.out.splitlines() if line.startswith("//:build | ")]
    assert replayed == lines


def test_a_failed_commands_whole_log_is_shown_once_in_errors_only(ws: Workspace) -> None:
    one_rule(ws, "seq 1 5000; echo broken >&2; exit 3")
    done = ws.once("run", "build", "--output-logs=errors-only")
    assert done.code == 1
    lines = [line for line in done.out.splitlines() if line.startswith("//:build | ")]
    assert lines == [*(f"//:build | {n}" for n in range(1, 5001)), "//:build | broken"]
    assert "//:build: failed with exit code 3" in done.out + done.err


def test_output_is_shown_while_the_command_runs(ws: Workspace, tmp_path: Path) -> None:
    go = tmp_path / "go"
    one_rule(ws, f"echo first; while [ ! -f {go} ]; do sleep 0.05; done; echo second > out.txt")
    proc = subprocess.Popen(
        [ONCE, "run", "build", "--output-logs=new-only"],
        cwd=ws.root,
        env={**os.environ, "ONCE_CACHE_DIR": str(ws.cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        seen = b""
        while b"//:build | first\n" not in seen:
            line = proc.stdout.readline()
            assert line, f"once ended before showing the first line: {seen!r}"
            seen += line
        assert proc.poll() is None  # shown while the command still waits
    finally:
        go.touch()
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_nothing_live_in_errors_only_and_none(ws: Workspace) -> None:
    one_rule(ws, "echo chatter; echo x > out.txt")
    for mode in ("errors-only", "none"):
        (ws.root / "out.txt").unlink(missing_ok=True)
        done = ws.once("run", "build", f"--output-logs={mode}", "--force")
        assert done.code == 0, done.err
        assert "| chatter" not in done.out


def test_a_background_child_holding_the_output_is_waited_for(ws: Workspace) -> None:
    """Its output belongs to the step: the step ends when the last writer closes it."""
    one_rule(ws, "echo x > out.txt; (sleep 1; echo late) &")
    started = time.monotonic()
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert time.monotonic() - started >= 1
    assert "//:build | late\n" in done.out
    replay = ws.once("run", "build")
    assert "//:build | late\n" in replay.out


def test_a_background_child_that_let_go_of_the_output_is_not_waited_for(
    ws: Workspace, tmp_path: Path
) -> None:
    child = tmp_path / "child.pid"
    one_rule(ws, f"echo x > out.txt; sleep 120 > /dev/null 2>&1 & echo $! > {child}")
    try:
        done = ws.once("run", "build")
        assert done.code == 0, done.err
        # once is through while the child sleeps on: it did not wait for it.
        assert alive(int(child.read_text()))
    finally:
        if child.exists():
            os.kill(int(child.read_text()), signal.SIGKILL)


def test_a_command_ended_by_a_signal_fails_naming_it(ws: Workspace) -> None:
    one_rule(ws, "echo x > out.txt; kill -TERM $$")
    done = ws.once("run", "build")
    assert done.code == 1
    assert "//:build: failed with exit code -15" in done.out + done.err
    assert ws.once("run", "build").code == 1  # a failure is not cached


def test_stdin_is_empty(ws: Workspace) -> None:
    one_rule(ws, "wc -c > out.txt")
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert (ws.root / "out.txt").read_text().strip() == "0"


def test_a_command_in_a_session_of_its_own(ws: Workspace) -> None:
    # What an interrupt signals is its process group, never once's own; and it has no
    # controlling terminal (see the next test).
    one_rule(ws, "ps -o pgid=,sid= -p $$ > out.txt; echo $$ >> out.txt")
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    pgid, sid, pid = (ws.root / "out.txt").read_text().split()
    assert pgid == sid == pid


def test_a_command_reading_the_terminal_fails_instead_of_waiting_forever(ws: Workspace) -> None:
    """Run from a terminal (`setsid -c`: once's controlling terminal is a pseudo-terminal), a
    command that prompts on /dev/tty fails at once, as it would in CI: in the terminal's
    session it would be stopped for reading from the terminal in the background, and once
    would wait for it forever."""
    one_rule(ws, "read answer < /dev/tty && echo x > out.txt")
    master, slave = os.openpty()
    proc = subprocess.Popen(
        ["setsid", "-c", ONCE, "run", "build"],
        cwd=ws.root,
        env={**os.environ, "ONCE_CACHE_DIR": str(ws.cache)},
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its session: the stopped command goes too
        proc.wait()
        raise AssertionError("once waited on a command stopped by the terminal") from None
    finally:
        output = read_terminal(master)
    assert code == 1, output
    assert b"failed with exit code" in output


def read_terminal(master: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: nothing holds the terminal any more
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return b"".join(chunks)


def test_sigpipe_is_at_its_default_in_a_command(ws: Workspace) -> None:
    # Python ignores SIGPIPE; a command must not inherit that (`yes | head` would never end
    # on its own terms otherwise).
    one_rule(ws, "kill -PIPE $$; echo x > out.txt")
    done = ws.once("run", "build")
    assert done.code == 1
    assert "failed with exit code -13" in done.out + done.err


def test_once_piped_into_a_reader_that_stops_ends_at_once(ws: Workspace) -> None:
    """`once run | head`: once ends when the reader is gone (its error is one line), and does
    not wait for the command still writing."""
    one_rule(ws, "echo one; echo two; echo three; sleep 600; echo x > out.txt")
    proc = subprocess.Popen(
        [ONCE, "run", "build"],
        cwd=ws.root,
        env={**os.environ, "ONCE_CACHE_DIR": str(ws.cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"//:build: running")
    proc.stdout.close()  # the reader is gone: once's next write fails
    try:
        # Far less than the command's 600 s: over only if once waits for it.
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 1
    assert err.decode().strip().splitlines()[-1] == "once: error: Broken pipe"
