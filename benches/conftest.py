"""Fixtures shared by the benchmark suites: trees of files made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Sizes for the smoke run in CI (timing disabled); `benches/compare.py` uses larger ones.
SMALL_FILES = int(os.environ.get("ONCE_BENCH_SMALL_FILES", "2000"))
LARGE_FILE_MB = int(os.environ.get("ONCE_BENCH_LARGE_MB", "64"))


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


@pytest.fixture(scope="session")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_small_files(tmp_path_factory.mktemp("small"), SMALL_FILES)


@pytest.fixture(scope="session")
def large_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_large_file(tmp_path_factory.mktemp("large") / "large.bin", LARGE_FILE_MB)
