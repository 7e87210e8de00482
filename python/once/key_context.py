"""What an action's key takes from outside the workspace's files: the platform, the declared
environment variables and the output of the rule's tool probes.

Light (`quick.py` keys actions before anything else of the front loads): `fnmatch` and
`subprocess` are imported only for rules that declare env patterns or tools."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping


def platform_tag() -> str:
    # os.uname's machine is what platform.machine() reports on POSIX, without importing it.
    return f"{sys.platform}-{os.uname().machine}"


def declared_env(patterns: tuple[str, ...], environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(name, value) of every set variable matching a declared name or pattern (`API_*`)."""
    if not patterns:
        return []  # most rules declare none: skip a pass over the whole environment
    import fnmatch  # noqa: PLC0415 - loads `re`, which a rule without patterns never needs

    return sorted(
        (name, value)
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    )


class ToolProbes:
    """Runs each `tools` probe once per run; its output (and failure) enters the key."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = root
        self._outputs: dict[str, str] = {}

    def output(self, command: str) -> str:
        if command not in self._outputs:
            import subprocess  # noqa: PLC0415 - only rules with `tools` run a probe

            done = subprocess.run(
                ["sh", "-c", command],
                cwd=self._root,
                capture_output=True,
                check=False,
            )
            text = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
            self._outputs[command] = f"{text}\n[exit {done.returncode}]"
        return self._outputs[command]
