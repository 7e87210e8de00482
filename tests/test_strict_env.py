"""Strict environment by default: a command sees its declared `env` and `pass_env` variables and
a base set (PATH, HOME, the locale...), nothing else, so an undeclared variable can never change
what is stored under a key; `[workspace] env_mode = "loose"` or `--env-mode loose` opts out, and
the mode enters the key."""

from __future__ import annotations

import json

from tests.helpers import Workspace

BUILD = (
    '[rule.build]\ncmd = "echo target=${BROWSERSLIST:-default} > out.txt"\noutputs = ["out.txt"]\n'
)


def test_an_undeclared_variable_never_reaches_a_stored_result(ws: Workspace) -> None:
    ws.write({"once.toml": BUILD})
    done = ws.once("run", "build", "--force", env={"BROWSERSLIST": "ie 11"})
    assert done.code == 0, done.err
    assert (ws.root / "out.txt").read_text() == "target=default\n"
    (ws.root / "out.txt").unlink()
    assert ws.once("run", "build").code == 0
    assert (ws.root / "out.txt").read_text() == "target=default\n"


def test_declared_and_passed_variables_reach_the_command(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": (
                '[rule.build]\ncmd = "echo $MODE $TOKEN $HOME > out.txt"\n'
                'outputs = ["out.txt"]\nenv = ["MODE"]\npass_env = ["TOK*"]\n'
            )
        }
    )
    done = ws.once("run", "build", env={"MODE": "prod", "TOKEN": "t", "HOME": "/home/u"})
    assert done.code == 0, done.err
    assert (ws.root / "out.txt").read_text() == "prod t /home/u\n"


def test_loose_mode_passes_everything_and_is_another_key(ws: Workspace) -> None:
    ws.write({"once.toml": BUILD})
    assert ws.once("run", "build").code == 0
    done = ws.once("run", "build", "--env-mode", "loose", env={"BROWSERSLIST": "ie 11"})
    assert done.code == 0, done.err
    assert "cache hit" not in done.out  # the mode is in the key: the strict build is not reused
    assert (ws.root / "out.txt").read_text() == "target=ie 11\n"
    why = ws.once("why", "build")
    assert "environment mode changed: 'loose' -> 'strict'" in why.out
    ws.write({"once.toml": f'[workspace]\nenv_mode = "loose"\n{BUILD}'})
    done = ws.once("run", "build", env={"BROWSERSLIST": "ie 11"})
    assert "cache hit" in done.out


def test_a_failure_names_the_variables_withheld(ws: Workspace) -> None:
    ws.write({"once.toml": '[rule.build]\ncmd = "test -n \\"$API_URL\\""\n'})
    done = ws.once("run", "build", env={"API_URL": "https://example.com"})
    assert done.code == 1
    last = [line for line in done.out.splitlines() if line.startswith("//:build")][-1]
    assert "ran in a strict environment without" in last
    assert "API_URL" in last
    assert "ONCE_CACHE_DIR" not in last


def test_a_bad_mode_is_one_line(ws: Workspace) -> None:
    ws.write({"once.toml": f'[workspace]\nenv_mode = "lax"\n{BUILD}'})
    done = ws.once("run", "build")
    assert done.code == 2
    [line] = done.err.strip().splitlines()
    assert 'workspace.env_mode must be "strict" or "loose", not \'lax\'' in line
    ws.write({"once.toml": BUILD})
    done = ws.once("run", "build", env={"ONCE_ENV_MODE": "lax"})
    assert done.code == 2
    [line] = done.err.strip().splitlines()
    assert "ONCE_ENV_MODE: 'lax' is not an environment mode" in line


def test_why_and_the_dry_run_name_the_variables_withheld(ws: Workspace) -> None:
    """What a command in strict mode will not see is shown before it runs, by name only."""
    ws.write({"once.toml": '[rule.build]\ncmd = "true"\nenv = ["MODE"]\n'})
    env = {"MODE": "fast", "BROWSERSLIST": "ie 11"}
    dry = ws.once("run", "build", "--dry-run", "--json", env=env)
    assert dry.code == 0, dry.err
    (action,) = json.loads(dry.out)["actions"]
    assert "BROWSERSLIST" in action["withheld"]
    assert "MODE" not in action["withheld"]
    assert "ie 11" not in dry.out
    why = ws.once("why", "build", env=env)
    assert why.code == 0, why.err
    assert "runs without (strict environment): " in why.out
    assert "BROWSERSLIST" in why.out
    loose = ws.once("run", "build", "--dry-run", "--json", "--env-mode", "loose", env=env)
    assert json.loads(loose.out)["actions"][0]["withheld"] == []
