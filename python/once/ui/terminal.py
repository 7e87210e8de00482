"""Which console a run prints to: a live line for a person at a terminal (`ui/progress.py`, which
imports `threading`), plain lines (`ui/console.py`) everywhere else. Apart from both so that each
imports only what it builds on."""

from __future__ import annotations

import os

from once.ui.console import Console

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO

    from once.api import OutputLogs as LogMode


def wants_live(stream: BinaryIO, environ: Mapping[str, str] = os.environ) -> bool:
    """A live line only for a person at a terminal: not in CI (`CI` set, as every CI service
    does), not piped, not on a `TERM=dumb` terminal that cannot erase a line."""
    if environ.get("CI", "").lower() not in ("", "0", "false"):
        return False
    if environ.get("TERM") == "dumb":
        return False
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def make_console(
    stream: BinaryIO, mode: LogMode, total: int, environ: Mapping[str, str] = os.environ
) -> Console:
    """The console for a run of `total` steps: live on a terminal, plain otherwise."""
    if wants_live(stream, environ):
        # Only a terminal needs the live line, and its module imports `threading`.
        from once.ui.progress import LiveConsole  # noqa: PLC0415

        return LiveConsole(stream, mode, total)
    return Console(stream, mode)
