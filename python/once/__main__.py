"""The `once` command (and `python -m once`): answers `--version` without importing click, the
most common probe of a tool, and starts a run's walk (`prelude`) before importing it; the rest
is the click CLI in `cli.py`."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv in (["--version"], ["-V"]):
        from once._core import __version__  # noqa: PLC0415 - only what this answer needs

        print(f"once {__version__}")
        return
    from once import prelude  # noqa: PLC0415

    prelude.start(argv)  # a run's lock and walk, while click and the rest import
    from once.cli import main as cli_main  # noqa: PLC0415 - click loads only past this point

    cli_main()


if __name__ == "__main__":
    main()
