"""Tool probes (`tools = [...]`): their output enters the key; a run starts all of its probes at
once, and a probe whose program (its first word on PATH), command and environment are
unchanged is not started again: its output is kept in `.once/probes`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.helpers import Workspace


def probe_program(folder: Path, name: str, version: str, count: Path, sleep: float = 0) -> None:
    """A program on PATH printing `version`, recording each start in `count`."""
    path = folder / name
    nap = f"sleep {sleep}\n" if sleep else ""
    path.write_text(f"#!/bin/sh\necho run >> {count}\n{nap}echo {name} {version}\n")
    path.chmod(0o755)


def starts(count: Path) -> int:
    return len(count.read_text().split()) if count.exists() else 0


def setup(ws: Workspace, tmp_path: Path, tools: list[str]) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("tool-a", "tool-b", "tool-c", "tool-d"):
        probe_program(bin_dir, name, "1.0", tmp_path / f"{name}.count", sleep=0.5)
    tools_toml = ", ".join(json.dumps(tool) for tool in tools)
    ws.write(
        {
            "once.toml": (
                f'[rule.build]\ncmd = "cat src.txt > out.txt"\ninputs = ["src.txt"]\n'
                f'outputs = ["out.txt"]\ntools = [{tools_toml}]\n'
            ),
            "src.txt": "x\n",
        }
    )
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_an_unchanged_probe_program_is_not_started_on_a_no_op(
    ws: Workspace, tmp_path: Path
) -> None:
    env = setup(ws, tmp_path, ["tool-a --version"])
    count = tmp_path / "tool-a.count"
    assert ws.once("run", "build", env=env).code == 0
    assert starts(count) == 1
    for _ in range(2):
        done = ws.once("run", "build", env=env)
        assert "cache hit" in done.out, done.err
    assert starts(count) == 1  # was one start per run
    why = ws.once("why", "build", env=env)
    assert "tool probe 'tool-a --version': 'tool-a 1.0' [exit 0]" in why.out, why.out
    assert starts(count) == 1
    assert ws.once("run", "build", "--force", env=env).code == 0
    assert starts(count) == 2  # --force runs the probe again


def test_a_new_version_of_the_probed_program_is_probed_again(ws: Workspace, tmp_path: Path) -> None:
    env = setup(ws, tmp_path, ["tool-a --version"])
    count = tmp_path / "tool-a.count"
    assert ws.once("run", "build", env=env).code == 0
    probe_program(tmp_path / "bin", "tool-a", "2.0", count)
    why = ws.once("why", "build", env=env)
    assert "tool-a 2.0" in why.out, why.out
    done = ws.once("run", "build", env=env)
    assert "cache hit" not in done.out
    assert starts(count) == 2  # the first run, and `why`, whose output the run used


def test_another_program_on_path_is_probed(ws: Workspace, tmp_path: Path) -> None:
    env = setup(ws, tmp_path, ["tool-a --version"])
    assert ws.once("run", "build", env=env).code == 0
    other = tmp_path / "other-bin"
    other.mkdir()
    probe_program(other, "tool-a", "3.0", tmp_path / "other.count")
    moved = {"PATH": f"{other}{os.pathsep}{env['PATH']}"}
    done = ws.once("run", "build", env=moved)
    assert "cache hit" not in done.out
    assert starts(tmp_path / "other.count") == 1


def test_a_changed_environment_is_probed_again(ws: Workspace, tmp_path: Path) -> None:
    env = setup(ws, tmp_path, ["tool-a --version"])
    count = tmp_path / "tool-a.count"
    assert ws.once("run", "build", env=env).code == 0
    assert ws.once("run", "build", env={**env, "TOOL_A_HOME": "/x"}).code == 0
    assert starts(count) == 2


def test_a_builtin_probe_runs_every_time(ws: Workspace, tmp_path: Path) -> None:
    count = tmp_path / "builtin.count"
    env = setup(ws, tmp_path, [f"echo probed >> {count}; echo v1"])
    assert ws.once("run", "build", env=env).code == 0
    assert "cache hit" in ws.once("run", "build", env=env).out
    assert starts(count) == 2


def test_four_probes_run_at_once(ws: Workspace, tmp_path: Path) -> None:
    tools = [f"tool-{name} --version" for name in "abcd"]
    env = setup(ws, tmp_path, tools)
    started = time.monotonic()
    assert ws.once("run", "build", env=env).code == 0
    took = time.monotonic() - started
    # Each probe sleeps 0.5 s: one after the other they take 2 s.
    assert took < 1.6, took
    dry = ws.once("run", "build", "--dry-run", "--json", env=env)
    assert dry.code == 0, dry.err
    assert all(f"tool-{name} 1.0" in dry.out for name in "abcd"), dry.out
    for name in "abcd":
        assert starts(tmp_path / f"tool-{name}.count") == 1


def test_a_failed_probe_is_not_kept(ws: Workspace, tmp_path: Path) -> None:
    env = setup(ws, tmp_path, ["tool-a --version && false"])
    count = tmp_path / "tool-a.count"
    assert ws.once("run", "build", env=env).code == 0
    assert ws.once("run", "build", env=env).code == 0
    assert starts(count) == 2
