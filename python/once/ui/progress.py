"""Terminal progress for `once run`: one live status line, redrawn in place under the output.

On a terminal the bottom line shows how many steps are done, running, cached and failed, and
which are running now; every line of command output (and every status line the plain mode
prints) scrolls above it. In CI or when output is piped there is no live line, only the plain
prefixed lines, because carriage returns and escape codes make logs unreadable.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time

from once.ui.console import OUTCOMES, Console, Result

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from typing import BinaryIO, TextIO

    from once.api import OutputLogs as LogMode

# How often the live line is redrawn when nothing else happens, so the elapsed time of a long
# step keeps moving and the user can tell a slow step from a hung `once`. Four times a second
# is what cargo and uv use; more only costs CPU over a slow ssh link.
REFRESH_SECONDS = 0.25
# Erase the current line (carriage return, then ANSI "erase entire line").
_CLEAR = b"\r\x1b[2K"


class LiveConsole(Console):
    """A `Console` that keeps one status line at the bottom of the terminal.

    Every write first erases the status line, prints what it has to print, and draws the line
    again, all under the console's lock, so parallel steps never tear it.
    """

    def __init__(self, stream: BinaryIO, mode: LogMode, total: int) -> None:
        super().__init__(stream, mode)
        self._total = total
        self._running: dict[str, float] = {}  # label -> when its command started
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._started = time.monotonic()
        self._drawn = False
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="once-progress", daemon=True)
        self._ticker.start()
        # Warnings (a refused cache entry, a full disk) go to stderr, the same terminal: route
        # them above the line too, or they land after its text and leave it behind.
        self._stderr: TextIO | None = None
        if _same_terminal(stream, sys.stderr):
            self._stderr = sys.stderr
            sys.stderr = _Above(self, self._stderr)

    def started(self, label: str, cmd: str) -> None:
        with self._lock:
            self._running[label] = time.monotonic()
        super().started(label, cmd)

    def finished(self, result: Result) -> None:
        with self._lock:
            self._running.pop(result.label, None)
            self._counts[result.outcome] += 1
        self._write(b"")

    def finished_many(self, results: list[Result]) -> None:
        # Counted together and drawn once: thousands of hits settled in bulk would otherwise
        # redraw the line thousands of times.
        with self._lock:
            for result in results:
                self._running.pop(result.label, None)
                self._counts[result.outcome] += 1
        self._write(b"")

    def close(self) -> None:
        self._stop.set()
        self._ticker.join()
        if self._stderr is not None:
            sys.stderr, self._stderr = self._stderr, None
        with self._lock:
            if self._drawn:
                self._stream.write(_CLEAR)
                self._stream.flush()
                self._drawn = False

    def raw(self, data: bytes) -> None:
        """Bytes printed above the line as they are, without a label."""
        self._write(data)

    def _write(self, data: bytes) -> None:
        with self._lock:
            line = self._line()
            self._stream.write(_CLEAR + data + line)
            self._stream.flush()
            self._drawn = bool(line)

    def _tick(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            self._write(b"")

    def _line(self) -> bytes:
        """The status line for now, cut to the terminal's width: a line that wraps cannot be
        erased with one carriage return, and would leave a trail of copies behind."""
        if self._stop.is_set():
            return b""
        counts = self._counts
        hits = counts["cached"] + counts["restored"]
        done = sum(counts.values())
        now = time.monotonic()
        text = (
            f"[{done}/{self._total}] {len(self._running)} running, {hits} cached, "
            f"{counts['ran']} ran, {counts['failed']} failed "
            f"· {now - self._started:.0f}s"
        )
        if self._running:
            # Longest-running first: that is the step the user is waiting for.
            labels = sorted(self._running, key=self._running.__getitem__)
            text += " · " + ", ".join(
                f"{label} ({now - self._running[label]:.0f}s)" for label in labels
            )
        import shutil  # noqa: PLC0415 - only a live line needs the width (~10 ms to import)

        width = shutil.get_terminal_size().columns
        if len(text) > width - 1:
            text = text[: max(0, width - 2)] + "…"
        return text.encode()


def _same_terminal(stream: BinaryIO, other: TextIO) -> bool:
    try:
        return os.isatty(other.fileno()) and os.path.samestat(
            os.fstat(stream.fileno()), os.fstat(other.fileno())
        )
    except (AttributeError, OSError, ValueError):
        return False


class _Above(io.TextIOBase):
    """Standard error while the live line is up: whole lines are printed above it."""

    def __init__(self, console: LiveConsole, original: TextIO) -> None:
        self._console = console
        self._original = original
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            self._console.raw((lines + "\n").encode(errors="replace"))
        return len(text)

    def flush(self) -> None:
        self._original.flush()

    def fileno(self) -> int:
        return self._original.fileno()
