"""Tool probes (`tools = [...]`): their output enters the key; a run starts all of its probes at
once, and a probe whose program (its first word on PATH), command and environment are
unchanged is not started again: its output is kept in `.once/probes`."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import once
import pytest

from tests.helpers import Workspace


def probe_program(
    folder: Path, name: str, version: str, count: Path, together: Path | None = None
) -> None:
    """A native program on PATH printing `NAME VERSION`, recording each start in `count`
    (compiled: a `#!` script's output is never kept, since version managers' shims are
    scripts that pick the real program from files of their own). With `together`, it also
    marks its start in that folder and waits (30 s at most) until four programs have: one
    that ran without the other three says `NAME VERSION alone`."""
    source = folder / f"{name}.c"
    meet = ""
    if together is not None:
        meet = (
            f'  fclose(fopen("{together}/{name}", "w"));\n'
            f'  for (int i = 0; i < 3000 && started("{together}") < 4; i++) usleep(10000);\n'
            f'  if (started("{together}") < 4) {{ puts("{name} {version} alone"); return 0; }}\n'
        )
    source.write_text(
        "#include <dirent.h>\n#include <stdio.h>\n#include <unistd.h>\n"
        "static int started(const char *dir) {\n"
        "  int n = 0; DIR *d = opendir(dir); struct dirent *e;\n"
        "  if (!d) return 0;\n"
        "  while ((e = readdir(d))) n += e->d_name[0] != '.';\n"
        "  closedir(d); return n;\n}\n"
        "int main(void) {\n"
        f'  FILE *f = fopen("{count}", "a");\n'
        '  if (f) { fputs("run\\n", f); fclose(f); }\n'
        f"{meet}"
        f'  puts("{name} {version}");\n'
        "  return 0;\n}\n"
    )
    target = folder / name
    built = folder / f"{name}.new"
    subprocess.run(["cc", "-O0", "-o", str(built), str(source)], check=True)
    built.replace(target)  # a new inode, as an upgrade by a package manager


def starts(count: Path) -> int:
    return len(count.read_text().split()) if count.exists() else 0


def setup(
    ws: Workspace, tmp_path: Path, tools: list[str], together: Path | None = None
) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("tool-a", "tool-b", "tool-c", "tool-d"):
        probe_program(bin_dir, name, "1.0", tmp_path / f"{name}.count", together)
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
    together = tmp_path / "started"
    together.mkdir()
    # Each probe waits for the other three: one after the other, each would say "alone".
    env = setup(ws, tmp_path, tools, together)
    assert ws.once("run", "build", env=env).code == 0
    dry = ws.once("run", "build", "--dry-run", "--json", env=env)
    assert dry.code == 0, dry.err
    assert all(f"tool-{name} 1.0" in dry.out for name in "abcd"), dry.out
    assert "alone" not in dry.out, dry.out
    for name in "abcd":
        assert starts(tmp_path / f"tool-{name}.count") == 1


def test_a_failed_probe_is_not_kept(ws: Workspace, tmp_path: Path) -> None:
    env = setup(ws, tmp_path, ["tool-a --version && false"])
    count = tmp_path / "tool-a.count"
    assert ws.once("run", "build", env=env).code == 0
    assert ws.once("run", "build", env=env).code == 0
    assert starts(count) == 2


def test_a_probe_naming_a_file_runs_every_time(ws: Workspace, tmp_path: Path) -> None:
    """`tool-a VERSION` may print what the file holds: its program's stat cannot vouch."""
    env = setup(ws, tmp_path, ["tool-a VERSION"])
    ws.write({"VERSION": "1\n"})
    count = tmp_path / "tool-a.count"
    assert ws.once("run", "build", env=env).code == 0
    assert ws.once("run", "build", env=env).code == 0
    assert starts(count) == 2


def test_a_script_or_a_proxy_is_probed_every_time(ws: Workspace, tmp_path: Path) -> None:
    """A pyenv shim is a script and rustup's `rustc` a link to `rustup`: which program they
    start depends on files their stat does not cover."""
    env = setup(ws, tmp_path, ["tool-shim --version", "tool-proxy --version"])
    bin_dir = tmp_path / "bin"
    shim_count = tmp_path / "shim.count"
    (bin_dir / "tool-shim").write_text(f"#!/bin/sh\necho run >> {shim_count}\necho shim\n")
    (bin_dir / "tool-shim").chmod(0o755)
    (bin_dir / "tool-proxy").symlink_to(bin_dir / "tool-b")
    assert ws.once("run", "build", env=env).code == 0
    assert ws.once("run", "build", env=env).code == 0
    assert starts(shim_count) == 2
    assert starts(tmp_path / "tool-b.count") == 2


def test_a_forced_run_from_python_probes_again_and_only_that_run(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`force=True` of the Python API is `--force`: its probes run again, and the process's
    later runs trust the kept outputs as before (the flag is the run's, not the process's)."""
    env = setup(ws, tmp_path, ["tool-a --version"])
    count = tmp_path / "tool-a.count"
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("ONCE_CACHE_DIR", str(ws.cache))
    workspace = once.load(ws.root)
    sink = io.BytesIO()
    assert workspace.run("build", stream=sink).ok
    assert starts(count) == 1
    assert workspace.run("build", force=True, stream=sink).ran == ["//:build"]
    assert starts(count) == 2
    assert workspace.run("build", stream=sink).cached == ["//:build"]
    assert starts(count) == 2
