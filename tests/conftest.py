"""Fixtures for the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Workspace


@pytest.fixture(autouse=True)
def _no_ambient_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote cache configured in the developer's shell must not reach the tests."""
    for name in ("ONCE_REMOTE", "ONCE_REMOTE_READ_ONLY", "ONCE_REMOTE_TOKEN", "ONCE_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    return Workspace(root, tmp_path / "cache")
