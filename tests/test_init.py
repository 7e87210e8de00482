"""`once init`: a starter once.toml guessed from the folder, and the state folder ignored."""

from __future__ import annotations

import json

from tests.helpers import Workspace


def rules(ws: Workspace) -> dict[str, str]:
    done = ws.once("graph", "--format", "json")
    assert done.code == 0, done.err
    return {a["rule"]: a["cmd"] for a in json.loads(done.out)["actions"]}


def test_guesses_from_pyproject_package_json_and_makefile(ws: Workspace) -> None:
    ws.write(
        {
            "pyproject.toml": (
                '[build-system]\nrequires = ["hatchling"]\n\n'
                "[tool.pytest.ini_options]\naddopts = '-q'\n\n[tool.ruff]\nline-length = 100\n"
            ),
            "package.json": json.dumps(
                {
                    "scripts": {
                        "prebuild": "echo before",
                        "build": "tsc",
                        "build:prod": "tsc -p prod",
                        "test": "jest",
                    }
                }
            ),
            "pnpm-lock.yaml": "",
            "dist/keep": "",
            "Makefile": (
                ".PHONY: docs clean\nVERSION := 1\n%.o: %.c\n\tcc $<\n"
                "docs: README.md\n\tpandoc README.md\nclean:\n\trm -rf build\n"
            ),
        }
    )
    done = ws.once("init")
    assert done.code == 0, done.err
    assert "wrote once.toml with 5 rules" in done.out
    assert "added .once/ to .gitignore" in done.out
    assert rules(ws) == {
        "test": "python -m pytest",  # pyproject wins the name over package.json
        "lint": "ruff check . && ruff format --check .",
        "build": "python -m build",
        "build-prod": "pnpm run build:prod",
        "docs": "make docs",  # not clean, nor .PHONY, VERSION := or a pattern rule
    }  # prebuild is npm's hook around build, not a step of its own
    text = (ws.root / "once.toml").read_text()
    assert 'outputs = ["dist/"]' in text
    assert (ws.root / ".gitignore").read_text().splitlines()[-1] == ".once/"


def test_package_json_build_gets_its_output_folder(ws: Workspace) -> None:
    ws.write({"package.json": json.dumps({"scripts": {"build": "vite build"}}), "dist/x": ""})
    assert ws.once("init").code == 0
    assert rules(ws) == {"build": "npm run build"}
    assert 'outputs = ["dist/"]' in (ws.root / "once.toml").read_text()


def test_refuses_to_overwrite(ws: Workspace) -> None:
    ws.write({"once.toml": "# mine\n"})
    done = ws.once("init")
    assert done.code == 2
    assert done.err.count("\n") == 1
    assert "once.toml already exists" in done.err
    assert (ws.root / "once.toml").read_text() == "# mine\n"


def test_empty_folder_gets_a_valid_commented_example(ws: Workspace) -> None:
    ws.write({".gitignore": "node_modules/\n.once/\n"})
    done = ws.once("init")
    assert done.code == 0, done.err
    assert "no rules" in done.out
    assert "gitignore" not in done.out  # it already ignored .once/
    assert (ws.root / ".gitignore").read_text() == "node_modules/\n.once/\n"
    assert rules(ws) == {}
    assert "# [rule.build]" in (ws.root / "once.toml").read_text()


def test_written_rules_run(ws: Workspace) -> None:
    ws.write({"Makefile": "hello:\n\techo hi > hello.txt\n"})
    assert ws.once("init").code == 0
    done = ws.once("run", "hello")
    assert done.code == 0, done.err
    assert (ws.root / "hello.txt").read_text() == "hi\n"
