"""The step threads (run/workers.py): each result is recorded on the thread that ran its step,
and the steps that made ready start from there, without the scheduling thread."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from once.run.workers import Workers
from once.ui.console import Result

if TYPE_CHECKING:
    from once.plan.graph import Action

# A chain a -> b -> c -> d beside two steps of its own: what each finished step makes ready.
NEXT = {"a": ["b"], "b": ["c"], "c": ["d"], "d": [], "x": [], "y": []}


def action(label: str) -> Action:
    return cast("Action", label)  # the workers only hand actions over


def execute(item: Action) -> Result:
    return Result(cast("str", item), "ran", 0.0)


def test_results_are_recorded_on_the_step_threads_and_start_what_they_make_ready() -> None:
    recorded: list[tuple[str, str]] = []

    def done(result: Result) -> list[Action]:
        recorded.append((result.label, threading.current_thread().name))
        return [action(label) for label in NEXT[result.label]]

    workers = Workers(execute, done, 2)
    try:
        workers.start([action("a"), action("x"), action("y")])
        workers.wait()
    finally:
        workers.close()
    assert sorted(label for label, _ in recorded) == sorted(NEXT)
    assert [label for label, _ in recorded if label in "abcd"] == ["a", "b", "c", "d"]
    assert {name for _, name in recorded} <= {"once-step-0", "once-step-1"}


def test_what_recording_raises_is_raised_by_wait() -> None:
    def done(result: Result) -> list[Action]:
        if result.label == "b":
            raise OSError("disk full")
        return [action(label) for label in NEXT[result.label]]

    workers = Workers(execute, done, 2)
    try:
        workers.start([action("a")])
        with pytest.raises(OSError, match="disk full"):
            workers.wait()
    finally:
        workers.cancel()
        workers.close()


def test_nothing_to_run_is_no_wait() -> None:
    workers = Workers(execute, lambda _: [], 2)
    workers.start([])
    workers.wait()
    workers.close()


def sleeping_in_wait(thread: threading.Thread) -> bool:
    """Whether `thread` is inside `Workers.wait` and asleep there."""
    frame = sys._current_frames().get(thread.ident or 0)
    if frame is None or frame.f_code is not Workers.wait.__code__:
        return False
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "S"


@pytest.mark.usefixtures("interruptible")
def test_a_ctrl_c_that_misses_the_waiting_thread_still_ends_the_wait() -> None:
    """Ctrl-C that lands just before the scheduling thread goes to sleep on the results (under
    load, a window of milliseconds) runs Python's handler without waking it: the wait must
    still end with KeyboardInterrupt while the step runs. A step thread taking the signal once
    the scheduling thread sleeps leaves it in that same state, every time."""
    scheduling = threading.current_thread()
    released = threading.Event()
    outcome: list[str] = []

    def interrupted_step(item: Action) -> Result:
        deadline = time.monotonic() + 30
        while not sleeping_in_wait(scheduling) and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        # Bounded, so that a wait that never ends fails here instead of hanging the suite.
        outcome.append("stopped by the interrupt" if released.wait(30) else "ran to its end")
        return execute(item)

    workers = Workers(interrupted_step, lambda _: [], 1)
    try:
        workers.start([action("a")])
        with pytest.raises(KeyboardInterrupt):
            workers.wait()
    finally:
        released.set()
        workers.cancel()
        workers.close()
    assert outcome == ["stopped by the interrupt"]
