"""A seeded synthetic monorepo for the scale benchmarks (`python -m benches.scale`).

    python -m benches.monorepo DIR [--packages N] [--files N] [--seed S] [--no-git]

The default shape is the one of the performance targets: 1,000 packages,
100,000 source files (~740 MB) of a few hundred bytes to a few hundred KB, with a few multi-MB
files, in nested folders; a dependency DAG between packages; a `build` rule in every package
and a `test` rule in every other one, with cheap shell commands so that the tool's own cost
dominates; a `package.json` in every package and a `pnpm-lock.yaml` at the root, so that every
key holds its package's slice of the lockfile; outputs (`dist/`, `reports/`) ignored by
`.gitignore`; and a git repository holding every source file, so that `git status` can be
measured on the very same tree.

The same seed gives the same tree (paths, sizes, contents, DAG); change the seed or the size
knobs to check that a figure is not an artefact of one tree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import random
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from benches.treegen import pnpm_workspace_lockfile

# Contents are slices of one seeded pool, each led by its own path: generating 740 MB from a
# PRNG byte by byte would take minutes, and the bytes need only be incompressible and distinct.
POOL_BYTES = 16 << 20
# Source sizes: log-normal around 2 KB (a typical source file), clamped to 120 B - 400 KB.
MEDIAN_SOURCE_BYTES = 2_000
SIZE_SIGMA = 1.3
MIN_SOURCE_BYTES = 120
MAX_SOURCE_BYTES = 400_000
# One file in 2,000 is a multi-MB asset (a fixture, a model, a data file): 50 in the default tree.
BIG_FILE_EVERY = 2_000
BIG_FILE_BYTES = (2 << 20, 12 << 20)
# Each package depends on up to this many earlier ones, so the DAG has depth as well as breadth.
MAX_PACKAGE_DEPS = 3
GROUPS = 20
MARKER = ".monorepo-generated"
# "SIZE PATH" of every source file, a line each: reading it back is instant where walking a
# 1,000,000-file tree to list them again takes most of a minute.
SOURCES = ".monorepo-sources"
# Targets a full run names: every rule of every package.
TARGETS = ("build", "test")


@dataclass(frozen=True)
class Monorepo:
    root: Path
    packages: list[str]  # workspace-relative package folders, in generation (DAG) order
    sources: list[str]  # workspace-relative source files (not once.toml, not outputs)
    rules: int
    source_bytes: int  # the sources' total size

    def leaf_source(self) -> str:
        """A source file of the last package: nothing depends on it, so changing it re-runs
        only that package's own rules."""
        last = self.packages[-1] + "/"
        return next(path for path in reversed(self.sources) if path.startswith(last))


