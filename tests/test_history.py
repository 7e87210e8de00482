"""The history `once why` and `--dry-run` read: what each rule's last key was made of, kept as
one pack of sealed records per run that changed keys (not a file per step), read one record at
a time, and never another step's record when a pack is damaged, cut short or gone."""

from __future__ import annotations

import json
import marshal
import os
import signal
import subprocess
import time

from once import _core

from tests.helpers import ONCE, Workspace, end_commands_left_in

RULES = ("a", "b", "c")
SEAL = 64


def workspace(ws: Workspace, slow: str = "") -> None:
    """Rules a, b, c, each reading its own input and writing its own output; `slow` waits for
    a file `go` to exist before it writes."""
    body = ""
    for rule in RULES:
        wait = "while [ ! -e go ]; do sleep 0.05; done; " if rule == slow else ""
        body += (
            f"[rule.{rule}]\n"
            f'cmd = "{ws.marker(rule)}; {wait}cp {rule}.txt out-{rule}.txt"\n'
            f'inputs = ["{rule}.txt"]\noutputs = ["out-{rule}.txt"]\n'
        )
    ws.write({"once.toml": body, **{f"{rule}.txt": f"{rule} 1\n" for rule in RULES}})


def specs(ws: Workspace) -> list[str]:
    folder = ws.root / ".once/specs"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def last_keys(ws: Workspace) -> tuple[dict[str, str], dict[str, tuple[str, int, int]]]:
    """`last-keys`: each label's key, and its spec's pack, offset and size."""
    data = (ws.root / ".once/last-keys").read_bytes()
    assert data[:SEAL] == _core.hash_bytes(data[SEAL:]).encode()
    _, keys, places = marshal.loads(data[SEAL:])  # noqa: S302 - the file this run wrote
    return keys, places


def why(ws: Workspace, rule: str) -> str:
    done = ws.once("why", f"//:{rule}")
    assert done.code == 0, done.err
    assert "Traceback" not in done.err
    return done.out


def change(ws: Workspace, rule: str, text: str) -> None:
    # Another size: seen as changed whatever the clock's resolution.
    (ws.root / f"{rule}.txt").write_text(text)


def test_a_cold_run_writes_one_pack_and_a_no_op_writes_nothing(ws: Workspace) -> None:
    workspace(ws)
    assert ws.once("run", *RULES).code == 0
    assert len(specs(ws)) == 1
    assert specs(ws)[0].endswith(".pack")
    for rule in RULES:
        assert "unchanged since its last run" in why(ws, rule)
    state = ws.root / ".once"
    before = {
        path.name: path.stat().st_mtime_ns for path in [*state.iterdir(), *state.glob("specs/*")]
    }
    assert ws.once("run", *RULES).code == 0
    after = {
        path.name: path.stat().st_mtime_ns for path in [*state.iterdir(), *state.glob("specs/*")]
    }
    assert before["last-keys"] == after["last-keys"]
    assert specs(ws) == [name for name in before if name.endswith(".pack")]


def test_why_after_a_one_step_change(ws: Workspace) -> None:
    workspace(ws)
    assert ws.once("run", *RULES).code == 0
    (first,) = specs(ws)
    change(ws, "b", "b 22\n")
    assert "input changed: b.txt" in why(ws, "b")
    assert ws.once("run", *RULES).code == 0
    # The new pack holds b's spec alone; a's and c's are still read from the first.
    assert len(specs(ws)) == 2
    assert first in specs(ws)
    for rule in RULES:
        assert "unchanged since its last run" in why(ws, rule)
    change(ws, "a", "a 333\n")
    change(ws, "b", "b 4444\n")
    change(ws, "c", "c 55555\n")
    for rule in RULES:
        assert f"input changed: {rule}.txt" in why(ws, rule)
    # The pack of a run killed before it named its pack in last-keys.
    (ws.root / ".once/specs/18a2b3c4d5e6f7a8-1.pack").write_bytes(b"half a pack")
    assert ws.once("run", *RULES).code == 0
    # Every label points into the newest pack: the older ones are gone.
    assert len(specs(ws)) == 1
    assert first not in specs(ws)


def test_a_mostly_stale_pack_is_compacted(ws: Workspace) -> None:
    """A pack that only one label still points into is copied forward, not kept for it."""
    workspace(ws)
    assert ws.once("run", *RULES).code == 0
    (first,) = specs(ws)
    change(ws, "a", "a 22\n")
    change(ws, "b", "b 22\n")
    assert ws.once("run", *RULES).code == 0
    assert len(specs(ws)) == 1  # c's record was copied out of the first pack
    assert first not in specs(ws)
    change(ws, "c", "c 333\n")
    assert "input changed: c.txt" in why(ws, "c")


