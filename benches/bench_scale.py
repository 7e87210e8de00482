"""`python -m benches.scale` end to end on a tiny tree, so the one-sitting benchmark cannot rot
(its figures come from a real run on the default tree, see the README)."""

from __future__ import annotations

import os
import re
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
            *("--packages", "4", "--files", "80", "--rules", "12", "--cold-steps", "12"),
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
    for case in (
        "hash whole tree",
        "GiB file",
        "--version",
        "no-op run",
        "floor:",
        "restore-all",
        "--link=hardlink",
        "right after a one-file change",
        "floor: xargs -P2",
        "p95 s",
        "max s",
        "peak MB",
        "µs/file",
        "ref µs/file",
        "load average",
    ):
        assert case in done.stdout, done.stdout
    # The tree's 80 files: each no-op row's median, per file, beside its peak memory; the
    # big file's row is not a cost of the tree.
    header, *table = (re.split(r" {2,}", line.strip()) for line in done.stdout.splitlines()[1:])
    rows = {row[0]: dict(zip(header, row, strict=True)) for row in table}
    noop = rows["no-op run, everything cached"]
    # Seconds are printed to the ms, µs per file to the unit: the figures agree to that.
    rounding = 0.0005 / 80 * 1e6 + 1
    for seconds, per_file in (("once s", "µs/file"), ("ref s", "ref µs/file")):
        expected = float(noop[seconds]) / 80 * 1e6
        assert float(noop[per_file]) == pytest.approx(expected, abs=rounding), noop
    assert float(noop["peak MB"]) > 0
    big = next(row for case, row in rows.items() if "GiB file" in case)
    assert (big["µs/file"], big["ref µs/file"]) == ("-", "-"), big


def test_a_paired_ratio_is_the_median_of_its_pairs() -> None:
    from benches.scale import Measured, Row  # noqa: PLC0415 - the module parses no argv on import

    # A slow second run of `once` next to a fast reference run, then the reverse: the separate
    # medians (3 s against 2 s) say 1.5x; every adjacent pair says 0.5x, bar the noisy one.
    once = Measured(3.0, 0.0, (1.0, 3.0, 3.0))
    ref = Measured(2.0, 0.0, (2.0, 1.0, 6.0))
    row = Row("case", once, "ref", ref, "", lambda _s, _r: True, paired=True)
    assert row.ratio() == 0.5
    assert Row("case", once, "ref", ref, "", lambda _s, _r: True).ratio() == 1.5
    rate = Row("case", once, "ref", ref, "", lambda _s, _r: True, throughput=True, paired=True)
    assert rate.ratio() == 2.0


def test_p95_and_max_show_the_slow_run_a_median_hides() -> None:
    from benches.scale import Measured  # noqa: PLC0415 - the module parses no argv on import

    runs = (0.2,) * 19 + (3.5,)
    measured = Measured(0.2, 0.0, runs)
    assert measured.p95() == 0.2  # 19 of 20 runs
    assert measured.slowest() == 3.5
    assert Measured(0.2, 0.0, (*runs[:18], 3.5, 3.5)).p95() == 3.5


def test_per_file_cost_reads_at_every_size() -> None:
    from benches.scale import peak_target_mb, per_file_us  # noqa: PLC0415

    assert per_file_us(0.5, 1_000_000) == "0.50"
    assert per_file_us(0.5, 100_000) == "5.0"
    assert per_file_us(0.5, 10_000) == "50"
    assert per_file_us(0.5, 0) == "-"
    assert peak_target_mb(100_000) == 200
    assert peak_target_mb(1_000_000) == 400
