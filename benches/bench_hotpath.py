"""The hot path of `once run`, function by function, on a generated monorepo: walk + stat, key
computation, store lookup, restore, and the scheduler with every rule cached.

In CI they run once each with timing off, on small sizes, so they cannot rot; with
`pytest benches --benchmark-enable` they are timed (sizes from the ONCE_BENCH_* variables).
`python -m benches.scale` measures the same paths end to end beside git status and b3sum."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from once import _core
from once.api import Outcome
from once.config import load_workspace
from once.layout import STATE_DIR
from once.plan.graph import all_targets, build_graph
from once.plan.keys import plan
from once.run.scheduler import Runner
from once.state.lock import ensure_state_dir
from once.ui.console import Console
from pytest_benchmark.fixture import BenchmarkFixture

from benches.monorepo import Monorepo, generate, make_rules_workspace

PACKAGES = int(os.environ.get("ONCE_BENCH_PACKAGES", "20"))
FILES = int(os.environ.get("ONCE_BENCH_FILES", "2000"))
# Scheduler overhead target: 10,000 cached rules in ≤ 1 s (benches/scale.py measures that
# size end to end); the smoke run keeps filling the cache (one command per rule) short.
RULES = int(os.environ.get("ONCE_BENCH_RULES", "300"))


@pytest.fixture(scope="session")
def monorepo(tmp_path_factory: pytest.TempPathFactory) -> Monorepo:
    return generate(
        tmp_path_factory.mktemp("mono") / "ws", packages=PACKAGES, files=FILES, git=False
    )


def test_walk_and_stat(benchmark: BenchmarkFixture, monorepo: Monorepo) -> None:
    snapshot = benchmark(_core.Snapshot.scan, str(monorepo.root), [STATE_DIR])
    # Besides the sources: each package's once.toml and package.json, and the root's
    # once.toml, .gitignore and pnpm-lock.yaml.
    assert snapshot.file_count == len(monorepo.sources) + 2 * len(monorepo.packages) + 3


def test_key_computation(benchmark: BenchmarkFixture, monorepo: Monorepo) -> None:
    """Walk, select every rule's inputs, digests from a warm stat cache, every action key."""
    workspace = load_workspace(monorepo.root)
    actions = build_graph(workspace, all_targets(workspace, monorepo.root))
    # Fill the stat cache: the timed runs are the no-op case. Twice, because a file written
    # moments before the first scan is not trusted (racy-timestamp rule) until the next. The
    # state folder is a run's to make; without it nothing is kept.
    ensure_state_dir(str(monorepo.root / STATE_DIR))
    plan(workspace, actions, {})
    plan(workspace, actions, {})

    keyed = benchmark(plan, workspace, actions, {})
    assert len(keyed.fingerprints) == monorepo.rules
    assert keyed.files_read == 0


@pytest.fixture(scope="session")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[_core.Store, _core.Entry, Path]:
    """An entry of 500 output files (a few KB each) in a fresh store."""
    root = tmp_path_factory.mktemp("restore")
    dist = root / "ws" / "pkg" / "dist"
    for n in range(500):
        path = dist / f"d{n % 10}" / f"out{n}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(200 + n * 8))
    store = _core.Store(str(root / "cache"))
    entry = store.save("k" * 64, str(root / "ws"), "pkg", ["dist/"], b"log\n", 0, 10)
    return store, entry, root / "ws"


def test_store_lookup(
    benchmark: BenchmarkFixture, saved: tuple[_core.Store, _core.Entry, Path]
) -> None:
    store, entry, _ = saved
    found = benchmark(store.lookup, entry.key)
    assert found is not None
    assert found.output_count == 500 + 11  # files and folders


def test_restore(benchmark: BenchmarkFixture, saved: tuple[_core.Store, _core.Entry, Path]) -> None:
    store, entry, ws = saved

    def delete_then_restore() -> None:
        shutil.rmtree(ws / "pkg" / "dist", ignore_errors=True)
        store.restore(entry, str(ws), "pkg", ["dist/"])

    benchmark(delete_then_restore)
    assert store.outputs_match(entry, str(ws), "pkg", ["dist/"])


def test_scheduler_overhead_all_cached(
    benchmark: BenchmarkFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys, lookups, hits and history for RULES trivial rules that are all cached."""
    monkeypatch.setenv("ONCE_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "ws"
    root.mkdir()
    make_rules_workspace(root, RULES, per_package=50)
    workspace = load_workspace(root)
    actions = build_graph(workspace, all_targets(workspace, root))
    store = _core.Store(str(tmp_path / "cache"))

    def run_all() -> list[Outcome]:
        keyed = plan(workspace, actions, {})
        console = Console(io.BytesIO(), "none")
        runner = Runner(workspace, keyed.fingerprints, store, console, snapshot=keyed.snapshot)
        return [result.outcome for result in runner.run(actions, os.cpu_count() or 1)]

    assert set(run_all()) == {"ran"}
    outcomes = benchmark(run_all)
    assert set(outcomes) == {"cached"}
