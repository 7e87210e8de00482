"""Hashing throughput of once beside b3sum and Python's hashlib, measured in the same run.

    python -m benches.compare [--small-files N] [--large-mb N] [--repeat N]

Prints the median of each measurement and its ratio to b3sum on the same files; the machine
is shared and noisy, so read medians and ratios, not single runs.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from once import _core

from benches.treegen import make_large_file, make_small_files


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    action()  # warm the page cache and the thread pool
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def hashlib_files(paths: list[Path], algorithm: str) -> None:
    for path in paths:
        with path.open("rb") as f:
            hashlib.file_digest(f, algorithm)


def run_quiet(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-files", type=int, default=20_000)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    b3sum = shutil.which("b3sum")
    if b3sum is None:
        sys.exit("compare: b3sum is not installed (apt-get install b3sum)")

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        small = make_small_files(root / "small", args.small_files)
        large = make_large_file(root / "large.bin", args.large_mb)
        cases = {
            f"{len(small)} small files": small,
            f"one {args.large_mb} MiB file": [large],
        }
        print(f"{'case':<24} {'tool':<28} {'median s':>9} {'MB/s':>8} {'vs b3sum':>9}")
        for case, paths in cases.items():
            total_mb = sum(p.stat().st_size for p in paths) / 1e6
            names = [str(p) for p in paths]
            actions: dict[str, Callable[[], object]] = {
                "b3sum": partial(run_quiet, [b3sum, *names]),
                "once core (in-process)": partial(_core.hash_files, names),
                "once hash (CLI)": partial(run_quiet, ["once", "hash", *names]),
                "hashlib sha256": partial(hashlib_files, paths, "sha256"),
                "hashlib blake2b": partial(hashlib_files, paths, "blake2b"),
            }
            measured = {tool: median_seconds(act, args.repeat) for tool, act in actions.items()}
            reference = measured["b3sum"]
            for tool, seconds in measured.items():
                print(
                    f"{case:<24} {tool:<28} {seconds:>9.3f} {total_mb / seconds:>8.0f} "
                    f"{seconds / reference:>8.2f}x"
                )


if __name__ == "__main__":
    main()
