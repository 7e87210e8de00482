"""The performance targets, measured on a synthetic monorepo in one sitting.

    python -m benches.scale [--packages N] [--files N] [--seed S] [--repeat N] [--big-gib N]
                            [--rules N] [--cold-steps N...] [--work DIR] [--markdown]

Generates (or reuses, in `--work`) the tree of `benches/monorepo.py` and times, each beside its
reference measured in the same run: a cold run (empty cache), a no-op run (everything cached,
outputs present) and `git status`, without and with options and with a remote cache configured
(`$ONCE_REMOTE` naming a port nothing listens on: a no-op never asks it), the floor of a no-op
in this shape (a Python process that only imports the extension and walks) and `git status`
again, restore-all (every output deleted) by copy and by hard link, one source file changed,
`once hash` of the whole tree without a stat cache and `b3sum` over the same files, one big
file, `once --version` and `python -c "import click"`, the no-op run of a workspace of
`--rules` trivial rules (scheduler overhead), the no-op run of a rule declaring four tool
probes beside the same rule without them, each no-op right after a one-file change (p95 and
max against the no-op's median), and cold runs of `--cold-steps` trivial steps beside the
same commands under `xargs -P2` (benches/coldrun.py). Every command is a subprocess as a user
runs it; the table shows medians, the ratio to the reference, the target, the peak resident
memory of the `once` process (GNU time, else `wait4`), and each row's cost of the tree and its
reference's per source file (µs), so that growth faster than linear shows between trees of
different sizes. The peak memory target is 200 MB up to 100,000 files and 400 MB up to
1,000,000. A case and its reference run in alternation, each pair in the other order than the
last, so that neither gains from running second; their ratio is the median of the ratios of
each pair: a burst of load from a neighbour slows both runs of a pair, where it could move one
of two separate medians alone.

The tree is generated once in `--work` (a folder named by its parameters) and reused; at
1,000,000 files use `--repeat 3`: the machine is shared and noisy, read medians and ratios,
not single runs; the header gives the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from once.layout import STAT_CACHE, STATE_DIR

from benches.monorepo import TARGETS, Monorepo, generate, load, make_rules_workspace

OUTPUT_DIRS = ("dist", "reports")


@dataclass(frozen=True)
class Measured:
    seconds: float  # median
    peak_mb: float  # the largest resident set of any repeat
    runs: tuple[float, ...] = ()  # every timed run in order; paired with the reference's

    def p95(self) -> float:
        """The 95th percentile of the runs (nearest rank): one slow run in twenty shows."""
        ordered = sorted(self.runs) or [self.seconds]
        return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]

    def slowest(self) -> float:
        return max(self.runs, default=self.seconds)


@dataclass(frozen=True)
class Row:
    case: str
    once: Measured
    reference: str
    ref: Measured | None
    target: str
    # ratio -> met? (None: an absolute target on `once` alone)
    check: Callable[[float, float | None], bool]
    # How the ratio reads: time ratio once/ref, or throughput ratio ref/once.
    throughput: bool = False
    # Measured by `measure_pair`: the ratio is the median of the runs' pairwise ratios.
    paired: bool = False
    # A cost of the tree (a walk, a hash, a run over its files): shown per source file too,
    # so that growth faster than the tree's shows between sizes.
    per_file: bool = True

    def ratio(self) -> float | None:
        if self.ref is None:
            return None
        if self.paired:
            pairs = zip(self.once.runs, self.ref.runs, strict=True)
            return statistics.median(
                ref / once if self.throughput else once / ref for once, ref in pairs
            )
        if self.throughput:
            return self.ref.seconds / self.once.seconds
        return self.once.seconds / self.ref.seconds

    def met(self) -> bool:
        return self.check(self.once.seconds, self.ratio())


NOOP_TARGET = "≤ 0.8x"


def noop_met(_seconds: float, ratio: float | None) -> bool:
    return ratio is not None and ratio <= 0.8


def peak_target_mb(files: int) -> int:
    """The peak resident memory allowed a run over a tree of `files` files: 200 MB up to
    100,000 files (Turborepo takes 137 MB there), 400 MB up to 1,000,000."""
    return 200 if files <= 100_000 else 400


GNU_TIME = Path("/usr/bin/time")
# A process that only starts Python, imports the extension and walks the workspace as a run's
# prelude does (the interpreter is the benchmark's own, the one `once` runs on).
WALK_ONLY = (
    "from once import _core; "
    f"_core.Snapshot.start_scan('.', [{STATE_DIR!r}], {STATE_DIR + '/' + STAT_CACHE!r}).wait()"
)


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of `argv`; stdout is discarded.

    The peak comes from GNU time when installed: a child forked from this (large) process
    starts with this process's resident set, which `wait4` would report as the child's peak.
    Pages of a memory-mapped file count as resident too (the big-file case)."""
    with tempfile.NamedTemporaryFile("r") as report:
        wrapper = [str(GNU_TIME), "-f", "%M", "-o", report.name] if GNU_TIME.exists() else []
        started = time.perf_counter()
        proc = subprocess.Popen([*wrapper, *argv], cwd=cwd, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            sys.exit(f"scale: {' '.join(argv)} exited with {proc.returncode}")
        reported = report.read().strip().splitlines()
    kib = int(reported[-1]) if wrapper and reported else usage.ru_maxrss  # Linux: KiB
    return seconds, kib / 1024


def measure(
    argv: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    repeat: int,
    before: Callable[[], object] | None = None,
    *,
    warm: bool = True,
) -> Measured:
    """Median of `repeat` runs, each after `before` (untimed); one untimed warm-up first."""
    runs = []
    for n in range(repeat + int(warm)):
        if before is not None:
            before()
        seconds, peak = timed(argv, cwd, env)
        if n >= int(warm):
            runs.append((seconds, peak))
    return Measured(
        statistics.median(s for s, _ in runs),
        max(p for _, p in runs),
        tuple(s for s, _ in runs),
    )


def measure_pair(
    argv: Sequence[str], ref_argv: Sequence[str], cwd: Path, env: dict[str, str], repeat: int
) -> tuple[Measured, Measured]:
    """`measure` of `argv` and of its reference, their runs alternating (after one untimed
    warm-up of each): on a shared machine, and in a VM whose memory the host reclaims, runs
    done one block after the other favour whichever block comes second. Within a pair the
    order alternates too (once first, then the reference first), for the same reason."""
    runs: tuple[list[tuple[float, float]], list[tuple[float, float]]] = ([], [])
    for n in range(repeat + 1):
        order = ((0, argv), (1, ref_argv)) if n % 2 else ((1, ref_argv), (0, argv))
        for which, command in order:
            measured = timed(command, cwd, env)
            if n:
                runs[which].append(measured)
    once, ref = (
        Measured(
            statistics.median(s for s, _ in side),
            max(p for _, p in side),
            tuple(s for s, _ in side),
        )
        for side in runs
    )
    return once, ref


def delete_outputs(repo: Monorepo) -> None:
    for package in repo.packages:
        for name in OUTPUT_DIRS:
            shutil.rmtree(repo.root / package / name, ignore_errors=True)


def machine_shape() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / (1 << 30):.0f} GiB RAM"
    except (ValueError, OSError):
        memory = "RAM unknown"
    return f"{os.cpu_count()} CPUs ({cpu}), {memory}, {platform.system()} {platform.release()}"


