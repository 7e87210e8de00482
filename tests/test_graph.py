"""`once graph`: the action graph as Graphviz dot and as JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.helpers import Workspace, three_packages

DOT = shutil.which("dot")


def test_json_lists_actions_in_dependency_order(ws: Workspace) -> None:
    three_packages(ws)
    done = ws.once("graph", "//app:build", "--format", "json")
    assert done.code == 0, done.err
    actions = json.loads(done.out)["actions"]
    labels = [action["label"] for action in actions]
    assert labels[-1] == "//app:build"
    assert sorted(labels) == ["//app:build", "//libs/a:build", "//libs/b:build"]
    app = actions[-1]
    assert app["deps"] == ["//libs/a:build", "//libs/b:build"]
    assert app["outputs"] == ["out/app.txt"]
    assert app["package"] == "//app"
    assert app["inputs"] is None  # every non-ignored file of the package
    assert actions[0]["cache"] is True
    # Nothing was hashed or run to draw it.
    assert not (ws.root / ".once").exists()


def test_targets_narrow_the_graph(ws: Workspace) -> None:
    three_packages(ws)
    done = ws.once("graph", "//libs/b:build", "--format", "json")
    assert [a["label"] for a in json.loads(done.out)["actions"]] == ["//libs/b:build"]


def test_dot_has_every_node_and_edge(ws: Workspace) -> None:
    three_packages(ws)
    ws.write({"libs/a/once.toml": '[rule.build]\ncmd = "say \\"hi\\""\ncache = false\n'})
    done = ws.once("graph")  # dot is the default format
    assert done.code == 0, done.err
    assert done.out.startswith("digraph once {")
    assert '"//app:build" -> "//libs/a:build";' in done.out
    assert '"//app:build" -> "//libs/b:build";' in done.out
    assert 'label="//libs/a"' in done.out
    assert '"//libs/a:build" [label="build", style="rounded,dashed"];' in done.out  # cache = false


@pytest.mark.skipif(
    DOT is None and os.environ.get("CI") != "true",
    reason="Graphviz not installed (.ci/run installs it; in CI this test must run)",
)
def test_dot_renders_with_graphviz(ws: Workspace) -> None:
    three_packages(ws)
    done = ws.once("graph", "build")
    svg = subprocess.run(
        [DOT or "dot", "-Tsvg"], input=done.out, capture_output=True, text=True, check=True
    )
    assert "<svg" in svg.stdout
    assert "//libs/b" in svg.stdout


def test_unknown_target_and_format_are_one_line_errors(ws: Workspace) -> None:
    three_packages(ws)
    for args in (["graph", "nope"], ["graph", "--format", "png"]):
        done = ws.once(*args)
        assert done.code == 2, args
        assert done.err.count("\n") == 1, done.err
        assert done.err.startswith("once: error: ")
