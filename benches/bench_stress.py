"""`python -m benches.stress` with a handful of kills, so the stress command cannot rot (its
figures come from a run of 100 kills or more, see benches/RESULTS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_stress_survives_a_few_kills(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benches.stress", "--kills", "6", "--work", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kills: 6;" in done.stdout, done.stdout
    assert "failures: 0" in done.stdout, done.stdout
