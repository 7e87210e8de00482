"""The step threads (run/workers.py): each result is recorded on the thread that ran its step,
and the steps that made ready start from there, without the scheduling thread."""

from __future__ import annotations

import threading
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
