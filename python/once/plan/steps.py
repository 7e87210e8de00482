"""A run's plan: the steps of a `once run TARGET...` in dependency order, each with everything
its key is made of except the files' contents (input globs, command, env patterns, tools,
dependencies, outputs).

The plan of a command is kept in `.once/run-plans` (marshal, never pickle: loading it must not
run code; sealed, see state/atomic_file.py) together with the stamps of every once.toml and folder
the workspace was read from (state/stamps.py). While they hold, the same command in the same folder
has the same plan, so a run (`run/pipeline.py`) keys its steps without importing click or
reading any configuration.

Light: loaded by every run before anything else of the front."""

from __future__ import annotations

import marshal
import os
import sys

from once import __version__, _core
from once.errors import UsageError, os_error_message
from once.layout import STAT_CACHE, STATE_DIR, is_glob
from once.plan.context import ToolProbes, declared_env, env_mode, platform_tag
from once.state.atomic_file import read_sealed, write_sealed
from once.state.kept_state import unsaved
from once.state.stamps import Stamps, hold, signature
from once.value import Value

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, Final

PLANS_NAME = "run-plans"
# Bump when the layout of a step, or of the file, changes.
FORMAT = 5
# Plans kept per workspace (the commands most recently planned); each is a few bytes per step.
KEEP = 32
# The modules whose code decides what a plan holds: a changed one (a development checkout)
# makes every kept plan stale, as a new version does.
_PLANNERS = ("config/__init__.py", "plan/graph.py", "plan/keys.py", "plan/steps.py")


class Step(Value):
    """One step of a plan: what its key is made of, but the files' contents. Kept between
    runs as the tuple of its fields (`fields`)."""

    __slots__ = (
        "cache",
        "cmd",
        "deps",
        "env",
        "env_mode",
        "exclude",
        "include",
        "label",
        "lockfiles",
        "outputs",
        "package",
        "tools",
    )
    FIELDS = (
        "label",
        "deps",
        "package",
        "include",
        "exclude",
        "cmd",
        "env",
        "tools",
        "outputs",
        "env_mode",
        "cache",
        "lockfiles",
    )

    def __init__(
        self,
        *,
        label: str,
        deps: tuple[str, ...],
        package: str,
        include: list[str],
        exclude: list[str],
        cmd: str,
        env: tuple[str, ...],
        tools: tuple[str, ...],
        outputs: tuple[str, ...],
        env_mode: str,
        cache: bool,
        lockfiles: tuple[str, ...] | None,
    ) -> None:
        self.label: Final = label
        self.deps: Final = deps  # labels of the steps it depends on
        self.package: Final = package  # its folder, relative to the workspace root
        self.include: Final = include  # input globs (`//` ones from the root)
        self.exclude: Final = exclude
        self.cmd: Final = cmd
        self.env: Final = env  # declared variable names and patterns
        self.tools: Final = tools  # tool probe commands
        self.outputs: Final = outputs
        self.env_mode: Final = env_mode  # as configured; `$ONCE_ENV_MODE` may override it
        # `[workspace] lockfiles`: None to find the governing ones (plan/lockfiles.py), else these.
        self.lockfiles: Final = lockfiles
        self.cache: Final = cache  # whether its results are cached

    @property
    def cutoff(self) -> bool:
        """Whether its dependents are keyed by the outputs it produced rather than by its key
        (early cutoff): only what is cached has a known result, and only declared outputs
        are compared. A step with none gives its key, so a change to it still reaches them."""
        return self.cache and bool(self.outputs)

    def fields(self) -> tuple[object, ...]:
        return self._values()


# Which plan: the working folder (resolved) and the targets as given.
PlanKey = tuple[str, tuple[str, ...]]
# What each step's key takes from outside the workspace's files: the platform, and per step
# its declared environment variables and its tool probes' outputs, as (name, value) pairs.
KeyContext = tuple[str, list[tuple[list[tuple[str, str]], list[tuple[str, str]], str]]]
# What `_core.action_keys` takes per step.
KeyRequest = _core.KeyRequest
# A dependency as a dependent's key sees it: (label, its key, its result), the key or result
# None while unknown (see `_core.action_keys`).
DepResult = tuple[str, "str | None", "str | None"]
# A step's (key, result) as `_core.action_keys` gives them, None while unknown.
KeyAndResult = tuple["str | None", "str | None"]


