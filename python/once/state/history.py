"""What each rule's key was made of when it last ran, so `once why` can name what changed.

Kept in the workspace's state folder: `last-keys` maps each label to the key of its last run
and to where that key's spec is (marshal, sealed: every run reads it, and `json` would cost a
no-op run ~10 ms of imports). A spec (what went into the key, JSON) is a record in a pack,
`specs/<name>.pack`: one file per run that changed keys, its records one after another, each
sealed and opening with its key. One file per run, not one per spec: a cold run of 1,000 steps
created 1,000 spec files, and each file created costs an inode (on ext4 without a journal,
a scan of the recently freed ones). A record whose seal or key does not match, in a pack cut
short or gone, is no spec, never another step's.

A run writes each step's record as the step finishes (`flush`), while the next steps run,
and names them all at its end (`save`). A run that changes no key writes nothing. Packs no
label points at are deleted after `last-keys` names the new one; a pack mostly of specs no
label points at any more has its live records copied into the new pack, so the folder stays
within about twice what it describes.
"""

from __future__ import annotations

import _thread
import marshal
import os
import time

from once import _core
from once.errors import os_error_message
from once.state.atomic_file import read_sealed, write_sealed
from once.state.kept_state import unlink_quietly, unsaved

TYPE_CHECKING = False  # not typing's: loaded by a no-op run (run/pipeline.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

    Spec = dict[str, Any]
else:
    Spec = dict  # what a spec is at run time, without importing typing for `Any`

LAST_KEYS = "last-keys"
SPECS = "specs"
PACK_SUFFIX = ".pack"
# Marks `last-keys` as (FORMAT, keys, places); earlier versions wrote only the keys (a dict),
# with each spec in `specs/<key>.json`, still read until the label runs again.
FORMAT = "packs-1"
# A record: the BLAKE3 (hex) of the rest, then the key, a newline and the spec's JSON.
_SEAL_SIZE = 64

# Where a label's spec is: its pack's file name, the record's offset and its size.
Place = tuple[str, int, int]


