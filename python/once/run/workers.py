"""The threads that run a run's steps, a bounded number at a time.

Plain threads and a queue rather than `concurrent.futures`: its import (with `logging`) is
~7 ms of a run that has one step to run, and the scheduler needs no more than this. Steps go to
the threads through one queue. The thread that ran a step also hands its result to the
scheduler's bookkeeping and queues the steps that made ready: waking the scheduling thread for
every result, and passing the GIL to it and back, cost a trivial step about as much as the rest
of its Python. Waiting on a set of futures instead (`wait(FIRST_COMPLETED)`) locked every one of
them per wake-up: quadratic, 9 of the 10 s of a no-op run of 10,000 rules (cProfile).
"""

from __future__ import annotations

import queue
import threading

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from once.plan.graph import Action
    from once.ui.console import Result

# How long the scheduling thread sleeps on the results before it looks for a Ctrl-C. A signal
# wakes a sleep only if it lands during it: Python's handler has no way into a sleep it
# precedes by a moment, and then `KeyboardInterrupt` would wait for the next result (under
# load the moment is long enough to hit; a step that runs for minutes kept the run going).
INTERRUPT_CHECK_SECONDS = 0.1


class Workers:
    """Up to `size` threads running `execute` on the steps handed to `start`. Each result goes
    to `done`, one at a time (under the workers' lock), on the thread that ran the step; the
    steps `done` returns start next."""

    def __init__(
        self,
        execute: Callable[[Action], Result],
        done: Callable[[Result], list[Action]],
        size: int,
    ) -> None:
        self._execute = execute
        self._done = done
        self._size = max(1, size)
        self._todo: queue.SimpleQueue[Action | None] = queue.SimpleQueue()
        # What ended the wait: None when every step is through `done`, else what was raised.
        self._ended: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pending = 0  # handed over and not yet through `done`
        self._cancelled = False

    def start(self, actions: list[Action]) -> None:
        with self._lock:
            self._queue(actions)

    def wait(self) -> None:
        """Until every step started, and every step those made ready, is through `done`; what
        `execute` or `done` raised is raised here."""
        with self._lock:
            if self._pending == 0:
                return
        while True:
            try:
                ended = self._ended.get(timeout=INTERRUPT_CHECK_SECONDS)
            except queue.Empty:
                continue  # back in Python, which raises a Ctrl-C the sleep did not wake for
            if ended is not None:
                raise ended
            return

    def cancel(self) -> None:
        """Steps handed over that no thread has started yet never start, nor do any made
        ready after this."""
        with self._lock:
            self._cancelled = True
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

    def _queue(self, actions: list[Action]) -> None:
        """Hand `actions` to the threads; called with the lock held."""
        if self._cancelled:
            return
        self._pending += len(actions)
        for action in actions:
            self._todo.put(action)
        while len(self._threads) < min(self._size, self._pending):  # a thread per step, up to size
            thread = threading.Thread(target=self._work, name=f"once-step-{len(self._threads)}")
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while (action := self._todo.get()) is not None:
            try:
                result = self._execute(action)
                with self._lock:
                    self._queue(self._done(result))
                    self._pending -= 1
                    if self._pending == 0:
                        self._ended.put(None)
            except BaseException as err:  # raised again by `wait`, on the scheduling thread
                self._ended.put(err)
