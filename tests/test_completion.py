"""Shell completion through click's protocol, and the scripts `once completion` prints."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ONCE, Workspace, three_packages


def complete(ws: Workspace, words: str, cword: int) -> str:
    env = {
        **os.environ,
        "_ONCE_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    done = subprocess.run([ONCE], cwd=ws.root, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bash_protocol_completes_commands(ws: Workspace) -> None:
    assert complete(ws, "once r", 1).split() == ["plain,run"]
    assert "plain,cache" in complete(ws, "once c", 1).split()


def test_bash_protocol_completes_rule_names_and_labels(ws: Workspace) -> None:
    three_packages(ws)
    assert complete(ws, "once run bu", 2).split() == ["plain,build"]
    labels = complete(ws, "once why //libs/", 2).split()
    assert labels == ["plain,//libs/a:build", "plain,//libs/b:build"]


def test_bash_script_completes_in_bash(ws: Workspace) -> None:
    """The real thing: source the script in bash and call the function bash would."""
    script = subprocess.run(
        [ONCE, "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    assert "_ONCE_COMPLETE=bash_complete" in script
    probe = (
        'eval "$1"\nCOMP_WORDS=(once r)\nCOMP_CWORD=1\n_once_completion once\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{Path(ONCE).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-c", probe, "probe", script],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["run"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts(shell: str) -> None:
    done = subprocess.run([ONCE, "completion", shell], capture_output=True, text=True, check=True)
    assert "_ONCE_COMPLETE" in done.stdout
    if shutil.which(shell):  # a syntax check where the shell is installed
        subprocess.run([shell, "-n"], input=done.stdout, text=True, check=True)


def test_unknown_shell_is_one_line(ws: Workspace) -> None:
    done = ws.once("completion", "tcsh")
    assert done.code == 2
    assert done.err.count("\n") == 1
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in done.err