class History:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self._dir = os.fspath(state_dir)
        self._lock = _thread.allocate_lock()  # threading's Lock, without importing threading
        # label -> (key, its spec's JSON when asked): each spec is made as it is written, one
        # at a time. Made as recorded, a cold run of 1,000,000 files held every spec at once
        # (every input's path and digest, ~200 MB) until the end of the run.
        self._pending: dict[str, tuple[str, Callable[[], str]]] = {}
        self._keys: dict[str, str] = {}
        self._places: dict[str, Place] = {}
        # This run's pack, opened by the first `flush` that has a record for it.
        self._pack: tuple[str, BinaryIO] | None = None
        self._offset = 0
        data = read_sealed(os.path.join(self._dir, LAST_KEYS))
        try:
            # `loads` of the whole file: `load` calls the file's `readinto` once per value.
            loaded = marshal.loads(data or b"")  # noqa: S302 - plain values only; runs no code
        except (EOFError, ValueError, TypeError):
            return  # no history yet, or a damaged file: explanations start afresh
        if isinstance(loaded, dict):  # an earlier version's: each spec in specs/<key>.json
            self._keys = {str(label): str(key) for label, key in loaded.items()}
        elif (
            isinstance(loaded, tuple)
            and len(loaded) == 3
            and loaded[0] == FORMAT
            and isinstance(loaded[1], dict)
            and isinstance(loaded[2], dict)
        ):
            # Sealed, so as written; the places are checked as they are read (`_place`).
            self._keys = loaded[1]
            self._places = loaded[2]

    def last_key(self, label: str) -> str | None:
        return self._keys.get(label)

    def last_spec(self, label: str) -> Spec | None:
        import json  # noqa: PLC0415 - only `why` and `--dry-run` read a spec

        key = self._keys.get(label)
        if key is None:
            return None
        place = self._place(label)
        if place is None:
            data = read_sealed(os.path.join(self._dir, SPECS, f"{key}.json"))
        else:
            data = self._read_record(place, key)
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

    def flush(self) -> None:
        """Write the specs recorded so far into this run's pack, so that a long run writes
        each while the next steps run instead of all of them at its end (a tenth of a second
        at 1,000 steps). Nothing names them until `save`."""
        try:
            with self._lock:
                self._append_pending()
        except OSError as err:
            self._failed(err)

    def save(self) -> None:
        """Write the specs and keys recorded since loading; no-op when nothing changed. Best
        effort: what cannot be written (a full disk) only leaves `once why` less to say."""
        try:
            self._write()
        except OSError as err:
            self._failed(err)

    def _failed(self, err: OSError) -> None:
        """Drop what this run would have written: its pack stays unnamed and goes next time."""
        with self._lock:
            self._pending.clear()
            self._close_pack()
        unsaved("the run history", os_error_message(err))

    def _place(self, label: str) -> Place | None:
        place = self._places.get(label)
        if (
            isinstance(place, tuple)
            and len(place) == 3
            and isinstance(place[0], str)
            and place[0].endswith(PACK_SUFFIX)
            and "/" not in place[0]
            and isinstance(place[1], int)
            and isinstance(place[2], int)
            and place[1] >= 0
            and place[2] > _SEAL_SIZE
        ):
            return place
        return None

    def _read_record(self, place: Place, key: str) -> bytes | None:
        """The spec's JSON stored at `place` for `key`; None when the pack is gone, cut short,
        or the record there is not whole or not `key`'s."""
        pack, offset, size = place
        try:
            with open(os.path.join(self._dir, SPECS, pack), "rb") as file:
                file.seek(offset)
                record = file.read(size)
        except OSError:
            return None
        body = record[_SEAL_SIZE:]
        if len(record) != size or record[:_SEAL_SIZE] != _core.hash_bytes(body).encode():
            return None
        head = f"{key}\n".encode()
        return body[len(head) :] if body.startswith(head) else None

    def _open_pack(self) -> tuple[str, BinaryIO]:
        if self._pack is None:
            specs = os.path.join(self._dir, SPECS)
            os.makedirs(specs, exist_ok=True)
            # Unique among this workspace's runs, which hold its lock while they write here.
            name = f"{time.time_ns():x}-{os.getpid()}{PACK_SUFFIX}"
            # Written in place, not through a temporary file: nothing names it until
            # `last-keys` is replaced, and a pack cut short only loses its own records.
            self._pack = (name, open(os.path.join(specs, name), "wb"))  # noqa: SIM115 - kept open for the run
            self._offset = 0
        return self._pack

    def _close_pack(self) -> None:
        if self._pack is not None:
            self._pack[1].close()
            self._pack = None

    def _append(self, label: str, key: str, spec: bytes) -> None:
        name, file = self._open_pack()
        body = f"{key}\n".encode() + spec
        file.write(_core.hash_bytes(body).encode())
        file.write(body)
        self._places[label] = (name, self._offset, _SEAL_SIZE + len(body))
        self._offset += _SEAL_SIZE + len(body)

    def _append_pending(self) -> None:
        for label, (key, spec_json) in self._pending.items():
            self._append(label, key, spec_json().encode())
            self._keys[label] = key
        self._pending.clear()

    def _write(self) -> None:
        with self._lock:
            if not self._pending and self._pack is None:
                return
            specs = os.path.join(self._dir, SPECS)
            self._append_pending()
            for label in self._sparse_packs(specs):
                key = self._keys[label]
                place = self._place(label)
                data = self._read_record(place, key) if place is not None else None
                if data is None:
                    self._places.pop(label, None)  # unreadable already: it stays no spec
                else:
                    self._append(label, key, data)
            self._close_pack()
            places = self._places
            write_sealed(
                os.path.join(self._dir, LAST_KEYS), marshal.dumps((FORMAT, self._keys, places))
            )
            unlink_quietly(os.path.join(self._dir, "last-keys.json"))  # earlier versions' name
            # Packs (and an earlier version's spec files) no label points at any more are only
            # history of history.
            live = {place[0] for place in places.values()}
            live.update(f"{key}.json" for label, key in self._keys.items() if label not in places)
            for stale in os.listdir(specs):
                if stale not in live and not stale.endswith(".tmp"):
                    unlink_quietly(os.path.join(specs, stale))

    def _sparse_packs(self, specs: str) -> list[str]:
        """The labels whose records are in packs that are mostly records no label points at
        any more (after this save), to be copied into the new pack so those can go."""
        live: dict[str, int] = {}  # pack -> bytes still pointed at
        holders: dict[str, list[str]] = {}
        current = self._pack[0] if self._pack is not None else None
        for label in self._places:
            place = self._place(label)
            if place is None or place[0] == current:
                continue
            live[place[0]] = live.get(place[0], 0) + place[2]
            holders.setdefault(place[0], []).append(label)
        moved: list[str] = []
        for pack, used in live.items():
            try:
                size = os.stat(os.path.join(specs, pack)).st_size
            except OSError:
                continue  # gone: its records are no spec, moved or not
            if used * 2 < size:
                moved.extend(holders[pack])
        return moved
