"""One glob engine: the globs that select a rule's inputs (and so make its key) are the ones
`--affected`, the configuration's checks and `members` read. Generated patterns and paths check
that selection and `--affected` never disagree, and the readings that once disagreed are
pinned end to end."""

from __future__ import annotations

import posixpath
import subprocess
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from once import _core
from once.config import load_workspace
from once.errors import ConfigError
from once.layout import is_glob
from once.plan.affected import directly_affected
from once.plan.keys import PackageExcludes

from tests.helpers import Workspace, write_tree

SEGMENTS = ["src", "a", "b", "ab", "sub", "x.txt", "y.md", ".hidden", "a.b"]
GLOB_SEGMENTS = [*SEGMENTS, "*", "**", "?", "*.txt", "a*", "{a,b}", "{src,sub}", "[ab]", "[!a]*"]

paths = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map("/".join)
patterns = st.builds(
    lambda parts, slash: "/".join(parts) + ("/" if slash else ""),
    st.lists(st.sampled_from(GLOB_SEGMENTS), min_size=1, max_size=4),
    st.booleans(),
)


def selected(root: Path, include: list[str], exclude: list[str]) -> set[str]:
    """What the key of a rule with these globs reads: the core's selection over a real walk."""
    snapshot = _core.Snapshot.scan(str(root), [])
    files = snapshot.select("", include, exclude)
    snapshot.hash([files])
    return {path for path, _, _ in snapshot.inputs(files)}


def files_of(candidates: list[str]) -> list[str]:
    """`candidates` without a path that is also a folder of another (a tree can't hold both)."""
    chosen = sorted(set(candidates))
    return [p for p in chosen if not any(other.startswith(p + "/") for other in chosen)]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    files=st.lists(paths, min_size=1, max_size=8),
    include=st.lists(patterns, min_size=1, max_size=3),
    exclude=st.lists(patterns, max_size=2),
)
def test_affected_agrees_with_selection(
    tmp_path_factory: pytest.TempPathFactory,
    files: list[str],
    include: list[str],
    exclude: list[str],
) -> None:
    root = tmp_path_factory.mktemp("tree")
    tree = files_of(files)
    write_tree(root, dict.fromkeys(tree, "x\n"))
    inc_quoted = ", ".join(f"'{p}'" for p in include)
    exc_quoted = ", ".join(f"'{p}'" for p in exclude)
    (root / "once.toml").write_text(
        f'[rule.build]\ncmd = "true"\ninputs = [{inc_quoted}]\noutputs = [{exc_quoted}]\n'
    )
    try:
        workspace = load_workspace(root)
    except ConfigError:  # a generated pair refused as an overlap or a bad glob
        return
    keyed = selected(root, include, [*exclude, "once.toml"])
    for path in tree:
        affected = bool(directly_affected(workspace, [path]))
        assert affected == (path in keyed), (path, include, exclude)


@pytest.mark.parametrize("pattern", ["src/[a", "[]", "[!]", "[z-a]", "{a,b", "a,b}", "x\\"])
def test_a_bad_glob_is_refused_with_its_pattern(pattern: str) -> None:
    with pytest.raises(_core.GlobError, match="invalid glob"):
        _core.Globs(["ok/**", pattern])


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, capture_output=True, check=True)


def test_a_trailing_slash_after_double_star_is_affected_as_it_is_keyed(ws: Workspace) -> None:
    """`src/**/` reads every file below src/: `--affected` selected nothing for src/a.txt."""
    ws.write(
        {
            "once.toml": f'[rule.build]\ncmd = "{ws.marker("build")}"\ninputs = ["src/**/"]\n',
            "src/a.txt": "1\n",
        }
    )
    git(ws.root, "init", "-q", "-b", "main")
    git(ws.root, "-c", "user.email=t@e", "-c", "user.name=t", "add", "-A")
    git(ws.root, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "start")
    assert ws.once("run", "build").code == 0
    assert ws.ran() == ["build"]
    (ws.root / "src/a.txt").write_text("2\n")
    done = ws.once("run", "--affected", "--since", "HEAD")
    assert done.code == 0, done.err
    assert ws.ran() == ["build"]


