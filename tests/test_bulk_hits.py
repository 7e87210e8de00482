"""Cache hits settled in bulk before anything is scheduled: every local hit whose dependencies
are hits too. What runs, what is reported, and in which order must be what the scheduler
alone would give: a dependency that runs or fails still gates its dependents."""

from __future__ import annotations

import io

import pytest
from once.api import OutputLogs as LogMode
from once.config import load_workspace
from once.plan.graph import build_graph, select_targets
from once.run import pipeline
from once.run.options import RunRequest
from once.ui.console import Console, Result

from tests.helpers import Workspace, read_entry, write_entry


def chain(ws: Workspace) -> None:
    """a <- b <- c: each copies its upstream's output beside its own source, and prints."""
    ws.write({"once.toml": '[workspace]\nmembers = ["a", "b", "c"]\n'})
    upstream = {"a": None, "b": "a", "c": "b"}
    for name, dep in upstream.items():
        copy = f" && cp ../{dep}/dist/out.txt dist/{dep}.txt" if dep else ""
        ws.write(
            {
                f"{name}/once.toml": (
                    (f'[package]\ndeps = ["//{dep}"]\n\n' if dep else "")
                    + "[rule.build]\n"
                    + f'cmd = "{ws.marker(name)} && mkdir -p dist && cp src/in.txt '
                    + f'dist/out.txt{copy} && echo built {name}"\n'
                    + 'inputs = ["src/**"]\noutputs = ["dist/"]\n'
                    + ('deps = ["^build"]\n' if dep else "")
                ),
                f"{name}/src/in.txt": f"{name}\n",
            }
        )


def outcomes(out: str) -> dict[str, str]:
    """label -> what its status line says: ran, cached, restored, failed, skipped."""
    seen: dict[str, str] = {}
    for line in out.splitlines():
        label, _, rest = line.partition(": ")
        if not label.startswith("//") or " | " in label:
            continue
        if rest.startswith("running "):
            seen[label] = "ran"
        elif rest.startswith("cache hit (cached)"):
            seen[label] = "cached"
        elif rest.startswith("cache hit (restored)"):
            seen[label] = "restored"
        elif rest.startswith("failed"):
            seen[label] = "failed"
        elif rest.startswith("skipped"):
            seen[label] = "skipped"
    return seen


@pytest.mark.parametrize(
    ("edited", "ran"),
    [("a", ["a", "b", "c"]), ("b", ["b", "c"]), ("c", ["c"])],
)
def test_a_changed_input_runs_its_step_and_the_steps_whose_keys_follow(
    ws: Workspace, edited: str, ran: list[str]
) -> None:
    chain(ws)
    assert ws.once("run", "//c:build").code == 0
    ws.ran()
    (ws.root / edited / "src/in.txt").write_text(f"{edited} again\n")

    done = ws.once("run", "//c:build")
    assert done.code == 0, done.err
    assert sorted(ws.ran()) == ran
    expected = {f"//{name}:build": "ran" if name in ran else "cached" for name in "abc"}
    assert outcomes(done.out) == expected
    # What ran saw its dependencies' outputs in place, hit or not.
    assert (ws.root / "c/dist/b.txt").read_text() == ("b again\n" if edited == "b" else "b\n")


def test_outputs_deleted_along_a_chain_are_restored_in_one_pass(ws: Workspace) -> None:
    chain(ws)
    assert ws.once("run", "//c:build").code == 0
    ws.ran()
    for name in "abc":
        for path in (ws.root / name / "dist").iterdir():
            path.unlink()
    (ws.root / "b/dist").rmdir()

    done = ws.once("run", "//c:build")
    assert done.code == 0, done.err
    assert ws.ran() == []
    assert outcomes(done.out) == dict.fromkeys(("//a:build", "//b:build", "//c:build"), "restored")
    assert (ws.root / "c/dist/b.txt").read_text() == "b\n"
    assert "all 3 steps cached (3 restored), 0 ran" in done.out


def test_a_failing_uncached_dependency_skips_its_cached_dependent(ws: Workspace) -> None:
    # `gen` is never cached, so it runs every time; `use` is a hit on its own key, yet must
    # wait for `gen` and be skipped when it fails, never reported as a hit first.
    ws.write(
        {
            "once.toml": (
                "[rule.gen]\n"
                f'cmd = "{ws.marker("gen")} && test ! -e {ws.root.parent / "fail"}"\n'
                'inputs = ["src/**"]\ncache = false\n\n'
                "[rule.use]\n"
                f'cmd = "{ws.marker("use")} && mkdir -p dist && cp src/x.txt dist/x.txt"\n'
                'inputs = ["src/**"]\noutputs = ["dist/"]\ndeps = ["gen"]\n'
            ),
            "src/x.txt": "x\n",
        }
    )
    assert ws.once("run", "use").code == 0
    assert ws.ran() == ["gen", "use"]
    again = ws.once("run", "use")
    assert again.code == 0, again.err
    assert ws.ran() == ["gen"]
    assert outcomes(again.out) == {"//:gen": "ran", "//:use": "cached"}

    (ws.root.parent / "fail").write_text("")
    failed = ws.once("run", "use")
    assert failed.code != 0
    assert ws.ran() == ["gen"]
    assert outcomes(failed.out) == {"//:gen": "failed", "//:use": "skipped"}
    assert "cache hit" not in failed.out


