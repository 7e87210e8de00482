"""The remote cache on SeaweedFS's S3 gateway (`s3://bucket/prefix`, AWS variables for the
credentials and endpoint)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.remote_cases import RemoteCases
from tests.remote_servers import Server, s3_objects, s3_overwrite, seaweedfs


class TestSeaweedS3(RemoteCases):
    @pytest.fixture
    def server(self, tmp_path: Path) -> Iterator[Server]:
        with seaweedfs(tmp_path / "weed") as running:
            yield running

    def stored_names(self, server: Server) -> list[str]:
        return s3_objects(server)

    def corrupt(self, server: Server, digest: str) -> None:
        name = f"ci/cas/{digest}"
        assert name in s3_objects(server)
        s3_overwrite(server, name, b"not what the digest says\n")
