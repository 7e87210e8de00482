"""What `.once/` keeps (the stat cache, output stats, plans, run keys, the validated
configuration, the history `once why` reads) only makes later runs faster or better explained:
a run that cannot write it, on a full disk or a read-only checkout, is still right. It goes
on, and says so once.

Light: the fast path (quick.py) writes kept state too."""

from __future__ import annotations

import sys

_warned = False


def unsaved(what: str, reason: object) -> None:
    """Say, once per process, that `what` could not be written to `.once/`, and why."""
    global _warned  # noqa: PLW0603 - one warning per run, whichever state failed first
    if _warned:
        return
    _warned = True
    print(
        f"once: warning: could not save {what} in .once/ ({reason}); "
        "the run goes on, the next may be slower",
        file=sys.stderr,
    )
