"""Kept run keys (state/run_keys.py): a run over an unchanged tree takes the keys its plan had last
time without selecting or hashing anything, and any change a key depends on (a file's
content, its name, its executable bit, a declared env variable) makes it key again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from once import _core
from once.plan import steps as plans
from once.run import pipeline
from once.state import run_keys
from once.state.cache_files import open_store

from tests.helpers import Workspace, run_in_process, three_packages

# Longer than the racy-timestamp margin (20 ms): only then may a recorded stat vouch for a file.
SETTLE_SECONDS = 0.06


@pytest.fixture
def kept(ws: Workspace) -> Workspace:
    """Three packages built, their plan kept, and their keys kept over a settled tree."""
    three_packages(ws)
    for _ in range(3):
        assert ws.once("run", "build").code == 0
        time.sleep(SETTLE_SECONDS)
    assert sorted(ws.ran()) == ["a", "app", "b"]
    assert (ws.root / ".once" / run_keys.KEYS_NAME).is_file()
    return ws


def run_here(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> int:
    """`once run build`, in this process."""
    monkeypatch.setenv("ONCE_CACHE_DIR", str(ws.cache))
    monkeypatch.chdir(ws.root)
    return run_in_process(["run", "build"])


def test_an_unchanged_tree_takes_the_kept_keys(
    kept: Workspace, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def no_selecting(*_: object) -> None:
        raise AssertionError("selected inputs although the keys were kept")

    monkeypatch.setattr(plans, "selections", no_selecting)
    assert run_here(kept, monkeypatch) == 0
    assert "once: all 3 steps cached" in capfd.readouterr().out
    assert kept.ran() == []


def test_new_content_is_keyed_again(kept: Workspace) -> None:
    (kept.root / "libs/a/src/one.txt").write_text("ONE\n")
    done = kept.once("run", "build")
    assert done.code == 0, done.err
    assert sorted(kept.ran()) == ["a", "app"]
    assert (kept.root / "app/out/app.txt").read_text() == "ONE\ntwo\nbee\n"


def test_same_content_rewritten_is_still_cached(kept: Workspace) -> None:
    (kept.root / "libs/a/src/one.txt").write_text("one\n")  # a new stat, the same bytes
    assert kept.once("run", "build").code == 0
    assert kept.ran() == []


def test_a_renamed_input_is_keyed_again(kept: Workspace) -> None:
    src = kept.root / "libs/a/src"
    (src / "two.txt").rename(src / "zwei.txt")
    assert kept.once("run", "build").code == 0
    # a's output is the same bytes (`cat src/*.txt` reads them in the same order): the app,
    # keyed by that output, is not built again.
    assert sorted(kept.ran()) == ["a"]


def test_an_executable_bit_is_keyed_again(kept: Workspace) -> None:
    (kept.root / "libs/b/src/b.txt").chmod(0o755)
    assert kept.once("run", "build").code == 0
    # `cp` onto the existing output keeps its mode: the same output, so the app is cached.
    assert sorted(kept.ran()) == ["b"]


def test_a_declared_env_variable_is_keyed_again(kept: Workspace) -> None:
    assert kept.once("run", "build", env={"A_MODE": "fast"}).code == 0
    assert sorted(kept.ran()) == ["a", "app"]
    time.sleep(SETTLE_SECONDS)
    assert kept.once("run", "build").code == 0  # back to unset: the first keys, cached
    assert kept.ran() == []


def test_a_miss_is_keyed_and_looked_up_once(
    kept: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit-and-run case: the run keys its kept plan, settles what hits, and the scheduler
    continues with those keys and the entries they found, instead of keying everything and
    reading every entry again."""
    (kept.root / "libs/a/src/one.txt").write_text("ONE\n")
    keyings: list[int] = []
    lookups: list[int] = []
    action_keys = _core.action_keys

    def counted_keys(snapshot: _core.Snapshot, requests: object, store: object) -> object:
        keyings.append(1)
        real = store._store if isinstance(store, CountedLookups) else store
        return action_keys(snapshot, requests, real)  # type: ignore[arg-type]

    class CountedLookups:
        def __init__(self, store: _core.Store | None) -> None:
            self._store = store

        def __getattr__(self, name: str) -> object:
            return getattr(self._store, name)

        def lookup_many(self, keys: list[str]) -> list[_core.Entry | None]:
            lookups.append(len(keys))
            assert self._store is not None
            return self._store.lookup_many(keys)

    monkeypatch.setattr(_core, "action_keys", counted_keys)
    monkeypatch.setattr(pipeline, "open_store", lambda: CountedLookups(open_store()))
    assert run_here(kept, monkeypatch) == 0
    # One keying, one lookup of the keys known before anything runs: app's key holds what
    # libs/a produces, which is keyed once libs/a ran.
    assert (len(keyings), lookups) == (1, [2])
    assert sorted(kept.ran()) == ["a", "app"]
    assert (kept.root / "app/out/app.txt").read_text() == "ONE\ntwo\nbee\n"


def test_keys_are_kept_only_for_their_plan_tree_and_context(tmp_path: Path) -> None:
    state = str(tmp_path)
    plan = ("/ws", ("build",))
    context: plans.KeyContext = ("linux-x86_64", [([("TOKEN", "s3cr3t-value")], [], "strict")])
    other: plans.KeyContext = ("linux-x86_64", [([("TOKEN", "another")], [], "strict")])
    loose: plans.KeyContext = ("linux-x86_64", [([("TOKEN", "s3cr3t-value")], [], "loose")])
    run_keys.keep(state, plan, plan_id="p1", tree="t1", context=context, keys=[("k1", "key k1")])
    assert run_keys.known(state, plan, "p1", "t1", context) == [("k1", "key k1")]
    assert run_keys.known(state, plan, "p2", "t1", context) is None
    assert run_keys.known(state, plan, "p1", "t2", context) is None
    assert run_keys.known(state, plan, "p1", "t1", other) is None
    assert run_keys.known(state, plan, "p1", "t1", loose) is None
    assert run_keys.known(state, ("/ws", ("test",)), "p1", "t1", context) is None
    # The values of declared variables (secrets, maybe) stay off the disk.
    kept_file = tmp_path / run_keys.KEYS_NAME
    assert b"s3cr3t" not in kept_file.read_bytes()
    kept_file.write_bytes(b"\x00damaged")
    assert run_keys.known(state, plan, "p1", "t1", context) is None
