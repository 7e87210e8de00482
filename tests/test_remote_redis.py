"""The remote cache on Debian's redis-server (`once:cas:<digest>`, `once:ac:<key>`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.remote_cases import RemoteCases
from tests.remote_servers import Server, redis, redis_command, redis_keys


class TestRedis(RemoteCases):
    @pytest.fixture
    def server(self, tmp_path: Path) -> Iterator[Server]:
        with redis(tmp_path / "redis") as running:
            yield running

    def stored_names(self, server: Server) -> list[str]:
        return redis_keys(server)

    def read(self, server: Server, name: str) -> bytes:
        data = redis_command(server, "GET", "once:" + name.replace("/", ":"))
        assert isinstance(data, bytes), data
        return data

    def overwrite(self, server: Server, name: str, data: bytes) -> None:
        assert redis_command(server, "SET", "once:" + name.replace("/", ":"), data) == "OK"
