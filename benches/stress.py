"""Kill `once` with SIGKILL at random moments and check that nothing it leaves behind is ever
wrong: the next run succeeds, gives every output byte for byte what a build without kills
gives, and `once cache verify` finds nothing to repair.

    python -m benches.stress [--kills N] [--seed S] [--work DIR]

A workspace of a few packages in a chain, each step writing a few dozen files, a 1-2 MiB
file, an executable and a symlink (outputs that depend on a *variant* written into every
package's inputs). Each round picks a phase and kills the process doing it at a random moment
of its usual duration:

- cold: a variant never built, so every step runs and saves;
- restore: a variant in the cache, every output deleted, so every step is restored (as
  copies or as hard links into the cache, at random);
- evict: a new variant under a small `ONCE_CACHE_MAX_SIZE`, so the end of the run evicts;
- gc: `once cache gc --max-size` well below what the cache holds.

With the `once` process go the commands it started (their process groups), as in a crash,
so that no orphan writes into the workspace afterwards. After every kill a run without a kill
must succeed and give exactly the outputs of a clean build of the same variant (a separate
workspace and cache, never killed); at the end every variant used is checked that way again
from deleted outputs, no temporary file of a killed process may be left once a full run (in
`.once/`) and `once cache gc` (in the cache, once they are an hour old) have passed, and
`once cache verify` must report
nothing corrupt and nothing removed. Not a timed benchmark: its figures are kills and failures,
not seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ONCE = shutil.which("once") or str(Path(sys.executable).with_name("once"))
PACKAGES = 4
PHASES = ("cold", "restore", "evict", "gc")
ROOMY = "256M"  # the bound outside the evict phase: nothing is evicted
TIGHT = "6M"  # a little more than one variant's outputs: each new one evicts older ones
GC_TO = "3M"

GEN = """\
import hashlib, os, pathlib, sys
src = sorted(pathlib.Path("src").glob("*.txt"))
seed = hashlib.sha256(b"".join(p.read_bytes() for p in src))
for dep in sys.argv[1:]:
    seed.update(pathlib.Path(dep, "dist", "summary.txt").read_bytes())
digest = seed.digest()
variant = int(src[0].read_text().split()[1])
dist = pathlib.Path("dist")
(dist / "files").mkdir(parents=True, exist_ok=True)
for i in range(20 + variant % 7):
    (dist / "files" / f"f{i:02d}.txt").write_text(f"{digest.hex()} {i}\\n" * (i + 1))
size = (1 << 20) + digest[0] * 4096
(dist / "big.bin").write_bytes(hashlib.shake_256(digest).digest(size))
tool = dist / "tool.sh"
tool.write_text(f"#!/bin/sh\\necho {digest.hex()[:16]}\\n")
tool.chmod(0o755)
if not os.path.lexists(dist / "latest"):
    os.symlink("big.bin", dist / "latest")