def selections(steps: Sequence[Step]) -> list[tuple[str, list[str], list[str]]]:
    """What `Snapshot.select_many` takes to find each step's input files."""
    return [(step.package, step.include, step.exclude) for step in steps]


class SourceUnderOutputGlob(Exception):
    """An output glob of `steps[index]` matches `path`, a file once does not ignore: restoring
    the step would replace or delete it (a hand-written `notes.txt` under `*.txt`)."""

    def __init__(self, index: int, output: str, path: str) -> None:
        super().__init__(index, output, path)
        self.index = index
        self.output = output
        self.path = path


def select_inputs(snapshot: _core.Snapshot, steps: Sequence[Step]) -> list[_core.FileSet]:
    """Each step's input files, in one call. Raises `SourceUnderOutputGlob` when an output
    glob (not a plain path or folder, which name exactly what the step writes) matches a file
    the walk saw: files an output glob covers must be ignored (by .gitignore or .onceignore),
    since what they are now is removed whenever the step is restored. Warns of each declared
    input glob that matches no file: a typo there is a key that never sees the file meant."""
    globbed = [
        (index, output)
        for index, step in enumerate(steps)
        for output in step.outputs
        if is_glob(output)
    ]
    # Each (package, glob) once: `[workspace] inputs` are in every step's, and `//` ones
    # select alike from every package.
    declared: dict[tuple[str, str], int] = {}
    for index, step in enumerate(steps):
        for pattern in step.include:
            if pattern != "**":
                package = "" if pattern.startswith("//") else step.package
                declared.setdefault((package, pattern), index)
    try:
        found = snapshot.select_many(
            [
                *selections(steps),
                *((steps[index].package, [output], []) for index, output in globbed),
                *((package, [pattern], []) for package, pattern in declared),
            ]
        )
    except _core.UnsafePathError as err:  # an input below a folder link leaving the workspace
        raise UsageError(str(err)) from None
    under_outputs = found[len(steps) : len(steps) + len(globbed)]
    for (index, output), files in zip(globbed, under_outputs, strict=True):
        if len(files):
            raise SourceUnderOutputGlob(index, output, snapshot.paths(files)[0])
    by_input = found[len(steps) + len(globbed) :]
    for ((_, pattern), index), files in zip(declared.items(), by_input, strict=True):
        if not len(files):
            print(
                f"once: warning: {steps[index].label}: input {pattern!r} matches no file",
                file=sys.stderr,
            )
    return found[: len(steps)]


def key_context(
    steps: Sequence[Step], environ: Mapping[str, str], probes: ToolProbes
) -> KeyContext:
    """What the keys of `steps` take from the environment (see `KeyContext`), the digests of
    the programs their commands start among their tools."""
    probes.run_all((tool for step in steps for tool in step.tools), environ)
    context: KeyContext = (
        platform_tag(),
        [
            (
                declared_env(step.env, environ),
                [
                    *((tool, probes.output(tool)) for tool in step.tools),
                    *probes.executables(step.cmd, step.package, environ.get("PATH", "")),
                ],
                env_mode(step.env_mode, environ),
            )
            for step in steps
        ],
    )
    probes.save()
    return context


def key_requests(
    steps: Sequence[Step],
    inputs: Sequence[_core.FileSet],
    context: KeyContext,
    lockfiles: Sequence[list[tuple[str, str]]],
) -> list[KeyRequest]:
    """Each step's request for `_core.action_keys`, given its input files and the slices of
    the lockfiles governing its package (`lockfiles.slices`)."""
    tag, per_step = context
    return [
        KeyRequest(
            inputs=files,
            label=step.label,
            cmd=step.cmd,
            cwd=step.package,
            platform=tag,
            env_mode=mode,
            env=env,
            tools=tools,
            lockfiles=slices,
            deps=list(step.deps),
            outputs=list(step.outputs),
            cutoff=step.cutoff,
        )
        for step, files, (env, tools, mode), slices in zip(
            steps, inputs, per_step, lockfiles, strict=True
        )
    ]


