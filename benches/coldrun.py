"""A cold run of N trivial steps beside its floor: the same shell commands run by `xargs -P2`.

    python -m benches.coldrun [--steps 1000 10000] [--repeat N] [--jobs 2] [--work DIR]
                              [--before ONCE] [--delete-before] [--prints] [--markdown]

A workspace of N rules (100 per package), each writing one small output file with a one-line
shell command, is run cold (`once run -j 2`: empty cache, no `.once/`, no outputs) and its N
commands are run by `xargs -P2`, each through `sh -c` in the rule's package folder as `once`
runs it, outputs deleted before each. The two alternate, pair after pair, and the ratio is the
median of the pairs' ratios (see `benches.scale.measure_pair`): what `once` adds to the commands
themselves (spawning, hashing and storing outputs, keys, history, progress) per step.

Each cold run gets a cache and a state folder of its own; the previous run's are moved aside and
deleted after the series, not just before the next timed run. On ext4 without a journal (this
benchmark's first host), creating a file scans the inodes freed in the last minutes, and
deleting the previous cache's thousands of files moments before made the next run's store
writes several times slower than on a first cold run (a CI machine, a new clone).
`--delete-before` deletes them before each run instead, to see that cost.

`benches.scale` calls `cold_rows` for its table; run alone, this prints the same rows, and with
`--before` (another build's `once` program) runs it in turns with this one: before and after
in one sitting, each beside the floor.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benches.scale import Measured, Row, print_table, timed

RULES_PER_PACKAGE = 100
# The cold run's target (the performance table of the product): at most 1.4x the floor.
TARGET_RATIO = 1.4


def cold_commands(root: Path, steps: int, *, prints: bool = False) -> list[tuple[Path, str]]:
    """Each rule's package folder and command, in order: rule `r{n % 100}` of package
    `p{n // 100}` runs `echo N > outR.txt` (with `prints`, then `echo built N`: a step that
    reports what it did, and so has a log to store)."""
    report = " && echo built {n}" if prints else ""
    return [
        (
            root / "p" / f"p{n // RULES_PER_PACKAGE:04d}",
            f"echo {n} > out{n % RULES_PER_PACKAGE}.txt" + report.format(n=n),
        )
        for n in range(steps)
    ]


def make_cold_workspace(root: Path, steps: int, *, prints: bool = False) -> None:
    """Write a workspace of `steps` trivial rules into `root`, each reading one small input
    file and writing one small output, and the list of their commands the floor runs."""
    (root / "once.toml").write_text('[workspace]\nmembers = ["p/*"]\n')
    bodies: dict[Path, list[str]] = {}
    for n, (package, cmd) in enumerate(cold_commands(root, steps, prints=prints)):
        r = n % RULES_PER_PACKAGE
        package.mkdir(parents=True, exist_ok=True)
        (package / f"in{r}.txt").write_text(f"{n}\n")
        bodies.setdefault(package, []).extend(
            [
                f"[rule.r{r}]",
                f'cmd = "{cmd}"',
                f'inputs = ["in{r}.txt"]',
                f'outputs = ["out{r}.txt"]',
                "",
            ]
        )
    for package, body in bodies.items():
        (package / "once.toml").write_text("\n".join(body))


def delete_outputs(root: Path, steps: int) -> None:
    for n, (package, _) in enumerate(cold_commands(root, steps)):
        (package / f"out{n % RULES_PER_PACKAGE}.txt").unlink(missing_ok=True)


def cold_series(
    programs: list[str],
    root: Path,
    cache: Path,
    env: dict[str, str],
    *,
    steps: int,
    repeat: int,
    jobs: int,
    delete_before: bool = False,
    prints: bool = False,
) -> tuple[Measured, list[Measured]]:
    """`repeat` runs of the floor and, for each `once` program in `programs`, as many cold
    runs of `steps` rules, in turns (each round in another order), each after a reset that is
    not timed: (floor, cold runs per program)."""
    marker = root / ".steps"
    listed = root.parent / f"{root.name}.commands"
    shape = f"{steps}{' printing' if prints else ''}"
    if not marker.is_file() or marker.read_text() != shape or not listed.is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        make_cold_workspace(root, steps, prints=prints)
        made = cold_commands(root, steps, prints=prints)
        listed.write_bytes(b"".join(f"{cwd}\0{cmd}\0".encode() for cwd, cmd in made))
        marker.write_text(shape)
    run_env = {**env, "ONCE_CACHE_DIR": str(cache)}
    targets = [f"r{r}" for r in range(min(steps, RULES_PER_PACKAGE))]
    # One `sh -c` per command, in its folder: what `once` spawns for a step.
    floor = ["xargs", "-0", f"-P{jobs}", "-n2", "-a", str(listed)]
    floor += ["sh", "-c", 'cd "$1" && eval "$2"', "sh"]
    commands = [floor] + [
        [once, "run", "-j", str(jobs), "--output-logs=none", *targets] for once in programs
    ]

    graveyard = root.parent / f"{root.name}.deleted"
    shutil.rmtree(graveyard, ignore_errors=True)  # an interrupted series'
    buried = itertools.count()

    def reset() -> None:
        for made in (cache, root / ".once"):
            if delete_before:
                shutil.rmtree(made, ignore_errors=True)
            elif made.exists():
                graveyard.mkdir(exist_ok=True)
                made.rename(graveyard / str(next(buried)))
        delete_outputs(root, steps)

    sides: list[list[tuple[float, float]]] = [[] for _ in commands]
    for n in range(repeat):
        order = list(range(len(commands)))
        order = order[n % len(order) :] + order[: n % len(order)]
        for which in order:
            reset()
            sides[which].append(timed(commands[which], root, run_env))
            written = sum(
                (package / f"out{i % RULES_PER_PACKAGE}.txt").is_file()
                for i, (package, _) in enumerate(cold_commands(root, steps))
            )
            if written != steps:
                sys.exit(f"coldrun: {commands[which][0]} wrote {written} of {steps} outputs")
    reset()
    shutil.rmtree(graveyard, ignore_errors=True)  # after the series: no run waits behind it
    measured = [
        Measured(
            statistics.median(s for s, _ in side),
            max(p for _, p in side),
            tuple(s for s, _ in side),
        )
        for side in sides
    ]
    return measured[0], measured[1:]


def cold_rows(
    once: str,
    work: Path,
    env: dict[str, str],
    *,
    steps: list[int],
    repeat: int,
    jobs: int = 2,
    before: str | None = None,
    delete_before: bool = False,
    prints: bool = False,
) -> list[Row]:
    """Per size in `steps`: the cold run beside its `xargs` floor, paired; with `before` (an
    earlier build's `once`), its cold run too, and the two builds side by side. With `prints`,
    each step also prints a line."""
    rows = []
    kind = "trivial steps printing a line" if prints else "trivial steps"
    for count in steps:
        print(f"cold run of {count} {kind} ...", file=sys.stderr)
        named_dir = f"cold-{count}{'-printing' if prints else ''}"
        floor, (cold, *earlier) = cold_series(
            [once] if before is None else [once, before],
            work / named_dir,
            work / f"cache-{named_dir}",
            env,
            steps=count,
            repeat=repeat,
            jobs=jobs,
            delete_before=delete_before,
            prints=prints,
        )
        named = [("", cold)] if before is None else [(" (after)", cold), (" (before)", earlier[0])]
        rows += [
            Row(
                f"cold run of {count} {kind}, -j {jobs}{which}",
                measured,
                f"floor: xargs -P{jobs} sh -c",
                floor,
                f"≤ {TARGET_RATIO}x",
                lambda _s, ratio: ratio is not None and ratio <= TARGET_RATIO,
                paired=True,
                per_file=False,  # steps of their own workspace, not the tree's files
            )
            for which, measured in named
        ]
        if before is not None:
            rows.append(
                Row(
                    f"cold run of {count} {kind}, after",
                    cold,
                    "before",
                    earlier[0],
                    "",
                    lambda _s, _r: True,
                    paired=True,
                    per_file=False,
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=5, help="pairs per size (median)")
    parser.add_argument("--jobs", type=int, default=2, help="-j of once, -P of xargs")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "once-scale")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--before", help="an earlier build's `once`, run in turns with this one")
    parser.add_argument(
        "--delete-before",
        action="store_true",
        help="delete the last run's cache just before each run (see above)",
    )
    parser.add_argument(
        "--prints", action="store_true", help="each step also prints a line (it has a log)"
    )
    args = parser.parse_args()
    once = shutil.which("once")
    if once is None:
        sys.exit("coldrun: needs `once` on PATH")
    args.work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ONCE_CACHE_MAX_SIZE": "1T"}
    rows = cold_rows(
        once,
        args.work,
        env,
        steps=args.steps,
        repeat=args.repeat,
        jobs=args.jobs,
        before=args.before,
        delete_before=args.delete_before,
        prints=args.prints,
    )
    header = f"cold runs; medians of {args.repeat} pairs (a ratio: the median of its pairs)"
    print_table(rows, header, 0, markdown=args.markdown)  # no tree: no cost per file


if __name__ == "__main__":
    main()