(dist / "summary.txt").write_text(digest.hex() + "\\n")
"""


def write_workspace(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "once.toml").write_text('[workspace]\nmembers = ["pkg/*"]\n')
    (root / "gen.py").write_text(GEN)
    for index in range(PACKAGES):
        package = root / "pkg" / f"p{index}"
        (package / "src").mkdir(parents=True, exist_ok=True)
        package_deps = f'[package]\ndeps = ["//pkg/p{index - 1}"]\n\n' if index else ""
        reads = f" ../p{index - 1}" if index else ""
        rule_deps = 'deps = ["^build"]\n' if index else ""
        (package / "once.toml").write_text(
            f"{package_deps}[rule.build]\n"
            f'cmd = "rm -rf dist && python3 ../../gen.py{reads}"\n'
            f'inputs = ["src/**"]\noutputs = ["dist/"]\n{rule_deps}'
        )


def set_variant(root: Path, variant: int) -> None:
    for index in range(PACKAGES):
        text = f"variant {variant} of p{index}\n" + "filler line\n" * (variant % 50)
        (root / "pkg" / f"p{index}" / "src" / "input.txt").write_text(text)


def drop_outputs(root: Path) -> None:
    for index in range(PACKAGES):
        shutil.rmtree(root / "pkg" / f"p{index}" / "dist", ignore_errors=True)


def outputs(root: Path) -> dict[str, tuple[str, bytes | str, bool]]:
    """Every output: path -> (kind, bytes or link target, executable)."""
    found: dict[str, tuple[str, bytes | str, bool]] = {}
    for index in range(PACKAGES):
        dist = root / "pkg" / f"p{index}" / "dist"
        for path in sorted(dist.rglob("*")) if dist.is_dir() else []:
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", str(path.readlink()), False)
            elif path.is_file():
                found[rel] = ("file", path.read_bytes(), os.access(path, os.X_OK))
    return found


class Stress:
    def __init__(self, work: Path, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - moments to kill at, not secrets
        self.ws = work / "stressed" / "ws"
        self.cache = work / "stressed" / "cache"
        self.clean_ws = work / "clean" / "ws"
        self.clean_cache = work / "clean" / "cache"
        for root in (self.ws, self.clean_ws):
            write_workspace(root)
        self.clean: dict[int, dict[str, tuple[str, bytes | str, bool]]] = {}
        self.variant = 0
        self.next_variant = 1
        self.built: list[int] = []  # variants the stressed cache may hold, the newest last
        self.durations: dict[str, float] = {}
        self.kills: Counter[str] = Counter()
        self.finished_first: Counter[str] = Counter()
        self.failures: list[str] = []
        self.cache_temps = 0  # temporary files killed runs left in the cache

    def once(
        self, *args: str, root: Path | None = None, cache: Path | None = None, bound: str = ROOMY
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ONCE, *args],
            cwd=root or self.ws,
            env=self.env(cache or self.cache, bound),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    @staticmethod
    def env(cache: Path, bound: str) -> dict[str, str]:
        return {**os.environ, "ONCE_CACHE_DIR": str(cache), "ONCE_CACHE_MAX_SIZE": bound}

    def expected(self, variant: int) -> dict[str, tuple[str, bytes | str, bool]]:
        """The outputs of a build of `variant` in the clean workspace, never killed."""
        if variant not in self.clean:
            set_variant(self.clean_ws, variant)
            done = self.once("run", "build", root=self.clean_ws, cache=self.clean_cache)
            if done.returncode != 0:
                sys.exit(f"stress: the clean build of variant {variant} failed: {done.stderr}")
            self.clean[variant] = outputs(self.clean_ws)
        return self.clean[variant]

    def prepare(self, phase: str) -> tuple[list[str], str]:
        """Set the workspace up for `phase`; the command to kill, and the size bound."""
        if phase in ("cold", "evict"):
            self.variant, self.next_variant = self.next_variant, self.next_variant + 1
            set_variant(self.ws, self.variant)
            self.built.append(self.variant)
            return ["run", "build"], TIGHT if phase == "evict" else ROOMY
        if phase == "restore":
            self.variant = self.rng.choice(self.built) if self.built else 0
            set_variant(self.ws, self.variant)
            self.check("before a restore")  # builds what an earlier eviction dropped
            drop_outputs(self.ws)
            return ["run", "build", "--link", self.rng.choice(("copy", "hardlink"))], ROOMY
        return ["cache", "gc", "--max-size", GC_TO], ROOMY

    def round(self, phase: str) -> None:
        args, bound = self.prepare(phase)
        started = time.monotonic()
        proc = subprocess.Popen(
            [ONCE, *args],
            cwd=self.ws,
            env=self.env(self.cache, bound),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        usual = self.durations.get(phase)
        if usual is None:  # the first round of a phase only measures it
            _, err = proc.communicate(timeout=300)
            self.durations[phase] = time.monotonic() - started
            if proc.returncode != 0:
                self.failures.append(f"{phase}: a run without a kill failed: {err.strip()}")
        else:
            time.sleep(self.rng.uniform(0, usual * 1.1))
            if proc.poll() is None:
                kill_with_commands(proc)
                self.kills[phase] += 1
                proc.communicate()
            else:
                self.finished_first[phase] += 1
                _, err = proc.communicate()
                if proc.returncode != 0:
                    self.failures.append(f"{phase}: a run failed by itself: {err.strip()}")
        self.check(f"after {phase}")

    def check(self, when: str) -> None:
        """A run without a kill succeeds and gives exactly the clean build's outputs."""
        done = self.once("run", "build")
        if done.returncode != 0:
            self.failures.append(
                f"{when} (variant {self.variant}): exit {done.returncode}: {done.stderr.strip()}"
            )
            return
        got, want = outputs(self.ws), self.expected(self.variant)
        if got != want:
            wrong = sorted(path for path in {*got, *want} if got.get(path) != want.get(path))
            self.failures.append(f"{when} (variant {self.variant}): outputs differ: {wrong[:5]}")

    def final(self) -> dict[str, int]:
        """Every variant used, from deleted outputs, then the cache verified."""
        for variant in sorted({0, *self.built}):
            self.variant = variant
            set_variant(self.ws, variant)
            drop_outputs(self.ws)
            self.check("final")
        # What killed runs left half-written: the next full run (here, forced) removes it from
        # the workspace's state, `once cache gc` from the cache.
        self.once("run", "build", "--force")
        self.leftovers("a full run", sorted((self.ws / ".once").rglob("*.tmp")))
        # gc takes a temporary file for a dead writer's once it is an hour old (a live writer
        # on another machine sharing the cache cannot be asked): made that old here.
        temps = sorted(self.cache.rglob(".tmp-*"))
        self.cache_temps = len(temps)
        an_hour_ago = time.time() - 3700
        for temp in temps:
            os.utime(temp, (an_hour_ago, an_hour_ago))
        self.once("cache", "gc")
        self.leftovers("once cache gc", sorted(self.cache.rglob(".tmp-*")))
        done = self.once("cache", "verify", "--json")
        if done.returncode != 0:
            self.failures.append(f"cache verify: exit {done.returncode}: {done.stderr.strip()}")
            return {}
        report: dict[str, int] = json.loads(done.stdout)
        if report["corrupt_blobs"] or report["removed_entries"]:
            self.failures.append(f"cache verify repaired something: {report}")
        return report

    def leftovers(self, after: str, found: list[Path]) -> None:
        if found:
            names = [path.name for path in found[:3]]
            self.failures.append(f"after {after}: {len(found)} temporary files left: {names}")


