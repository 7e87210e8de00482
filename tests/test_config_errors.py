"""Bad configuration: one clear line naming the file (and line), exit 2, nothing run."""

from __future__ import annotations

import pytest

from tests.helpers import Workspace

CASES = {
    "malformed_toml": (
        {"once.toml": '[rule.build]\ncmd = "true"\ninputs = ["a",\n'},
        ["once.toml:", "invalid TOML"],
    ),
    "malformed_toml_line": (
        {"once.toml": '[rule.build]\ncmd = "true"\n\noutputs = [dist]\n'},
        ["once.toml:4:", "invalid TOML"],
    ),
    "cycle": (
        {
            "once.toml": (
                '[rule.a]\ncmd = "true"\ndeps = ["b"]\n[rule.b]\ncmd = "true"\ndeps = ["c"]\n'
                '[rule.c]\ncmd = "true"\ndeps = ["a"]\n'
            )
        },
        ["once.toml", "dependency cycle: //:a -> //:b -> //:c -> //:a"],
    ),
    "unknown_dep_rule": (
        {"once.toml": '[rule.a]\ncmd = "true"\ndeps = ["biuld"]\n[rule.build]\ncmd = "true"\n'},
        ["once.toml:3:", "unknown rule '//:biuld'", "did you mean '//:build'"],
    ),
    "unknown_key": (
        {"once.toml": '[rule.a]\ncmd = "true"\noutput = ["x"]\n'},
        ["once.toml:3:", "unknown key 'output'", "did you mean 'outputs'"],
    ),
    "wrong_type": (
        {"once.toml": '[rule.a]\ncmd = "true"\ninputs = "src/**"\n'},
        ["once.toml:3:", "rule.a.inputs must be a list of strings, got a string"],
    ),
    "cache_not_bool": (
        {"once.toml": '[rule.a]\ncmd = "true"\ncache = "yes"\n'},
        ["once.toml:3:", "cache must be true or false"],
    ),
    "missing_cmd": (
        {"once.toml": "[rule.a]\ninputs = []\n"},
        ["once.toml:1:", "[rule.a] missing 'cmd'"],
    ),
    "empty_cmd": (
        {"once.toml": '[rule.a]\ncmd = "  "\n'},
        ["once.toml:2:", "'cmd' is empty"],
    ),
    "output_escapes_package": (
        {"once.toml": '[rule.a]\ncmd = "true"\noutputs = ["../x"]\n'},
        ["once.toml:3:", "must be a path inside the package"],
    ),
    "unknown_package_dep": (
        {
            "once.toml": '[workspace]\nmembers = ["p"]\n',
            "p/once.toml": '[package]\ndeps = ["//q"]\n[rule.a]\ncmd = "true"\n',
        },
        ["p/once.toml:2:", "unknown package '//q'"],
    ),
    "member_key_typo": (
        {"once.toml": '[workspace]\nmember = ["p"]\n'},
        ["once.toml:2:", "unknown key 'member'", "did you mean 'members'"],
    ),
    "bad_glob": (
        {"once.toml": '[rule.a]\ncmd = "true"\ninputs = ["src/[a"]\n'},
        ["once.toml", "//:a", "invalid glob"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_is_one_line_exit_2(ws: Workspace, name: str) -> None:
    files, expected = CASES[name]
    ws.write(files)
    done = ws.once("run", "a")
    assert done.code == 2, (done.out, done.err)
    assert "Traceback" not in done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert ws.ran() == []
    assert not (ws.root / ".once").exists()


def test_no_once_toml(ws: Workspace) -> None:
    done = ws.once("run", "build")
    assert done.code == 2
    assert "no once.toml here or in any parent folder" in done.err


def test_unknown_target_suggests(ws: Workspace) -> None:
    ws.write({"once.toml": '[rule.build]\ncmd = "true"\n'})
    done = ws.once("run", "biuld")
    assert done.code == 2
    assert "no rule named 'biuld' in the workspace; did you mean 'build'?" in done.err


def test_missing_target_is_usage_error(ws: Workspace) -> None:
    ws.write({"once.toml": '[rule.build]\ncmd = "true"\n'})
    done = ws.once("run")
    assert done.code == 2
    assert "Traceback" not in done.err