def main() -> None:  # noqa: PLR0915 - one linear script of measurements reads best as one
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=1_000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per case (median)")
    parser.add_argument("--big-gib", type=float, default=2.0, help="size of the one big file")
    parser.add_argument("--rules", type=int, default=10_000, help="rules of the overhead case")
    parser.add_argument(
        "--cold-steps",
        type=int,
        nargs="*",
        default=[1_000, 10_000],
        help="sizes of the cold-run case (benches/coldrun.py), beside xargs -P2",
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "once-scale")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()
    once = shutil.which("once")
    b3sum = shutil.which("b3sum")
    if once is None or b3sum is None:
        sys.exit("scale: needs `once` and `b3sum` on PATH (apt-get install b3sum)")

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    tree = work / f"p{args.packages}-f{args.files}-s{args.seed}"
    repo = load(tree)
    if repo is None:
        shutil.rmtree(tree, ignore_errors=True)
        print(f"generating {tree} ...", file=sys.stderr)
        started = time.perf_counter()
        repo = generate(tree, packages=args.packages, files=args.files, seed=args.seed)
        print(f"generated in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    tree_mb = repo.source_bytes / 1e6
    files = len(repo.sources)
    cache = work / f"cache-{tree.name}"
    env = {
        **os.environ,
        "ONCE_CACHE_DIR": str(cache),
        "ONCE_CACHE_MAX_SIZE": "1T",  # measure the run, not an eviction
    }
    run = [once, "run", *TARGETS]
    repeat = args.repeat
    load_before = os.getloadavg()
    rows: list[Row] = []

    def reset_all() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(tree / ".once", ignore_errors=True)
        delete_outputs(repo)

    # Hashing first, while the tree holds only sources: both tools see the same files.
    print("hashing the whole tree ...", file=sys.stderr)
    reset_all()
    listed = work / f"files-{tree.name}.list"
    everything = sorted([*repo.sources, *(f"{package}/once.toml" for package in repo.packages)])
    listed.write_bytes(b"\0".join(p.encode() for p in everything) + b"\0")
    hashed, b3sum_hashed = measure_pair(
        [once, "hash", "packages"], ["xargs", "-0", "-a", str(listed), b3sum], tree, env, repeat
    )
    rows.append(
        Row(
            f"hash whole tree ({len(everything)} files, {tree_mb:.0f} MB), no stat cache",
            hashed,
            "b3sum (xargs)",
            b3sum_hashed,
            "≤ 0.6x",
            lambda _s, ratio: ratio is not None and ratio <= 0.6,
            paired=True,
        )
    )

    big = work / f"big-{args.big_gib:g}GiB.bin"
    big_bytes = int(args.big_gib * (1 << 30))
    if not big.is_file() or big.stat().st_size != big_bytes:
        print(f"writing {big} ...", file=sys.stderr)
        chunk = os.urandom(1 << 24)
        with big.open("wb") as out:
            for _ in range(big_bytes // len(chunk)):
                out.write(chunk)
            out.write(chunk[: big_bytes % len(chunk)])
    big_once, big_b3sum = measure_pair(
        [once, "hash", str(big)], [b3sum, str(big)], work, env, repeat
    )
    rows.append(
        Row(
            f"one {args.big_gib:g} GiB file (throughput)",
            big_once,
            "b3sum",
            big_b3sum,
            "≥ 0.9x",
            lambda _s, ratio: ratio is not None and ratio >= 0.9,
            throughput=True,
            paired=True,
            per_file=False,
        )
    )

    version, click_import = measure_pair(
        [once, "--version"], [sys.executable, "-c", "import click"], work, env, repeat * 2
    )
    rows.append(
        Row(
            "once --version",
            version,
            'python -c "import click"',
            click_import,
            "≤ 1.3x",
            lambda _s, ratio: ratio is not None and ratio <= 1.3,
            paired=True,
            per_file=False,
        )
    )

    print("cold run ...", file=sys.stderr)
    cold = measure(run, tree, env, max(1, repeat // 3), reset_all, warm=False)
    rows.append(Row(f"cold run ({repo.rules} rules)", cold, "", None, "", lambda _s, _r: True))
    print("no-op run ...", file=sys.stderr)
    noop, git_status = measure_pair(run, ["git", "status", "--porcelain"], tree, env, repeat)
    rows.append(
        Row(
            "no-op run, everything cached",
            noop,
            "git status",
            git_status,
            NOOP_TARGET,
            noop_met,
            paired=True,
        )
    )
    # Options that change nothing when every step is a hit keep a no-op's cost.
    optioned, optioned_git = measure_pair(
        [*run, "-j", "2", "--output-logs", "none"],
        ["git", "status", "--porcelain"],
        tree,
        env,
        repeat,
    )
    rows.append(
        Row(
            "no-op run with -j 2 --output-logs none",
            optioned,
            "git status",
            optioned_git,
            NOOP_TARGET,
            noop_met,
            paired=True,
        )
    )
    # A remote cache is asked only on a local miss: a no-op keeps its cost. Nothing listens
    # on port 9 (discard), so a no-op that asked it would show in the time or the output.
    remote_env = {**env, "ONCE_REMOTE": "http://127.0.0.1:9/"}
    remote_noop, remote_git = measure_pair(
        run, ["git", "status", "--porcelain"], tree, remote_env, repeat
    )
    rows.append(
        Row(
            "no-op run, remote configured, all hits local",
            remote_noop,
            "git status",
            remote_git,
            NOOP_TARGET,
            noop_met,
            paired=True,
        )
    )
    # The part of a no-op that no change to once's Python can win back: the interpreter's
    # start, the extension's import and the walk against the stat cache (run/prelude.py). Where
    # this alone is near git status (small trees), the no-op's ratio is the interpreter's.
    floor, floor_git = measure_pair(
        [sys.executable, "-c", WALK_ONLY], ["git", "status", "--porcelain"], tree, env, repeat
    )
    rows.append(
        Row(
            "floor: python start + the walk alone",
            floor,
            "git status",
            floor_git,
            "",
            lambda _s, _r: True,
            paired=True,
        )
    )
    print("restore-all ...", file=sys.stderr)
    rows.append(
        Row(
            "restore-all (outputs deleted)",
            measure(run, tree, env, repeat, lambda: delete_outputs(repo), warm=False),
            "",
            None,
            "≤ 1 s",
            lambda seconds, _r: seconds <= 1.0,
        )
    )
    rows.append(
        Row(
            "restore-all, --link=hardlink",
            measure(
                [*run, "--link=hardlink"],
                tree,
                env,
                repeat,
                lambda: delete_outputs(repo),
                warm=False,
            ),
            "",
            None,
            "",
            lambda _s, _r: True,
        )
    )
    # The cases after this one start from copies, as they always did.
    delete_outputs(repo)
    subprocess.run(run, cwd=tree, env=env, capture_output=True, check=True)
    leaf = tree / repo.leaf_source()
    original = leaf.read_bytes()
    edits = iter(range(1_000_000))

    def edit_leaf() -> None:
        leaf.write_bytes(original + f"\n// edit {next(edits)}\n".encode())

    print("one file changed ...", file=sys.stderr)
    changed = measure(run, tree, env, repeat, edit_leaf, warm=False)
    rows.append(Row("one file changed", changed, "git status", git_status, "", lambda _s, _r: True))
    # Each no-op right after a run that changed something: periodic work done at the end of a
    # changing run (a recount, a compaction) or left for the next run shows in max and p95.
    # Twenty at least, so that one run in twenty shows.
    print("no-op after a change ...", file=sys.stderr)

    def edit_and_run() -> None:
        edit_leaf()
        subprocess.run(run, cwd=tree, env=env, capture_output=True, check=True)

    after = measure(run, tree, env, max(repeat, 20), edit_and_run, warm=False)
    leaf.write_bytes(original)
    rows.append(
        Row(
            "no-op right after a one-file change",
            after,
            "no-op run (median)",
            noop,
            "max < 10x ref",
            lambda _s, _r: after.slowest() < 10 * noop.seconds,
        )
    )

    print(f"{args.rules} cached rules ...", file=sys.stderr)
    rules_root = work / f"rules-{args.rules}"
    if not (rules_root / "once.toml").is_file():
        shutil.rmtree(rules_root, ignore_errors=True)
        rules_root.mkdir(parents=True)
        make_rules_workspace(rules_root, args.rules)
    rules_env = {**env, "ONCE_CACHE_DIR": str(work / f"cache-rules-{args.rules}")}
    rules_run = [once, "run", "--output-logs=none", *(f"r{r}" for r in range(min(args.rules, 100)))]
    timed(rules_run, rules_root, rules_env)  # fill the cache (a no-op when it is full already)
    rows.append(
        Row(
            f"no-op run of {args.rules} cached trivial rules",
            measure(rules_run, rules_root, rules_env, repeat),
            "",
            None,
            "≤ 1 s",
            lambda seconds, _r: seconds <= 1.0,
            per_file=False,
        )
    )

    print("four tool probes ...", file=sys.stderr)
    rows.append(probes_row(work, env, once, repeat))

    from benches.coldrun import cold_rows  # noqa: PLC0415 - it imports this module

    rows += cold_rows(once, work, env, steps=args.cold_steps, repeat=max(1, repeat // 3))

    # The big file is memory-mapped: its pages count as resident without being allocated.
    peak = max(row.once.peak_mb for row in rows if "GiB file" not in row.case)
    allowed = peak_target_mb(files)
    load_after = os.getloadavg()
    header = (
        f"{datetime.date.today().isoformat()}, {machine_shape()}; tree: {len(repo.packages)} "
        f"packages, {files} source files, {tree_mb:.0f} MB, seed {args.seed}; "
        f"medians of {repeat} runs (a ratio: of its pairs); "
        f"peak RSS of once on the tree {peak:.0f} MB "
        f"(target ≤ {allowed} MB: {'met' if peak <= allowed else 'NOT met'}); "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print_table(rows, header, files, markdown=args.markdown)


def per_file_us(seconds: float, files: int) -> str:
    """Microseconds per source file, with two or three significant digits."""
    if not files:
        return "-"
    us = seconds / files * 1e6
    return f"{us:.0f}" if us >= 10 else f"{us:.1f}" if us >= 1 else f"{us:.2f}"


# Version probes of programs this benchmark needs anyway: plain commands starting native
# programs by their own name, whose output is kept between runs while the program is unchanged
# (not `python3`, often a version manager's shim, which is probed every run).
PROBES = ("git --version", "b3sum --version", "tar --version", "xargs --version")


def probes_row(work: Path, env: dict[str, str], once: str, repeat: int) -> Row:
    """The no-op run of one rule declaring the four `PROBES`, beside the same rule without
    them: what declared probes add to a no-op."""
    roots = []
    for name, tools in (("probes-4", PROBES), ("probes-0", ())):
        root = work / name
        root.mkdir(parents=True, exist_ok=True)
        tools_toml = ", ".join(f'"{tool}"' for tool in tools)
        (root / "once.toml").write_text(
            f'[rule.build]\ncmd = "cp src.txt out.txt"\ninputs = ["src.txt"]\n'
            f'outputs = ["out.txt"]\ntools = [{tools_toml}]\n'
        )
        (root / "src.txt").write_text("source\n")
        timed([once, "run", "build"], root, env)  # fill the cache
        roots.append(root)
    probed, plain = measure_pair(
        [once, "-C", str(roots[0]), "run", "build"],
        [once, "-C", str(roots[1]), "run", "build"],
        work,
        env,
        repeat,
    )
    return Row(
        "no-op run, 4 tool probes declared",
        probed,
        "same rule, no probes",
        plain,
        "≤ 1.1x",
        lambda _s, ratio: ratio is not None and ratio <= 1.1,
        paired=True,
        per_file=False,
    )


def print_table(rows: list[Row], header: str, files: int, *, markdown: bool) -> None:
    # p95 and max beside the median: periodic work (a recount, a compaction) that makes one run
    # in twenty ten times slower hides in a median.
    columns = (
        "case",
        "once s",
        "p95 s",
        "max s",
        "reference",
        "ref s",
        "ratio",
        "target",
        "met",
        "peak MB",
        "µs/file",
        "ref µs/file",
    )
    lines = []
    for row in rows:
        ratio = row.ratio()
        lines.append(
            (
                row.case,
                f"{row.once.seconds:.3f}",
                f"{row.once.p95():.3f}",
                f"{row.once.slowest():.3f}",
                row.reference or "-",
                f"{row.ref.seconds:.3f}" if row.ref else "-",
                f"{ratio:.2f}x" if ratio is not None else "-",
                row.target or "-",
                ("yes" if row.met() else "NO") if row.target else "-",
                f"{row.once.peak_mb:.0f}",
                per_file_us(row.once.seconds, files) if row.per_file else "-",
                per_file_us(row.ref.seconds, files) if row.per_file and row.ref else "-",
            )
        )
    print(header)
    if markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for line in lines:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(columns)]
    for line in (columns, *lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
