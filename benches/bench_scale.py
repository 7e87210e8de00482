"""`python -m benches.scale` end to end on a tiny tree, so the one-sitting benchmark cannot rot
(its figures come from a real run on the default tree, see the README)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    shutil.which("b3sum") is None and not os.environ.get("CI"), reason="needs b3sum"
)
def test_scale_prints_every_case_on_a_tiny_tree(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benches.scale",
            *("--packages", "4", "--files", "80", "--rules", "12"),
            *("--big-gib", "0.001", "--repeat", "1", "--work", str(tmp_path)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for case in ("hash whole tree", "GiB file", "--version", "no-op run", "restore-all"):
        assert case in done.stdout, done.stdout
