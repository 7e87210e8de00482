"""Damaged state: every file once keeps in `.once/` (and the run log in the cache folder) is
read back by the next run. Whatever a file holds (random bytes, a part of itself, a valid
marshal or JSON value of the wrong shape, one of its own values swapped for another), the next
`once run` must give the right outputs: treat the file as absent, run or re-key, never a
traceback and never a hit on a stale key.

Hypothesis is derandomized (the same examples on every run, in CI too) and bounded.
"""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import ONCE

WORKSPACE = {
    "once.toml": '[workspace]\nmembers = ["libs/*"]\n',
    "libs/a/once.toml": (
        "[rule.build]\n"
        'cmd = "mkdir -p dist && cat src/*.txt > dist/out"\n'
        'inputs = ["src/"]\noutputs = ["dist/"]\nenv = ["A_MODE"]\n'
        "[rule.check]\n"
        'cmd = "mkdir -p checked && cp dist/out checked/out"\n'
        'deps = ["build"]\noutputs = ["checked/"]\n'
    ),
    "libs/a/src/x.txt": "1\n",
    "libs/b/once.toml": (
        '[package]\ndeps = ["//libs/a"]\n'
        "[rule.check]\n"
        'cmd = "mkdir -p out && cat ../a/dist/out > out/b"\n'
        'deps = ["^build"]\noutputs = ["out/b"]\n'
    ),
}
# What the outputs hold for a given libs/a/src/x.txt.
OUTPUTS = ("libs/a/dist/out", "libs/a/checked/out", "libs/b/out/b")
STATE_FILES = (
    ".once/run-plans",
    ".once/run-keys",
    ".once/workspace-cache",
    ".once/last-keys",
    ".once/specs/*.pack",
    ".once/statcache",
    ".once/outputs",
    "cache:runs.jsonl",
    "cache:usage",
)

# Plain values, as marshal and JSON hold them.
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# How to damage a file: random bytes, cut short, one byte flipped, a valid value of the wrong
# shape, or the file's own value with one leaf swapped.
damage = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=200)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20)),
    st.tuples(st.just("flip"), st.tuples(st.integers(0, 1 << 20), st.integers(1, 255))),
    st.tuples(st.just("shape"), values),
    st.tuples(st.just("leaf"), st.tuples(st.integers(0, 1 << 10), values)),
)


def leaves(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """The paths (index or key per level) to every value inside `value` that holds no other."""
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in leaves(item, (*path, i))] or [path]
    if isinstance(value, dict):
        return [p for k, item in value.items() for p in leaves(item, (*path, k))] or [path]
    return [path]


def replaced(value: object, path: tuple[object, ...], new: object) -> object:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    assert isinstance(value, list | tuple)
    assert isinstance(head, int)
    items = list(value)
    items[head] = replaced(items[head], rest, new)
    return tuple(items) if isinstance(value, tuple) else items


def damaged(path: Path, kind: str, what: Any) -> bytes:  # noqa: ANN401 - per `kind`
    data = path.read_bytes()
    if kind == "bytes":
        return bytes(what)
    if kind == "truncate":
        return data[: what % (len(data) + 1)]
    if kind == "flip":
        index, mask = what
        index %= max(1, len(data))
        return (
            data[:index] + bytes([(data[index : index + 1] or b"\0")[0] ^ mask]) + data[index + 1 :]
        )
    as_json = path.suffix in (".json", ".jsonl")
    if kind == "shape":
        value = what
    else:
        index, value = what
        try:
            own = json.loads(data) if as_json else marshal.loads(data)  # noqa: S302 - ours
        except (ValueError, EOFError, TypeError):
            own = None  # not one value (statcache is the core's own format; runs.jsonl lines)
        places = leaves(own)
        value = replaced(own, places[index % len(places)], value)
    return json.dumps(value).encode() if as_json else marshal.dumps(value)


def once(root: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [ONCE, *args],
        cwd=root,
        env={**os.environ, "ONCE_CACHE_DIR": str(cache), "A_MODE": "x"},
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert "panicked" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    return done


def state_files(root: Path, cache: Path, which: str) -> list[Path]:
    if which.startswith("cache:"):
        return sorted(cache.glob(which.removeprefix("cache:")))
    return sorted(root.glob(which))


def assert_outputs(root: Path, text: str) -> None:
    for output in OUTPUTS:
        assert (root / output).read_text() == text, output


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(which=st.sampled_from(STATE_FILES), how=damage, edit=st.booleans())
# Valid JSON of the wrong shape in every spec: `once why` and `--dry-run` raised a TypeError.
@example(which=".once/specs/*.pack", how=("shape", {"inputs": 5}), edit=True)
# A run record dated Infinity: `once cache stats` raised an OverflowError.
@example(which="cache:runs.jsonl", how=("shape", {"time": float("inf"), "hits": 1}), edit=False)
def test_damaged_state_never_breaks_a_run(which: str, how: tuple[str, Any], edit: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root, cache = Path(folder) / "ws", Path(folder) / "cache"
        for rel, text in WORKSPACE.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        time.sleep(0.05)  # past the racy window: the first run keeps what it read (state/stamps.py)
        for _ in range(3):  # the third takes the fast path: every state file is written by then
            once(root, cache, "run", "check")
        kept = state_files(root, cache, which)
        assert kept, which
        for path in kept:
            path.write_bytes(damaged(path, *how))
        if edit:
            # A different size, so the change is seen whatever the clock's resolution.
            (root / "libs/a/src/x.txt").write_text("22\n")
        expected = "22\n" if edit else "1\n"
        # Those that only read first: a run replaces what it reads.
        once(root, cache, "run", "--dry-run", "check")
        once(root, cache, "why", "//libs/b:check")  # and down to what changed in its deps
        once(root, cache, "cache", "stats")
        once(root, cache, "run", "check")
        assert_outputs(root, expected)
        once(root, cache, "run", "check")
        assert_outputs(root, expected)


def test_a_flipped_byte_in_a_kept_value_is_never_trusted(tmp_path: Path) -> None:
    """A byte changed inside a string of a kept plan or workspace leaves valid marshal, of the
    right shape: read as it is, a step's input glob `src/` became `src?`, selected nothing, and
    the step hit its old key after its input changed."""
    for name in ("workspace-cache", "run-plans"):
        root, cache = tmp_path / name / "ws", tmp_path / name / "cache"
        for rel, text in WORKSPACE.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        time.sleep(0.05)  # past the racy window: the first run keeps what it read (state/stamps.py)
        for _ in range(3):
            once(root, cache, "run", "check")
        kept = root / ".once" / name
        data = kept.read_bytes()
        assert b"src/" in data
        kept.write_bytes(data.replace(b"src/", b"src?"))
        (root / "libs/a/src/x.txt").write_text("22\n")
        once(root, cache, "run", "check")
        assert_outputs(root, "22\n")