def test_a_killed_run_leaves_the_last_history(ws: Workspace) -> None:
    workspace(ws, slow="b")
    (ws.root / "go").touch()
    assert ws.once("run", *RULES).code == 0
    ws.ran()  # so that the wait below is for b of the run it kills
    named = (ws.root / ".once/last-keys").read_bytes()
    (ws.root / "go").unlink()
    change(ws, "a", "a 22\n")
    change(ws, "b", "b 22\n")
    run = subprocess.Popen(
        [ONCE, "run", "-j1", "a", "b"],
        cwd=ws.root,
        env={**os.environ, "ONCE_CACHE_DIR": str(ws.cache)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "b" not in ws.ran_log.read_text() if ws.ran_log.exists() else True:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    end_commands_left_in(ws.root)  # b, waiting for `go`, would write its output into the next run
    # a's record may be in a pack of the killed run by now (written as a finished), but only
    # `last-keys` names records, and the killed run never got to replace it.
    assert (ws.root / ".once/last-keys").read_bytes() == named
    assert "input changed: a.txt" in why(ws, "a")
    assert "input changed: b.txt" in why(ws, "b")
    (ws.root / "go").touch()
    assert ws.once("run", *RULES).code == 0
    for rule in RULES:
        assert "unchanged since its last run" in why(ws, rule)
    _, places = last_keys(ws)
    assert specs(ws) == sorted({pack for pack, _, _ in places.values()})  # none left unnamed


def test_a_damaged_pack_is_no_spec_never_another_steps(ws: Workspace) -> None:
    workspace(ws)
    assert ws.once("run", *RULES).code == 0
    (pack,) = specs(ws)
    path = ws.root / ".once/specs" / pack
    data = path.read_bytes()
    _, places = last_keys(ws)
    offset, size = places["//:b"][1:]
    # One byte flipped inside b's record: b has no spec; a and c keep theirs.
    flipped = bytearray(data)
    flipped[offset + size - 2] ^= 0x20
    path.write_bytes(bytes(flipped))
    change(ws, "a", "a 22\n")
    change(ws, "b", "b 22\n")
    assert "input changed: a.txt" in why(ws, "a")
    assert "never run in this workspace" in why(ws, "b")
    # Cut short inside the last record: the first keeps its own, the last has none.
    first, *_, last = sorted(RULES, key=lambda rule: places[f"//:{rule}"][1])
    change(ws, last, f"{last} 22\n")
    change(ws, first, f"{first} 22\n")
    path.write_bytes(data[: places[f"//:{last}"][1] + 10])
    assert f"input changed: {first}.txt" in why(ws, first)
    assert "never run in this workspace" in why(ws, last)
    # Records of one size swapped: a's place holds b's record, whole and sealed, and is
    # still not taken for a's.
    (a_at, a_size), (b_at, b_size) = places["//:a"][1:], places["//:b"][1:]
    assert a_size == b_size
    swapped = bytearray(data)
    swapped[a_at : a_at + a_size] = data[b_at : b_at + b_size]
    swapped[b_at : b_at + b_size] = data[a_at : a_at + a_size]
    path.write_bytes(bytes(swapped))
    for rule in ("a", "b"):
        assert "never run in this workspace" in why(ws, rule)
    path.unlink()
    for rule in RULES:
        assert "never run in this workspace" in why(ws, rule)
    # The next run writes a whole history again: every input changed, so every step runs
    # (only two were changed above, and which two depends on the order the steps finished).
    for rule in RULES:
        change(ws, rule, f"{rule} 333\n")
    assert ws.once("run", *RULES).code == 0
    for rule in RULES:
        assert "unchanged since its last run" in why(ws, rule)


def test_an_earlier_versions_spec_files_are_read_then_replaced(ws: Workspace) -> None:
    """Earlier versions kept `last-keys` as label -> key and each spec in specs/<key>.json."""
    workspace(ws)
    assert ws.once("run", *RULES).code == 0
    (pack,) = specs(ws)
    keys, places = last_keys(ws)
    data = (ws.root / ".once/specs" / pack).read_bytes()
    for label, key in keys.items():
        _, offset, size = places[label]
        record = data[offset + SEAL : offset + size]
        spec = record.removeprefix(f"{key}\n".encode())
        json.loads(spec)
        old = ws.root / ".once/specs" / f"{key}.json"
        old.write_bytes(_core.hash_bytes(spec).encode() + spec)
    (ws.root / ".once/specs" / pack).unlink()
    old_keys = marshal.dumps(keys)
    (ws.root / ".once/last-keys").write_bytes(_core.hash_bytes(old_keys).encode() + old_keys)
    change(ws, "a", "a 22\n")
    assert "input changed: a.txt" in why(ws, "a")
    assert "unchanged since its last run" in why(ws, "b")
    assert ws.once("run", *RULES).code == 0
    # a's spec moved into a pack; b's and c's old files stay while their labels point at them.
    names = specs(ws)
    assert [name for name in names if name.endswith(".pack")] != []
    assert f"{keys['//:a']}.json" not in names
    assert f"{keys['//:b']}.json" in names
    for rule in RULES:
        assert "unchanged since its last run" in why(ws, rule)
    change(ws, "b", "b 22\n")
    assert "input changed: b.txt" in why(ws, "b")
