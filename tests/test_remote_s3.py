"""The remote cache on SeaweedFS's S3 gateway (`s3://bucket/prefix`, AWS variables for the
credentials and endpoint)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.remote_cases import RemoteCases
from tests.remote_servers import Server, s3_objects, s3_overwrite, s3_read, seaweedfs


class TestSeaweedS3(RemoteCases):
    @pytest.fixture
    def server(self, tmp_path: Path) -> Iterator[Server]:
        with seaweedfs(tmp_path / "weed") as running:
            yield running

    def stored_names(self, server: Server) -> list[str]:
        return s3_objects(server)

    def read(self, server: Server, name: str) -> bytes:
        return s3_read(server, f"ci/{name}")

    def overwrite(self, server: Server, name: str, data: bytes) -> None:
        s3_overwrite(server, f"ci/{name}", data)
