"""The validated workspace kept in `.once/`: used while nothing it was read from changed, and
never once any once.toml, or any folder listed to find them, did."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from once import config
from once.config.model import Workspace
from once.errors import ConfigError
from once.state import workspace_cache

from tests.helpers import write_tree

SETTLE_SECONDS = 0.05  # past the 20 ms racy-timestamp margin of workspace_cache


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every once.toml parsed, in order: empty when the cache answered."""
    parsed: list[Path] = []
    real = config._parse

    def counting(source: config.Source) -> dict[str, object]:
        parsed.append(source.path)
        return real(source)

    monkeypatch.setattr(config, "_parse", counting)
    return parsed


def rule_body(name: str, cmd: str = "true") -> str:
    return f'[rule.{name}]\ncmd = "{cmd}"\n'


def make(root: Path) -> None:
    (root / ".once").mkdir(parents=True)  # made by the first run
    write_tree(
        root,
        {
            "once.toml": '[workspace]\nmembers = ["libs/*", "app"]\n',
            "libs/a/once.toml": rule_body("build"),
            "libs/b/once.toml": rule_body("build"),
            "app/once.toml": rule_body("build"),
        },
    )
    time.sleep(SETTLE_SECONDS)


def load(root: Path) -> Workspace:
    return config.load_workspace(root)


def test_second_load_reads_no_file_and_gives_the_same_workspace(
    tmp_path: Path, reads: list[Path]
) -> None:
    make(tmp_path)
    first = load(tmp_path)
    assert len(reads) == 4
    assert (tmp_path / ".once" / workspace_cache.CACHE_NAME).is_file()
    reads.clear()
    second = load(tmp_path)
    assert reads == []
    assert second == first


def test_an_edited_once_toml_is_read_again(tmp_path: Path, reads: list[Path]) -> None:
    make(tmp_path)
    load(tmp_path)
    # Same size, same second: only the nanoseconds (and ctime) tell the edit apart.
    (tmp_path / "libs/a/once.toml").write_text(rule_body("built"))
    time.sleep(SETTLE_SECONDS)
    reads.clear()
    workspace = load(tmp_path)
    assert tmp_path / "libs/a/once.toml" in reads
    assert set(workspace.packages["libs/a"].rules) == {"built"}


def test_a_package_added_under_a_member_glob_is_found(tmp_path: Path, reads: list[Path]) -> None:
    make(tmp_path)
    load(tmp_path)
    write_tree(tmp_path, {"libs/c/once.toml": rule_body("build")})
    assert "libs/c" in load(tmp_path).packages


def test_a_once_toml_added_to_a_matched_folder_is_found(tmp_path: Path, reads: list[Path]) -> None:
    make(tmp_path)
    (tmp_path / "libs/docs").mkdir()
    time.sleep(SETTLE_SECONDS)
    assert "libs/docs" not in load(tmp_path).packages
    (tmp_path / "libs/docs/once.toml").write_text(rule_body("build"))
    assert "libs/docs" in load(tmp_path).packages


def test_a_package_added_to_an_empty_listed_folder_is_found(
    tmp_path: Path, reads: list[Path]
) -> None:
    (tmp_path / ".once").mkdir()
    write_tree(
        tmp_path,
        {
            "once.toml": '[workspace]\nmembers = ["groups/*/*"]\n',
            "groups/one/a/once.toml": rule_body("build"),
        },
    )
    (tmp_path / "groups/two").mkdir()
    time.sleep(SETTLE_SECONDS)
    assert set(load(tmp_path).packages) == {"", "groups/one/a"}
    write_tree(tmp_path, {"groups/two/b/once.toml": rule_body("build")})
    assert set(load(tmp_path).packages) == {"", "groups/one/a", "groups/two/b"}


def test_outputs_made_and_removed_in_a_package_keep_the_cache(
    tmp_path: Path, reads: list[Path]
) -> None:
    make(tmp_path)
    load(tmp_path)
    write_tree(tmp_path, {"libs/a/dist/a.out": "x", "app/report.txt": "y"})
    (tmp_path / "libs/a/dist/a.out").unlink()
    (tmp_path / "libs/a/dist").rmdir()
    reads.clear()
    load(tmp_path)
    assert reads == []


