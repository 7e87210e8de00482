"""The threads that run a run's steps, a bounded number at a time.

Plain threads and two queues rather than `concurrent.futures`: its import (with `logging`) is
~7 ms of a run that has one step to run, and the scheduler needs no more than this. Steps go to
the threads through one queue; each finished step comes back through the other, with its result
or what it raised. Waiting on a set of futures instead (`wait(FIRST_COMPLETED)`) locked every one
of them per wake-up: quadratic, 9 of the 10 s of a no-op run of 10,000 rules (cProfile).
"""

from __future__ import annotations

import queue
import threading

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from once.plan.graph import Action
    from once.ui.console import Result


class Workers:
    """Up to `size` threads running `execute` on the steps handed to `start`."""

    def __init__(self, execute: Callable[[Action], Result], size: int) -> None:
        self._execute = execute
        self._size = max(1, size)
        self._todo: queue.SimpleQueue[Action | None] = queue.SimpleQueue()
        self._finished: queue.SimpleQueue[Result | BaseException] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.running = 0  # handed over and not yet taken back by `next_done`

    def start(self, action: Action) -> None:
        self._todo.put(action)
        self.running += 1
        if len(self._threads) < min(self._size, self.running):  # a thread per step, up to size
            thread = threading.Thread(target=self._work, name=f"once-step-{len(self._threads)}")
            thread.start()
            self._threads.append(thread)

    def next_done(self) -> Result:
        """The result of the next step to finish; what its `execute` raised is raised here."""
        outcome = self._finished.get()
        self.running -= 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def cancel(self) -> None:
        """Steps handed over that no thread has started yet never start."""
        while True:
            try:
                self._todo.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        """Let every thread finish the step it is running, then end it."""
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while (action := self._todo.get()) is not None:
            try:
                outcome: Result | BaseException = self._execute(action)
            except BaseException as err:  # raised again by `next_done`, on the scheduling thread
                outcome = err
            self._finished.put(outcome)
