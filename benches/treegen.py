"""Synthetic trees of files for the benchmarks."""

from __future__ import annotations

import os
from pathlib import Path


def make_small_files(root: Path, count: int) -> list[Path]:
    """`count` files of 200 B to 20 KB in 100-file folders, like a source tree."""
    paths = []
    for i in range(count):
        folder = root / f"d{i // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{i:06d}.txt"
        path.write_bytes(os.urandom(200 + (i * 7919) % 20_000))
        paths.append(path)
    return paths


def make_large_file(path: Path, megabytes: int) -> Path:
    chunk = os.urandom(1 << 20)
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(chunk)
    return path
