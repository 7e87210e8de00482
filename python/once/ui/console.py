"""What a run prints: each step's outcome, its command output prefixed by its label, and the
summary at the end.

Imported by every run, a no-op too (run/pipeline.py), before anything else of the front, so it
keeps to the lightest modules of the standard library (no dataclasses, pathlib or typing)."""

from __future__ import annotations

import _thread

from once.value import Value

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from typing import BinaryIO

    # Literal strings, not enums: `enum` (and the functools and collections it loads) would be
    # ~3 ms of a no-op run's start. Defined once, in the public API.
    from once.api import Outcome
    from once.api import OutputLogs as LogMode

# How a step ended: "cached" is a hit whose outputs were already on disk as the cache has them,
# "restored" a hit whose outputs came back from the cache, "skipped" a step whose dependency
# failed.
OUTCOMES: tuple[Outcome, ...] = ("ran", "cached", "restored", "failed", "skipped")
# Which command output to show (Turborepo's `--output-logs`): "full" is the live output of
# commands and the replayed log of every hit; "new-only" the live output of commands that run
# (hits stay quiet); "errors-only" only the log of a command that failed; "none" nothing.
LOG_MODES: tuple[LogMode, ...] = ("full", "new-only", "errors-only", "none")


class Result(Value):
    """How one step ended."""

    __slots__ = ("label", "outcome", "saved_ms", "seconds")
    FIELDS = ("label", "outcome", "seconds", "saved_ms")

    def __init__(self, label: str, outcome: Outcome, seconds: float, saved_ms: int = 0) -> None:
        self.label = label
        self.outcome = outcome
        self.seconds = seconds
        self.saved_ms = saved_ms  # for hits: how long the original run took


def log_mode(value: str) -> LogMode:
    """`value` as a log mode; ValueError if it names none."""
    for mode in LOG_MODES:
        if value == mode:
            return mode
    raise ValueError(f"not a log mode: {value!r} (one of {', '.join(LOG_MODES)})")


class Console:
    """Serializes output of parallel actions, each line prefixed by its action's label."""

    def __init__(self, stream: BinaryIO, mode: LogMode = "full") -> None:
        self._stream = stream
        self._lock = _thread.allocate_lock()  # threading's Lock, without its import
        self.mode = mode

    @property
    def replays(self) -> bool:
        return self.mode == "full"

    def live(self, label: str, data: bytes) -> None:
        """Output of a running command, as it comes."""
        if self.mode in ("full", "new-only"):
            self.lines(label, data)

    def failed(self, label: str, log: bytes) -> None:
        """The whole log of a failed command, where it was not shown live."""
        if self.mode == "errors-only":
            self.lines(label, log)

    def lines(self, label: str, data: bytes) -> None:
        if data:
            self._write(prefixed(label, data))

    def hits(self, hits: list[tuple[Result, bytes]]) -> None:
        """Many cache hits settled at once, each with its log (empty unless replayed): their
        status lines and logs in one write, then their progress events."""
        if not hits:
            return
        body = bytearray()
        for result, log in hits:
            body += hit_line(result).encode() + b"\n"
            if log and self.replays:
                body += prefixed(result.label, log)
        self._write(bytes(body))
        self.finished_many([result for result, _ in hits])

    def status(self, text: str) -> None:
        self._write(text.encode() + b"\n")

    # Progress events, so a live display (ui/progress.py) can count steps without parsing lines.
    def started(self, label: str, cmd: str) -> None:
        """A command is about to run (not called for cache hits)."""
        self.status(f"{label}: running {cmd}")

    def finished(self, result: Result) -> None:
        """A step ended: ran, hit, failed or skipped."""

    def finished_many(self, results: list[Result]) -> None:
        """Several steps ended at once (hits settled in bulk)."""
        for result in results:
            self.finished(result)

    def close(self) -> None:
        """The run is over (or interrupted): leave the terminal clean for the summary."""

    def _write(self, data: bytes) -> None:
        with self._lock:
            self._stream.write(data)
            self._stream.flush()


def hit_result(label: str, restored: bool, seconds: float, saved_ms: int) -> Result:
    """The result of a hit: its outputs were in place ("cached"), or put back ("restored")."""
    outcome: Outcome = "restored" if restored else "cached"
    return Result(label, outcome, seconds, saved_ms=saved_ms)


def prefixed(label: str, data: bytes) -> bytes:
    """Each line of `data` prefixed by its step's label."""
    prefix = f"{label} |".encode()
    return b"".join(
        prefix + (b" " + line if line else b"") + b"\n" for line in data.rstrip(b"\n").split(b"\n")
    )


def hit_line(result: Result) -> str:
    """The status line of a cache hit: restoring's time beside the original run's, which is
    what the cache is worth."""
    return (
        f"{result.label}: cache hit ({result.outcome}) in "
        f"{result.seconds:.2f}s, saved {result.saved_ms / 1000:.2f}s"
    )


def summary(results: list[Result], seconds: float) -> str:
    """The last lines of a run: what ran, what the cache answered, what failed, and the time
    the cache saved (the sum of the recorded run times of every hit)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        counts[result.outcome] += 1
    hits = counts["cached"] + counts["restored"]
    saved = sum(result.saved_ms for result in results) / 1000
    if not results:
        return "once: nothing to run"
    if hits == len(results):
        head = f"all {len(results)} steps cached ({counts['restored']} restored), 0 ran"
    else:
        head = (
            f"{len(results)} steps: {counts['ran']} ran, {hits} cached, "
            f"{counts['failed']} failed, {counts['skipped']} skipped"
        )
    lines = [f"once: {head} in {seconds:.2f}s (cache saved {human_seconds(saved)})"]
    failed = [result.label for result in results if result.outcome == "failed"]
    if failed:
        # Named again at the very end: with many parallel steps the failure scrolled away.
        lines.append(f"once: failed: {', '.join(failed)}")
    return "\n".join(lines)


def human_seconds(seconds: float) -> str:
    """`0.42s`, `12.30s`, `3m05s`, `2h10m`: short enough for a summary line."""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