def generate(
    root: Path,
    *,
    packages: int = 1_000,
    files: int = 100_000,
    seed: int = 0,
    git: bool = True,
) -> Monorepo:
    """Write the tree into `root` (created; must be empty or absent).

    The seeded generator draws the tree on this thread while `WRITERS` threads create the
    files (each `os.open`/`os.writev`/`os.close` releases the GIL), a package at a time: at
    1,000,000 files drawing and writing one after the other, through `pathlib`, took minutes."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible benchmark tree, not a secret
    pool = memoryview(rng.randbytes(POOL_BYTES))
    root.mkdir(parents=True, exist_ok=True)
    names = [f"packages/g{i % GROUPS:02d}/pkg{i:04d}" for i in range(packages)]
    # Uneven package sizes, as in real monorepos: a few big packages, many small ones.
    weights = [rng.lognormvariate(0, 1) for _ in names]
    scale = files / sum(weights)
    counts = [max(1, round(w * scale)) for w in weights]
    counts[-1] = max(1, counts[-1] + files - sum(counts))
    sources: list[str] = []
    listing: list[str] = []
    source_bytes = 0
    rules = 0
    serial = 0
    extensions = ("ts", "py", "rs", "json", "md")
    with _Writers(str(root), pool) as writers:
        for index, (name, count) in enumerate(zip(names, counts, strict=True)):
            folders = _folders(rng, count)
            batch: list[tuple[str, int, int]] = []
            # The same draws, in the same order, as every earlier version of this generator:
            # a seed names the same tree as before.
            for n in range(count):
                rel = f"{name}/{rng.choice(folders)}/f{n:05d}.{rng.choice(extensions)}"
                serial += 1
                if serial % BIG_FILE_EVERY == 0:
                    size = rng.randint(*BIG_FILE_BYTES)
                else:
                    size = _source_size(rng)
                batch.append((rel, rng.randrange(0, POOL_BYTES - size), size))
                sources.append(rel)
                size = max(size, len(rel) + 1)  # the head (the path) is written whole
                listing.append(f"{size} {rel}")
                source_bytes += size
            deps = sorted(
                {names[rng.randrange(index)] for _ in range(rng.randint(0, MAX_PACKAGE_DEPS))}
                if index
                else set()
            )
            has_test = index % 2 == 1
            toml = _package_toml(name, deps, has_test=has_test).encode()
            writers.put(name, batch, toml)
            rules += 1 + has_test
    (root / "once.toml").write_text('[workspace]\nmembers = ["packages/*/*"]\n')
    # A JavaScript workspace's lockfile: each package's key holds the slice it resolves.
    for name in names:
        (root / name / "package.json").write_text(f'{{"name": "{name.rsplit("/", 1)[1]}"}}\n')
    (root / "pnpm-lock.yaml").write_text(pnpm_workspace_lockfile(rng, names))
    (root / ".gitignore").write_text(f"dist/\nreports/\n.once/\n{MARKER}\n{SOURCES}\n")
    if git:
        tracked = [
            *sources,
            *(f"{name}/{kind}" for name in names for kind in ("once.toml", "package.json")),
            "pnpm-lock.yaml",
        ]
        _git_init(root, tracked)
    (root / SOURCES).write_text("\n".join(listing) + "\n")
    # Last: a tree with the marker is a whole one (`load`).
    (root / MARKER).write_text(f"{packages} {files} {seed}\n")
    return Monorepo(root, names, sources, rules, source_bytes)


class _Writers:
    """Threads that write the files of one package at a time: the folders holding them first,
    then each file as its path (a line) followed by `size` bytes of the pool from `start`."""

    WRITERS = 4  # I/O-bound threads: on 2 cores, 4 keep both busy while the draw runs
    FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

    def __init__(self, root: str, pool: memoryview) -> None:
        self._root = root
        self._pool = pool
        # Bounded: the draw must not run a million files ahead of the disk.
        self._queue: queue.Queue[tuple[str, list[tuple[str, int, int]], bytes] | None]
        self._queue = queue.Queue(maxsize=64)
        self._threads = [threading.Thread(target=self._work) for _ in range(self.WRITERS)]
        self._failure: BaseException | None = None

    def __enter__(self) -> _Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        if self._failure is not None and exc[0] is None:
            raise self._failure

    def put(self, package: str, files: list[tuple[str, int, int]], toml: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        self._queue.put((package, files, toml))

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._failure is not None:
                continue  # drain: the draw stops at its next `put`
            try:
                self._write(*job)
            except BaseException as err:  # handed to the drawing thread, which raises it
                self._failure = err

    def _write(self, package: str, files: list[tuple[str, int, int]], toml: bytes) -> None:
        root, pool = self._root, self._pool
        (Path(root) / package).mkdir(parents=True, exist_ok=True)
        for folder in sorted({rel.rsplit("/", 1)[0] for rel, _, _ in files}):
            (Path(root) / folder).mkdir(parents=True, exist_ok=True)
        for rel, start, size in files:
            head = f"{rel}\n".encode()
            fd = os.open(f"{root}/{rel}", self.FLAGS, 0o644)
            try:
                os.writev(fd, (head, pool[start : start + max(0, size - len(head))]))
            finally:
                os.close(fd)
        (Path(root) / package / "once.toml").write_bytes(toml)


def load(root: Path) -> Monorepo | None:
    """The monorepo generated earlier in `root`, or None when there is none (or half of one)."""
    # A tree generated before the lockfile was part of it is generated again.
    if not (root / MARKER).is_file() or not (root / "pnpm-lock.yaml").is_file():
        return None
    names = sorted(
        str(path.parent.relative_to(root)) for path in root.glob("packages/*/*/once.toml")
    )
    names.sort(key=lambda name: int(name.rsplit("pkg", 1)[1]))
    rules = sum((root / name / "once.toml").read_text().count("[rule.") for name in names)
    try:
        listing = (root / SOURCES).read_text().splitlines()
    except FileNotFoundError:  # made before the listing was kept: walk it
        sources = sorted(
            str(path.relative_to(root))
            for path in (root / "packages").rglob("*")
            if path.is_file()
            and path.name not in ("once.toml", "package.json")
            and not _is_output(path)
        )
        total = sum((root / path).stat().st_size for path in sources)
        return Monorepo(root, names, sources, rules, total)
    sized = [line.split(" ", 1) for line in listing]
    listed = sorted(path for _, path in sized)
    return Monorepo(root, names, listed, rules, sum(int(size) for size, _ in sized))


def _is_output(path: Path) -> bool:
    return any(part in ("dist", "reports", ".once") for part in path.parts)


def _source_size(rng: random.Random) -> int:
    size = rng.lognormvariate(math.log(MEDIAN_SOURCE_BYTES), SIZE_SIGMA)
    return int(min(MAX_SOURCE_BYTES, max(MIN_SOURCE_BYTES, size)))


def _folders(rng: random.Random, count: int) -> list[str]:
    """Nested source folders (depth 1 to 4) for a package of `count` files, ~8 files each."""
    folders = ["src", "tests"]
    while len(folders) < max(2, count // 8):
        parent = rng.choice(folders)
        if parent.count("/") < 3:
            folders.append(f"{parent}/m{len(folders)}")
    return folders


def _package_toml(name: str, deps: list[str], *, has_test: bool) -> str:
    label = name.rsplit("/", 1)[1]
    # A JSON array of strings is also a TOML one.
    lines = ["[package]", f"deps = {json.dumps(['//' + dep for dep in deps])}", ""]
    # Cheap commands: builtins plus one `mkdir`, so a cold run measures the tool, not the build.
    lines += [
        "[rule.build]",
        f"cmd = \"mkdir -p dist && echo '{label}' > dist/index.js && echo built {label}\"",
        'outputs = ["dist/"]',
        *(['deps = ["^build"]'] if deps else []),  # `^build` needs package deps to name
        "",
    ]
    if has_test:
        lines += [
            "[rule.test]",
            'cmd = "mkdir -p reports && echo ok > reports/test.txt"',
            'inputs = ["src/**", "tests/**"]',
            'outputs = ["reports/test.txt"]',
            'deps = ["build"]',
            "",
        ]
    return "\n".join(lines)


def _git_init(root: Path, tracked: list[str]) -> None:
    """A repository whose index and one commit hold `tracked` and the root files, for `git
    status` to compare the tree with. The index is written by `update-index --info-only`: each
    file's blob name is computed but the blob is not stored, since `git status` reads the
    index's stats and the files, never a blob, and a stored copy of every file would double
    the tree's size on disk (8 GB at 1,000,000 files). `git add -A` of such a tree took
    minutes, compressing incompressible contents into loose objects."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }

    def git(*args: str, given: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, env=env, input=given, check=True, stdout=subprocess.PIPE
        )
        return done.stdout.decode().strip()

    git("init", "-q")
    # In the index's order (bytes; these paths are ASCII): each entry is then appended, where
    # entries in any other order are inserted into the middle of a million-entry array.
    paths = sorted(["once.toml", ".gitignore", *tracked])
    git("update-index", "--add", "--info-only", "-z", "--stdin", given="\0".join(paths).encode())
    tree = git("write-tree", "--missing-ok")
    commit = git("commit-tree", tree, "-m", "generated by benches.monorepo")
    git("update-ref", "HEAD", commit)


def make_rules_workspace(root: Path, rules: int, *, per_package: int = 100) -> None:
    """A workspace of `rules` trivial rules (cmd `true`, one small input each, no outputs) in
    packages of `per_package` rules: what the scheduler-overhead benchmark runs all cached."""
    packages = max(1, math.ceil(rules / per_package))
    (root / "once.toml").write_text('[workspace]\nmembers = ["p/*"]\n')
    made = 0
    for p in range(packages):
        package = root / "p" / f"p{p:04d}"
        package.mkdir(parents=True, exist_ok=True)
        body = []
        for r in range(min(per_package, rules - made)):
            (package / f"in{r}.txt").write_text(f"{p}/{r}\n")
            body += [f"[rule.r{r}]", 'cmd = "true"', f'inputs = ["in{r}.txt"]', ""]
            made += 1
        (package / "once.toml").write_text("\n".join(body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--packages", type=int, default=1_000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-git", action="store_true")
    args = parser.parse_args()
    repo = generate(
        args.dir, packages=args.packages, files=args.files, seed=args.seed, git=not args.no_git
    )
    print(
        f"{args.dir}: {len(repo.packages)} packages, {len(repo.sources)} files, {repo.rules} rules"
    )


if __name__ == "__main__":
    main()
