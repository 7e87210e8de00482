"""One pipeline for every run (run/pipeline.py): a run whose steps are all local cache hits is
answered from the kept plan without loading the CLI, the configuration or the scheduler, and
prints exactly what a run with any option prints; a changed config, a changed input or a new
package are read, keyed and run (with a remote cache: test_remote_noop.py). A run whose
arguments are valid never loads click (run/options.py parses it)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from once import _core
from once.api import OutputLogs as LogMode
from once.cli import cli
from once.run.options import RUN_OPTIONS, parse_run

from tests.helpers import Done, Workspace, once_traced, three_packages
from tests.test_imports import NOT_IN_A_NO_OP


def once_main(
    ws: Workspace, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[Done, str]:
    """Run `once ARGS` (`python -m once`), and what it loaded: "hits" (none of the modules a
    no-op must not load), "build" (the configuration and the scheduler, not click) or "cli"."""
    done, imported = once_traced(ws, *args, env=env, cwd=cwd)
    if "click" in imported:
        return done, "cli"
    return done, "build" if imported.intersection(NOT_IN_A_NO_OP) else "hits"


def timeless(text: str) -> str:
    return re.sub(r"\d+\.\d\ds", "T", text)


@pytest.fixture
def built(ws: Workspace) -> Workspace:
    three_packages(ws)
    first = ws.once("run", "build")
    assert first.code == 0, first.err
    assert sorted(ws.ran()) == ["a", "app", "b"]
    return ws


def test_a_no_op_loads_nothing_of_a_build_and_prints_what_a_run_with_options_prints(
    built: Workspace,
) -> None:
    once_main(built, "run", "build")  # keeps the plan
    full, path = once_main(built, "run", "build", "--link", "copy", "-j", "3")
    assert path == "hits"
    quick_done, path = once_main(built, "run", "build")
    assert (quick_done.code, full.code) == (0, 0), quick_done.err + full.err
    assert path == "hits"
    assert timeless(quick_done.out) == timeless(full.out)
    assert "//app:build | built app" in quick_done.out
    assert quick_done.out.splitlines()[-1].startswith("once: all 3 steps cached (0 restored)")
    assert built.ran() == []


def test_a_no_op_with_jobs_is_answered_without_the_cli(built: Workspace) -> None:
    """`-j N` bounds how many commands run at once, and a run of hits runs none."""
    once_main(built, "run", "build")  # keeps the plan
    done, path = once_main(built, "run", "-j", "2", "--output-logs", "none", "build")
    assert done.code == 0, done.err
    assert path == "hits"
    assert done.out.splitlines()[-1].startswith("once: all 3 steps cached (0 restored)")


def test_deleted_outputs_are_restored_by_the_fast_path(built: Workspace) -> None:
    once_main(built, "run", "build")  # keeps the plan
    # Without kept keys, then with them (their outputs checked first, found stale, restored).
    for _ in range(2):
        (built.root / "app/out/app.txt").unlink()
        (built.root / "libs/b/dist/sub/b.out").write_text("edited\n")
        done, path = once_main(built, "run", "build")
        assert done.code == 0, done.err
        assert path == "hits"
        assert "//app:build: cache hit (restored)" in done.out
        assert "//libs/b:build: cache hit (restored)" in done.out
        assert (built.root / "app/out/app.txt").read_text() == "one\ntwo\nbee\n"
        assert (built.root / "libs/b/dist/sub/b.out").read_text() == "bee\n"
        assert (built.root / ".once/run-keys").is_file()
    assert built.ran() == []


def test_a_no_op_marks_its_entries_used(built: Workspace) -> None:
    """Eviction is least-recently-used by an entry's mtime: the fast path checks its hits
    before the walk says they count, without touching them, and must touch them after."""
    once_main(built, "run", "build")  # keeps the plan
    once_main(built, "run", "build")  # keeps its keys
    assert (built.root / ".once/run-keys").is_file()
    entries = sorted((built.cache / "ac").rglob("*.json"))
    assert len(entries) == 3
    hour_ago = time.time() - 3600
    for entry in entries:
        os.utime(entry, (hour_ago, hour_ago))
    done, path = once_main(built, "run", "build")
    assert done.code == 0, done.err
    assert path == "hits"
    assert all(entry.stat().st_mtime > hour_ago + 1800 for entry in entries)


def test_output_folders_deleted_and_restored_keep_the_fast_path(built: Workspace) -> None:
    """A package folder's stat moves with every output folder made or removed in it: it must
    not invalidate the kept plan (only once.toml files and the folders listed to find them
    do), or every run after a restore would take the full path."""
    once_main(built, "run", "build")  # keeps the plan
    shutil.rmtree(built.root / "libs/b/dist")
    shutil.rmtree(built.root / "app/out")
    for _ in range(2):  # the restore, then the run after it
        done, path = once_main(built, "run", "build")
        assert done.code == 0, done.err
        assert path == "hits"
    assert (built.root / "libs/b/dist/sub/b.out").read_text() == "bee\n"
    assert built.ran() == []


def test_a_changed_input_leaves_the_run_to_the_full_run_without_click(built: Workspace) -> None:
    once_main(built, "run", "build")
    (built.root / "libs/a/src/one.txt").write_text("uno\n")
    done, path = once_main(built, "run", "build")
    assert done.code == 0, done.err
    assert path == "build"
    assert sorted(built.ran()) == ["a", "app"]
    again, path = once_main(built, "run", "build")
    assert again.code == 0, again.err
    assert path == "hits"


def test_a_run_click_parses_prints_and_exits_as_one_it_does_not(built: Workspace) -> None:
    """A run's arguments are parsed without click (run/options.py); click parses only what that
    leaves, here an option given twice (click takes the last). The run is the same."""
    once_main(built, "run", "build")  # keeps the plan
    runs = []
    for edit, args in (
        ("uno\n", ("-j", "2")),
        ("dos\n", ("-j", "1", "-j", "2")),
    ):  # each a new input: a step runs
        (built.root / "libs/a/src/one.txt").write_text(edit)
        runs.append(once_main(built, "run", "build", *args))
    (light, light_path), (full, full_path) = runs
    assert (light_path, full_path) == ("build", "cli")
    assert (light.code, light.err) == (full.code, full.err) == (0, "")
    assert timeless(light.out) == timeless(full.out)
    assert sorted(built.ran()) == ["a", "a", "app", "app"]
    unknown = [once_main(built, "run", *args) for args in (("nosuch",), ("nosuch", "-j1", "-j2"))]
    assert [path for _, path in unknown] == ["build", "cli"]
    assert unknown[0][0].code == unknown[1][0].code == 2
    assert unknown[0][0].err == unknown[1][0].err
    assert unknown[0][0].err.startswith("once: error: ")


def test_an_edited_config_is_read_again(built: Workspace) -> None:
    once_main(built, "run", "build")
    config = built.root / "libs/b/once.toml"
    config.write_text(
        config.read_text().replace(
            "cp src/b.txt dist/sub/b.out", "cat src/b.txt src/b.txt > dist/sub/b.out"
        )
    )
    done, path = once_main(built, "run", "build")
    assert done.code == 0, done.err
    assert path == "build"
    assert sorted(built.ran()) == ["app", "b"]
    assert (built.root / "app/out/app.txt").read_text() == "one\ntwo\nbee\nbee\n"


def test_a_new_package_is_found(built: Workspace) -> None:
    once_main(built, "run", "build")
    built.write(
        {
            "libs/c/once.toml": f'[rule.build]\ncmd = "{built.marker("c")}"\n',
            "libs/c/src/c.txt": "sea\n",
        }
    )
    done, path = once_main(built, "run", "build")
    assert done.code == 0, done.err
    assert path == "build"
    assert built.ran() == ["c"]
    assert "4 steps" in done.out.splitlines()[-1]


def test_a_declared_env_change_misses(built: Workspace) -> None:
    once_main(built, "run", "build")
    done, _ = once_main(built, "run", "build", env={"A_MODE": "fast"})
    assert done.code == 0, done.err
    assert sorted(built.ran()) == ["a", "app"]
    again, path = once_main(built, "run", "build", env={"A_MODE": "fast"})
    assert again.code == 0, again.err
    assert path == "hits"
    assert built.ran() == []


def test_each_folder_and_target_list_has_its_own_plan(built: Workspace) -> None:
    once_main(built, "run", "build")
    done = built.once("run", "build", cwd=built.root / "libs/a")
    assert done.code == 0, done.err
    assert done.out.splitlines()[-1].startswith("once: all 1 steps cached")
    again, path = once_main(built, "run", "build", cwd=built.root / "libs/a")
    assert again.code == 0, again.err
    assert path == "hits"
    assert again.out.splitlines()[-1].startswith("once: all 1 steps cached")


@pytest.mark.parametrize("mode", ["none", "new-only", "errors-only"])
def test_log_modes_match_the_full_run(built: Workspace, mode: str) -> None:
    full, _ = once_main(built, "run", f"--output-logs={mode}", "build", "-j", "1")
    done, path = once_main(built, "run", "--output-logs", mode, "build")
    assert done.code == 0, done.err
    assert path == "hits"
    assert timeless(done.out) == timeless(full.out)
    assert "built app" not in done.out


def test_a_malformed_cache_bound_is_an_error_before_anything(built: Workspace) -> None:
    once_main(built, "run", "build")
    done, _ = once_main(built, "run", "build", env={"ONCE_CACHE_MAX_SIZE": "lots"})
    assert done.code == 2
    assert done.err.startswith("once: error: ONCE_CACHE_MAX_SIZE: 'lots' is not a size")


def test_why_reads_the_history_the_fast_path_keeps(built: Workspace) -> None:
    once_main(built, "run", "build")
    (built.root / "libs/a/src/one.txt").write_text("uno\n")
    built.once("run", "build")
    (built.root / "libs/a/src/one.txt").write_text("one\n")
    done, path = once_main(built, "run", "build")  # back to a cached state: a new key
    assert path == "hits"
    assert done.code == 0, done.err
    why = built.once("why", "//libs/a:build")
    assert why.code == 0, why.err
    assert "cached" in why.out.splitlines()[0]


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["run", "build"], (["build"], "full", None, False, "copy")),
        (["run", "a", "//b:c"], (["a", "//b:c"], "full", None, False, "copy")),
        (["run", "--output-logs=none", "a"], (["a"], "none", None, False, "copy")),
        (["run", "a", "--output-logs", "new-only"], (["a"], "new-only", None, False, "copy")),
        (["run"], None),
        (["run", "--output-logs=loud", "a"], None),
        (["run", "--output-logs"], None),
        (["run", "-j", "2", "a"], (["a"], "full", 2, False, "copy")),
        (["run", "-j2", "--output-logs", "none", "a"], (["a"], "none", 2, False, "copy")),
        (["run", "--jobs=8", "a"], (["a"], "full", 8, False, "copy")),
        (["run", "--jobs", "0", "a"], None),
        (["run", "-j", "a"], None),
        (["run", "--force", "--link=hardlink", "a"], (["a"], "full", None, True, "hardlink")),
        (["run", "--link", "soft", "a"], None),
        (["run", "--force=yes", "a"], None),
        (["run", "-j", "1", "-j", "2", "a"], None),
        (["run", "--", "-a"], (["-a"], "full", None, False, "copy")),
        (["run", "--dry-run", "a"], None),
        (["run", "--json", "a"], None),
        (["run", "--help"], None),
        (["status", "a"], None),
    ],
)
def test_a_run_is_parsed_without_click(
    argv: list[str], parsed: tuple[list[str], LogMode, int | None, bool, str] | None
) -> None:
    request = parse_run(argv)
    found = (
        (request.targets, request.output_logs, request.jobs, request.force, request.link)
        if request is not None
        else None
    )
    assert found == parsed


def test_affected_and_since_are_parsed() -> None:
    request = parse_run(["run", "--since", "HEAD~1", "--env-mode=loose", "--remote-read-only"])
    assert request is not None
    assert (request.affected, request.since, request.env_mode, request.remote_read_only) == (
        True,
        "HEAD~1",
        "loose",
        True,
    )
    assert parse_run(["run", "--env-mode", "lax", "a"]) is None


def test_the_parser_and_click_share_one_description_of_run() -> None:
    """Every option `once run --help` shows is described once (`RUN_OPTIONS`)."""
    shown = CliRunner().invoke(cli, ["run", "--help"]).output
    for option in RUN_OPTIONS:
        for name in option.names:
            assert name in shown


def test_a_plan_from_another_folder_name_is_not_used(built: Workspace, tmp_path: Path) -> None:
    once_main(built, "run", "build")
    moved = tmp_path / "moved"
    built.root.rename(moved)
    ws = Workspace(moved, built.cache)
    done, imported = once_traced(ws, "run", "build")
    assert done.code == 0, done.err
    assert "once.config" in imported  # the kept plan names the old root
    assert ws.ran() == []


def test_hits_settled_before_a_step_is_refused_are_reported_as_settled(
    built: Workspace,
) -> None:
    """libs/a's deleted outputs are restored, then the blob app's deleted output would be
    restored from no longer holds its name (edited in the cache): a miss. The run continues
    from what was settled rather than starting over, so libs/a is reported restored, with or
    without options."""
    # app's output past what an entry carries (4 KiB): a blob of its own.
    built.write({"libs/b/src/b.txt": "bee\n" * 2000})
    once_main(built, "run", "build")  # keeps the plan
    built.ran()
    app_out = "one\ntwo\n" + "bee\n" * 2000
    app_blob = _core.hash_bytes(app_out.encode())
    for option in ([], ["--link", "copy", "-j", "2"]):
        shutil.rmtree(built.root / "libs/a/dist")
        (built.root / "app/out/app.txt").unlink()
        [blob] = [path for path in built.cache.glob(f"cas/*/{app_blob}*") if path.is_file()]
        blob.chmod(0o644)
        blob.write_bytes(app_out.replace("bee", "BEE", 1).encode())  # same size, other bytes
        done, path = once_main(built, "run", "build", *option)
        assert path == "build", path
        assert "//libs/a:build: cache hit (restored)" in done.out, (option, done.out, done.err)
        assert (built.root / "libs/a/dist/a.out").read_text() == "one\ntwo\n"
        assert (built.root / "app/out/app.txt").read_text() == app_out
        assert built.ran() == ["app"]
