"""Fixtures for the end-to-end tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
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


@pytest.fixture
def interruptible() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt here, and a `once` started here takes it. The suite run
    as a background job of a script (`scripts/test &`, nohup) inherits SIGINT ignored, which
    Python keeps, and so does every process it starts: a test that interrupts `once` would
    wait for it in vain. A handler is reset to the default in a started program; "ignored"
    is not."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
