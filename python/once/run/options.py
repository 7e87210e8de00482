"""`once run`'s options, described once. click's `run` command is made from this table
(cli/), and a plain run (`once run [--output-logs MODE] [-j N] TARGET...`) is parsed with it
before click is imported (run/prelude.py), so the two can never disagree on a name, a choice or a
bound. Light: loaded before everything else of a run."""

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
        "plain",
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
        plain: bool = False,
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
        # Whether a plain run takes it: one that the fast path, or the full run without click,
        # can answer.
        self.plain: Final = plain
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
        plain=True,
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
        plain=True,
        help="Command output to show: live and replayed (full), only of commands that run "
        "(new-only), only of failures (errors-only), or none.",
    ),
    RunOption(
        "--dry-run",
        dest="dry_run",
        runs=False,
        help="Print what would run and why; run nothing.",
    ),
    RunOption("--json", dest="as_json", help="With --dry-run: every action as JSON."),
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


class PlainRun:
    """A plain run's targets and options (`parse_plain`)."""

    __slots__ = ("jobs", "output_logs", "targets")

    def __init__(self, targets: list[str], output_logs: OutputLogs, jobs: int | None) -> None:
        self.targets: Final = targets
        self.output_logs: Final = output_logs
        self.jobs: Final = jobs


def parse_plain(argv: list[str]) -> PlainRun | None:
    """`argv` (after the program name and `-C DIR`) as a plain run: `run`, targets and only
    options a plain run takes, each valid; None for anything else, which click then parses
    and words (a bad value included)."""
    parsed = _split(argv[1:]) if argv[:1] == ["run"] else None
    if parsed is None or not parsed[0]:
        return None
    targets, values = parsed
    mode = values.get("output_logs", "full")
    jobs = values.get("jobs", "1")
    if mode not in LOG_MODES or not (jobs.isdigit() and int(jobs) >= 1):
        return None
    return PlainRun(targets, log_mode(mode), int(jobs) if "jobs" in values else None)


def _split(args: list[str]) -> tuple[list[str], dict[str, str]] | None:
    """Targets, and the value of each option by its `dest`; None when an option is not one a
    plain run takes, or lacks its value."""
    targets: list[str] = []
    values: dict[str, str] = {}
    remaining = iter(args)
    for arg in remaining:
        if not arg.startswith("-") or arg == "-":
            targets.append(arg)
            continue
        name, equals, value = arg.partition("=")
        if name not in _BY_NAME and arg[:2] in _BY_NAME and not arg.startswith("--"):
            name, equals, value = arg[:2], "=", arg[2:]  # a short option with its value: -j4
        option = _BY_NAME.get(name)
        following = next(remaining, None) if option and option.takes_value and not equals else ""
        if option is None or not option.plain or following is None:
            return None
        values[option.dest] = value if equals else following
    return targets, values
