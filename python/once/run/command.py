"""`once run` from the command line, once its arguments are parsed (by `run/options.py`, before
click is imported, or by click's `run`): the pipeline's run (run/pipeline.py) with the console of
a terminal or of a log, and its exit status; an error a user can cause as one line."""

from __future__ import annotations

import os
import sys

from once.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, OnceError, os_error_message

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from once.run.options import RunRequest
    from once.run.prelude import Early


def run_and_exit(
    request: RunRequest, cwd: str, early: Early | None, *, at_once: bool = False
) -> NoReturn:
    """Run `request` in `cwd` and exit: 0 when every step succeeded, 1 when one failed, 2 for
    bad usage or configuration. `early`: the prelude's lock and walk, if it took them.
    `at_once`: without Python's finalization (`_exit_now`), for the process's own command line
    (not a caller that goes on, such as click's test runner)."""
    code = call_reporting_errors(lambda: run_request(request, cwd, early))
    if at_once:
        _exit_now(code)
    sys.exit(code)


def run_request(request: RunRequest, cwd: str, early: Early | None) -> int:
    """The pipeline's run of `request` in `cwd`, shown on stdout as the terminal (or a log)
    shows it; its exit status. Errors are raised, not worded."""
    from once.run import pipeline
    from once.ui.terminal import make_console

    results = pipeline.run(
        request,
        os.path.realpath(cwd),
        lambda total: make_console(sys.stdout.buffer, request.output_logs, total),
        early=early,
    )
    return pipeline.exit_code(results)


def call_reporting_errors(call: Callable[[], int | None]) -> int:
    """Call `call`; its exit status (None: 0), or an error a user can cause as one line on
    stderr and its code."""
    try:
        return call() or 0
    except OnceError as err:
        return fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except FileNotFoundError as err:
        return fail(f"{err.filename}: no such file or directory", EXIT_USAGE)
    except OSError as err:
        return fail(os_error_message(err), EXIT_FAILED)


def exit_reporting_errors(call: Callable[[], object]) -> NoReturn:
    """Call `call` and exit 0; an error a user can cause exits as one line and its code."""

    def called() -> int:
        call()
        return 0

    sys.exit(call_reporting_errors(called))


def fail(message: str, code: int) -> int:
    """Say `message` as the one line of an error; `code`, the exit status to give."""
    print(f"once: error: {message.translate(_LINE_BREAKS)}", file=sys.stderr)
    return code


def _exit_now(code: int) -> NoReturn:
    """Exit without Python's finalization: freeing every object (the walk's snapshot of every
    file among them) and tearing down each module is ~3 ms of a 100 ms no-op run, for memory
    the process is about to give back whole. Everything the run wrote is closed and its
    threads have ended; only the standard streams' buffers are left to flush."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or 1
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)


# An error is one line, whatever a value quoted in it holds (a file name, a TOML string).
_LINE_BREAKS = {ord(char): repr(char)[1:-1] for char in "\0\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}
