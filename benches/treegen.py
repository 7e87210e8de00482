"""Synthetic trees of files for the benchmarks."""

from __future__ import annotations

import os
import random
from pathlib import Path


def make_small_files(root: Path, count: int) -> list[Path]:
    """`count` files of 200 B to 20 KB in 100-file folders, like a source tree."""
    paths = []
    for i in range(count):
        folder = root / f"d{i // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{i:06d}.txt"
        path.write_bytes(os.urandom(200 + (i * 7919) % 20_000))
        paths.append(path)
    return paths


def make_large_file(path: Path, megabytes: int) -> Path:
    chunk = os.urandom(1 << 20)
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(chunk)
    return path


def pnpm_workspace_lockfile(
    rng: random.Random, packages: list[str], *, externals: int = 2_000, per_package: int = 8
) -> str:
    """A pnpm-lock.yaml (v9) for `packages` (workspace folders): each importer depends on a
    few of `externals` registry packages, each of which depends on up to three others, as in
    a real monorepo where most of the lockfile is shared transitive dependencies."""
    names = [f"ext{i:05d}" for i in range(externals)]
    versions = {name: f"1.{rng.randrange(20)}.{rng.randrange(10)}" for name in names}
    lines = ["lockfileVersion: '9.0'", "", "settings:", "  autoInstallPeers: true", ""]
    lines += ["importers:", "", "  .: {}", ""]
    for package in packages:
        lines += [f"  {package}:", "    dependencies:"]
        for name in sorted(rng.sample(names, min(per_package, len(names)))):
            lines += [
                f"      {name}:",
                "        specifier: ^1.0.0",
                f"        version: {versions[name]}",
            ]
        lines.append("")
    lines += ["packages:", ""]
    for name in names:
        digest = rng.randbytes(48).hex()
        lines += [
            f"  {name}@{versions[name]}:",
            f"    resolution: {{integrity: sha512-{digest}}}",
            "",
        ]
    lines += ["snapshots:", ""]
    for index, name in enumerate(names):
        # Dependencies point to later names only: a forest, as most registry graphs are.
        later = names[index + 1 :]
        deps = sorted(rng.sample(later, min(len(later), rng.randrange(4))))
        if not deps:
            lines += [f"  {name}@{versions[name]}: {{}}", ""]
            continue
        lines += [f"  {name}@{versions[name]}:", "    dependencies:"]
        lines += [f"      {dep}: {versions[dep]}" for dep in deps]
        lines.append("")
    return "\n".join(lines)
