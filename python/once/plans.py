"""A run's plan: the steps of a `once run TARGET...` in dependency order, each with everything
its key is made of except the files' contents (input globs, command, env patterns, tools,
dependencies, outputs).

The plan of a command is kept in `.once/run-plans` (marshal, never pickle: loading it must not
run code) together with the stamps of every once.toml and folder the workspace was read from
(stamps.py). While they hold, the same command in the same folder has the same plan, so the
fast path (`quick.py`) keys its steps without importing click or reading any configuration.

Light: loaded by that fast path before anything else of the front."""

from __future__ import annotations

import marshal
import os
import sys

from once import __version__, _core
from once.atomic_file import write_atomic
from once.errors import os_error_message
from once.kept_state import unsaved
from once.key_context import ToolProbes, declared_env, platform_tag
from once.stamps import Stamps, hold, signature

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

PLANS_NAME = "run-plans"
# Bump when the layout of a step, or of the file, changes.
FORMAT = 2
# Plans kept per workspace (the commands most recently planned); each is a few bytes per step.
KEEP = 32
# The modules whose code decides what a plan holds: a changed one (a development checkout)
# makes every kept plan stale, as a new version does.
_PLANNERS = ("config.py", "graph.py", "fingerprint.py", "plans.py")

# A step: label, dependency labels, package, include globs, exclude globs, cmd, env patterns,
# tools, outputs.
Step = tuple[
    str,
    tuple[str, ...],
    str,
    list[str],
    list[str],
    str,
    tuple[str, ...],
    tuple[str, ...],
    tuple[str, ...],
]
# Which plan: the working folder (resolved) and the targets as given.
PlanKey = tuple[str, tuple[str, ...]]
# What each step's key takes from outside the workspace's files: the platform, and per step
# its declared environment variables and its tool probes' outputs, as (name, value) pairs.
KeyContext = tuple[str, list[tuple[list[tuple[str, str]], list[tuple[str, str]]]]]
# What `_core.action_keys` takes per step: inputs, label, cmd, cwd, platform, env, tools,
# dependency labels, outputs.
KeyRequest = tuple[
    _core.FileSet,
    str,
    str,
    str,
    str,
    list[tuple[str, str]],
    list[tuple[str, str]],
    list[str],
    list[str],
]


def selections(steps: Sequence[Step]) -> list[tuple[str, list[str], list[str]]]:
    """What `Snapshot.select_many` takes to find each step's input files."""
    return [(step[2], step[3], step[4]) for step in steps]


def key_context(
    steps: Sequence[Step], environ: Mapping[str, str], probes: ToolProbes
) -> KeyContext:
    """What the keys of `steps` take from the environment (see `KeyContext`)."""
    return (
        platform_tag(),
        [
            (declared_env(env, environ), [(tool, probes.output(tool)) for tool in tools])
            for *_, env, tools, _ in steps
        ],
    )


def key_requests(
    steps: Sequence[Step], inputs: Sequence[_core.FileSet], context: KeyContext
) -> list[KeyRequest]:
    """Each step's request for `_core.action_keys`, given its input files."""
    tag, per_step = context
    return [
        (files, label, cmd, package, tag, env, tools, list(deps), list(outputs))
        for (label, deps, package, _, _, cmd, _, _, outputs), files, (env, tools) in zip(
            steps, inputs, per_step, strict=True
        )
    ]


def spec_json(snapshot: _core.Snapshot, request: KeyRequest, deps: list[tuple[str, str]]) -> str:
    """Everything that went into a key as JSON, for `once why` and `--dry-run`: built only
    for the steps whose key changed since their last run. `deps` are (label, key) pairs."""
    inputs, label, cmd, cwd, platform, env, tools, _, outputs = request
    _, spec = _core.action_key(
        snapshot,
        inputs,
        label=label,
        cmd=cmd,
        cwd=cwd,
        platform=platform,
        env=env,
        tools=tools,
        deps=deps,
        outputs=outputs,
    )
    return spec


def load(state_dir: str, key: PlanKey) -> tuple[list[Step], str] | None:
    """The kept plan of `key` and its id (the digest of its bytes, which `run_keys` keys on),
    or None when there is none or what it was made from changed (or the file is damaged)."""
    try:
        with open(os.path.join(state_dir, PLANS_NAME), "rb") as file:
            # `loads` of the whole file: `load` calls the file's `readinto` once per value,
            # which made it 100 times slower.
            header, stamps, plans = marshal.loads(file.read())  # noqa: S302 - plain values only
        kept = plans.get(key)
        if kept is None or header != _header(os.path.dirname(state_dir)) or not hold(stamps):
            return None
        # Each plan is kept as its own bytes: only the one asked for is decoded.
        steps = marshal.loads(kept)  # noqa: S302
    except (OSError, EOFError, ValueError, TypeError, AttributeError):
        return None
    return list(steps), _core.hash_bytes(kept)


def save(state_dir: str, stamps: Stamps, key: PlanKey, steps: list[Step]) -> None:
    """Keep `steps` as the plan of `key`, made from a workspace that `stamps` vouch for. Plans
    kept for other stamps (an older configuration) are dropped."""
    path = os.path.join(state_dir, PLANS_NAME)
    header = _header(os.path.dirname(state_dir))
    plans: dict[Any, Any] = {}
    try:
        with open(path, "rb") as file:
            old_header, old_stamps, old_plans = marshal.loads(file.read())  # noqa: S302
        if old_header == header and old_stamps == stamps and isinstance(old_plans, dict):
            plans = old_plans
    except (OSError, EOFError, ValueError, TypeError):
        pass  # none yet, or damaged: start afresh
    plans.pop(key, None)
    plans[key] = marshal.dumps(steps)  # dicts keep insertion order: the newest last
    for stale in list(plans)[:-KEEP]:
        del plans[stale]
    try:
        write_atomic(path, marshal.dumps((header, stamps, plans)))
    except OSError as err:
        unsaved("the run plan", os_error_message(err))  # the next run plans again


def _header(root: str) -> tuple[Any, ...]:
    here = os.path.dirname(__file__)
    try:
        code = [signature(os.path.join(here, name)) for name in _PLANNERS]
    except OSError:
        code = []
    return (FORMAT, __version__, sys.version, root, platform_tag(), code)
