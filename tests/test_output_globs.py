"""An output glob never covers a file the user keeps: whatever an output covers is removed when
its step is restored, so a hand-written `notes.txt` under `outputs = ["*.txt"]` was reverted
to the cached copy on every run. Files an output glob covers must be ignored."""

from __future__ import annotations

from tests.helpers import Workspace

RULE = '[rule.build]\ncmd = "echo generated > out.txt"\noutputs = ["*.txt"]\n'


def test_an_output_glob_over_a_kept_file_is_refused(ws: Workspace) -> None:
    ws.write({"once.toml": RULE, ".gitignore": "out.txt\n"})
    assert ws.once("run", "build").code == 0
    (ws.root / "notes.txt").write_text("my notes\n")
    for _ in range(2):  # the full run, then with the plan kept
        done = ws.once("run", "build")
        assert done.code == 2, done.out
        [line] = done.err.strip().splitlines()
        assert line.startswith("once: error: ")
        assert "rule.build.outputs: '*.txt' matches notes.txt, which is not ignored" in line
        assert (ws.root / "notes.txt").read_text() == "my notes\n"


def test_an_edit_to_a_kept_file_under_an_output_glob_is_never_reverted(ws: Workspace) -> None:
    ws.write({"once.toml": RULE, ".gitignore": "out.txt\n", "notes.txt": "first\n"})
    assert ws.once("run", "build").code == 2
    (ws.root / "notes.txt").write_text("second\n")
    assert ws.once("run", "build").code == 2
    assert (ws.root / "notes.txt").read_text() == "second\n"


def test_ignored_files_under_an_output_glob_are_outputs(ws: Workspace) -> None:
    ws.write({"once.toml": RULE, ".gitignore": "*.txt\n"})
    assert ws.once("run", "build").code == 0
    (ws.root / "out.txt").unlink()
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert "cache hit (restored)" in done.out
    assert (ws.root / "out.txt").read_text() == "generated\n"
