"""The remote cache on Debian's nginx with WebDAV PUT (`<base>/cas/`, `<base>/ac/`), and what a
dead or silent HTTP server does to a build: nothing but one warning."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Workspace, three_packages
from tests.remote_cases import RemoteCases, clones, remote_warnings
from tests.remote_servers import Server, free_port, nginx, nginx_files


class TestNginx(RemoteCases):
    @pytest.fixture
    def server(self, tmp_path: Path) -> Iterator[Server]:
        with nginx(tmp_path / "nginx") as running:
            yield running

    def stored_names(self, server: Server) -> list[str]:
        return [str(path.relative_to(server.folder / "data")) for path in nginx_files(server)]

    def read(self, server: Server, name: str) -> bytes:
        return (server.folder / "data" / "cache" / name).read_bytes()

    def overwrite(self, server: Server, name: str, data: bytes) -> None:
        (server.folder / "data" / "cache" / name).write_bytes(data)


def test_bearer_token(tmp_path: Path) -> None:
    with nginx(tmp_path / "nginx", token="s3cret") as server:
        first, second = clones(tmp_path)
        env = {"ONCE_REMOTE": server.url, "ONCE_REMOTE_TOKEN": "s3cret"}
        done = first.once("run", "//libs/a:build", env=env)
        assert done.code == 0, done.err
        assert "uploaded 1 entries" in done.err
        first.ran()
        # Without the token the server refuses: one warning, and the build still succeeds.
        done = second.once("run", "//libs/a:build", env={"ONCE_REMOTE": server.url})
        assert done.code == 0, done.err
        assert second.ran() == ["a"]
        warnings = remote_warnings(done)
        assert len(warnings) == 1, done.err
        assert "access denied" in warnings[0]


def test_basic_auth_from_the_url_with_escaped_characters(tmp_path: Path) -> None:
    """`user:password@` in the URL, percent-escaped as URLs want (`@` is `%40`), is sent as
    basic authentication with the characters as typed."""
    with nginx(tmp_path / "nginx", basic=("ci", "p@ss:w rd%")) as server:
        first, second = clones(tmp_path)
        good = server.url.replace("http://", "http://ci:p%40ss%3Aw%20rd%25@")
        done = first.once("run", "//libs/a:build", env={"ONCE_REMOTE": good})
        assert done.code == 0, done.err
        assert "uploaded 1 entries" in done.err
        bad = server.url.replace("http://", "http://ci:p%40ss@")
        done = second.once("run", "//libs/a:build", env={"ONCE_REMOTE": bad})
        assert done.code == 0, done.err
        assert "access denied" in remote_warnings(done)[0]


def test_token_env_named_in_once_toml(tmp_path: Path) -> None:
    with nginx(tmp_path / "nginx", token="t0ken") as server:
        first, second = clones(tmp_path)
        for ws in (first, second):
            text = (ws.root / "once.toml").read_text()
            (ws.root / "once.toml").write_text(
                f'{text}\n[remote]\nurl = "{server.url}"\ntoken_env = "MY_CACHE_TOKEN"\n'
            )
        assert first.once("run", "build", env={"MY_CACHE_TOKEN": "t0ken"}).code == 0
        first.ran()
        done = second.once("run", "build", env={"MY_CACHE_TOKEN": "t0ken"})
        assert done.code == 0, done.err
        assert second.ran() == []


def test_dead_server_one_warning(ws: Workspace) -> None:
    three_packages(ws)
    port = free_port()  # nothing listens there
    done = ws.once("run", "build", env={"ONCE_REMOTE": f"http://127.0.0.1:{port}/cache"})
    assert done.code == 0, done.err
    assert sorted(ws.ran()) == ["a", "app", "b"]
    warnings = remote_warnings(done)
    assert len(warnings) == 1, done.err
    assert "off for the rest of this run" in warnings[0]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A server that accepts connections and never answers: the slow server at its worst."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_silent_server_times_out_once(ws: Workspace, silent_server: int) -> None:
    three_packages(ws)
    started = time.monotonic()
    done = ws.once(
        "run",
        "build",
        env={"ONCE_REMOTE": f"http://127.0.0.1:{silent_server}/", "ONCE_REMOTE_TIMEOUT": "0.3"},
    )
    assert done.code == 0, done.err
    assert sorted(ws.ran()) == ["a", "app", "b"]
    warnings = remote_warnings(done)
    assert len(warnings) == 1, done.err
    assert "no answer within" in warnings[0]
    # One timeout of 0.3 s for the whole run, not one per step or per retry.
    assert time.monotonic() - started < 20
