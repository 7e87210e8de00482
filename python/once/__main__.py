"""The `once` command (and `python -m once`): answers `--version`, and `once hash FILE...`, without
importing click (a tool's most common probe, and a command timed against b3sum), and starts a
run's walk (`prelude`) before importing it. A plain `once run TARGET...` in a workspace that has
run before never imports click: the fast path answers it, or `run_command` runs it. The rest is
the click CLI in `cli/`."""

from __future__ import annotations

import os
import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv in (["--version"], ["-V"]):
        from once._core import __version__  # noqa: PLC0415 - only what this answer needs

        print(f"once {__version__}")
        return
    if argv[:1] == ["hash"] and len(argv) > 1 and not any(arg.startswith("-") for arg in argv):
        # Hashing one big file takes a few hundred ms; click's import would add a fifth.
        from once._core import b3sum_output  # noqa: PLC0415

        try:
            output = b3sum_output(argv[1:])
        except OSError:
            pass  # nothing printed yet: the CLI below hashes again and words the error
        else:
            _write_stdout(output)
            return
    from once.run import prelude  # noqa: PLC0415

    early = prelude.start(argv)  # a run's lock and walk, while click and the rest import
    if early is not None:
        from once.run import quick  # noqa: PLC0415

        code = quick.run(early)  # every step a cache hit: answered without the CLI
        if code is not None:
            _exit_now(code)
        plain = early.plain
        if plain is not None:  # a step to run: the full run, still without click
            from pathlib import Path  # noqa: PLC0415

            from once.run.command import run_plain  # noqa: PLC0415

            run_plain(early, Path(early.cwd), plain.targets, plain.output_logs, plain.jobs)
    from once.cli import main as cli_main  # noqa: PLC0415 - click loads only past this point

    cli_main(early)


def _exit_now(code: int) -> None:
    """Exit without Python's finalization: freeing every object (the walk's snapshot of every
    file among them) and tearing down each module is ~3 ms of a 100 ms no-op run, for memory
    the process is about to give back whole. Everything written is closed already; only the
    standard streams' buffers are left to flush."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or 1
    sys.stderr.flush()
    os._exit(code)


def _write_stdout(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader left (`once hash ... | head`): stop quietly, and keep the flush at exit
        # from failing again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
