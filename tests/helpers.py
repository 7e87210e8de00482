"""Temporary workspaces driven through a real `once` subprocess, as a user would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from once import _core
from once.run import prelude

ONCE = shutil.which("once") or str(Path(sys.executable).with_name("once"))


@dataclass
class Done:
    code: int
    out: str
    err: str


def alive(pid: int) -> bool:
    """Whether process `pid` is running: a zombie still answers kill(0), but is dead for this."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def end_commands_left_in(root: Path) -> None:
    """Kill what a killed `once` left running in `root` or a folder of it. Its commands run in
    a session of their own, so they outlive a SIGKILL of `once` and would go on writing into
    what the test does next (on a loaded machine, for long enough to meet it)."""
    root = root.resolve()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                # The state follows the command's name in parentheses; "Z" is a zombie.
                running = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
                cwd = (proc / "cwd").readlink()
                if (
                    running
                    and (cwd == root or root in cwd.parents)
                    and proc.name != str(os.getpid())
                ):
                    left.append(int(proc.name))
            except OSError:
                pass  # ended meanwhile, or not ours to read
        if not left:
            return
        for pid in left:
            try:
                group = os.getpgid(pid)
                if group == os.getpgrp():  # started by this test run itself: not its group
                    os.kill(pid, 9)
                else:
                    os.killpg(group, 9)
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"commands still running in {root}")


def write_tree(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


class Workspace:
    """A temporary workspace with its own cache folder, driven through the real CLI."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        self.cache = cache
        self.ran_log = root.parent / "ran.log"

    def write(self, files: Mapping[str, str]) -> None:
        write_tree(self.root, files)

    def marker(self, name: str) -> str:
        """A shell snippet that records, outside every output, that a command ran."""
        return f"echo {name} >> {self.ran_log}"

    def ran(self) -> list[str]:
        """Names recorded by `marker` since the last call."""
        if not self.ran_log.exists():
            return []
        names = self.ran_log.read_text().split()
        self.ran_log.unlink()
        return names

    def once(
        self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Done:
        full_env = {**os.environ, "ONCE_CACHE_DIR": str(self.cache), **(env or {})}
        done = subprocess.run(
            [ONCE, *args],
            cwd=cwd or self.root,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Done(done.returncode, done.stdout, done.stderr)


def once_traced(
    ws: Workspace, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[Done, set[str]]:
    """`once ARGS` (`python -m once`) and the modules it imported, told by `-X importtime`,
    which lists every import however the process exits (the fast path skips Python's
    finalization, and atexit with it); the import lines are left out of `err`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "once", *args],
        cwd=cwd or ws.root,
        env={**os.environ, "ONCE_CACHE_DIR": str(ws.cache), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    err, imported = [], set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:"):
            imported.add(line.rsplit("|", 1)[-1].strip())
        else:
            err.append(line)
    assert "once.run.prelude" in imported, done.stderr  # importtime did list the imports
    return Done(done.returncode, done.stdout, "".join(f"{line}\n" for line in err)), imported


def read_entry(path: Path) -> dict[str, Any]:
    """The entry in the cache's entry file `path`, its tag checked."""
    data = _core.Store.entry_json(path.stem, path.read_bytes())
    assert data is not None, f"{path}: tag does not hold"
    entry: dict[str, Any] = json.loads(data)
    return entry


def write_entry(path: Path, entry: Mapping[str, Any]) -> None:
    """Replace the entry file `path` with `entry`, tagged as the store tags its own, as a
    hostile writer who knows the format would."""
    path.chmod(0o644)
    path.write_bytes(_core.Store.seal_entry(path.stem, json.dumps(entry).encode()))


def three_packages(ws: Workspace) -> None:
    """libs/a and libs/b, and app which depends on both (reads their dist/ through ^build)."""
    ws.write(
        {
            "once.toml": '[workspace]\nmembers = ["libs/*", "app"]\n',
            "libs/a/once.toml": (
                "[rule.build]\n"
                f'cmd = "{ws.marker("a")} && mkdir -p dist && cat src/*.txt > dist/a.out '
                '&& printf %s \\"$A_MODE\\" >> dist/a.out"\n'
                # A_MODE reaches the output, as a declared variable would in a real build.
                'inputs = ["src/**"]\noutputs = ["dist/"]\nenv = ["A_MODE"]\n'
            ),
            "libs/a/src/one.txt": "one\n",
            "libs/a/src/two.txt": "two\n",
            "libs/b/once.toml": (
                "[rule.build]\n"
                f'cmd = "{ws.marker("b")} && mkdir -p dist/sub && cp src/b.txt dist/sub/b.out"\n'
                'outputs = ["dist"]\n'
            ),
            "libs/b/src/b.txt": "bee\n",
            "app/once.toml": (
                '[package]\ndeps = ["//libs/a", "//libs/b"]\n\n[rule.build]\n'
                f'cmd = "{ws.marker("app")} && mkdir -p out && cat ../libs/a/dist/a.out '
                '../libs/b/dist/sub/b.out > out/app.txt && echo built app"\n'
                'deps = ["^build"]\noutputs = ["out/app.txt"]\n'
            ),
            "app/main.txt": "main\n",
        }
    )


def run_in_process(argv: list[str]) -> int:
    """`once ARGV`, a run, in this process (so that its counters can be read): its prelude,
    its parsing and the pipeline, as `python -m once` runs them; the exit status."""
    from once.run.command import run_request  # noqa: PLC0415 - only where a test runs in process

    asked = prelude.parse(argv)
    assert asked is not None, argv
    cwd, request = asked
    return run_request(request, cwd, prelude.start(argv))
