"""The Python API: the README's example, run as written, and each public name."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import once
import pytest

from tests.helpers import Workspace, three_packages

REPO = Path(__file__).resolve().parent.parent


def readme_python_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Python API section has no python block"
    return match.group(1)


def test_readme_example_runs(tmp_path: Path) -> None:
    """The block runs from the repository's root; give it a copy of the examples there."""
    shutil.copytree(REPO / "examples/monorepo", tmp_path / "examples/monorepo")
    env = {**os.environ, "ONCE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", readme_python_block()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert once.hash_bytes(b"hello") in done.stdout
    assert "//apps/report:build needs ['//libs/words:build', '//libs/numbers:build']" in (
        done.stdout
    )
    assert (tmp_path / "examples/monorepo/apps/report/dist").is_dir()


def test_hashing_matches_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(300_000))
    cli = subprocess.run(
        ["once", "hash", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    assert once.hash_file(path) == cli
    assert once.hash_files([path, str(path)]) == [cli, cli]
    assert once.hash_bytes(path.read_bytes()) == cli
    # The official BLAKE3 digest of the empty input.
    assert once.hash_bytes(b"") == (
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )
    with pytest.raises(FileNotFoundError):
        once.hash_file(tmp_path / "missing")


def test_workspace_rules_graph_keys_and_run(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    three_packages(ws)
    monkeypatch.setenv("ONCE_CACHE_DIR", str(ws.cache))
    workspace = once.load(ws.root / "libs/a")  # any folder inside finds the root
    assert workspace.root == ws.root.resolve()
    rules = {rule.label: rule for rule in workspace.rules()}
    assert rules["//app:build"].deps == ("//libs/a:build", "//libs/b:build")
    assert rules["//libs/a:build"].inputs == ("src/**",)
    assert workspace.graph("//libs/b:build") == {"//libs/b:build": []}

    keys = workspace.keys("build")
    assert set(keys) == set(rules)
    # The app's key holds what the libraries produce, unknown before they ran.
    assert keys["//app:build"] is None
    del keys["//app:build"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", key or "") for key in keys.values())
    # Declared env enters the key; the same environment gives the same key.
    assert workspace.keys("build", environ={}) == workspace.keys("build", environ={})
    assert (
        workspace.keys("//libs/a:build", environ={"A_MODE": "x"})["//libs/a:build"]
        != workspace.keys("//libs/a:build", environ={})["//libs/a:build"]
    )

    sink = io.BytesIO()
    first = workspace.run("build", jobs=2, stream=sink)
    assert first.ok
    assert sorted(first.ran) == sorted(rules)
    assert sorted(ws.ran()) == ["a", "app", "b"]
    second = workspace.run("build", output_logs="full", stream=sink)
    assert second.cached == list(workspace.graph("build"))
    assert all(re.fullmatch(r"[0-9a-f]{64}", key or "") for key in workspace.keys("build").values())
    assert all(step.saved_seconds >= 0 for step in second.steps)
    assert b"//app:build | built app" in sink.getvalue()

    ws.write({"libs/b/once.toml": '[rule.build]\ncmd = "exit 5"\n'})
    failed = once.load(ws.root).run("build", stream=sink)
    assert not failed.ok
    assert failed.failed == ["//libs/b:build"]
    assert failed.labels("skipped") == ["//app:build"]


def test_errors_are_the_cli_lines(ws: Workspace) -> None:
    three_packages(ws)
    with pytest.raises(once.UsageError, match="no rule named 'nope'"):
        once.load(ws.root).keys("nope")
    ws.write({"once.toml": '[workspace]\nmembers = ["libs/*", "app"]\nbogus = 1\n'})
    with pytest.raises(once.ConfigError, match=r"once\.toml:3"):
        once.load(ws.root)
    assert issubclass(once.ConfigError, once.OnceError)
    with pytest.raises(AttributeError):
        _ = once.no_such_name
