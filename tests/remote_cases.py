"""What every remote backend must do, run against a real server by each `test_remote_*.py`:
two clones with two local caches share results through the server; a corrupted blob is caught,
and so are altered bytes of a small output carried in its entry (as a short log is); a wrong
signature is ignored; read-only uploads nothing; a server killed mid-run leaves a successful
build."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from once import _core

from tests.helpers import Done, Workspace, three_packages
from tests.remote_servers import Server

# Bigger than the 8 MiB a blob may be sent whole in: the streamed and multipart paths run.
BIG_BYTES = 20 << 20


def clones(tmp_path: Path) -> tuple[Workspace, Workspace]:
    """Two clones of one workspace, each with its own local cache. They share one `ran.log`:
    the marker path is in each command, and the command is in the key."""
    first = Workspace(tmp_path / "a" / "ws", tmp_path / "a" / "cache")
    first.root.mkdir(parents=True)
    three_packages(first)
    first.write(
        {
            "libs/big/once.toml": (
                "[rule.build]\n"
                f'cmd = "{first.marker("big")} && mkdir -p dist && '
                f'head -c {BIG_BYTES} /dev/urandom > dist/big.bin"\n'
                'outputs = ["dist/"]\n'
            ),
        }
    )
    second = Workspace(tmp_path / "b" / "ws", tmp_path / "b" / "cache")
    shutil.copytree(first.root, second.root)
    second.ran_log = first.ran_log
    return first, second


def outputs(ws: Workspace) -> dict[str, bytes]:
    found = {}
    for folder in ("libs/a/dist", "libs/b/dist", "libs/big/dist", "app/out"):
        for path in sorted((ws.root / folder).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(ws.root))] = path.read_bytes()
    return found


def remote_warnings(done: Done) -> list[str]:
    return [line for line in done.err.splitlines() if "warning: remote cache" in line]


class RemoteCases:
    """Subclasses provide the `server` fixture and the server-side hooks below, which name
    objects as `once` lays them out (`cas/DIGEST`, `ac/KEY`)."""

    @pytest.fixture
    def server(self, tmp_path: Path) -> Iterator[Server]:
        raise NotImplementedError

    def stored_names(self, server: Server) -> list[str]:
        """Every object on the server."""
        raise NotImplementedError

    def read(self, server: Server, name: str) -> bytes:
        """The bytes of the object `name` on the server."""
        raise NotImplementedError

    def overwrite(self, server: Server, name: str, data: bytes) -> None:
        """Replace the bytes of the object `name` on the server, behind `once`'s back."""
        raise NotImplementedError

    def corrupt(self, server: Server, digest: str) -> None:
        """Overwrite the blob `digest` on the server with other bytes."""
        assert self.read(server, f"cas/{digest}")
        self.overwrite(server, f"cas/{digest}", b"not what the digest says\n")

    def env(self, server: Server, **extra: str) -> dict[str, str]:
        return {"ONCE_REMOTE": server.url, **server.env, **extra}

    def test_two_clones_share_through_the_server(self, tmp_path: Path, server: Server) -> None:
        first, second = clones(tmp_path)
        done = first.once("run", "build", env=self.env(server))
        assert done.code == 0, done.err
        assert sorted(first.ran()) == ["a", "app", "b", "big"]
        assert "uploaded 4 entries" in done.err
        assert remote_warnings(done) == []
        stored = self.stored_names(server)
        assert any(name.endswith(tuple("0123456789abcdef")) for name in stored)
        # A log this short travels in its entry: no blob of it is uploaded.
        assert not any(_core.hash_bytes(b"built app\n") in name for name in stored)

        done = second.once("run", "build", env=self.env(server))
        assert done.code == 0, done.err
        assert second.ran() == []  # zero commands ran in the second clone
        assert "restored 4 entries" in done.err
        assert "all 4 steps cached (4 restored)" in done.out
        assert outputs(second) == outputs(first)
        assert len(outputs(second)["libs/big/dist/big.bin"]) == BIG_BYTES
        # The log of a hit is replayed from the downloaded entry.
        assert "//app:build | built app" in done.out

        # Now local: the next run asks nothing of the server.
        done = second.once("run", "build", env=self.env(server))
        assert second.ran() == []
        assert "restored" not in done.err

    def test_corrupt_blob_is_discarded_and_the_step_runs(
        self, tmp_path: Path, server: Server
    ) -> None:
        first, second = clones(tmp_path)
        assert first.once("run", "//libs/big:build", env=self.env(server)).code == 0
        first.ran()
        big = (first.root / "libs/big/dist/big.bin").read_bytes()
        self.corrupt(server, _core.hash_bytes(big))

        done = second.once("run", "//libs/big:build", env=self.env(server))
        assert done.code == 0, done.err
        assert second.ran() == ["big"]  # never restored: the command ran instead
        assert len((second.root / "libs/big/dist/big.bin").read_bytes()) == BIG_BYTES
        warnings = remote_warnings(done)
        assert len(warnings) == 1, done.err
        assert "1 downloaded blob does not match its digest" in warnings[0]
        assert "discarded 1 corrupt blobs" in done.err
        store = _core.Store(str(second.cache))
        assert store.verify()["corrupt_blobs"] == 0  # nothing corrupt reached the local store

    def test_altered_inline_output_in_an_entry_is_never_restored(
        self, tmp_path: Path, server: Server
    ) -> None:
        first, second = clones(tmp_path)
        assert first.once("run", "//libs/a:build", env=self.env(server)).code == 0
        first.ran()
        # libs/a/dist/a.out is small: it travels in the entry, and no blob of it is uploaded.
        good = b"one\ntwo\n"
        assert not any(_core.hash_bytes(good) in name for name in self.stored_names(server))
        (entry_file,) = (first.cache / "ac").glob("*/*.json")
        name = f"ac/{entry_file.stem}"
        wire = self.read(server, name)
        assert base64.b64encode(good) in wire
        # Unsigned, so the envelope takes any body: only the bytes' digest can catch this.
        self.overwrite(
            server, name, wire.replace(base64.b64encode(good), base64.b64encode(b"one\nTWO\n"))
        )

        done = second.once("run", "//libs/a:build", env=self.env(server))
        assert done.code == 0, done.err
        assert second.ran() == ["a"]  # never restored: the command ran instead
        assert (second.root / "libs/a/dist/a.out").read_bytes() == good
        warnings = remote_warnings(done)
        assert len(warnings) == 1, done.err
        assert "inline bytes do not match their digest" in warnings[0]

    def test_wrong_signature_is_ignored(self, tmp_path: Path, server: Server) -> None:
        first, second = clones(tmp_path)
        signed = self.env(server, ONCE_SIGNING_KEY="trusted writers only")
        assert first.once("run", "//libs/b:build", env=signed).code == 0
        first.ran()

        third = Workspace(tmp_path / "c" / "ws", tmp_path / "c" / "cache")
        shutil.copytree(first.root, third.root, ignore=shutil.ignore_patterns("dist", ".once"))
        third.ran_log = first.ran_log
        done = third.once("run", "//libs/b:build", env=signed)
        assert done.code == 0, done.err
        assert third.ran() == []  # the right key accepts it

        done = second.once("run", "//libs/b:build", env=self.env(server, ONCE_SIGNING_KEY="x"))
        assert done.code == 0, done.err
        assert second.ran() == ["b"]
        assert "signature does not match" in done.err

    def test_unsigned_entry_is_ignored_when_signing(self, tmp_path: Path, server: Server) -> None:
        first, second = clones(tmp_path)
        assert first.once("run", "//libs/b:build", env=self.env(server)).code == 0
        first.ran()
        done = second.once("run", "//libs/b:build", env=self.env(server, ONCE_SIGNING_KEY="k"))
        assert done.code == 0, done.err
        assert second.ran() == ["b"]
        assert "unsigned entry" in done.err

    def test_read_only_uploads_nothing(self, tmp_path: Path, server: Server) -> None:
        first, second = clones(tmp_path)
        done = first.once("run", "build", "--remote-read-only", env=self.env(server))
        assert done.code == 0, done.err
        done = second.once("run", "build", env=self.env(server, ONCE_REMOTE_READ_ONLY="1"))
        assert done.code == 0, done.err
        assert "uploaded" not in done.err
        assert self.stored_names(server) == []

    def test_server_killed_mid_run_leaves_a_successful_build(
        self, tmp_path: Path, server: Server
    ) -> None:
        ws = Workspace(tmp_path / "ws", tmp_path / "cache")
        ws.root.mkdir()
        rules = [
            "[rule.first]",
            f'cmd = "{ws.marker("first")} && echo 1 > first.out"',
            'outputs = ["first.out"]',
            "[rule.kill]",
            f'cmd = "{ws.marker("kill")} && kill -9 {server.proc.pid} && echo 2 > kill.out"',
            'outputs = ["kill.out"]',
            'deps = ["first"]',
        ]
        for n in range(3):
            rules += [
                f"[rule.after{n}]",
                f'cmd = "{ws.marker(f"after{n}")} && echo {n} > after{n}.out"',
                f'outputs = ["after{n}.out"]',
                'deps = ["kill"]',
            ]
        rules += ["[rule.all]", 'cmd = "true"', 'deps = ["after0", "after1", "after2"]']
        ws.write({"once.toml": "\n".join(rules) + "\n"})
        done = ws.once("run", "all", env=self.env(server))
        assert done.code == 0, done.err
        assert sorted(ws.ran()) == ["after0", "after1", "after2", "first", "kill"]
        for n in range(3):
            assert (ws.root / f"after{n}.out").read_text() == f"{n}\n"
        warnings = remote_warnings(done)
        assert len(warnings) == 1, done.err
        assert "off for the rest of this run" in warnings[0]
        # Everything is in the local cache all the same.
        (ws.root / "after1.out").unlink()
        done = ws.once("run", "all", env={"ONCE_REMOTE": ""})
        assert done.code == 0, done.err
        assert ws.ran() == []