def hash_inputs(
    root: str, snapshot: _core.Snapshot, steps: Sequence[Step], inputs: list[_core.FileSet]
) -> tuple[int, list[list[tuple[str, str]]]]:
    """Hash the steps' input files and the lockfiles governing their packages in one call:
    (files read, each step's lockfile slices)."""
    from once.plan import lockfiles  # noqa: PLC0415 - not on a run over an unchanged tree

    found = lockfiles.select(snapshot, steps)
    stat_cache = os.path.join(root, STATE_DIR, STAT_CACHE)
    read = snapshot.hash([*inputs, found] if found is not None else inputs, stat_cache)
    if snapshot.stat_cache_unsaved is not None:
        unsaved("the stat cache", snapshot.stat_cache_unsaved)
    return read, lockfiles.slices(root, snapshot, found, steps)


def spec_json(
    snapshot: _core.Snapshot,
    request: KeyRequest,
    deps: Sequence[DepResult],
    store: _core.Store | None,
    saved: Mapping[str, _core.Entry] | None = None,
) -> str:
    """Everything that went into a key as JSON, for `once why` and `--dry-run`: built only
    for the steps whose key changed since their last run. With the outputs of each
    dependency keyed by them (the entry this run `saved` under its key, else read from
    `store`), so `once why` can name the one that changed."""
    outputs = {}
    for label, key, result in deps:
        if store is not None and key is not None and result and result.startswith("outputs "):
            # A save of this run may not be in the store yet: its entry is written while the
            # next steps run.
            entry = saved.get(key) if saved is not None else None
            if entry is None:
                entry = store.lookup(key)
            if entry is not None and entry.result == result:
                outputs[label] = entry.listing()
    return _core.action_spec(
        snapshot, request, [(label, result or "unknown") for label, _, result in deps], outputs
    )


def load(state_dir: str, key: PlanKey) -> tuple[list[Step], str] | None:
    """The kept plan of `key` and its id (the digest of its bytes, which `run_keys` keys on),
    or None when there is none or what it was made from changed (or the file is damaged)."""
    # `loads` of the whole file: `load` calls the file's `readinto` once per value, which made
    # it 100 times slower.
    data = read_sealed(os.path.join(state_dir, PLANS_NAME))
    if data is None:
        return None
    try:
        header, stamps, plans = marshal.loads(data)  # noqa: S302 - plain values only
        kept = plans.get(key)
        if kept is None or header != _header(os.path.dirname(state_dir)) or not hold(stamps):
            return None
        # Each plan is kept as its own bytes: only the one asked for is decoded.
        steps = [
            Step(**dict(zip(Step.FIELDS, fields, strict=True)))
            for fields in marshal.loads(kept)  # noqa: S302
        ]
    except (OSError, EOFError, ValueError, TypeError, AttributeError):
        return None
    return steps, _core.hash_bytes(kept)


def save(state_dir: str, stamps: Stamps, key: PlanKey, steps: list[Step]) -> str:
    """Keep `steps` as the plan of `key`, made from a workspace that `stamps` vouch for, and
    return its id (as `load` gives it). Plans kept for other stamps (an older configuration)
    are dropped; one kept already as it is is not written again."""
    path = os.path.join(state_dir, PLANS_NAME)
    header = _header(os.path.dirname(state_dir))
    plans: dict[Any, Any] = {}
    try:
        old_header, old_stamps, old_plans = marshal.loads(read_sealed(path) or b"")  # noqa: S302
        if old_header == header and old_stamps == stamps and isinstance(old_plans, dict):
            plans = old_plans
    except (EOFError, ValueError, TypeError):
        pass  # none yet, or damaged: start afresh
    kept = marshal.dumps([step.fields() for step in steps])
    if plans.get(key) == kept and list(plans)[-1:] == [key]:
        return _core.hash_bytes(kept)
    plans.pop(key, None)
    plans[key] = kept  # dicts keep insertion order: the newest last
    for stale in list(plans)[:-KEEP]:
        del plans[stale]
    try:
        write_sealed(path, marshal.dumps((header, stamps, plans)))
    except OSError as err:
        unsaved("the run plan", os_error_message(err))  # the next run plans again
    return _core.hash_bytes(kept)


def _header(root: str) -> tuple[Any, ...]:
    here = os.path.dirname(os.path.dirname(__file__))  # the package's root
    try:
        code = [signature(os.path.join(here, name)) for name in _PLANNERS]
    except OSError:
        code = []
    return (FORMAT, __version__, sys.version, root, platform_tag(), code)
