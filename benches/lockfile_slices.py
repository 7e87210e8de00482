"""The slicing of a workspace's root lockfile alone: time and peak memory of working out every
package's key part, as a cold run's keying does (`plan/lockfiles.py`'s resolver, nothing kept).

    python -m benches.lockfile_slices ROOT [--lockfile pnpm-lock.yaml]

ROOT is a generated workspace (`benches.scale` leaves them in /tmp/once-scale), whose packages
are the folders of `packages/*/*` holding a package.json. Run it with another build first on
PYTHONPATH (a copy of its `python/once`) for the figures before a change.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from once import _core
from once.layout import STATE_DIR
from once.plan.lockfiles import SLICES_NAME, _Resolver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--lockfile", default="pnpm-lock.yaml")
    args = parser.parse_args()
    root: Path = args.root
    if (root / STATE_DIR / SLICES_NAME).exists():
        sys.exit(f"lockfile_slices: {root / STATE_DIR / SLICES_NAME} would answer from kept slices")
    found = root.glob("packages/*/*/package.json")
    manifests = sorted(str(path.relative_to(root)) for path in found)
    paths = [args.lockfile, *manifests]
    digests = dict(zip(paths, _core.hash_files([str(root / path) for path in paths]), strict=True))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    resolver = _Resolver(str(root), digests)
    parts = [resolver.key_parts(str(Path(path).parent), None) for path in manifests]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sliced = sum(part.startswith("slice:") for found in parts for _, part in found)
    print(
        f"{len(manifests)} packages, {sliced} sliced: {seconds:.2f} s, "
        f"peak RSS {peak / 1024:.0f} MB (before slicing {before / 1024:.0f} MB)"
    )


if __name__ == "__main__":
    main()
