"""The remote cache against a server that misbehaves on purpose (a real HTTP server on
127.0.0.1, in a thread of the test): a blob that trickles in for longer than the timeout still
arrives, an entry with an endless body is cut off, and a server that never answers is asked
once, not once per retry."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import Workspace
from tests.remote_cases import remote_warnings

# What once caps a downloaded entry at (`ENTRY_MAX_BYTES` in the core).
ENTRY_MAX_BYTES = 64 << 20


class Scripted(ThreadingHTTPServer):
    """A WebDAV-like store (GET, HEAD, PUT) whose answers can be slowed down or made endless."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.objects: dict[str, bytes] = {}
        self.requests: list[str] = []  # "GET /ac/...", in order
        self.blob_pause = 0.0  # seconds between the chunks of a blob
        self.endless_entries = False
        self.trickled_entries = False  # a byte at a time, each well within the timeout
        self.silent = False  # accept, read the request, never answer
        self.entry_bytes_sent = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/cache"


class Handler(BaseHTTPRequestHandler):
    server: Scripted
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _name(self) -> str:
        return self.path.removeprefix("/cache/")

    def _record(self) -> bool:
        """Note the request; False when the server is to stay silent."""
        with self.server.lock:
            self.server.requests.append(f"{self.command} /{self._name()}")
        if self.server.silent:
            self.server.stopping.wait(60)
            self.close_connection = True
            return False
        return True

    def do_PUT(self) -> None:
        if not self._record():
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.objects[self._name()] = body
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        if not self._record():
            return
        found = self._name() in self.server.objects
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if not self._record():
            return
        name = self._name()
        if name.startswith("ac/") and self.server.endless_entries:
            self._endless()
            return
        if name.startswith("ac/") and self.server.trickled_entries:
            self._trickle()
            return
        body = self.server.objects.get(name)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        pause = self.server.blob_pause if name.startswith("cas/") else 0.0
        step = max(1, len(body) // 8) if pause else len(body) or 1
        try:
            for start in range(0, len(body), step):
                self.wfile.write(body[start : start + step])
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
        except OSError:
            self.close_connection = True  # the client gave up on it

    def _trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        try:
            while not self.server.stopping.wait(0.1):
                self.wfile.write(b"{")
                self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * (1 << 20)
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        try:
            while not self.server.stopping.is_set():
                self.wfile.write(framed)
                with self.server.lock:
                    self.server.entry_bytes_sent += len(chunk)
        except OSError:
            self.close_connection = True  # the client hung up: what this test wants


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def two_clones(tmp_path: Path, payload_bytes: int) -> tuple[Workspace, Workspace]:
    """Two clones of a one-rule workspace, each with its own local cache; the rule writes
    `payload_bytes` of fixed bytes."""
    clones = []
    for name in ("first", "second"):
        ws = Workspace(tmp_path / name / "ws", tmp_path / name / "cache")
        ws.root.mkdir(parents=True)
        ws.ran_log = tmp_path / "ran.log"
        ws.write(
            {
                "once.toml": (
                    f'[rule.build]\ncmd = "{ws.marker("build")} && mkdir -p dist && '
                    f"head -c {payload_bytes} /dev/zero | tr '\\\\0' z > dist/payload\"\n"
                    'outputs = ["dist/"]\n'
                ),
            }
        )
        clones.append(ws)
    return clones[0], clones[1]


def test_a_blob_slower_than_the_timeout_still_downloads(tmp_path: Path, scripted: Scripted) -> None:
    first, second = two_clones(tmp_path, 256 << 10)
    env = {"ONCE_REMOTE": scripted.url, "ONCE_REMOTE_TIMEOUT": "2"}
    done = first.once("run", "build", env=env)
    assert done.code == 0, done.err
    assert "uploaded 1 entries" in done.err, done.err
    assert first.ran() == ["build"]
    # Each chunk comes 0.4 s after the last: well within the timeout (by 1.6 s, which a
    # loaded machine may take from the server thread), but the whole blob takes at least
    # 3.2 s, more than the timeout.
    scripted.blob_pause = 0.4
    done = second.once("run", "build", env=env)
    assert done.code == 0, done.err
    assert remote_warnings(done) == [], done.err
    assert "restored 1 entries" in done.err, done.err
    assert second.ran() == []
    assert (second.root / "dist/payload").read_bytes() == b"z" * (256 << 10)


def test_an_endless_entry_is_cut_off(tmp_path: Path, scripted: Scripted) -> None:
    _, second = two_clones(tmp_path, 10)
    scripted.endless_entries = True
    done = second.once(
        "run", "build", env={"ONCE_REMOTE": scripted.url, "ONCE_REMOTE_TIMEOUT": "5"}
    )
    assert done.code == 0, done.err
    assert second.ran() == ["build"]
    warnings = remote_warnings(done)
    assert len(warnings) == 1, done.err
    assert f"larger than {ENTRY_MAX_BYTES} bytes" in warnings[0], done.err
    # What the server got out before the client hung up: the cap, and what the socket buffers
    # held, not seconds' worth of a fast link.
    scripted.stopping.set()
    assert scripted.entry_bytes_sent < 2 * ENTRY_MAX_BYTES, scripted.entry_bytes_sent


def test_a_silent_server_is_asked_once(tmp_path: Path, scripted: Scripted) -> None:
    """Retries must not multiply the cost of a dead server: a request that got no answer
    within the timeout is not sent again, and the remote goes off at once."""
    _, second = two_clones(tmp_path, 10)
    scripted.silent = True
    done = second.once(
        "run", "build", env={"ONCE_REMOTE": scripted.url, "ONCE_REMOTE_TIMEOUT": "0.5"}
    )
    assert done.code == 0, done.err
    assert second.ran() == ["build"]
    warnings = remote_warnings(done)
    assert len(warnings) == 1, done.err
    assert "no answer within" in warnings[0], done.err
    assert scripted.requests == [f"GET /ac/{key_of(second)}"], scripted.requests


def key_of(ws: Workspace) -> str:
    done = ws.once("run", "build", "--dry-run", "--json")
    assert done.code == 0, done.err
    (action,) = json.loads(done.out)["actions"]
    return str(action["key"])


def test_an_entry_trickling_in_is_cut_off(tmp_path: Path, scripted: Scripted) -> None:
    """A byte every 0.1 s never lets the wait for the next chunk reach the timeout: the entry
    must still arrive at a pace, not whenever the server likes."""
    _, second = two_clones(tmp_path, 10)
    scripted.trickled_entries = True
    started = time.monotonic()
    done = second.once(
        "run", "build", env={"ONCE_REMOTE": scripted.url, "ONCE_REMOTE_TIMEOUT": "1"}
    )
    assert done.code == 0, done.err
    assert second.ran() == ["build"]
    warnings = remote_warnings(done)
    assert len(warnings) == 1, done.err
    assert "no answer within" in warnings[0], done.err
    # Not a timing test: this only bounds a wait that would otherwise last 29 hours.
    assert time.monotonic() - started < 60
