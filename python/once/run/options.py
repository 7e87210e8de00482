"""`once run`'s options, described once. click's `run` command is made from this table
(cli/), and a run's command line is parsed with it before click is imported (run/prelude.py), so
the two can never disagree on a name, a choice or a bound: click parses a run only to word a
usage error, to print help, or for a dry run. Light: loaded before everything else of a run."""

from __future__ import annotations

from once.ui.console import LOG_MODES, log_mode

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from typing import Final

    from once.api import OutputLogs


class RunOption:
    """One option of `once run`: its names, where click puts its value, and what it takes."""

    __slots__ = (
        "choices",
        "default",
        "dest",
        "help",
        "metavar",
        "minimum",
        "names",
        "runs",
        "show_default",
        "takes_value",
    )

    def __init__(
        self,
        *names: str,
        dest: str,
        help: str,
        takes_value: bool = False,
        choices: tuple[str, ...] | None = None,
        minimum: int | None = None,
        default: str | None = None,
        metavar: str | None = None,
        show_default: bool = False,
        runs: bool = True,
    ) -> None:
        self.names: Final = names
        self.dest: Final = dest  # the parameter of `cli.run` that receives it
        self.help: Final = help
        self.takes_value: Final = takes_value  # else a flag
        self.choices: Final = choices
        self.minimum: Final = minimum  # an integer at least this
        self.default: Final = default
        self.metavar: Final = metavar
        self.show_default: Final = show_default
        # False for an option after which `run` prints and exits without running anything:
        # the prelude then takes no lock and walks nothing.
        self.runs: Final = runs


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption(
        "-j",
        "--jobs",
        dest="jobs",
        takes_value=True,
        minimum=1,
        help="Commands to run at once [default: number of CPUs].",
    ),
    RunOption("--force", dest="force", help="Run every command even if the cache has it."),
    RunOption(
        "--output-logs",
        dest="output_logs",
        takes_value=True,
        choices=LOG_MODES,
        default="full",
        show_default=True,
        help="Command output to show: live and replayed (full), only of commands that run "
        "(new-only), only of failures (errors-only), or none.",
    ),
    RunOption(
        "--dry-run",
        dest="dry_run",
        runs=False,
        help="Print what would run and why; run nothing.",
    ),
    RunOption("--json", dest="as_json", runs=False, help="With --dry-run: every action as JSON."),
    RunOption(
        "--link",
        dest="link",
        takes_value=True,
        choices=("copy", "hardlink"),
        default="copy",
        show_default=True,
        help="How restored files are made: copies (copy-on-write where the file system can), "
        "or read-only hard links into the cache.",
    ),
    RunOption(
        "--affected",
        dest="affected",
        help="Only the rules whose inputs changed in git since --since, and the rules depending "
        "on them (with the dependencies they need, normally cache hits). TARGETS narrow it; "
        "without TARGETS, every rule here.",
    ),
    RunOption(
        "--since",
        dest="since",
        takes_value=True,
        metavar="REF",
        help="With --affected (implied): the git revision to compare with [default: the merge "
        "base of HEAD with origin/HEAD, else main or master]. Uncommitted and untracked files "
        "count.",
    ),
    RunOption(
        "--env-mode",
        dest="env_mode",
        takes_value=True,
        choices=("strict", "loose"),
        help="What of the environment commands see, for this run: only the declared env and "
        "pass_env variables and a base set (strict), or all of it (loose) [default: [workspace] "
        "env_mode, else strict]; also $ONCE_ENV_MODE. It enters every key.",
    ),
    RunOption(
        "--remote-read-only",
        dest="remote_read_only",
        help="Restore from the remote cache but upload nothing (for untrusted builds such as "
        "pull requests); also $ONCE_REMOTE_READ_ONLY=1 or [remote] read_only.",
    ),
)

HELP = ("-h", "--help")
# The options after which `run` runs nothing.
NO_RUN = frozenset(
    (*HELP, *(name for option in RUN_OPTIONS if not option.runs for name in option.names))
)

_BY_NAME = {name: option for option in RUN_OPTIONS for name in option.names}
_BY_DEST = {option.dest: option for option in RUN_OPTIONS}


class RunRequest:
    """What one `once run` is asked to do: its targets and options (`parse_run`, or click's
    `run`, or the Python API)."""

    __slots__ = (
        "affected",
        "env_mode",
        "force",
        "jobs",
        "link",
        "output_logs",
        "remote_read_only",
        "since",
        "targets",
    )

    def __init__(
        self,
        targets: list[str],
        *,
        output_logs: OutputLogs = "full",
        jobs: int | None = None,
        force: bool = False,
        link: str = "copy",
        affected: bool = False,
        since: str | None = None,
        env_mode: str | None = None,
        remote_read_only: bool = False,
    ) -> None:
        self.targets: Final = targets
        self.output_logs: Final = output_logs
        self.jobs: Final = jobs
        self.force: Final = force
        self.link: Final = link  # how hits restore files: "copy" or "hardlink"
        self.affected: Final = affected or since is not None  # --since implies --affected
        self.since: Final = since
        self.env_mode: Final = env_mode
        self.remote_read_only: Final = remote_read_only


def parse_run(argv: list[str]) -> RunRequest | None:
    """`argv` (after the program name and `-C DIR`) as a run: `run`, then targets and options
    of `RUN_OPTIONS` that run steps, each valid; None for anything else (help, a dry run, a
    bad value, a missing target), which click then parses and words."""
    parsed = _split(argv[1:]) if argv[:1] == ["run"] else None
    if parsed is None:
        return None
    targets, values = parsed
    for dest, value in values.items():
        option = _BY_DEST[dest]
        if option.choices is not None and value not in option.choices:
            return None
        if option.minimum is not None and not (value.isdigit() and int(value) >= option.minimum):
            return None
    affected = "affected" in values or "since" in values
    if not targets and not affected:
        return None
    jobs = values.get("jobs")
    env_mode = values.get("env_mode")
    return RunRequest(
        targets,
        output_logs=log_mode(values.get("output_logs", "full")),
        jobs=int(jobs) if jobs is not None else None,
        force="force" in values,
        link=values.get("link", "copy"),
        affected=affected,
        since=values.get("since"),
        env_mode=env_mode,
        remote_read_only="remote_read_only" in values,
    )


def _split(args: list[str]) -> tuple[list[str], dict[str, str]] | None:
    """Targets, and the value of each option by its `dest` (a flag's is ""); None when an
    option is not one that runs steps, lacks its value, or is given twice."""
    targets: list[str] = []
    values: dict[str, str] = {}
    remaining = iter(args)
    for arg in remaining:
        if arg == "--":
            targets.extend(remaining)
            break
        if not arg.startswith("-") or arg == "-":
            targets.append(arg)
            continue
        name, equals, value = arg.partition("=")
        if name not in _BY_NAME and arg[:2] in _BY_NAME and not arg.startswith("--"):
            name, equals, value = arg[:2], "=", arg[2:]  # a short option with its value: -j4
        option = _BY_NAME.get(name)
        if option is None or not option.runs or option.dest in values:
            return None
        if not option.takes_value:
            if equals:
                return None  # a flag given a value: click's error
            values[option.dest] = ""
            continue
        following = value if equals else next(remaining, None)
        if following is None:
            return None
        values[option.dest] = following
    return targets, values
