"""What each rule's key was made of when it last ran, so `once why` can name what changed.

Kept in the workspace's state folder: `last-keys` maps each label to the key of its last run
(marshal, sealed: every run reads it, and `json` would cost a no-op run ~10 ms of imports), and
`specs/<key>.json` holds what went into that key (JSON, sealed too: a damaged spec is no spec,
never one of another shape). Specs are content-addressed by key, so a run that changes nothing
writes nothing.
"""

from __future__ import annotations

import _thread
import marshal
import os

from once.errors import os_error_message
from once.state.atomic_file import read_sealed, write_sealed, write_sealed_in_place
from once.state.kept_state import unlink_quietly, unsaved

TYPE_CHECKING = False  # not typing's: loaded by a no-op run (run/pipeline.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Spec = dict[str, Any]
else:
    Spec = dict  # what a spec is at run time, without importing typing for `Any`

LAST_KEYS = "last-keys"
SPECS = "specs"


class History:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self._dir = os.fspath(state_dir)
        self._lock = _thread.allocate_lock()  # threading's Lock, without importing threading
        # label -> (key, its spec's JSON when asked): each spec is made as it is written, one
        # at a time. Made as recorded, a cold run of 1,000,000 files held every spec at once
        # (every input's path and digest, ~200 MB) until the end of the run.
        self._pending: dict[str, tuple[str, Callable[[], str]]] = {}
        self._keys: dict[str, str] = {}
        data = read_sealed(os.path.join(self._dir, LAST_KEYS))
        try:
            # `loads` of the whole file: `load` calls the file's `readinto` once per value.
            loaded = marshal.loads(data or b"")  # noqa: S302 - plain values only; runs no code
        except (EOFError, ValueError, TypeError):
            return  # no history yet, or a damaged file: explanations start afresh
        if isinstance(loaded, dict):
            self._keys = {str(label): str(key) for label, key in loaded.items()}

    def last_key(self, label: str) -> str | None:
        return self._keys.get(label)

    def last_spec(self, label: str) -> Spec | None:
        import json  # noqa: PLC0415 - only `why` and `--dry-run` read a spec

        key = self._keys.get(label)
        if key is None:
            return None
        data = read_sealed(os.path.join(self._dir, SPECS, f"{key}.json"))
        try:
            spec = json.loads(data or b"")
        except ValueError:
            return None
        return spec if isinstance(spec, dict) else None

    def record(self, label: str, key: str, spec_json: Callable[[], str]) -> None:
        """Remember `key` as `label`'s last; `spec_json` is called only when the key changed
        (building it for every action cost most of a no-op run's keying), and then only by
        `save`, as it writes that spec."""
        with self._lock:
            if self._keys.get(label) != key:
                self._pending[label] = (key, spec_json)

    def save(self) -> None:
        """Write the specs and keys recorded since loading; no-op when nothing changed. Best
        effort: what cannot be written (a full disk) only leaves `once why` less to say."""
        try:
            self._write()
        except OSError as err:
            unsaved("the run history", os_error_message(err))

    def _write(self) -> None:
        with self._lock:
            if not self._pending:
                return
            specs = os.path.join(self._dir, SPECS)
            os.makedirs(specs, exist_ok=True)
            for label, (key, spec_json) in self._pending.items():
                # Named by its key, which the spec is the makings of: written in place.
                write_sealed_in_place(os.path.join(specs, f"{key}.json"), spec_json().encode())
                self._keys[label] = key
            self._pending.clear()
            write_sealed(os.path.join(self._dir, LAST_KEYS), marshal.dumps(self._keys))
            unlink_quietly(os.path.join(self._dir, "last-keys.json"))  # earlier versions' name
            # Specs no label points at any more are only history of history.
            live = {f"{key}.json" for key in self._keys.values()}
            for stale in os.listdir(specs):
                if stale not in live:
                    unlink_quietly(os.path.join(specs, stale))
