"""Hot-path hashing benchmarks. In CI they run once each with timing off, as smoke tests; run
`python benches/compare.py` for figures beside b3sum and hashlib."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from once import _core
from pytest_benchmark.fixture import BenchmarkFixture


def test_hash_many_small_files(benchmark: BenchmarkFixture, small_files: list[Path]) -> None:
    paths = [str(p) for p in small_files]
    digests = benchmark(_core.hash_files, paths)
    assert len(digests) == len(paths)
    assert digests[0] == _core.hash_bytes(small_files[0].read_bytes())


def test_hash_one_large_file(benchmark: BenchmarkFixture, large_file: Path) -> None:
    (digest,) = benchmark(_core.hash_files, [str(large_file)])
    assert digest == _core.hash_bytes(large_file.read_bytes())


def test_hashlib_reference_large_file(benchmark: BenchmarkFixture, large_file: Path) -> None:
    def sha256() -> str:
        with large_file.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    assert len(benchmark(sha256)) == 64


def test_snapshot_walk_and_hash(
    benchmark: BenchmarkFixture,
    small_files: list[Path],
    tmp_path: Path,
) -> None:
    root = small_files[0].parent.parent

    def walk_and_hash() -> int:
        snapshot = _core.Snapshot.scan(str(root), [])
        files = snapshot.select("", ["**"], [])
        return snapshot.hash([files], None)

    assert benchmark(walk_and_hash) == len(small_files)


def test_hash_tree_as_the_cli_does(benchmark: BenchmarkFixture, small_files: list[Path]) -> None:
    """`once hash FOLDER`: walk, hash the files a chunk at a time, write b3sum's lines."""
    root = small_files[0].parent.parent

    def hash_tree() -> bytes:
        out = io.BytesIO()
        _core.write_b3sum([str(root)], out.write)
        return out.getvalue()

    lines = benchmark(hash_tree).decode().splitlines()
    assert len(lines) == len(small_files)
    digest, name = lines[0].split("  ", 1)
    assert digest == _core.hash_bytes(Path(name).read_bytes())
