"""Inputs outside the package: `//`-rooted inputs and `[workspace] inputs` name workspace files
(a root lockfile, a shared tsconfig) whose change reaches every rule reading them, in the key and
in `--affected`; an input that leaves the workspace is refused, since it could match nothing and
a change there would be a silent hit."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import Workspace


def monorepo(ws: Workspace, *, workspace_inputs: str = "", app_inputs: str = "") -> None:
    ws.write(
        {
            "once.toml": f'[workspace]\nmembers = ["libs/a", "apps/web"]\n{workspace_inputs}',
            "pnpm-lock.yaml": "lockfileVersion: 9\n",
            "tsconfig.base.json": '{"strict": true}\n',
            "README.md": "hello\n",
            "libs/a/once.toml": f'[rule.build]\ncmd = "{ws.marker("a")}"\n',
            "libs/a/src/a.ts": "a\n",
            "apps/web/once.toml": f'[rule.build]\ncmd = "{ws.marker("web")}"\n{app_inputs}',
            "apps/web/src/web.ts": "web\n",
        }
    )


def test_a_rooted_input_reruns_the_rules_reading_it(ws: Workspace) -> None:
    monorepo(ws, app_inputs='inputs = ["src/**", "//tsconfig.base.json"]\n')
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "web"]
    (ws.root / "README.md").write_text("changed\n")
    assert ws.once("run", "build").code == 0
    assert ws.ran() == []
    (ws.root / "tsconfig.base.json").write_text('{"strict": false}\n')
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert ws.ran() == ["web"]


def test_workspace_inputs_enter_every_key(ws: Workspace) -> None:
    monorepo(ws, workspace_inputs='inputs = ["pnpm-lock.yaml"]\n')
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "web"]
    assert ws.once("run", "build").code == 0
    assert ws.ran() == []
    (ws.root / "pnpm-lock.yaml").write_text("lockfileVersion: 9\n# a bump\n")
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["a", "web"]


def test_affected_follows_workspace_inputs(ws: Workspace) -> None:
    monorepo(ws, workspace_inputs='inputs = ["//pnpm-lock.yaml"]\n')
    git = ["git", "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=ws.root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=ws.root, check=True)
    subprocess.run([*git, "commit", "-qm", "start"], cwd=ws.root, check=True)
    assert ws.once("run", "build").code == 0
    ws.ran()
    (ws.root / "pnpm-lock.yaml").write_text("lockfileVersion: 9\n# a bump\n")
    done = ws.once("run", "build", "--affected", "--since", "HEAD")
    assert done.code == 0, done.err
    assert "2 affected rules" in done.out
    assert sorted(ws.ran()) == ["a", "web"]


@pytest.mark.parametrize(
    "pattern", ["../tsconfig.json", "/etc/x", "..", "src/../../x", "//../outside", "///etc/x"]
)
def test_an_input_leaving_the_workspace_is_one_line(ws: Workspace, pattern: str) -> None:
    monorepo(ws, app_inputs=f'inputs = ["{pattern}"]\n')
    done = ws.once("run", "build")
    assert done.code == 2, done.out
    [line] = done.err.strip().splitlines()
    assert line.startswith("once: error: ")
    assert f"apps/web/once.toml:3: rule.build.inputs: '{pattern}'" in line
    assert not (ws.root / ".once").exists()


def test_a_workspace_input_leaving_the_workspace_is_one_line(ws: Workspace) -> None:
    monorepo(ws, workspace_inputs='inputs = ["../x"]\n')
    done = ws.once("run", "build")
    assert done.code == 2
    [line] = done.err.strip().splitlines()
    assert "once.toml:3: workspace.inputs: '../x' leaves its folder" in line
