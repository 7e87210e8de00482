"""A no-op run with a remote cache configured (the root once.toml's `[remote]`, or
`$ONCE_REMOTE`) never asks the remote, nor imports its code: every step is a local hit, so
there is nothing to fetch or upload. A local miss still fetches from the remote; a malformed
remote variable is still a one-line error."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Workspace, once_traced, three_packages
from tests.remote_cases import remote_warnings
from tests.remote_servers import Server, nginx
from tests.test_imports import NOT_IN_A_NO_OP
from tests.test_pipeline import timeless


def fast_path_answered(imported: set[str]) -> bool:
    return "once.run.pipeline" in imported and not imported.intersection(NOT_IN_A_NO_OP)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with nginx(tmp_path / "nginx") as running:
        yield running


def with_remote_in_toml(ws: Workspace, url: str) -> None:
    three_packages(ws)
    ws.write(
        {"once.toml": f'[workspace]\nmembers = ["libs/*", "app"]\n\n[remote]\nurl = "{url}"\n'}
    )


@pytest.mark.parametrize("where", ["once.toml", "ONCE_REMOTE"])
def test_a_no_op_with_a_remote_is_answered_by_the_fast_path(
    ws: Workspace, server: Server, where: str
) -> None:
    if where == "once.toml":
        with_remote_in_toml(ws, server.url)
        env: dict[str, str] = {}
    else:
        three_packages(ws)
        env = {"ONCE_REMOTE": server.url}
    first = ws.once("run", "build", env=env)
    assert first.code == 0, first.err
    assert "uploaded 3 entries" in first.err
    assert sorted(ws.ran()) == ["a", "app", "b"]
    assert ws.once("run", "build", env=env).code == 0  # keeps the plan
    full, imported = once_traced(ws, "run", "build", "--link", "copy", env=env)  # an option
    assert fast_path_answered(imported)
    # Nothing is asked of the server on a no-op: with it gone, nothing changes.
    server.stop()
    done, imported = once_traced(ws, "run", "build", env=env)
    assert (done.code, full.code) == (0, 0), done.err + full.err
    assert fast_path_answered(imported)
    assert timeless(done.out) == timeless(full.out)
    assert done.out.splitlines()[-1].startswith("once: all 3 steps cached (0 restored)")
    assert done.err == full.err == ""
    assert ws.ran() == []


def test_a_local_miss_with_a_kept_plan_still_fetches_from_the_remote(
    ws: Workspace, server: Server
) -> None:
    with_remote_in_toml(ws, server.url)
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "app", "b"]
    assert ws.once("run", "build").code == 0  # keeps the plan
    done, imported = once_traced(ws, "run", "build")
    assert fast_path_answered(imported)
    shutil.rmtree(ws.cache)  # every step now a local miss, and a hit on the server
    done, imported = once_traced(ws, "run", "build")
    assert done.code == 0, done.err
    assert "once.run.remote" in imported
    assert "restored 3 entries" in done.err
    assert remote_warnings(done) == []
    assert ws.ran() == []
    assert done.out.splitlines()[-1].startswith("once: all 3 steps cached")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"ONCE_REMOTE": "gopher://x"}, "ONCE_REMOTE: 'gopher://x' is not a remote cache URL"),
        ({"ONCE_REMOTE_READ_ONLY": "maybe"}, "ONCE_REMOTE_READ_ONLY: 'maybe' is not 1/true/yes"),
        ({"ONCE_REMOTE_TIMEOUT": "soon"}, "ONCE_REMOTE_TIMEOUT: 'soon' must be a positive"),
    ],
)
def test_a_malformed_remote_variable_on_a_no_op_is_the_full_runs_error(
    ws: Workspace, env: dict[str, str], says: str
) -> None:
    with_remote_in_toml(ws, "http://127.0.0.1:9/cache")  # nothing listens: never asked
    assert ws.once("run", "build").code == 0
    assert ws.once("run", "build").code == 0  # keeps the plan
    done, imported = once_traced(ws, "run", "build")
    assert done.code == 0, done.err
    assert fast_path_answered(imported)
    done, imported = once_traced(ws, "run", "build", env=env)
    assert done.code == 2
    assert done.err.startswith(f"once: error: {says}"), done.err
    assert done.err.count("\n") == 1, done.err
    assert done.out == ""