def test_a_package_whose_once_toml_is_removed_is_gone(tmp_path: Path, reads: list[Path]) -> None:
    make(tmp_path)
    load(tmp_path)
    (tmp_path / "libs/b/once.toml").unlink()  # the folder stays, with no once.toml
    assert "libs/b" not in load(tmp_path).packages
    time.sleep(SETTLE_SECONDS)
    (tmp_path / "libs/b/once.toml").write_text(rule_body("build"))
    assert "libs/b" in load(tmp_path).packages


def test_a_removed_package_is_gone(tmp_path: Path, reads: list[Path]) -> None:
    make(tmp_path)
    load(tmp_path)
    (tmp_path / "libs/b/once.toml").unlink()
    (tmp_path / "libs/b").rmdir()
    assert "libs/b" not in load(tmp_path).packages


def test_an_error_is_never_cached(tmp_path: Path, reads: list[Path]) -> None:
    make(tmp_path)
    (tmp_path / "app/once.toml").write_text("[rule.build]\ncmd = 1\n")
    time.sleep(SETTLE_SECONDS)
    for _ in range(2):
        with pytest.raises(ConfigError, match="cmd"):
            load(tmp_path)
    (tmp_path / "app/once.toml").write_text(rule_body("build"))
    assert "app" in load(tmp_path).packages


def test_files_edited_just_now_are_not_trusted_yet(tmp_path: Path, reads: list[Path]) -> None:
    (tmp_path / ".once").mkdir()
    write_tree(tmp_path, {"once.toml": rule_body("build")})
    # Stamped as an edit landing while the load reads (however long a loaded machine takes to
    # get from the write to the load): read, but not kept.
    moment_ahead = time.time_ns() + 10 * 1_000_000_000
    os.utime(tmp_path / "once.toml", ns=(moment_ahead, moment_ahead))
    load(tmp_path)
    assert not (tmp_path / ".once" / workspace_cache.CACHE_NAME).exists()
    os.utime(tmp_path / "once.toml")  # edited now, then left to settle
    time.sleep(SETTLE_SECONDS)
    load(tmp_path)
    assert (tmp_path / ".once" / workspace_cache.CACHE_NAME).is_file()


def test_a_recursive_member_glob_is_not_cached(tmp_path: Path, reads: list[Path]) -> None:
    (tmp_path / ".once").mkdir()
    write_tree(
        tmp_path,
        {
            "once.toml": '[workspace]\nmembers = ["libs/**"]\n',
            "libs/deep/a/once.toml": rule_body("build"),
        },
    )
    time.sleep(SETTLE_SECONDS)
    load(tmp_path)
    assert not (tmp_path / ".once" / workspace_cache.CACHE_NAME).exists()


def test_a_damaged_cache_is_rebuilt(tmp_path: Path, reads: list[Path]) -> None:
    make(tmp_path)
    first = load(tmp_path)
    cache = tmp_path / ".once" / workspace_cache.CACHE_NAME
    for damage in (b"", b"not marshal", cache.read_bytes()[:100]):
        cache.write_bytes(damage)
        reads.clear()
        assert load(tmp_path) == first
        assert len(reads) == 4


def test_a_moved_workspace_is_read_again_with_its_new_root(
    tmp_path: Path, reads: list[Path]
) -> None:
    make(tmp_path / "here")
    load(tmp_path / "here")
    (tmp_path / "here").rename(tmp_path / "there")
    reads.clear()
    workspace = load(tmp_path / "there")
    assert workspace.root == (tmp_path / "there").resolve()
    assert reads


def test_nothing_is_written_before_a_run_made_the_state_folder(
    tmp_path: Path, reads: list[Path]
) -> None:
    make(tmp_path)
    (tmp_path / ".once").rmdir()
    load(tmp_path)
    assert not (tmp_path / ".once").exists()


def test_remote_settings_survive_the_cache(tmp_path: Path, reads: list[Path]) -> None:
    make(tmp_path)
    (tmp_path / "once.toml").write_text(
        '[workspace]\nmembers = ["libs/*", "app"]\n\n'
        '[remote]\nurl = "http://127.0.0.1:1/cache"\nread_only = true\ntimeout = 2.5\n'
    )
    time.sleep(SETTLE_SECONDS)
    first = load(tmp_path)
    reads.clear()
    second = load(tmp_path)
    assert reads == []
    assert second.remote is not None
    assert second.remote == first.remote
    assert second.remote.timeout == 2.5