def test_a_refused_entry_in_a_batch_runs_and_its_dependents_still_hit(ws: Workspace) -> None:
    chain(ws)
    assert ws.once("run", "//c:build").code == 0
    ws.ran()
    # b's entry gains a path outside its declared outputs, as a hostile writer could add.
    entries = [read_entry(path) for path in (ws.cache / "ac").glob("*/*.json")]
    (b_entry,) = [entry for entry in entries if entry["outputs"][0]["path"].startswith("b/")]
    path = next((ws.cache / "ac").glob(f"*/{b_entry['key']}.json"))
    b_entry["outputs"].append({"path": "a/src/in.txt", "kind": "dir"})
    write_entry(path, b_entry)
    (ws.root / "b/dist/out.txt").unlink()

    done = ws.once("run", "//c:build")
    assert done.code == 0, done.err
    refusals = [line for line in done.err.splitlines() if "refusing" in line]
    assert len(refusals) == 1, done.err
    assert refusals[0].startswith(
        f"once: warning: //b:build: refusing its cache entry {b_entry['key'][:12]}"
    )
    # b ran (and replaced the entry); a before it and c after it were hits.
    assert ws.ran() == ["b"]
    assert outcomes(done.out) == {"//a:build": "cached", "//b:build": "ran", "//c:build": "cached"}
    assert (ws.root / "a/src/in.txt").read_text() == "a\n"
    # c waited for b to run before it was reported.
    lines = done.out.splitlines()
    assert lines.index("//b:build: running " + lines_cmd(lines, "//b:build")) < next(
        at for at, line in enumerate(lines) if line.startswith("//c:build: cache hit")
    )
    again = ws.once("run", "//c:build")
    assert "refusing" not in again.err
    assert set(outcomes(again.out).values()) == {"cached"}


@pytest.mark.parametrize(
    ("mode", "replayed"),
    [("full", True), ("new-only", False), ("errors-only", False), ("none", False)],
)
def test_log_modes_for_hits_settled_in_bulk(ws: Workspace, mode: str, replayed: bool) -> None:
    chain(ws)
    assert ws.once("run", "//c:build").code == 0
    (ws.root / "a/dist/out.txt").unlink()  # one restored, two confirmed in place

    done = ws.once("run", f"--output-logs={mode}", "//c:build")
    assert done.code == 0, done.err
    assert outcomes(done.out) == {
        "//a:build": "restored",
        "//b:build": "cached",
        "//c:build": "cached",
    }
    for name in "abc":
        assert (f"//{name}:build | built {name}" in done.out) is replayed, done.out
    if replayed:
        # Each log right after its own status line.
        lines = done.out.splitlines()
        at = lines.index(next(line for line in lines if line.startswith("//b:build: cache hit")))
        assert lines[at + 1] == "//b:build | built b"


def lines_cmd(lines: list[str], label: str) -> str:
    """The command of `label`'s running line."""
    prefix = f"{label}: running "
    return next(line for line in lines if line.startswith(prefix))[len(prefix) :]


class Recording(Console):
    """A console that keeps every progress event."""

    def __init__(self, mode: LogMode = "full") -> None:
        self.buffer = io.BytesIO()
        super().__init__(self.buffer, mode)
        self.events: list[Result] = []
        self.writes = 0

    def finished(self, result: Result) -> None:
        self.events.append(result)

    def _write(self, data: bytes) -> None:
        self.writes += 1
        super()._write(data)


def test_every_bulk_hit_gets_one_progress_event_and_one_write(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain(ws)
    monkeypatch.setenv("ONCE_CACHE_DIR", str(ws.cache))
    monkeypatch.chdir(ws.root)
    workspace = load_workspace(ws.root)
    actions = build_graph(workspace, select_targets(workspace, ["//c:build"], ws.root))

    def execute(console: Recording) -> list[Result]:
        request = RunRequest(["//c:build"])
        return pipeline.run(request, str(ws.root), lambda _: console, loaded=(workspace, actions))

    first = Recording()
    execute(first)
    assert [event.outcome for event in first.events] == ["ran"] * 3

    (ws.root / "b/dist/out.txt").unlink()
    second = Recording()
    results = execute(second)
    assert [(r.label, r.outcome) for r in results] == [
        ("//a:build", "cached"),
        ("//b:build", "restored"),
        ("//c:build", "cached"),
    ]
    assert sorted(event.label for event in second.events) == [r.label for r in results]
    # Status lines and logs of all three in a single write, then the summary's.
    assert second.writes == 2
    text = second.buffer.getvalue().decode()
    assert text.count("cache hit") == 3
    assert text.splitlines()[-1].startswith("once: all 3 steps cached (1 restored)")
    assert all(result.saved_ms >= 0 and result.seconds >= 0 for result in results)


def test_hardlink_hits_in_bulk_are_read_only_and_unshared_before_a_command(
    ws: Workspace,
) -> None:
    chain(ws)
    for name in "abc":  # past what an entry carries (4 KiB): blobs to link to
        (ws.root / name / "src/in.txt").write_text(f"{name}\n" * 3000)
    assert ws.once("run", "//c:build").code == 0
    for name in "abc":
        (ws.root / name / "dist/out.txt").unlink()
    ws.ran()
    done = ws.once("run", "--link=hardlink", "//c:build")
    assert done.code == 0, done.err
    restored = ws.root / "b/dist/out.txt"
    assert restored.stat().st_nlink > 1
    assert restored.stat().st_mode & 0o222 == 0

    # c's input changes: it runs, and a command rewriting its outputs in place must not
    # reach the store through c's hard links.
    (ws.root / "c/src/in.txt").write_text("c again\n")
    assert ws.once("run", "//c:build").code == 0
    assert ws.ran() == ["c"]
    assert (ws.root / "c/dist/out.txt").stat().st_nlink == 1
    assert (ws.root / "b/dist/out.txt").read_text() == "b\n" * 3000
    # The blob c's old output was linked to still holds what the old entry says.
    blobs = {path.read_bytes() for path in (ws.cache / "cas").glob("*/*")}
    assert b"c\n" * 3000 in blobs
