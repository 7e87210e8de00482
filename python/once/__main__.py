"""The `once` command (and `python -m once`): answers `--version`, and `once hash FILE...`, without
importing click (a tool's most common probe, and a command timed against b3sum), and starts a
run's walk (`prelude`) before importing anything else. A `once run` whose arguments are valid
never imports click: run/command.py runs it. The rest (help, dry runs, usage errors, the other
commands) is the click CLI in `cli/`."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv in (["--version"], ["-V"]):
        from once._core import __version__  # noqa: PLC0415 - only what this answer needs

        print(f"once {__version__}")
        return
    if argv[:1] == ["hash"] and len(argv) > 1 and not any(arg.startswith("-") for arg in argv):
        # Hashing one big file takes a few hundred ms; click's import would add a fifth.
        from once.hash_command import print_b3sum  # noqa: PLC0415
        from once.run.command import call_reporting_errors  # noqa: PLC0415

        sys.exit(call_reporting_errors(lambda: print_b3sum(argv[1:])))
    from once.run import prelude  # noqa: PLC0415

    early = prelude.start(argv)  # a run's lock and walk, while the rest imports
    asked = prelude.parse(argv)
    if asked is not None:  # a run: answered without click
        from once.run.command import run_and_exit  # noqa: PLC0415

        run_and_exit(asked[1], asked[0], early, at_once=True)
    from once.cli import main as cli_main  # noqa: PLC0415 - click loads only past this point

    cli_main(early)


if __name__ == "__main__":
    main()