def test_members_with_alternatives(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": '[workspace]\nmembers = ["{libs,apps}/*"]\n',
            "libs/a/once.toml": f'[rule.build]\ncmd = "{ws.marker("a")}"\n',
            "apps/b/once.toml": f'[rule.build]\ncmd = "{ws.marker("b")}"\n',
            "tools/c/once.toml": f'[rule.build]\ncmd = "{ws.marker("c")}"\n',
        }
    )
    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert sorted(ws.ran()) == ["a", "b"]


def test_a_bad_member_glob_is_one_line(ws: Workspace) -> None:
    ws.write({"once.toml": '[workspace]\nmembers = ["libs/{a"]\n'})
    done = ws.once("run", "build")
    assert done.code == 2
    [line] = done.err.strip().splitlines()
    assert line.startswith("once: error: ")
    assert "once.toml:2: workspace.members: 'libs/{a' is not a valid glob: unclosed" in line


OUTPUT_SEGMENTS = ["dist", "a", "b", "x.js", "./", "*.js", "*", "{a,b}", "**"]
outputs = st.builds(
    lambda parts, slash: "/".join(parts).replace("//", "/") + ("/" if slash else ""),
    st.lists(st.sampled_from(OUTPUT_SEGMENTS), min_size=1, max_size=3),
    st.booleans(),
)


def overlap(first: str, second: str) -> bool:
    """Whether two outputs may write one path: literal paths when one is or holds the other,
    globs when either matches the other's spelling (as the core's engine reads them)."""
    if not (is_glob(first) or is_glob(second)):
        one, two = posixpath.normpath(first), posixpath.normpath(second)
        return one == two or two.startswith(f"{one}/") or one.startswith(f"{two}/")

    def spelled(pattern: str) -> str:
        return pattern.removeprefix("./").rstrip("/")

    return _core.Globs([first]).is_match(spelled(second)) or _core.Globs([second]).is_match(
        spelled(first)
    )


@settings(max_examples=150, deadline=None, derandomize=True)
@given(rules=st.lists(st.lists(outputs, min_size=1, max_size=3), min_size=2, max_size=5))
def test_output_clashes_are_those_of_every_pair(
    tmp_path_factory: pytest.TempPathFactory, rules: list[list[str]]
) -> None:
    """Outputs of rules of one package are checked through sets, not pairs; the error is the
    one checking every pair in order finds first."""
    root = tmp_path_factory.mktemp("clash")
    (root / "once.toml").write_text(
        "".join(
            f'[rule.r{n}]\ncmd = "true"\noutputs = [{", ".join(repr(o) for o in outs)}]\n'
            for n, outs in enumerate(rules)
        )
    )
    expected = next(
        (
            f"rule.r{n}.outputs: {output!r} overlaps {clash!r}, an output of rule 'r{m}'"
            for n, outs in enumerate(rules)
            for m, others in enumerate(rules[:n])
            for output in outs
            for clash in others
            if overlap(clash, output)
        ),
        None,
    )
    try:
        load_workspace(root)
        refused = None
    except ConfigError as err:
        refused = str(err)
    # Refused for another reason first (a duplicate, once.toml covered): nothing to compare.
    assume(refused is None or " overlaps " in refused)
    if expected is None:
        assert refused is None
    else:
        assert refused is not None, expected
        assert f": {expected};" in refused


# A path as a rule may spell it: a file or a folder, perhaps with `./` before or `/` after.
spelled = st.builds(
    lambda path, before, after: before + path + after,
    st.lists(st.sampled_from(["src", "a", "b", "x.txt"]), min_size=1, max_size=3).map("/".join),
    st.sampled_from(["", "./"]),
    st.sampled_from(["", "/"]),
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    files=st.lists(
        st.lists(st.sampled_from(["src", "a", "b", "x.txt"]), min_size=1, max_size=4).map("/".join),
        min_size=1,
        max_size=10,
    ),
    inputs=st.lists(spelled, min_size=1, max_size=2),
    excludes=st.lists(spelled | patterns, max_size=6),
)
def test_a_rule_gets_only_the_excludes_that_can_remove_its_inputs(
    tmp_path_factory: pytest.TempPathFactory,
    files: list[str],
    inputs: list[str],
    excludes: list[str],
) -> None:
    """Each rule is given only the package's excludes at, above or below the files it names
    (and every glob): what it selects is what all of them leave."""
    root = tmp_path_factory.mktemp("tree")
    write_tree(root, dict.fromkeys(files_of(files), "x\n"))
    snapshot = _core.Snapshot.scan(str(root), [])
    given_to_rule = PackageExcludes(excludes).for_inputs(inputs)
    assert set(given_to_rule) <= set(excludes)
    every = snapshot.paths(snapshot.select("", inputs, excludes))
    assert snapshot.paths(snapshot.select("", inputs, given_to_rule)) == every
