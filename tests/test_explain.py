"""`once why`, `once status` and `once run --dry-run --json` name exactly what changed."""

from __future__ import annotations

import json

from tests.helpers import Workspace, three_packages


def test_why_names_the_changed_input_through_dependencies(ws: Workspace) -> None:
    three_packages(ws)
    assert ws.once("run", "build").code == 0
    (ws.root / "libs/a/src/one.txt").write_text("changed\n")
    (ws.root / "libs/a/src/three.txt").write_text("new\n")
    (ws.root / "libs/a/src/two.txt").unlink()
    done = ws.once("why", "//app:build")
    assert done.code == 0, done.err
    # Its key holds what the library produces, which is not known until it runs again.
    assert "//app:build: not keyed yet: its key holds what //libs/a:build produces" in done.out
    assert "dependency changed: //libs/a:build" in done.out
    assert "input changed: libs/a/src/one.txt" in done.out
    assert "input added: libs/a/src/three.txt" in done.out
    assert "input removed: libs/a/src/two.txt" in done.out
    assert "libs/b" not in done.out


def test_why_names_env_command_and_tools_without_values(ws: Workspace) -> None:
    three_packages(ws)
    assert ws.once("run", "build", env={"A_MODE": "secret-1"}).code == 0
    done = ws.once("why", "//libs/a:build", env={"A_MODE": "secret-2"})
    assert "env A_MODE changed value" in done.out
    assert "secret" not in done.out
    done = ws.once("why", "//libs/a:build")
    assert "env A_MODE is no longer set" in done.out

    toml = (ws.root / "libs/a/once.toml").read_text()
    ws.write({"libs/a/once.toml": toml.replace("cat src", "cat -u src")})
    done = ws.once("why", "//libs/a:build", env={"A_MODE": "secret-1"})
    assert "command changed:" in done.out
    assert "cat -u src" in done.out


def test_why_unchanged_and_never_run(ws: Workspace) -> None:
    three_packages(ws)
    done = ws.once("why", "//libs/b:build")
    assert "never run in this workspace" in done.out
    assert ws.once("run", "build").code == 0
    done = ws.once("why", "//libs/b:build")
    assert "cached" in done.out
    assert "unchanged since its last run" in done.out


def test_status_one_line_per_rule(ws: Workspace) -> None:
    three_packages(ws)
    assert ws.once("run", "//libs/b:build").code == 0
    (ws.root / "libs/b/src/b.txt").write_text("changed\n")
    done = ws.once("status")
    assert done.code == 0, done.err
    lines = dict(line.split(": ", 1) for line in done.out.strip().splitlines())
    assert lines["//libs/a:build"] == "would run: never run here"
    assert lines["//libs/b:build"] == "would run: input changed: libs/b/src/b.txt"
    # Its key holds what the libraries produce, and a's output is not known before a runs.
    assert lines["//app:build"] == (
        "would run after //libs/a:build: its key holds what that produces"
    )
    assert ws.ran() == ["b"]  # status ran nothing


def test_dry_run_json_lists_every_input_hash_and_runs_nothing(ws: Workspace) -> None:
    three_packages(ws)
    done = ws.once("run", "build", "--dry-run", "--json")
    assert done.code == 0, done.err
    actions = {a["label"]: a for a in json.loads(done.out)["actions"]}
    assert set(actions) == {"//libs/a:build", "//libs/b:build", "//app:build"}
    inputs = {i["path"]: i["digest"] for i in actions["//libs/a:build"]["spec"]["inputs"]}
    assert set(inputs) == {"libs/a/src/one.txt", "libs/a/src/two.txt"}
    assert all(len(digest) == 64 for digest in inputs.values())
    assert actions["//app:build"]["deps"] == ["//libs/a:build", "//libs/b:build"]
    assert not actions["//app:build"]["cached"]
    # Keyed by what the libraries produce: not keyed before they ran.
    assert actions["//app:build"]["key"] is None
    assert actions["//app:build"]["waits_for"] == "//libs/a:build"
    assert ws.ran() == []
    assert ws.once("run", "build").code == 0
    again = json.loads(ws.once("run", "build", "--dry-run", "--json").out)
    assert all(a["cached"] for a in again["actions"])
    libs = {"//libs/a:build", "//libs/b:build"}
    assert {a["key"] for a in again["actions"] if a["label"] in libs} == {
        a["key"] for a in actions.values() if a["label"] in libs
    }
    app = next(a for a in again["actions"] if a["label"] == "//app:build")
    outputs = dict(app["spec"]["deps"])
    assert outputs["//libs/a:build"].startswith("outputs ")
    assert app["spec"]["dep_outputs"]["//libs/a:build"] == [
        ["libs/a/dist", "folder"],
        ["libs/a/dist/a.out", app["spec"]["dep_outputs"]["//libs/a:build"][1][1]],
    ]


def test_json_without_dry_run_is_a_usage_error(ws: Workspace) -> None:
    three_packages(ws)
    done = ws.once("run", "build", "--json")
    assert done.code == 2
    assert "--json needs --dry-run" in done.err


def test_output_logs_modes(ws: Workspace) -> None:
    three_packages(ws)
    first = ws.once("run", "build", "--output-logs=new-only")
    assert "//app:build | built app" in first.out
    hit = ws.once("run", "build", "--output-logs=new-only")
    assert "built app" not in hit.out
    full = ws.once("run", "build")
    assert "//app:build | built app" in full.out
    quiet = ws.once("run", "build", "--force", "--output-logs=none")
    assert " | " not in quiet.out

    ws.write({"libs/b/once.toml": '[rule.build]\ncmd = "echo noisy; echo bad >&2; exit 1"\n'})
    errors = ws.once("run", "build", "--output-logs=errors-only")
    assert errors.code == 1
    assert "//libs/b:build | noisy" in errors.out
    assert "//libs/b:build | bad" in errors.out
    assert "//libs/a:build |" not in errors.out


def test_why_compares_with_the_last_run_that_succeeded(ws: Workspace) -> None:
    """After a failed run `once why` said "unchanged since its last run" about a step whose
    source had changed since it last built."""
    ws.write(
        {
            "once.toml": '[rule.build]\ncmd = "grep -q good src/a.txt"\n',
            "src/a.txt": "good\n",
        }
    )
    assert ws.once("run", "build").code == 0
    (ws.root / "src/a.txt").write_text("bad\n")
    assert ws.once("run", "build").code == 1
    done = ws.once("why", "build")
    assert done.code == 0, done.err
    assert "input changed: src/a.txt" in done.out
    assert "unchanged" not in done.out
