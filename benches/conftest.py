"""Fixtures shared by the benchmark suites: trees of files made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benches.treegen import make_large_file, make_small_files

# Sizes for the smoke run in CI (timing disabled); `benches/compare.py` uses larger ones.
SMALL_FILES = int(os.environ.get("ONCE_BENCH_SMALL_FILES", "2000"))
LARGE_FILE_MB = int(os.environ.get("ONCE_BENCH_LARGE_MB", "64"))


@pytest.fixture(scope="session")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_small_files(tmp_path_factory.mktemp("small"), SMALL_FILES)


@pytest.fixture(scope="session")
def large_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_large_file(tmp_path_factory.mktemp("large") / "large.bin", LARGE_FILE_MB)
