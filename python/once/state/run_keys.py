"""The keys a kept plan (plan/steps.py) last had, with the tree they were computed from, so that a
run over an unchanged workspace takes them as they are instead of computing them again.

A key is made of the plan's step, the step's input files (paths, contents, executable bits),
the key context (platform, declared env, tool outputs) and what its dependencies produced.
The last is kept beside each key as the step's result (the digest of its cached outputs),
which a run checks against the entries it finds (run/pipeline.py). The tree digest
(`Snapshot.tree_digest`) covers every walked file's path, executable bit and digest: two
equal trees select the same files for every step with the same contents, provided every
selected file's digest was known both times. Those digests are known after the walk when the
stat cache vouches for them; a file it does not vouch for has no digest yet, so its tree
differs from the one remembered, and the keys are computed as before.

Kept by a run that computed every key before settling, and by a build that ran to the end with
the keys it used (its dependents' keys are known only once their dependencies ran), so the
run after a build need not key again either.

On a 100,000-file workspace this skips selecting, hashing and keying (~25 ms of a no-op run).
Kept in `.once/run-keys` (marshal, sealed: see state/atomic_file.py); the context is kept as a
digest (env values may be secrets). Light: loaded by every run (run/pipeline.py)."""

from __future__ import annotations

import marshal
import os

from once import __version__, _core
from once.errors import os_error_message
from once.state.atomic_file import read_sealed, write_sealed
from once.state.kept_state import unsaved
from once.state.stamps import Signature, signature

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from once.plan.steps import KeyAndResult, KeyContext, PlanKey

KEYS_NAME = "run-keys"
FORMAT = 2
# Plans whose keys are kept (those most recently run).
KEEP = 32


def known(
    state_dir: str, key: PlanKey, plan_id: str, tree: str, context: KeyContext
) -> list[KeyAndResult] | None:
    """The (key, result) pairs kept for plan `key` (with id `plan_id`) over the tree digest
    `tree` under `context`, or None when none were kept for exactly those."""
    kept = _load(state_dir).get(key)
    if kept is None or kept[:3] != (plan_id, tree, _digest(context)):
        return None
    return list(kept[3])


def keep(
    state_dir: str,
    key: PlanKey,
    *,
    plan_id: str,
    tree: str,
    context: KeyContext,
    keys: list[KeyAndResult],
) -> None:
    """Remember `keys`, (key, result) pairs, for plan `key` over `tree` under `context`. Best
    effort: a read-only or full disk only means the next run computes them again."""
    kept = _load(state_dir)
    entry = (plan_id, tree, _digest(context), keys)
    if kept.get(key) == entry:
        return
    kept.pop(key, None)
    kept[key] = entry  # dicts keep insertion order: the newest last
    for stale in list(kept)[:-KEEP]:
        del kept[stale]
    try:
        write_sealed(os.path.join(state_dir, KEYS_NAME), marshal.dumps((_header(), kept)))
    except OSError as err:
        unsaved("the run keys", os_error_message(err))  # the next run computes them again


def _load(state_dir: str) -> dict[PlanKey, tuple[str, str, str, list[KeyAndResult]]]:
    data = read_sealed(os.path.join(state_dir, KEYS_NAME))
    try:
        header, kept = marshal.loads(data or b"")  # noqa: S302 - plain values only
    except (EOFError, ValueError, TypeError):
        return {}
    return kept if header == _header() and isinstance(kept, dict) else {}


def _header() -> tuple[int, str, Signature | None]:
    # A new version, or a rebuilt core (a development checkout), may key differently.
    try:
        core = signature(_core.__file__)
    except OSError:
        core = None
    return (FORMAT, __version__, core)


def _digest(context: KeyContext) -> str:
    # repr of strings, lists and tuples is deterministic; the values stay off the disk.
    return _core.hash_bytes(repr(context).encode())
