"""Mutated once.toml files through the real CLI: each either loads, or is refused with one line
`once: error: ...` and exit 2, leaving the workspace and the cache exactly as they were.

The mutations start from a valid workspace that uses every key (byte flips, truncation, hostile
values in place of a value, duplicated lines, unicode); hypothesis is derandomized so CI sees
the same examples on every run, and bounded so the test takes seconds.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import ONCE

VALID = {
    "once.toml": (
        "# the workspace\n"
        "[workspace]\n"
        'members = ["pkgs/*"]\n'
        "\n"
        "[remote]\n"
        'url = "http://127.0.0.1:9/cache"\n'
        "read_only = true\n"
        'token_env = "CACHE_TOKEN"\n'
        'endpoint = "http://127.0.0.1:9"\n'
        'region = "eu-west-1"\n'
        "timeout = 2.5\n"
    ),
    "pkgs/lib/once.toml": (
        "[package]\n"
        "deps = []\n"
        "\n"
        "[rule.gen]\n"
        'cmd = "mkdir -p gen && cat src/*.txt > gen/all.txt"\n'
        'inputs = ["src/**/*.txt", "!src/skip.txt"]\n'
        'outputs = ["gen/"]\n'
        'env = ["GEN_MODE", "GEN_*"]\n'
        'pass_env = ["HOME"]\n'
        'tools = ["echo tool-v1"]\n'
        "cache = true\n"
        "\n"
        "[rule.build]\n"
        "cmd = 'mkdir -p out && cp gen/all.txt out/lib.txt'\n"
        'deps = ["gen"]\n'
        "outputs = [\n"
        '  "out/lib.txt",\n'
        "]\n"
    ),
    "pkgs/lib/src/a.txt": "a\n",
    "pkgs/lib/src/skip.txt": "skip\n",
    "pkgs/app/once.toml": (
        '[package]\ndeps = ["//pkgs/lib"]\n\n'
        "[rule.build]\n"
        'cmd = "mkdir -p out && cat ../lib/out/lib.txt > out/app.txt"\n'
        'deps = ["^build", "//pkgs/lib:gen"]\n'
        'outputs = ["out/{app,other}.txt"]\n'
        "cache = false\n"
    ),
}
CONFIGS = sorted(name for name in VALID if name.endswith("once.toml"))
ROOT, LIB = "once.toml", "pkgs/lib/once.toml"

# Values that once crashed or could: NUL, nesting past tomli's limit, integers past
# Python's digit limit, floats past every clock, wrong types, unicode, bad globs and paths.
HOSTILE = [
    '"\\u0000"',
    '["x\\u0000y"]',
    "[" * 3000 + "]" * 3000,
    "{a = " * 2000 + "1" + "}" * 2000,
    "7" * 5000,
    "0x" + "f" * 5000,
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "-0.0",
    "1e20",
    "true",
    "{}",
    "[]",
    '[1, "a"]',
    "[[1], [2]]",
    '"\\u2028"',
    '"a\\nb"',
    '["a\\u2029b"]',
    '"é\U0001f600"',
    '["**/["]',
    '["{a,"]',
    '["[z-a]"]',
    '["x\\\\"]',
    '["/abs"]',
    '["../up"]',
    '["."]',
    '[""]',
    '["  "]',
    '["a", "a"]',
    '"//:"',
    '["^"]',
    '["//pkgs/lib:build:x"]',
    "1979-05-27T07:32:00Z",
    '"""\nmulti\nline"""',
]

# (file, kind, where, what): a byte flipped, the file cut short, a hostile value in place of
# a value, a line twice (a duplicate key or table), or text inserted.
Mutation = tuple[str, str, int, object]
_FILES = st.sampled_from(CONFIGS)
_VALUES = st.tuples(_FILES, st.just("value"), st.integers(0, 100), st.sampled_from(HOSTILE))
one_mutation = st.one_of(
    _VALUES,
    _VALUES,  # twice: the hostile values are what crashed
    st.tuples(_FILES, st.just("flip"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(_FILES, st.just("truncate"), st.integers(0, 10_000), st.none()),
    st.tuples(_FILES, st.just("duplicate"), st.integers(0, 100), st.none()),
    st.tuples(_FILES, st.just("insert"), st.integers(0, 10_000), st.text()),
)


def mutate(text: str, kind: str, at: int, what: object) -> bytes:
    """`text` (bytes that are not UTF-8 kept as surrogates) with one mutation applied."""
    data = text.encode("utf-8", "surrogateescape")
    if kind == "flip" and data:
        index = at % len(data)
        assert isinstance(what, int)
        return data[:index] + bytes([what]) + data[index + 1 :]
    if kind == "truncate":
        return data[: at % (len(data) + 1)]
    if kind == "insert":
        index = at % (len(text) + 1)
        text = text[:index] + str(what) + text[index:]
    lines = text.split("\n")
    if kind == "duplicate" and lines:
        lines.insert(at % len(lines), lines[at % len(lines)])
    # A value in place of one written on a single line: `key = value`.
    places = [n for n, line in enumerate(lines) if " = " in line and not line.endswith("[")]
    if kind == "value" and places:
        line = places[at % len(places)]
        lines[line] = f"{lines[line].partition(' = ')[0]} = {what}"
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under `root` with its bytes (None for a folder)."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def once(root: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ONCE_CACHE_DIR": str(cache),
        "ONCE_REMOTE": "",  # the [remote] table is checked, and never used
        "GEN_MODE": "fast",
    }
    return subprocess.run(
        [ONCE, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=False,
    )


def assert_loads_or_one_line_error(root: Path, cache: Path, *args: str) -> None:
    before = tree(root)
    done = once(root, cache, *args)
    assert "Traceback" not in done.stderr, done.stderr
    assert "panicked" not in done.stderr, done.stderr
    if done.returncode != 2:
        # Loaded: a mutated command may fail (exit 1), but says so, never with a traceback.
        assert done.returncode in (0, 1), done.stderr
        return
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("once: error: "), done.stderr
    assert tree(root) == before, done.stderr
    assert not cache.exists() or not any(cache.iterdir()), done.stderr


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutations=st.lists(one_mutation, min_size=1, max_size=3))
# Each of these once crashed (a traceback or a Rust panic); kept as examples so every run tries
# them. The number picks the n-th single-line `key = value` of the file.
@example(mutations=[(LIB, "value", 3, '["x\\u0000y"]')])  # outputs
@example(mutations=[(LIB, "value", 1, '"echo \\u0000"')])  # cmd
@example(mutations=[(LIB, "value", 2, "[" * 3000 + "]" * 3000)])  # inputs
@example(mutations=[(LIB, "value", 0, "{a = " * 2000 + "1" + "}" * 2000)])  # deps
@example(mutations=[(LIB, "value", 7, "7" * 5000)])  # cache
@example(mutations=[(ROOT, "value", 6, "1e20")])  # timeout
@example(mutations=[(ROOT, "value", 6, "0x" + "f" * 5000)])  # timeout
def test_a_mutated_config_loads_or_is_one_line_exit_2(mutations: list[Mutation]) -> None:
    files = {rel: text.encode() for rel, text in VALID.items()}
    for name, kind, at, what in mutations:
        files[name] = mutate(files[name].decode("utf-8", "surrogateescape"), kind, at, what)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "ws"
        cache = Path(folder) / "cache"
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        assert_loads_or_one_line_error(root, cache, "run", "--dry-run", "build")
        assert_loads_or_one_line_error(root, cache, "run", "build")


def test_the_unmutated_workspace_builds(tmp_path: Path) -> None:
    """The fuzzing's starting point is valid, and uses every key: else it fuzzes only errors."""
    root, cache = tmp_path / "ws", tmp_path / "cache"
    for rel, text in VALID.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    done = once(root, cache, "run", "build")
    assert done.returncode == 0, done.stderr
    assert (root / "pkgs/app/out/app.txt").read_text() == "a\nskip\n"
