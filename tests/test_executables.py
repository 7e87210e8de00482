"""The program a command starts enters its key by its digest (and a `#!` script's interpreter
too): upgrading a tool that changes results is a miss even when no `tools` probe was declared.
Digests are kept by the program's stat, so a no-op stats a program instead of reading it."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import Workspace


def tool(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_a_new_version_of_the_program_is_a_miss(ws: Workspace, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool(bin_dir, "gen", "#!/bin/sh\necho v1\n")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    ws.write({"once.toml": '[rule.build]\ncmd = "gen > out.txt"\noutputs = ["out.txt"]\n'})
    assert ws.once("run", "build", env=env).code == 0
    again = ws.once("run", "build", env=env)
    assert "cache hit" in again.out
    assert (ws.root / ".once/executables").is_file()
    tool(bin_dir, "gen", "#!/bin/sh\necho v2\n")  # an upgrade, no probe declared
    why = ws.once("why", "build", env=env)
    assert "executable gen" in why.out
    done = ws.once("run", "build", env=env)
    assert done.code == 0, done.err
    assert "cache hit" not in done.out
    assert (ws.root / "out.txt").read_text() == "v2\n"


def test_a_new_interpreter_of_a_script_is_a_miss(ws: Workspace, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool(bin_dir, "lang", "#!/bin/sh\necho lang-1\n")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    ws.write({"once.toml": '[rule.build]\ncmd = "./run.x > out.txt"\noutputs = ["out.txt"]\n'})
    tool(ws.root, "run.x", "#!/usr/bin/env lang\n")
    assert ws.once("run", "build", env=env).code == 0
    assert "cache hit" in ws.once("run", "build", env=env).out
    tool(bin_dir, "lang", "#!/bin/sh\necho lang-2\n")
    done = ws.once("run", "build", env=env)
    assert "cache hit" not in done.out
    assert (ws.root / "out.txt").read_text() == "lang-2\n"
