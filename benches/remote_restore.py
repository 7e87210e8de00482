"""Time to restore 1,000 entries from each remote backend over loopback.

    .venv/bin/python -m benches.remote_restore [ENTRIES]

For each server (nginx WebDAV, redis-server, SeaweedFS S3; started here on 127.0.0.1 as the
tests start them), one clone builds ENTRIES one-file steps and uploads them; a second clone
with an empty local cache then runs the same targets, restoring everything from the server.
Printed beside it, in the same run: the same restore from the local cache (outputs deleted)
and the no-op run, so the remote's own cost reads as the difference."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.helpers import ONCE
from tests.remote_servers import Server, nginx, redis, seaweedfs

BACKENDS: dict[str, Callable[[Path], AbstractContextManager[Server]]] = {
    "http (nginx WebDAV)": nginx,
    "redis (redis-server)": redis,
    "s3 (SeaweedFS)": seaweedfs,
}


def workspace(root: Path, entries: int) -> list[str]:
    """`entries` packages of one rule each, writing one small output file; their labels. One
    package per rule, as in a monorepo: what is timed is the remote, not rule evaluation."""
    root.mkdir(parents=True)
    (root / "once.toml").write_text('[workspace]\nmembers = ["p/*"]\n')
    labels = []
    for n in range(entries):
        package = root / "p" / f"{n:04}"
        (package / "src").mkdir(parents=True)
        (package / "src" / "input.txt").write_text(f"input {n}\n")
        (package / "once.toml").write_text(
            '[rule.build]\ncmd = "mkdir -p out && cp src/input.txt out/output.txt"\n'
            'inputs = ["src/**"]\noutputs = ["out/"]\n'
        )
        labels.append(f"//p/{n:04}:build")
    return labels


def once(root: Path, cache: Path, names: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [ONCE, "run", *names, "--output-logs=none"],
        cwd=root,
        env={**os.environ, "ONCE_CACHE_DIR": str(cache), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"once run failed:\n{done.stderr}")
    return seconds


def measure(
    label: str, start: Callable[[Path], AbstractContextManager[Server]], entries: int
) -> None:
    with tempfile.TemporaryDirectory() as temp:
        tmp = Path(temp)
        try:
            with start(tmp / "server") as server:
                env = {"ONCE_REMOTE": server.url, **server.env}
                names = workspace(tmp / "a", entries)
                shutil.copytree(tmp / "a", tmp / "b")
                upload = once(tmp / "a", tmp / "cache-a", names, env)
                remote = once(tmp / "b", tmp / "cache-b", names, env)
                for out in (tmp / "b" / "p").glob("*/out"):
                    shutil.rmtree(out)
                local = once(tmp / "b", tmp / "cache-b", names, {"ONCE_REMOTE": ""})
                noop = once(tmp / "b", tmp / "cache-b", names, {"ONCE_REMOTE": ""})
        except pytest.skip.Exception as skipped:
            print(f"{label:24} skipped: {skipped}")
            return
    print(
        f"{label:24} restore from remote {remote:6.2f} s   "
        f"(from local cache {local:5.2f} s, no-op {noop:5.2f} s; first build + upload "
        f"{upload:5.2f} s)"
    )


def main() -> None:
    entries = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(f"restoring {entries} entries over loopback, {os.cpu_count()} cores")
    for label, start in BACKENDS.items():
        measure(label, start, entries)


if __name__ == "__main__":
    main()
