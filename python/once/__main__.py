"""The `once` command (and `python -m once`): answers `--version`, and `once hash FILE...`, without
importing click (a tool's most common probe, and a command timed against b3sum), and starts a
run's walk (`prelude`) before importing anything else. A `once run` whose arguments are valid
never imports click: run/command.py runs it. The rest (help, dry runs, usage errors, the other
commands) is the click CLI in `cli/`."""

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

    early = prelude.start(argv)  # a run's lock and walk, while the rest imports
    asked = prelude.parse(argv)
    if asked is not None:  # a run: answered without click
        from once.run.command import run_and_exit  # noqa: PLC0415

        run_and_exit(asked[1], asked[0], early, at_once=True)
    from once.cli import main as cli_main  # noqa: PLC0415 - click loads only past this point

    cli_main(early)


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
