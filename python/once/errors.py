"""Errors a user can cause, each printed by the CLI as one line with its exit code."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: loaded by every run (run/pipeline.py), see once/__init__.py
if TYPE_CHECKING:
    from pathlib import Path


# Exit codes of the user contract: 0 ok, 1 a step failed, 2 bad usage or configuration, 130
# interrupted.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OnceError(Exception):
    """A user-facing error: the CLI prints `once: error: <message>` and exits with `exit_code`."""

    exit_code = EXIT_USAGE


class ConfigError(OnceError):
    """A once.toml that cannot be used; names the file and, where known, the line."""

    def __init__(self, path: Path, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


def os_error_message(err: OSError) -> str:
    """An operating-system error as the one line after `once: error: `: the file, then why."""
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}"


class UsageError(OnceError):
    """Bad command-line input, such as a target no package defines."""
