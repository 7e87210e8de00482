"""The live status line on a terminal (driven through a pseudo-terminal), the plain lines in CI
and when piped, and the summary at the end of a run."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
from pathlib import Path

from once.ui.console import human_seconds
from once.ui.progress import LiveConsole
from once.ui.terminal import wants_live

from tests.helpers import ONCE, Workspace, three_packages

CLEAR = b"\r\x1b[2K"


def run_in_pty(ws: Workspace, *args: str, columns: int = 200) -> tuple[int, bytes]:
    """`once ARGS` with stdout on a pseudo-terminal `columns` wide, as a person would see it."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "COLUMNS")}
    env.update({"ONCE_CACHE_DIR": str(ws.cache), "TERM": "xterm"})
    proc = subprocess.Popen(
        [ONCE, *args], cwd=ws.root, env=env, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    output = read_all(master)
    return proc.wait(timeout=60), output


def read_all(master: int) -> bytes:
    """Everything written to the terminal, then close it. One read may return only part of it:
    the terminal hands output over in pieces."""
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the last process holding the terminal closed it
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return b"".join(chunks)


def slow_workspace(ws: Workspace) -> None:
    """Two independent rules that wait for each other (3,000 naps at most), so that the line
    shows both labels running at once however loaded the machine, and one that depends on
    both."""
    meet = ws.root.parent / "meet"
    meet.mkdir(exist_ok=True)

    def after(me: str, other: str) -> str:
        return (
            f"touch {meet}/{me}; n=0; "
            f"while [ ! -e {meet}/{other} ] && [ $n -lt 3000 ]; do sleep 0.01; n=$((n + 1)); done"
        )

    ws.write(
        {
            "once.toml": (
                f'[rule.left]\ncmd = "echo left start; {after("left", "right")}; echo left done"\n'
                'inputs = ["src/**"]\n\n'
                f'[rule.right]\ncmd = "{after("right", "left")}; echo right done"\n'
                'inputs = ["src/**"]\n\n'
                '[rule.all]\ncmd = "echo joined"\ndeps = ["left", "right"]\n'
                'inputs = ["src/**"]\n'
            ),
            "src/x.txt": "x\n",
        }
    )


def status_lines(output: bytes) -> list[str]:
    """The states the live line went through: each erase is followed by what is printed above
    the line (whole lines), then the line itself, up to the next erase."""
    states = []
    for part in output.split(CLEAR)[1:]:
        line = part.split(b"\n")[-1]
        if line.startswith(b"["):
            states.append(line.decode())
    return states


def test_terminal_shows_a_live_line_redrawn_in_place(ws: Workspace) -> None:
    slow_workspace(ws)
    code, output = run_in_pty(ws, "run", "all", "-j", "2")
    assert code == 0, output
    states = status_lines(output)
    # Both slow rules were running at once, and the line said so with their labels.
    assert any(
        "2 running" in state and "//:left" in state and "//:right" in state for state in states
    ), states
    assert any(state.startswith("[2/3]") for state in states), states
    # Command output is printed above the line, each output line whole and prefixed.
    text = output.replace(CLEAR, b"\n").decode()
    assert "//:left | left done" in text
    assert "//:all | joined" in text
    # The line is erased before the summary: the summary stands on a line of its own.
    tail = output[output.rindex(CLEAR) :]
    assert b"once: 3 steps: 3 ran, 0 cached" in tail
    assert b"[" not in tail.split(b"once:")[0].replace(CLEAR, b"")


def test_live_line_never_wraps(ws: Workspace) -> None:
    slow_workspace(ws)
    code, output = run_in_pty(ws, "run", "all", "-j", "2", columns=40)
    assert code == 0
    states = status_lines(output)
    assert states
    assert all(len(state) < 40 for state in states), states


def test_live_line_counts_cached_and_failed(ws: Workspace) -> None:
    slow_workspace(ws)
    assert ws.once("run", "all", "-j", "2").code == 0
    ws.write({"once.toml": (ws.root / "once.toml").read_text() + '\n[rule.bad]\ncmd = "exit 4"\n'})
    code, output = run_in_pty(ws, "run", "all", "bad")
    assert code == 1
    final = status_lines(output)[-1]
    assert final.startswith("[4/4]"), final
    assert "3 cached" in final
    assert "1 failed" in final
    assert b"once: failed: //:bad" in output


def test_ci_and_pipes_get_plain_lines(ws: Workspace) -> None:
    three_packages(ws)
    piped = ws.once("run", "build")  # stdout is a pipe
    assert piped.code == 0
    assert "\x1b" not in piped.out
    assert "\r" not in piped.out
    assert "//libs/a:build: running" in piped.out

    # CI=true on a terminal: still plain, since CI logs show every carriage return.
    (ws.root / "libs/a/src/one.txt").write_text("changed\n")
    master, slave = os.openpty()
    env = {**os.environ, "CI": "true", "ONCE_CACHE_DIR": str(ws.cache)}
    done = subprocess.run(
        [ONCE, "run", "build"], cwd=ws.root, env=env, stdout=slave, stderr=slave, check=False
    )
    os.close(slave)
    output = read_all(master)
    assert done.returncode == 0
    assert CLEAR not in output
    assert b"//libs/a:build: running" in output


def test_summary_names_failures_and_time_saved(ws: Workspace) -> None:
    three_packages(ws)
    ws.write(
        {
            "libs/b/once.toml": '[rule.build]\ncmd = "sleep 0.3 && mkdir -p dist/sub && '
            'cp src/b.txt dist/sub/b.out"\noutputs = ["dist"]\n'
        }
    )
    assert ws.once("run", "build").code == 0
    restored_file = ws.root / "libs/b/dist/sub/b.out"
    restored_file.unlink()
    again = ws.once("run", "build")
    assert again.code == 0
    assert "all 3 steps cached (1 restored), 0 ran" in again.out
    # b took at least 0.3 s when it ran: that is what the cache saved.
    saved = float(again.out.split("cache saved ")[1].split("s)")[0])
    assert saved >= 0.3
    hit = next(line for line in again.out.splitlines() if line.startswith("//libs/b:build: cache"))
    assert "(restored) in" in hit
    # The step's own saving is its run's time (at least its 0.3 s sleep, however loaded the
    # machine), and part of the run's.
    saved_by_b = float(hit.split(", saved ")[1].removesuffix("s"))
    assert 0.3 <= saved_by_b <= saved, hit

    ws.write({"libs/a/once.toml": '[rule.build]\ncmd = "exit 3"\n'})
    failed = ws.once("run", "build")
    assert failed.code == 1
    assert failed.out.rstrip().splitlines()[-1] == "once: failed: //libs/a:build"


def test_summary_formats_long_savings() -> None:
    assert human_seconds(0.5) == "0.50s"
    assert human_seconds(185) == "3m05s"
    assert human_seconds(7800) == "2h10m"


def test_wants_live_rules(tmp_path: Path) -> None:
    master, slave = os.openpty()
    with os.fdopen(slave, "wb") as tty, (tmp_path / "f").open("wb") as plain:
        assert wants_live(tty, {"TERM": "xterm"})
        assert not wants_live(tty, {"TERM": "xterm", "CI": "true"})
        assert not wants_live(tty, {"TERM": "xterm", "CI": "1"})
        assert wants_live(tty, {"TERM": "xterm", "CI": "false"})
        assert not wants_live(tty, {"TERM": "dumb"})
        assert not wants_live(plain, {"TERM": "xterm"})
    os.close(master)


def test_warnings_on_stderr_print_above_the_line() -> None:
    master, slave = os.openpty()
    out = os.fdopen(slave, "wb", buffering=0)
    err = open(slave, "w", closefd=False)  # noqa: SIM115 - closed below, after the console
    saved = sys.stderr
    sys.stderr = err
    try:
        console = LiveConsole(out, "full", 1)
        console.started("//:x", "true")
        print("once: warning: careful", file=sys.stderr)
        console.close()
        assert sys.stderr is err  # put back when the run ends
    finally:
        sys.stderr = saved
        err.close()
        out.close()
    data = read_all(master)
    # Erased, then the warning on its own line, then the status line drawn again below it.
    assert CLEAR + b"once: warning: careful\r\n[0/1] 1 running" in data, data
