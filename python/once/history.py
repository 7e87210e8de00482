"""What each rule's key was made of when it last ran, so `once why` can name what changed.

Kept in the workspace's state folder: `last-keys.json` maps each label to the key of its last
run, and `specs/<key>.json` holds what went into that key. Specs are content-addressed by key,
so a run that changes nothing writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Spec = dict[str, Any]


class History:
    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, str]] = {}  # label -> (key, spec json)
        try:
            loaded = json.loads((state_dir / "last-keys.json").read_text())
            self._keys: dict[str, str] = (
                {str(label): str(key) for label, key in loaded.items()}
                if isinstance(loaded, dict)
                else {}
            )
        except (OSError, ValueError):
            self._keys = {}  # no history yet, or a damaged file: explanations start afresh

    def last_key(self, label: str) -> str | None:
        return self._keys.get(label)

    def last_spec(self, label: str) -> Spec | None:
        key = self._keys.get(label)
        if key is None:
            return None
        try:
            spec = json.loads((self._dir / "specs" / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        return spec if isinstance(spec, dict) else None

    def record(self, label: str, key: str, spec_json: Callable[[], str]) -> None:
        """Remember `key` as `label`'s last; `spec_json` is called only when the key changed
        (building it for every action cost most of a no-op run's keying)."""
        with self._lock:
            if self._keys.get(label) != key:
                self._pending[label] = (key, spec_json())

    def save(self) -> None:
        """Write the specs and keys recorded since loading; no-op when nothing changed."""
        with self._lock:
            if not self._pending:
                return
            specs = self._dir / "specs"
            specs.mkdir(parents=True, exist_ok=True)
            for label, (key, spec_json) in self._pending.items():
                _write_atomic(specs / f"{key}.json", spec_json)
                self._keys[label] = key
            self._pending.clear()
            _write_atomic(self._dir / "last-keys.json", json.dumps(self._keys, sort_keys=True))
            # Specs no label points at any more are only history of history.
            live = {f"{key}.json" for key in self._keys.values()}
            for stale in specs.iterdir():
                if stale.name not in live:
                    with contextlib.suppress(OSError):
                        stale.unlink()


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)
