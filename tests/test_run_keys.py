"""Kept run keys (state/run_keys.py): a run over an unchanged tree takes the keys its plan had last
time without selecting or hashing anything, and any change a key depends on (a file's
content, its name, its executable bit, a declared env variable) makes it key again."""

from __future__ import annotations

import marshal
import time
from pathlib import Path
from typing import Any

import pytest
from once import _core, config
from once.plan import steps as plans
from once.run import pipeline
from once.state import run_keys
from once.state.atomic_file import read_sealed
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


def refuse(monkeypatch: pytest.MonkeyPatch, module: object, name: str, why: str) -> None:
    """Make `module.name` fail the test with `why` if it is called."""

    def refused(*_: object) -> None:
        raise AssertionError(why)

    monkeypatch.setattr(module, name, refused)


def run_here(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> int:
    """`once run build`, in this process."""
    monkeypatch.setenv("ONCE_CACHE_DIR", str(ws.cache))
    monkeypatch.chdir(ws.root)
    return run_in_process(["run", "build"])


def test_an_unchanged_tree_takes_the_kept_keys(
    kept: Workspace, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    refuse(monkeypatch, plans, "selections", "selected inputs although the keys were kept")
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


def built(ws: Workspace) -> Workspace:
    """Three packages whose outputs the walk ignores, as a real workspace's are, built, then
    built again after an edit (a first run keeps no state: `.once/` is not there yet when it
    reads the configuration)."""
    three_packages(ws)
    ws.write({".gitignore": "dist/\nout/\n"})
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "app", "b"]
    (ws.root / "libs/a/src/one.txt").write_text("uno\n")
    time.sleep(SETTLE_SECONDS)
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "app"]
    return ws


def test_the_run_after_a_build_takes_the_keys_the_build_used(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    built(ws)

    refuse(monkeypatch, plans, "selections", "selected inputs although the build kept its keys")
    assert run_here(ws, monkeypatch) == 0
    assert "once: all 3 steps cached" in capfd.readouterr().out
    assert ws.ran() == []


def kept_keys(ws: Workspace) -> list[tuple[str | None, str | None]]:
    (entry,) = run_keys._load(str(ws.root / ".once")).values()
    return entry[3]


@pytest.mark.parametrize(
    ("change", "rebuilt"),
    [
        ({}, []),
        ({"libs/a/src/one.txt": "ONE\n"}, ["a", "app"]),  # a's outputs change: app keyed anew
        ({"libs/b/src/b.txt": "bee\n"}, []),  # same bytes, new stat
        ({"libs/a/src/three.txt": ""}, ["a"]),  # a's outputs are the same: app is cached
    ],
)
def test_the_keys_a_build_keeps_are_those_a_run_would_compute(
    ws: Workspace, change: dict[str, str], rebuilt: list[str]
) -> None:
    built(ws)
    ws.write(change)
    time.sleep(SETTLE_SECONDS)
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == rebuilt
    from_build = kept_keys(ws)
    (ws.root / ".once" / run_keys.KEYS_NAME).unlink()
    assert ws.once("run", "build").code == 0
    assert ws.ran() == []
    assert kept_keys(ws) == from_build


def test_an_input_a_build_rewrote_is_keyed_again(ws: Workspace) -> None:
    """A command that writes another step's input: the keys the build used hold the contents
    before it, and the next run must see the new ones."""
    built(ws)
    (ws.root / "libs/a/src/one.txt").write_text("ONE\n")
    ws.write(
        {
            "app/once.toml": (ws.root / "app/once.toml")
            .read_text()
            .replace("&& echo built app", "&& echo b2 > ../libs/b/src/b.txt && echo built app")
        }
    )
    time.sleep(SETTLE_SECONDS)
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "app"]
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["app", "b"]  # b.txt as app left it, then app for b's output
    assert (ws.root / "app/out/app.txt").read_text() == "ONE\ntwo\nb2\n"
    assert ws.once("run", "build").code == 0
    assert ws.ran() == []


def test_a_failed_build_keeps_no_keys(ws: Workspace) -> None:
    three_packages(ws)
    ws.write({".gitignore": "dist/\nout/\n", "libs/b/src/b.txt": "bee\n"})
    (ws.root / "libs/b/once.toml").write_text(
        (ws.root / "libs/b/once.toml").read_text().replace("cp src/b.txt", "false && cp")
    )
    assert ws.once("run", "build").code == 1
    assert not (ws.root / ".once" / run_keys.KEYS_NAME).exists()


def test_keys_are_not_kept_for_a_plan_the_configuration_contradicts(ws: Workspace) -> None:
    """A kept plan whose stamps missed a change to the configuration: the build keys the
    configuration's steps, and those keys must not be kept as the stale plan's."""
    built(ws)
    state = str(ws.root / ".once")
    plans_file = read_sealed(str(ws.root / ".once" / plans.PLANS_NAME))
    _, stamps, kept = marshal.loads(plans_file or b"")  # noqa: S302 - our own state file
    (key,) = kept
    steps, _ = plans.load(state, key) or ([], "")
    stale = []
    for step in steps:
        fields: dict[str, Any] = dict(zip(plans.Step.FIELDS, step.fields(), strict=True))
        if step.label == "//app:build":
            fields["cmd"] = "true"
        stale.append(plans.Step(**fields))
    stale_id = plans.save(state, stamps, key, stale)
    (ws.root / "libs/a/src/one.txt").write_text("ONE\n")
    time.sleep(SETTLE_SECONDS)
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "app"]
    assert run_keys._load(state)[key][0] != stale_id


def test_the_run_after_a_workspaces_first_build_takes_its_plan_and_keys(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The first run of a fresh clone reads the configuration before `.once/` exists; once it
    has made the folder, it keeps what it read, so the next command (in CI, the next step of
    the job) reads no once.toml and keys nothing."""
    three_packages(ws)
    ws.write({".gitignore": "dist/\nout/\n"})
    time.sleep(SETTLE_SECONDS)
    assert not (ws.root / ".once").exists()
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "app", "b"]

    refuse(monkeypatch, config, "read_workspace", "read the configuration the first run kept")
    refuse(monkeypatch, plans, "selections", "selected inputs although the first run kept keys")
    assert run_here(ws, monkeypatch) == 0
    assert "once: all 3 steps cached" in capfd.readouterr().out
    assert ws.ran() == []
