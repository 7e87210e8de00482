"""`[remote]` in the root once.toml and the ONCE_REMOTE* variables: one-line errors with
file:line and exit 2, and the environment winning over the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from once import _core
from once.config.model import RemoteSettings
from once.errors import UsageError
from once.run.remote_choice import DEFAULT_TIMEOUT, choose

from tests.helpers import Workspace

RULE = '[rule.a]\ncmd = "true"\n'


@pytest.mark.parametrize(
    ("toml", "line", "says"),
    [
        ('[remote]\nurl = "ftp://host/x"\n', 2, "is not a remote cache URL"),
        ('[remote]\nurl = "s3://"\n', 2, "names no host or bucket"),
        ('[remote]\nurl = "https://me:pw@host/c"\n', 2, "holds credentials"),
        ('[remote]\nurl = "http://h/c"\nreadonly = true\n', 3, "did you mean 'read_only'?"),
        ('[remote]\nurl = "http://h/c"\nread_only = "yes"\n', 3, "must be true or false"),
        ('[remote]\nurl = "http://h/c"\ntoken_env = "abc def"\n', 3, "is not a variable name"),
        ('[remote]\nurl = "http://h/c"\ntimeout = 0\n', 3, "positive number of seconds"),
        # Past Duration's range: each was a Rust panic in the binding, with a traceback.
        ('[remote]\nurl = "http://h/c"\ntimeout = 1e20\n', 3, "up to 86400, got 1e+20"),
        ('[remote]\nurl = "http://h/c"\ntimeout = inf\n', 3, "up to 86400, got inf"),
        ('[remote]\nurl = "http://h/c"\ntimeout = nan\n', 3, "up to 86400, got nan"),
        ('[remote]\nurl = "http://h/c"\ntimeout = 86401\n', 3, "up to 86400, got 86401"),
        ('[remote]\nurl = "s3://b/p"\nendpoint = "127.0.0.1:9000"\n', 3, "not an http://"),
        ("[remote]\nurl = 3\n", 2, "must be a non-empty string"),
        ('remote = "http://h/c"\n', 1, "must be a [remote] table"),
    ],
)
def test_bad_remote_table(ws: Workspace, toml: str, line: int, says: str) -> None:
    ws.write({"once.toml": toml + RULE})
    done = ws.once("run", "a")
    assert done.code == 2
    assert done.err.count("\n") == 1, done.err
    assert f"once.toml:{line}: " in done.err
    assert says in done.err


def test_remote_only_in_the_root(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": '[workspace]\nmembers = ["p"]\n',
            "p/once.toml": f'{RULE}\n[remote]\nurl = "http://h/c"\n',
        }
    )
    done = ws.once("run", "a")
    assert done.code == 2
    assert "p/once.toml:4: [remote] belongs only in the workspace root" in done.err


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"ONCE_REMOTE": "gopher://x"}, "ONCE_REMOTE: 'gopher://x' is not a remote cache URL"),
        ({"ONCE_REMOTE": "http://h/", "ONCE_REMOTE_READ_ONLY": "maybe"}, "ONCE_REMOTE_READ_ONLY"),
        ({"ONCE_REMOTE": "http://h/", "ONCE_REMOTE_TIMEOUT": "soon"}, "ONCE_REMOTE_TIMEOUT"),
        (
            {"ONCE_REMOTE": "http://h/", "ONCE_REMOTE_TIMEOUT": "1e300"},
            "ONCE_REMOTE_TIMEOUT: '1e300' must be a positive number of seconds up to 86400",
        ),
        (
            {"ONCE_REMOTE": "http://h/", "ONCE_REMOTE_TIMEOUT": "inf"},
            "ONCE_REMOTE_TIMEOUT: 'inf' must be a positive number of seconds up to 86400",
        ),
    ],
)
def test_bad_environment_is_a_usage_error(ws: Workspace, env: dict[str, str], says: str) -> None:
    ws.write({"once.toml": RULE})
    done = ws.once("run", "a", env=env)
    assert done.code == 2
    assert done.err.startswith(f"once: error: {says}"), done.err
    assert done.err.count("\n") == 1, done.err
    assert not ws.cache.exists()
    assert ws.once("run", "a").code == 0


SETTINGS = RemoteSettings(
    url="http://from-toml/c",
    read_only=False,
    token_env="TEAM_TOKEN",
    endpoint=None,
    region=None,
    timeout=None,
    source=Path("once.toml"),
)


def test_environment_wins() -> None:
    chosen = choose(SETTINGS, {"ONCE_REMOTE": "redis://127.0.0.1:6379", "TEAM_TOKEN": "t"})
    assert chosen is not None
    assert chosen.url == "redis://127.0.0.1:6379"
    assert chosen.token == "t"
    assert "'t'" not in repr(chosen)  # a secret: never in a traceback or a log
    assert chosen.timeout == DEFAULT_TIMEOUT
    assert not chosen.read_only
    assert choose(SETTINGS, {"ONCE_REMOTE": ""}) is None  # set but empty: off
    assert choose(None, {}) is None


def test_read_only_from_flag_env_or_file() -> None:
    def read_only(settings: RemoteSettings, env: dict[str, str], flag: bool = False) -> bool:
        chosen = choose(settings, env, read_only_flag=flag)
        assert chosen is not None
        return chosen.read_only

    ro_file = RemoteSettings(
        **{**{name: getattr(SETTINGS, name) for name in RemoteSettings.FIELDS}, "read_only": True}
    )
    assert read_only(SETTINGS, {"ONCE_REMOTE_READ_ONLY": "1"})
    assert read_only(SETTINGS, {}, flag=True)
    assert read_only(ro_file, {})
    assert not read_only(ro_file, {"ONCE_REMOTE_READ_ONLY": "0"})  # env wins over the file
    assert read_only(ro_file, {"ONCE_REMOTE_READ_ONLY": "0"}, flag=True)  # never over the flag


def test_bad_environment_raises() -> None:
    with pytest.raises(UsageError, match="ONCE_REMOTE_TIMEOUT"):
        choose(SETTINGS, {"ONCE_REMOTE_TIMEOUT": "-1"})


@pytest.mark.parametrize("timeout", [1e300, float("inf"), float("nan"), 0.0, -1.0])
def test_the_core_refuses_a_timeout_no_duration_holds(timeout: float) -> None:
    """The binding's own check, for callers other than the CLI: an error, never a panic."""
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        _core.Remote("http://h/c", timeout=timeout)
