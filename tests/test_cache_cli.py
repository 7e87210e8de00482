"""`once cache {stats,gc,clear,verify}` through a real `once` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from once.state.cache_files import parse_size

from tests.helpers import Workspace, three_packages


def blob_files(ws: Workspace) -> list[Path]:
    return sorted(path for path in (ws.cache / "cas").glob("*/*") if len(path.name) == 64)


def stats(ws: Workspace) -> dict[str, object]:
    done = ws.once("cache", "stats", "--json")
    assert done.code == 0, done.err
    data: dict[str, object] = json.loads(done.out)
    return data


def test_stats_counts_the_store_and_the_hit_rate_of_recent_runs(ws: Workspace) -> None:
    three_packages(ws)
    empty = stats(ws)
    assert (empty["entries"], empty["blobs"], empty["bytes"]) == (0, 0, 0)
    assert empty["hit_rate"] is None
    assert "no runs recorded yet" in ws.once("cache", "stats").out

    assert ws.once("run", "build").code == 0  # 3 misses
    assert ws.once("run", "build").code == 0  # 3 hits
    (ws.root / "libs/a/src/one.txt").write_text("changed\n")
    assert ws.once("run", "build").code == 0  # a and app miss, b hits
    assert ws.once("run", "build", "--force").code == 0  # says nothing about the cache
    data = stats(ws)
    assert data["entries"] == 5
    assert isinstance(data["blobs"], int)
    assert data["blobs"] >= 1  # logs; the small outputs travel in their entries
    assert data["bytes"] == sum(
        path.stat().st_size
        for path in ws.cache.rglob("*")
        if path.parent.parent.name in ("ac", "cas")
    )
    assert (data["recent_runs"], data["hits"], data["misses"]) == (3, 4, 5)
    assert data["hit_rate"] == pytest.approx(4 / 9)
    assert data["cache_dir"] == str(ws.cache)

    text = ws.once("cache", "stats", env={"ONCE_CACHE_MAX_SIZE": "2G"}).out
    assert "entries:   5" in text
    assert "of 2.0 GiB" in text
    assert "hit rate:  44% over the last 3 runs (4 hits, 5 misses)" in text
    assert stats(ws)["max_bytes"] != 2 << 30  # the default bound, from the file system
    assert json.loads(ws.once("cache", "stats", "--json", env={"ONCE_CACHE_MAX_SIZE": "2G"}).out)[
        "max_bytes"
    ] == (2 << 30)


def test_default_bound_is_a_tenth_of_the_file_system_at_most_10_gib(ws: Workspace) -> None:
    ws.cache.mkdir()
    fs = os.statvfs(ws.cache)
    expected = min(fs.f_blocks * fs.f_frsize // 10, 10 << 30)
    assert stats(ws)["max_bytes"] == expected


def test_gc_collects_down_to_max_size(ws: Workspace) -> None:
    three_packages(ws)
    assert ws.once("run", "build").code == 0
    ws.ran()
    done = ws.once("cache", "gc", "--max-size", "0")
    assert done.code == 0, done.err
    assert done.out.startswith("once: evicted 3 entries, removed ")
    assert "the cache holds 0 B of 0 B" in done.out
    assert (stats(ws)["entries"], stats(ws)["blobs"]) == (0, 0)
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "app", "b"]

    # Under the bound, gc keeps every entry but removes blobs nothing names and old leftovers.
    orphan = ws.cache / "cas" / "ab" / ("ab" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"no entry names me")
    leftover = ws.cache / "cas" / ".tmp-4242-0"
    leftover.write_bytes(b"from a killed run")
    old = time.time() - 2 * 3600
    os.utime(leftover, (old, old))
    report = json.loads(ws.once("cache", "gc", "--json").out)
    assert (report["evicted_entries"], report["removed_blobs"], report["removed_temps"]) == (
        0,
        1,
        1,
    )
    assert not orphan.exists()
    assert not leftover.exists()
    assert ws.once("run", "build").code == 0
    assert ws.ran() == []


@pytest.mark.parametrize("size", ["lots", "1Q", "-5M", ""])
def test_gc_rejects_a_malformed_size(ws: Workspace, size: str) -> None:
    done = ws.once("cache", "gc", "--max-size", size)
    assert done.code == 2
    assert "Invalid value for '--max-size'" in done.err
    assert "Traceback" not in done.err


def test_clear_empties_the_cache_and_keeps_the_folder(ws: Workspace) -> None:
    three_packages(ws)
    assert ws.once("run", "build").code == 0
    ws.ran()
    done = ws.once("cache", "clear")
    assert done.code == 0, done.err
    assert done.out.startswith(f"once: cleared {ws.cache}: 3 entries, ")
    assert ws.cache.is_dir()
    assert list((ws.cache / "ac").iterdir()) == []
    assert list((ws.cache / "cas").iterdir()) == []
    assert stats(ws)["recent_runs"] == 1, "the hit-rate record is kept"
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "app", "b"]


def test_verify_drops_corrupt_blobs_and_their_entries(ws: Workspace) -> None:
    three_packages(ws)
    ws.write({"libs/b/src/b.txt": "bee\n" * 2000})  # past what an entry carries: a blob
    assert ws.once("run", "build").code == 0
    ws.ran()
    clean = ws.once("cache", "verify")
    assert clean.code == 0
    assert "removed 0 corrupt blobs and 0 unsound entries; the cache is consistent" in clean.out

    # Bit rot in the blob of libs/b's output (only b's entry names it).
    target = (ws.root / "libs/b/dist/sub/b.out").read_bytes()
    (blob,) = [path for path in blob_files(ws) if path.read_bytes() == target]
    blob.chmod(0o644)
    blob.write_bytes(b"rotten")
    done = ws.once("cache", "verify", "--json")
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert (report["corrupt_blobs"], report["removed_entries"], report["entries"]) == (1, 1, 3)
    assert not blob.exists()
    assert "removed 0 corrupt blobs" in ws.once("cache", "verify").out

    # b runs again and repairs its entry; the others still hit.
    (ws.root / "libs/b/dist/sub/b.out").unlink()
    assert ws.once("run", "build").code == 0
    assert ws.ran() == ["b"]
    assert (ws.root / "libs/b/dist/sub/b.out").read_bytes() == target
    assert ws.once("run", "build").code == 0
    assert ws.ran() == []


@pytest.mark.parametrize("command", ["stats", "gc", "clear", "verify"])
def test_every_cache_command_has_complete_help(ws: Workspace, command: str) -> None:
    done = ws.once("cache", command, "--help")
    assert done.code == 0
    assert f"Usage: once cache {command}" in done.out
    assert "--json" in done.out
    assert "ONCE_CACHE_DIR" in done.out
    assert "ONCE_CACHE_MAX_SIZE" in done.out


def test_cache_group_help_lists_its_commands(ws: Workspace) -> None:
    done = ws.once("cache", "--help")
    assert done.code == 0
    for command in ("stats", "gc", "clear", "verify"):
        assert command in done.out
    assert "cache" in ws.once("--help").out


def test_run_help_documents_link_modes(ws: Workspace) -> None:
    done = ws.once("run", "--help")
    assert "--link [copy|hardlink]" in done.out
    bad = ws.once("run", "build", "--link=symlink")
    assert bad.code == 2


def test_the_cli_loads_no_cache_machinery_until_a_cache_command_runs() -> None:
    # `once --version` stays as cheap as importing click: the cache commands register, but the
    # run machinery (config, graph, fingerprint, run) loads only inside them.
    code = "import sys, once.cli; print(sorted(m for m in sys.modules if m.startswith('once')))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("'")
    assert "once.cli.cache" in loaded
    heavy_modules = (
        "once.run.scheduler",
        "once.config",
        "once.plan.graph",
        "once.plan.keys",
        "once.run.session",
    )
    for heavy in heavy_modules:
        assert heavy not in loaded


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("4096", 4096),
        ("500M", 500 << 20),
        ("2G", 2 << 30),
        ("2g", 2 << 30),
        ("1.5G", 3 << 29),
        ("10GiB", 10 << 30),
        ("3 KB", 3 << 10),
        ("1T", 1 << 40),
    ],
)
def test_sizes_parse_in_powers_of_1024(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "-1M", "1.2.3", "5X", "1e9", "ten"])
def test_malformed_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)