def kill_with_commands(proc: subprocess.Popen[str]) -> None:
    """SIGKILL `proc` and the process groups of the commands it started, as a crash would:
    stopped first, so that it starts no command between the look and the kill."""
    os.kill(proc.pid, signal.SIGSTOP)
    children = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            children += (task / "children").read_text().split()
    os.kill(proc.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(child), signal.SIGKILL)
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=120, help="kills to land (default 120)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder to work in (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="once-stress-"))
    shutil.rmtree(work / "stressed", ignore_errors=True)
    shutil.rmtree(work / "clean", ignore_errors=True)
    stress = Stress(work, args.seed)
    set_variant(stress.ws, 0)
    stress.check("first build")
    started = time.monotonic()
    for phase in PHASES:  # each phase measured once, without a kill
        stress.round(phase)
    while sum(stress.kills.values()) < args.kills:
        stress.round(stress.rng.choice(PHASES))
    report = stress.final()
    print(
        f"once stress: seed {args.seed}, {PACKAGES} steps a run, {time.monotonic() - started:.0f} s"
    )
    print("| phase | usual s | kills | finished before the kill |")
    print("|---|---|---|---|")
    for phase in PHASES:
        print(
            f"| {phase} | {stress.durations.get(phase, 0):.2f} | {stress.kills[phase]} | "
            f"{stress.finished_first[phase]} |"
        )
    print(
        f"kills: {sum(stress.kills.values())}; variants checked at the end: "
        f"{len({0, *stress.built})}; cache verify: {report}"
    )
    print(f"temporary files killed runs left in the cache: {stress.cache_temps}")
    print(f"failures: {len(stress.failures)}")
    for failure in stress.failures:
        print(f"  {failure}")
    return 1 if stress.failures else 0


if __name__ == "__main__":
    sys.exit(main())
