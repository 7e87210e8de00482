"""Bad configuration: one clear line naming the file and line, exit 2, nothing run or written.

Each case is a workspace (file name -> text, or bytes for text that is not UTF-8), the target to
run, the `file:line` the error must point at, and fragments the one line must hold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import Workspace

TRUE = 'cmd = "true"\n'


@dataclass(frozen=True)
class Case:
    files: dict[str, str | bytes]
    at: str  # "once.toml:3": the file, relative to the workspace, and the line
    says: list[str] = field(default_factory=list)
    target: str = "a"


def two_packages(p: str, q: str = f"[rule.build]\n{TRUE}") -> dict[str, str | bytes]:
    """A workspace of packages `p` and `libs/q` with the given once.toml texts."""
    return {
        "once.toml": '[workspace]\nmembers = ["p", "libs/*"]\n',
        "p/once.toml": p,
        "libs/q/once.toml": q,
    }


CASES: dict[str, Case] = {
    # --- TOML itself ---
    "malformed_toml": Case(
        {"once.toml": '[rule.a]\ncmd = "true"\ninputs = ["a",\n'},
        "once.toml:3",
        ["invalid TOML: Invalid value"],
    ),
    "malformed_toml_line": Case(
        {"once.toml": '[rule.a]\ncmd = "true"\n\noutputs = [dist]\n'},
        "once.toml:4",
        ["invalid TOML"],
    ),
    "duplicate_rule_table": Case(
        {"once.toml": f"[rule.a]\n{TRUE}[rule.a]\ncmd = 'false'\n"},
        "once.toml:3",
        ["invalid TOML: Cannot declare ('rule', 'a') twice"],
    ),
    "not_utf8": Case(
        {"once.toml": b'[rule.a]\ncmd = "caf\xe9"\n'},
        "once.toml:2",
        ["not UTF-8 text: byte 0xe9"],
    ),
    # --- hostile values: each once crashed with a traceback ---
    "deep_arrays": Case(
        {"once.toml": f"[rule.a]\n{TRUE}x = {'[' * 5000}{']' * 5000}\n"},
        "once.toml:3",
        ["invalid TOML: arrays or inline tables nested too deeply"],
    ),
    "deep_inline_tables": Case(
        {"once.toml": f"[rule.a]\n{TRUE}x = {'{a = ' * 5000}1{'}' * 5000}\n"},
        "once.toml:3",
        ["invalid TOML: arrays or inline tables nested too deeply"],
    ),
    "deep_arrays_across_lines": Case(
        {"once.toml": f"[rule.a]\n{TRUE}x = [\n{'[' * 3000}\n{'[' * 3000}{']' * 6001}\n"},
        "once.toml:5",
        ["invalid TOML: arrays or inline tables nested too deeply"],
    ),
    "huge_integer": Case(
        {"once.toml": f"[rule.a]\n{TRUE}cache = {'7' * 5000}\n"},
        "once.toml:3",
        ["invalid TOML: an integer of more than 4300 digits"],
    ),
    "huge_hex_timeout": Case(
        {"once.toml": f'[remote]\nurl = "http://h/c"\ntimeout = 0x{"f" * 5000}\n[rule.a]\n{TRUE}'},
        "once.toml:3",
        ["remote.timeout must be a positive number of seconds up to 86400, got a 20000-bit"],
    ),
    "nul_in_outputs": Case(
        {"once.toml": f'[rule.a]\n{TRUE}outputs = ["x\\u0000y"]\n'},
        "once.toml:3",
        ["rule.a.outputs: 'x\\x00y' holds a NUL character"],
    ),
    "nul_in_cmd": Case(
        {"once.toml": '[rule.a]\ncmd = "echo \\u0000"\n'},
        "once.toml:2",
        ["[rule.a] 'cmd' holds a NUL character"],
    ),
    "nul_in_inputs": Case(
        {"once.toml": f'[rule.a]\n{TRUE}inputs = [\n  "src",\n  "x\\u0000y",\n]\n'},
        "once.toml:5",
        ["rule.a.inputs: 'x\\x00y' holds a NUL character"],
    ),
    "nul_in_tools": Case(
        {"once.toml": f'[rule.a]\n{TRUE}tools = ["cc\\u0000"]\n'},
        "once.toml:3",
        ["rule.a.tools: 'cc\\x00' holds a NUL character"],
    ),
    "nul_in_env": Case(
        {"once.toml": f'[rule.a]\n{TRUE}env = ["A\\u0000"]\n'},
        "once.toml:3",
        ["rule.a.env: 'A\\x00' holds a NUL character"],
    ),
    "nul_in_deps": Case(
        {"once.toml": f'[rule.a]\n{TRUE}deps = ["b\\u0000"]\n'},
        "once.toml:3",
        ["rule.a.deps: 'b\\x00' holds a NUL character"],
    ),
    "nul_in_package_deps": Case(
        {"once.toml": f'[package]\ndeps = ["//x\\u0000y"]\n[rule.a]\n{TRUE}'},
        "once.toml:2",
        ["package.deps: '//x\\x00y' holds a NUL character"],
    ),
    "nul_in_members": Case(
        {"once.toml": '[workspace]\nmembers = ["libs/\\u0000*"]\n'},
        "once.toml:2",
        ["workspace.members: 'libs/\\x00*' holds a NUL character"],
    ),
    "nul_in_remote_url": Case(
        {"once.toml": f'[remote]\nurl = "http://h\\u0000/c"\n[rule.a]\n{TRUE}'},
        "once.toml:2",
        ["remote.url: 'http://h\\x00/c' holds a NUL character"],
    ),
    "newline_in_rule_name": Case(
        {"once.toml": f'[rule."a\\n"]\n{TRUE}'},
        "once.toml",  # the header spells the name with an escape that locate() cannot read
        ["rule name 'a\\n' may hold only letters"],
    ),
    "newline_in_env_name": Case(
        {"once.toml": f'[rule.a]\n{TRUE}env = ["A\\n"]\n'},
        "once.toml:3",
        ["rule.a.env: 'A\\n' is not a variable name"],
    ),
    "newline_in_a_label_stays_one_line": Case(
        {"once.toml": f'[rule.a]\n{TRUE}deps = ["//x\\ny"]\n'},
        "once.toml:3",
        ["rule.a.deps: '//x\\ny' names a package, not a rule (did you mean '//x\\ny:a'?)"],
    ),
    "line_separator_in_a_comment_moves_no_line": Case(
        {"once.toml": f"# a\u2028b\n[rule.a]\n{TRUE}output = []\n"},
        "once.toml:4",
        ["unknown key 'output' in [rule.a]"],
    ),
    # --- shapes and types ---
    "unknown_key": Case(
        {"once.toml": f'[rule.a]\n{TRUE}output = ["x"]\n'},
        "once.toml:3",
        ["unknown key 'output' in [rule.a]", "did you mean 'outputs'"],
    ),
    "unknown_top_level_table": Case(
        {"once.toml": f"# rules of the root\n[rules.a]\n{TRUE}"},
        "once.toml:2",
        ["unknown key 'rules' at top level (did you mean 'rule'?)"],
    ),
    "unknown_package_key": Case(
        {"once.toml": f"[package]\ndep = []\n[rule.a]\n{TRUE}"},
        "once.toml:2",
        ["unknown key 'dep' in [package]", "did you mean 'deps'"],
    ),
    "member_key_typo": Case(
        {"once.toml": '[workspace]\nmember = ["p"]\n'},
        "once.toml:2",
        ["unknown key 'member' in [workspace]", "did you mean 'members'"],
    ),
    "workspace_not_a_table": Case(
        {"once.toml": f"workspace = 3\n[rule.a]\n{TRUE}"},
        "once.toml:1",
        ["'workspace' must be a [workspace] table, got an integer"],
    ),
    "rule_not_a_table": Case(
        {"once.toml": "rule = 3\n"},
        "once.toml:1",
        ["rule must be a table of [rule.NAME] tables, got an integer"],
    ),
    "rule_body_not_a_table": Case(
        {"once.toml": '[rule]\na = "make"\n'},
        "once.toml:2",
        ["rule.a must be a table, got a string"],
    ),
    "rule_array_of_tables": Case(
        {"once.toml": f"[[rule.a]]\n{TRUE}"},
        "once.toml:1",
        ["[[rule.a]] is an array of tables", "write [rule.a]"],
    ),
    "rule_name_with_colon": Case(
        {"once.toml": f'[rule."a:b"]\n{TRUE}'},
        "once.toml:1",
        ["rule name 'a:b' may hold only letters, digits"],
    ),
    "wrong_type": Case(
        {"once.toml": f'[rule.a]\n{TRUE}inputs = "src/**"\n'},
        "once.toml:3",
        ["rule.a.inputs must be a list of strings, got a string"],
    ),
    "cache_not_bool": Case(
        {"once.toml": f'[rule.a]\n{TRUE}cache = "yes"\n'},
        "once.toml:3",
        ["rule.a.cache must be true or false, got a string"],
    ),
    "missing_cmd": Case(
        {"once.toml": "[rule.a]\ninputs = []\n"},
        "once.toml:1",
        ["[rule.a] missing 'cmd'"],
    ),
    "empty_cmd": Case(
        {"once.toml": '[rule.a]\ncmd = "  "\n'},
        "once.toml:2",
        ["[rule.a] 'cmd' is empty"],
    ),
    "cmd_as_list": Case(
        {"once.toml": '[rule.a]\ncmd = ["make", "all"]\n'},
        "once.toml:2",
        ["'cmd' must be one shell command string, got a list", "did you mean cmd = 'make all'"],
    ),
    "duplicate_list_entry": Case(
        {"once.toml": f'[rule.a]\n{TRUE}inputs = [\n  "src/**",\n  "src/**",\n]\n'},
        "once.toml:4",
        ["rule.a.inputs lists 'src/**' twice"],
    ),
    "tools_empty_entry": Case(
        {"once.toml": f'[rule.a]\n{TRUE}tools = ["python3 --version", "  "]\n'},
        "once.toml:3",
        ["rule.a.tools has an empty entry '  '"],
    ),
    "bad_glob": Case(
        {"once.toml": f'[rule.a]\n{TRUE}inputs = ["src/[a"]\n'},
        "once.toml:3",
        ["rule.a.inputs: invalid glob 'src/[a': unclosed character class"],
    ),
    # --- outputs ---
    "output_escapes_package": Case(
        {"once.toml": f'[rule.a]\n{TRUE}outputs = ["../x"]\n'},
        "once.toml:3",
        ["rule.a.outputs: '../x' must be a path inside the package"],
    ),
    "output_is_the_package": Case(
        {"once.toml": f'[rule.a]\n{TRUE}outputs = ["."]\n'},
        "once.toml:3",
        ["rule.a.outputs: '.' is the package folder itself"],
    ),
    "output_twice_spelled_differently": Case(
        {"once.toml": f'[rule.a]\n{TRUE}outputs = ["dist/", "./dist"]\n'},
        "once.toml:3",
        ["rule.a.outputs: './dist' names the same path as 'dist/'"],
    ),
    "output_covers_once_toml": Case(
        {"once.toml": f'[rule.a]\n{TRUE}outputs = ["*.toml"]\n'},
        "once.toml:3",
        ["rule.a.outputs: '*.toml' covers this package's once.toml"],
    ),
    "output_covers_an_input": Case(
        {"once.toml": f'[rule.a]\n{TRUE}inputs = ["src/gen/x.txt"]\noutputs = ["src/gen/"]\n'},
        "once.toml:4",
        ["rule.a.outputs: 'src/gen/' covers input 'src/gen/x.txt'"],
    ),
    "outputs_of_two_rules_overlap": Case(
        {
            "once.toml": (
                f'[rule.a]\n{TRUE}outputs = ["dist/"]\n[rule.b]\n{TRUE}outputs = ["dist/docs"]\n'
            )
        },
        "once.toml:6",
        ["rule.b.outputs: 'dist/docs' overlaps 'dist/', an output of rule 'a'"],
    ),
    # Both wrote `dist/`, restoring either deleting the other's files: each glob matched the
    # other's spelling `dist`, which a folder pattern does not cover.
    "one_folder_output_of_two_rules": Case(
        {
            "once.toml": (
                f'[rule.a]\n{TRUE}outputs = ["dist/"]\n[rule.b]\n{TRUE}outputs = ["./dist/"]\n'
            )
        },
        "once.toml:6",
        ["rule.b.outputs: './dist/' overlaps 'dist/', an output of rule 'a'"],
    ),
    "output_holding_an_earlier_rules_output": Case(
        {
            "once.toml": (
                f'[rule.a]\n{TRUE}outputs = ["x", "dist/docs/a.html"]\n'
                f'[rule.b]\n{TRUE}outputs = ["y", "dist"]\n'
            )
        },
        "once.toml:6",
        ["rule.b.outputs: 'dist' overlaps 'dist/docs/a.html', an output of rule 'a'"],
    ),
    "output_matched_by_an_earlier_rules_glob": Case(
        {"once.toml": f'[rule.a]\n{TRUE}outputs = ["*.js"]\n[rule.b]\n{TRUE}outputs = ["b.js"]\n'},
        "once.toml:6",
        ["rule.b.outputs: 'b.js' overlaps '*.js', an output of rule 'a'"],
    ),
    "output_overlapping_two_rules_names_the_first": Case(
        {
            "once.toml": (
                f'[rule.a]\n{TRUE}outputs = ["out/b/"]\n'
                f'[rule.b]\n{TRUE}outputs = ["gen/", "out/a"]\n'
                f'[rule.c]\n{TRUE}outputs = ["gen/c.txt", "out/"]\n'
            )
        },
        "once.toml:9",
        ["rule.c.outputs: 'out/' overlaps 'out/b/', an output of rule 'a'"],
    ),
    # --- env ---
    "env_not_a_name": Case(
        {"once.toml": f'[rule.a]\n{TRUE}env = ["API KEY"]\n'},
        "once.toml:3",
        ["rule.a.env: 'API KEY' is not a variable name or pattern"],
    ),
    "env_empty_entry": Case(
        {"once.toml": f'[rule.a]\n{TRUE}env = [""]\n'},
        "once.toml:3",
        ["rule.a.env has an empty entry ''"],
    ),
    "pass_env_also_hashed": Case(
        {"once.toml": f'[rule.a]\n{TRUE}env = ["API_*"]\npass_env = ["HOME", "API_TOKEN"]\n'},
        "once.toml:4",
        ["rule.a.pass_env: 'API_TOKEN' is also covered by env 'API_*'"],
    ),
    # --- [workspace] members ---
    "member_matches_nothing": Case(
        {"once.toml": '[workspace]\nmembers = ["libz/*"]\n', "libs/q/once.toml": TRUE},
        "once.toml:2",
        ["workspace.members: 'libz/*' matches no folder (did you mean 'libs/*'?)"],
    ),
    "member_glob_without_once_toml": Case(
        {"once.toml": '[workspace]\nmembers = ["libs/*"]\n', "libs/q/README": "hi\n"},
        "once.toml:2",
        ["workspace.members: 'libs/*' matches 1 folder(s), but none has a once.toml"],
    ),
    "member_without_once_toml": Case(
        {"once.toml": '[workspace]\nmembers = ["p"]\n', "p/README": "hi\n"},
        "once.toml:2",
        ["workspace.members: 'p' has no once.toml"],
    ),
    "member_is_a_file": Case(
        {"once.toml": '[workspace]\nmembers = ["p"]\n', "p": "not a folder\n"},
        "once.toml:2",
        ["workspace.members: 'p' is a file, not a folder"],
    ),
    "member_is_the_root": Case(
        {"once.toml": f'[workspace]\nmembers = ["./"]\n[rule.a]\n{TRUE}'},
        "once.toml:2",
        ["workspace.members: './' is the workspace root itself"],
    ),
    "member_absolute": Case(
        {"once.toml": '[workspace]\nmembers = [\n  "p",\n  "/etc",\n]\n', "p/once.toml": TRUE},
        "once.toml:4",
        ["workspace.members: '/etc' is an absolute path"],
    ),
    "member_outside": Case(
        {"once.toml": '[workspace]\nmembers = ["../elsewhere"]\n'},
        "once.toml:2",
        ["workspace.members: '../elsewhere' leaves the workspace through '..'"],
    ),
    "nested_workspace": Case(
        two_packages("[workspace]\nmembers = []\n"),
        "p/once.toml:1",
        ["[workspace] belongs only in the workspace root's once.toml", "nested workspaces"],
    ),
    # --- [package] deps ---
    "unknown_package_dep": Case(
        two_packages(f'[package]\ndeps = ["//lib/q"]\n[rule.a]\n{TRUE}'),
        "p/once.toml:2",
        ["package.deps names unknown package '//lib/q' (did you mean '//libs/q'?)"],
    ),
    "package_dep_on_itself": Case(
        two_packages(f'[package]\ndeps = ["//p"]\n[rule.a]\n{TRUE}'),
        "p/once.toml:2",
        ["package.deps: package '//p' depends on itself"],
    ),
    "package_dep_is_a_rule_label": Case(
        two_packages(f'[package]\ndeps = ["//libs/q:build"]\n[rule.a]\n{TRUE}'),
        "p/once.toml:2",
        ["package.deps: '//libs/q:build' is a rule label", "did you mean '//libs/q'"],
    ),
    "package_cycle": Case(
        two_packages(
            f'[package]\ndeps = ["//libs/q"]\n[rule.a]\n{TRUE}',
            f'[package]\ndeps = ["//p"]\n[rule.build]\n{TRUE}',
        ),
        "libs/q/once.toml:2",
        ["package dependency cycle: //libs/q -> //p -> //libs/q"],
    ),
    # --- [rule] deps ---
    "unknown_dep_rule": Case(
        {"once.toml": f'[rule.a]\n{TRUE}deps = ["biuld"]\n[rule.build]\n{TRUE}'},
        "once.toml:3",
        ["rule.a.deps: 'biuld' names unknown rule '//:biuld' (did you mean '//:build'?)"],
    ),
    "rule_dep_on_itself": Case(
        {"once.toml": f'[rule.a]\n{TRUE}deps = ["//:a"]\n'},
        "once.toml:3",
        ["rule.a.deps: '//:a' is the rule itself; a rule cannot depend on itself"],
    ),
    "caret_rule_nowhere": Case(
        {"once.toml": f'[rule.a]\n{TRUE}deps = ["^build"]\n'},
        "once.toml:3",
        ["rule.a.deps: '^build' names rule 'build', which no package has"],
    ),
    "caret_rule_no_upstream_has": Case(
        two_packages(f'[package]\ndeps = ["//libs/q"]\n[rule.a]\n{TRUE}deps = ["^biuld"]\n'),
        "p/once.toml:5",
        ["rule.a.deps: '^biuld' names rule 'biuld', which no package has", "'^build'"],
    ),
    "label_with_two_colons": Case(
        two_packages(f'[rule.a]\n{TRUE}deps = [\n  "//libs/q:build",\n  "//libs/q:build:x",\n]\n'),
        "p/once.toml:5",
        ["rule.a.deps: '//libs/q:build:x' has more than one ':'"],
    ),
    "label_without_rule": Case(
        two_packages(f'[rule.a]\n{TRUE}deps = ["//libs/q"]\n'),
        "p/once.toml:3",
        ["rule.a.deps: '//libs/q' names a package, not a rule (did you mean '//libs/q:a'?)"],
    ),
    "label_without_slashes": Case(
        two_packages(f'[rule.a]\n{TRUE}deps = ["libs/q:build"]\n'),
        "p/once.toml:3",
        ["'libs/q:build' is not a label; labels start with '//' (did you mean '//libs/q:build'?)"],
    ),
    "label_unknown_package": Case(
        two_packages(f'[rule.a]\n{TRUE}deps = ["//lib/q:build"]\n'),
        "p/once.toml:3",
        ["rule.a.deps: '//lib/q:build' names unknown package", "(did you mean '//libs/q'?)"],
    ),
    "cycle": Case(
        {
            "once.toml": (
                f'[rule.a]\n{TRUE}deps = ["b"]\n[rule.b]\n{TRUE}deps = ["c"]\n'
                f'[rule.c]\n{TRUE}deps = ["a"]\n'
            )
        },
        "once.toml:3",
        ["dependency cycle: //:a -> //:b -> //:c -> //:a"],
    ),
    "cycle_across_packages_through_caret": Case(
        two_packages(
            f'[package]\ndeps = ["//libs/q"]\n[rule.build]\n{TRUE}deps = ["^build"]\n',
            f'[rule.build]\n{TRUE}deps = ["//p:build"]\n',
        ),
        "libs/q/once.toml:3",
        ["dependency cycle: //libs/q:build -> //p:build -> //libs/q:build"],
        target="build",
    ),
}


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def assert_one_line_error(ws: Workspace, target: str, at: str, says: list[str]) -> None:
    """Exit 2, one line `once: error: FILE:LINE: ...` holding `says`, nothing run or written."""
    done = ws.once("run", target)
    assert done.code == 2, (done.out, done.err)
    assert "Traceback" not in done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    assert lines[0].startswith(f"once: error: {ws.root.resolve() / at}: "), lines[0]
    for fragment in says:
        assert fragment in lines[0], lines[0]
    assert ws.ran() == []
    assert not (ws.root / ".once").exists()
    assert not ws.cache.exists() or not any(ws.cache.iterdir())


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_is_one_line_exit_2(ws: Workspace, name: str) -> None:
    case = CASES[name]
    write(ws.root, case.files)
    assert_one_line_error(ws, case.target, case.at, case.says)


def test_member_twice_through_a_symlink(ws: Workspace) -> None:
    write(ws.root, {"once.toml": '[workspace]\nmembers = ["libs/*", "alias"]\n'})
    write(ws.root, {"libs/q/once.toml": f"[rule.a]\n{TRUE}"})
    (ws.root / "alias").symlink_to(ws.root / "libs" / "q", target_is_directory=True)
    assert_one_line_error(
        ws, "a", "once.toml:2", ["workspace.members: 'libs/q' and 'alias' are the same folder"]
    )


def test_member_symlinked_outside_the_workspace(ws: Workspace, tmp_path: Path) -> None:
    write(ws.root, {"once.toml": '[workspace]\nmembers = ["vendor"]\n'})
    write(tmp_path / "elsewhere", {"once.toml": f"[rule.a]\n{TRUE}"})
    (ws.root / "vendor").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert_one_line_error(
        ws, "a", "once.toml:2", ["workspace.members: 'vendor' is a symlink to", "outside the"]
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_member(ws: Workspace) -> None:
    write(ws.root, two_packages(f"[rule.a]\n{TRUE}"))
    (ws.root / "p" / "once.toml").chmod(0)
    done = ws.once("run", "a")
    assert done.code == 2
    assert f"{ws.root.resolve() / 'p' / 'once.toml'}: Permission denied" in done.err


def test_error_in_a_package_not_run_still_fails(ws: Workspace) -> None:
    """A once.toml is valid or not whatever the targets: a bad dep elsewhere is reported."""
    write(ws.root, two_packages(f"[rule.a]\n{TRUE}", f'[rule.build]\n{TRUE}deps = ["nope"]\n'))
    assert_one_line_error(ws, "//p:a", "libs/q/once.toml:3", ["unknown rule '//libs/q:nope'"])


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
