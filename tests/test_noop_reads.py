"""A no-op run reads metadata only: no input and no output file is opened for its contents.

In-process (click's runner), so the core's `files_hashed` counter of this very process can be
read before and after each run."""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner
from once import _core
from once.cli import cli

from tests.helpers import Workspace, run_in_process, three_packages

# Longer than the racy-timestamp margin (20 ms): only then may a recorded stat vouch for a file.
SETTLE_SECONDS = 0.06


def run_counting_reads(ws: Workspace) -> int:
    before = _core.files_hashed()
    result = CliRunner().invoke(
        cli,
        ["-C", str(ws.root), "run", "build"],
        env={"ONCE_CACHE_DIR": str(ws.cache)},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return _core.files_hashed() - before


def test_noop_run_reads_no_file_contents(ws: Workspace) -> None:
    three_packages(ws)
    assert run_counting_reads(ws) >= 4  # the cold run hashes every input
    assert sorted(ws.ran()) == ["a", "app", "b"]
    time.sleep(SETTLE_SECONDS)
    # Files written moments before the last run were too fresh to vouch for by stat (the racy
    # rule); this run reads them once more and records them.
    run_counting_reads(ws)
    assert run_counting_reads(ws) == 0
    assert ws.ran() == []


def test_same_size_output_rewrite_with_old_mtime_is_restored(ws: Workspace) -> None:
    three_packages(ws)
    assert ws.once("run", "build").code == 0
    time.sleep(SETTLE_SECONDS)
    assert ws.once("run", "build").code == 0  # records the outputs' stats
    output = ws.root / "libs/b/dist/sub/b.out"
    stat = output.stat()
    output.write_text("BEE\n")  # same size
    os.utime(output, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old mtime back
    done = ws.once("run", "build")
    assert done.code == 0
    assert "//libs/b:build: cache hit (restored)" in done.out
    assert output.read_text() == "bee\n"
    assert sorted(ws.ran()) == ["a", "app", "b"]  # the first run only: the rest were hits


def test_the_fast_path_reads_no_file_contents(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The same once the run's plan and keys are kept: no file is read to key it either."""
    three_packages(ws)
    monkeypatch.setenv("ONCE_CACHE_DIR", str(ws.cache))
    monkeypatch.chdir(ws.root)
    assert ws.once("run", "build").code == 0
    time.sleep(SETTLE_SECONDS)
    assert ws.once("run", "build").code == 0  # keeps the plan; re-reads the fresh files
    time.sleep(SETTLE_SECONDS)
    before = _core.files_hashed()
    assert run_in_process(["run", "build"]) == 0
    assert _core.files_hashed() - before == 0
    assert "once: all 3 steps cached" in capfd.readouterr().out
    assert sorted(ws.ran()) == ["a", "app", "b"]  # the first run only
