"""Symlinks to folders as inputs: followed inside the workspace, refused when they leave it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import Workspace


def linked_monorepo(ws: Workspace) -> None:
    """`web/src/shared -> ../../shared`, and web's build reads `src/**`."""
    ws.write(
        {
            "once.toml": '[workspace]\nmembers = ["web"]\n',
            "web/once.toml": (
                "[rule.build]\n"
                f'cmd = "{ws.marker("web")} && mkdir -p dist && cat src/*.ts src/shared/*.ts '
                '> dist/app.js"\n'
                'inputs = ["src/**"]\noutputs = ["dist/"]\n'
            ),
            "web/src/main.ts": "main\n",
            "shared/x.ts": "x1\n",
            ".gitignore": "dist/\n",
        }
    )
    (ws.root / "web/src/shared").symlink_to("../../shared")


def git(ws: Workspace, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ws.root, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_editing_a_file_below_a_symlinked_input_folder_reruns_the_rule(ws: Workspace) -> None:
    linked_monorepo(ws)
    assert ws.once("run", "build").code == 0
    assert ws.ran() == ["web"]
    assert ws.once("run", "build").code == 0
    assert ws.ran() == []
    (ws.root / "shared/x.ts").write_text("x2\n")
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert ws.ran() == ["web"]
    assert (ws.root / "web/dist/app.js").read_text() == "main\nx2\n"


def test_affected_selects_the_rule_reading_a_changed_target_through_a_link(
    ws: Workspace,
) -> None:
    linked_monorepo(ws)
    git(ws, "init", "-q", "-b", "main")
    git(ws, "config", "user.email", "t@example.com")
    git(ws, "config", "user.name", "t")
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "start")
    assert ws.once("run", "build").code == 0
    ws.ran()
    git(ws, "checkout", "-q", "-b", "feature")
    (ws.root / "shared/x.ts").write_text("x2\n")
    git(ws, "commit", "-q", "-am", "change shared")
    done = ws.once("run", "--affected")
    assert done.code == 0, done.err
    assert "1 changed file since the merge base with main (" in done.out
    assert "1 affected rule" in done.out
    assert ws.ran() == ["web"]


def test_a_link_cycle_below_an_input_folder_is_cut(ws: Workspace) -> None:
    linked_monorepo(ws)
    (ws.root / "shared/up").symlink_to("..")  # shared/up/shared/up/... would never end
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert ws.ran() == ["web"]
    assert ws.once("run", "build").code == 0
    assert ws.ran() == []


def test_an_input_folder_link_leaving_the_workspace_is_an_error(
    ws: Workspace, tmp_path: Path
) -> None:
    linked_monorepo(ws)
    outside = tmp_path / "outside"
    (outside / "lib").mkdir(parents=True)
    (outside / "lib/y.ts").write_text("y\n")
    (ws.root / "web/src/ext").symlink_to(outside / "lib")
    done = ws.once("run", "build")
    assert done.code == 2, done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    assert lines[0].startswith("once: error: ")
    assert f"web/src/ext -> {outside.resolve() / 'lib'}" in lines[0]
    assert ws.ran() == []
    assert not (ws.root / "web/dist").exists()


def test_a_folder_link_leaving_the_workspace_that_no_rule_reads_is_fine(
    ws: Workspace, tmp_path: Path
) -> None:
    linked_monorepo(ws)
    (tmp_path / "outside").mkdir()
    (ws.root / "docs").symlink_to(tmp_path / "outside")
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert ws.ran() == ["web"]
