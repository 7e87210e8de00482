"""Restore is faithful: no stale file survives, empty folders, executable bits and symlinks do."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers import Workspace

# Rebuilds dist/ from scratch: one output per source, an empty folder, a symlink, a script.
CLEAN_BUILD = (
    "[rule.build]\n"
    'cmd = "{marker} && rm -rf dist && mkdir -p dist/empty/nested && '
    "for f in src/*.txt; do cp $f dist/; done && ln -s greek.txt dist/link && "
    "printf 'echo hi' > dist/tool.sh && chmod 755 dist/tool.sh\"\n"
    'inputs = ["src/**"]\noutputs = ["dist/"]\n'
)


def snapshot(root: Path) -> dict[str, object]:
    """Everything restore must reproduce: kind, bytes, link target and mode of every entry."""
    seen: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            seen[rel] = ("link", str(path.readlink()))
        elif path.is_dir():
            seen[rel] = ("dir",)
        else:
            seen[rel] = ("file", path.read_bytes(), path.stat().st_mode & 0o777)
    return seen


def test_a_hit_removes_stale_outputs_left_by_another_key(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": CLEAN_BUILD.format(marker=ws.marker("build")),
            "src/greek.txt": "alpha\n",
            "src/latin.txt": "a\n",
        }
    )
    assert ws.once("run", "build").code == 0  # key K1: dist has greek and latin
    latin = (ws.root / "src/latin.txt").read_text()
    (ws.root / "src/latin.txt").unlink()
    assert ws.once("run", "build").code == 0  # key K2: dist has greek only
    with_k2 = snapshot(ws.root / "dist")
    (ws.root / "src/latin.txt").write_text(latin)
    done = ws.once("run", "build")  # K1 again: a hit, restored
    assert "cache hit (restored)" in done.out
    assert (ws.root / "dist/latin.txt").exists()
    (ws.root / "src/latin.txt").unlink()
    done = ws.once("run", "build")  # K2 again: restore must remove dist/latin.txt
    assert "cache hit (restored)" in done.out
    assert not (ws.root / "dist/latin.txt").exists()
    assert snapshot(ws.root / "dist") == with_k2
    assert ws.ran() == ["build", "build"]


def test_empty_folders_symlinks_and_modes_survive_restore(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": CLEAN_BUILD.format(marker=ws.marker("build")),
            "src/greek.txt": "alpha\n",
        }
    )
    assert ws.once("run", "build").code == 0
    before = snapshot(ws.root / "dist")
    assert before["empty/nested"] == ("dir",)
    assert before["link"] == ("link", "greek.txt")
    shutil.rmtree(ws.root / "dist")
    done = ws.once("run", "build")
    assert "cache hit (restored)" in done.out
    assert snapshot(ws.root / "dist") == before
    # Restored symlinks compare equal to the manifest: the next run has nothing to do
    # (Turborepo 13430: symlinked outputs never restored, so every run missed).
    again = ws.once("run", "build")
    assert "cache hit (cached)" in again.out
    assert ws.ran() == ["build"]


def test_an_edited_output_is_put_back(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": CLEAN_BUILD.format(marker=ws.marker("build")),
            "src/greek.txt": "alpha\n",
        }
    )
    assert ws.once("run", "build").code == 0
    before = snapshot(ws.root / "dist")
    (ws.root / "dist/greek.txt").write_text("tampered\n")
    (ws.root / "dist/extra.txt").write_text("not from the build\n")
    done = ws.once("run", "build")
    assert "cache hit (restored)" in done.out
    assert snapshot(ws.root / "dist") == before
