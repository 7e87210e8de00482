"""once: a build cache that runs every step once.

It fingerprints each step's inputs with BLAKE3 and, when the same fingerprint was built
before, restores the outputs and replays the log instead of running the command.

The Python API (see the README's "Python API")::

    import once

    once.hash_file("data.bin")                 # BLAKE3, as b3sum prints it
    workspace = once.load("path/to/workspace")
    workspace.keys("build")                    # label -> action key
    report = workspace.run("build")            # restore or run; report.ok, .ran, .cached

`import once` stays cheap (the CLI's `once --version` imports it): the API module, and with it
the configuration and scheduling machinery, loads on first use of one of its names.
"""

from __future__ import annotations

from once._core import __version__

# Not `typing.TYPE_CHECKING`: importing typing costs ~10 ms on every start, before a run's
# walk can begin (run/prelude.py); type checkers treat any constant of that name alike.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from once.api import (
        Rule,
        RunReport,
        StepResult,
        Workspace,
        hash_bytes,
        hash_file,
        hash_files,
        load,
    )
    from once.errors import ConfigError, OnceError, UsageError

__all__ = [
    "ConfigError",
    "OnceError",
    "Rule",
    "RunReport",
    "StepResult",
    "UsageError",
    "Workspace",
    "__version__",
    "hash_bytes",
    "hash_file",
    "hash_files",
    "load",
]

_ERRORS = ("ConfigError", "OnceError", "UsageError")


def __getattr__(name: str) -> Any:  # noqa: ANN401 - PEP 562 hook: the type is the attribute's
    """Load `once.api` (or `once.errors`) on first use of one of the public names."""
    if name in __all__:
        import importlib  # noqa: PLC0415 - `import once` runs before every walk (run/prelude.py)

        module = "once.errors" if name in _ERRORS else "once.api"
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'once' has no attribute {name!r}")
