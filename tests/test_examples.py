"""The examples in examples/ do what the README says they do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HIT = re.compile(r"^(//\S+): cache hit \((\w+)\) in ([\d.]+)s, saved ([\d.]+)s$", re.MULTILINE)


def copy_example(name: str, ws: Workspace) -> None:
    shutil.rmtree(ws.root)
    shutil.copytree(EXAMPLES / name, ws.root, ignore=shutil.ignore_patterns(".once", "dist"))


def test_monorepo_builds_then_is_cached(ws: Workspace) -> None:
    copy_example("monorepo", ws)
    assert ws.once("run", "build").code == 0
    again = ws.once("run", "build")
    assert "all 3 steps cached (0 restored), 0 ran" in again.out


def test_ml_pipeline_restores_unchanged_steps_in_a_fraction_of_their_run_time(
    ws: Workspace,
) -> None:
    pytest.importorskip("numpy")  # a dev dependency; the example needs it
    copy_example("ml-pipeline", ws)
    first = ws.once("run", "evaluate")
    assert first.code == 0, first.out + first.err
    assert "4 steps: 4 ran" in first.out
    written = sum(
        path.stat().st_size
        for folder in ("data", "features", "model", "reports")
        for path in (ws.root / folder).rglob("*")
    )
    assert 50 << 20 < written < 200 << 20, written  # large files, as the README says

    # Every output gone, as on a fresh checkout: the cache brings them all back.
    for folder in ("data", "features", "model", "reports"):
        shutil.rmtree(ws.root / folder)
    second = ws.once("run", "evaluate")
    assert second.code == 0, second.out + second.err
    assert "all 4 steps cached (4 restored), 0 ran" in second.out
    hits = {
        label: (outcome, float(took), float(ran))
        for label, outcome, took, ran in HIT.findall(second.out)
    }
    outcome, took, ran = hits["//:featurize"]
    assert outcome == "restored"
    # 96 MB of features back in a small fraction of what computing them took.
    assert took < ran / 3, hits
    assert (ws.root / "features/features.npy").stat().st_size > 90 << 20

    # A new hyperparameter: the data steps are unchanged, only training and evaluation run.
    third = ws.once("run", "evaluate", env={"EPOCHS": "5"})
    assert third.code == 0, third.out + third.err
    assert "4 steps: 2 ran, 2 cached" in third.out
    assert "//:generate: cache hit (cached)" in third.out
    assert "//:featurize: cache hit (cached)" in third.out


def test_github_actions_example_uses_the_remote_cache_and_real_commands(ws: Workspace) -> None:
    workflow = (EXAMPLES / "github-actions/once.yml").read_text()
    for name in ("ONCE_REMOTE", "ONCE_REMOTE_READ_ONLY", "ONCE_SIGNING_KEY"):
        assert f"{name}:" in workflow
    assert "secrets.ONCE_SIGNING_KEY" in workflow
    assert "pull_request" in workflow
    commands = re.findall(r"run: (once .*)", workflow)
    assert len(commands) >= 3
    for command in commands:
        # Each command line parses: unknown commands or options would fail before --help.
        args = command.replace("${{ github.base_ref }}", "main").split()[1:]
        done = ws.once(*args, "--help")
        assert done.code == 0, (command, done.err)


def test_graph_of_the_pipeline_renders_as_dot(ws: Workspace) -> None:
    copy_example("ml-pipeline", ws)
    done = ws.once("graph", "evaluate")
    assert '"//:evaluate" -> "//:train";' in done.out
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=done.out, text=True, capture_output=True, check=True)
