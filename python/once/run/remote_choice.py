"""Which remote cache a run uses: the root once.toml's `[remote]`, the environment winning.

Kept apart from run/remote.py and config/, which import the transfer machinery and the TOML
parser: every run (run/pipeline.py) checks the environment with these very rules, a no-op
too, which needs neither."""

from __future__ import annotations

from once.errors import UsageError
from once.layout import REMOTE_URL_ENV
from once.value import Value

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final

    from once.config.model import RemoteSettings

READ_ONLY_ENV = "ONCE_REMOTE_READ_ONLY"
TIMEOUT_ENV = "ONCE_REMOTE_TIMEOUT"
SIGNING_KEY_ENV = "ONCE_SIGNING_KEY"
# Where the bearer token is read from unless `[remote] token_env` names another variable.
DEFAULT_TOKEN_ENV = "ONCE_REMOTE_TOKEN"  # noqa: S105 - a variable name, not a token
# Per request, and per wait for the next chunk of a download: long enough for a loaded server
# across an ocean, short enough that a dead one costs a CI job seconds, not minutes.
DEFAULT_TIMEOUT = 10.0
REMOTE_SCHEMES = ("http", "https", "s3", "redis", "rediss")
# The longest `[remote] timeout` taken: a day is already no timeout at all, and far larger
# values (1e20) fit no clock.
MAX_REMOTE_TIMEOUT = 86_400
REMOTE_TIMEOUT_RANGE = f"must be a positive number of seconds up to {MAX_REMOTE_TIMEOUT}"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class RemoteChoice(Value):
    """The remote this run uses, with everything resolved."""

    __slots__ = ("endpoint", "read_only", "region", "signing_key", "timeout", "token", "url")
    FIELDS = ("url", "read_only", "token", "endpoint", "region", "timeout", "signing_key")

    def __init__(
        self,
        *,
        url: str,
        read_only: bool,
        token: str | None,
        endpoint: str | None,
        region: str | None,
        timeout: float,
        signing_key: str | None,
    ) -> None:
        self.url: Final = url
        self.read_only: Final = read_only
        self.token: Final = token
        self.endpoint: Final = endpoint
        self.region: Final = region
        self.timeout: Final = timeout
        self.signing_key: Final = signing_key

    def __repr__(self) -> str:
        # The token and the signing key are secrets: a traceback or a log must not show them.
        return f"RemoteChoice(url={self.url!r}, read_only={self.read_only!r})"


def choose(
    settings: RemoteSettings | None, environ: Mapping[str, str], *, read_only_flag: bool = False
) -> RemoteChoice | None:
    """The remote for this run, or None. `$ONCE_REMOTE` wins over `[remote] url`
    (`ONCE_REMOTE=` set but empty turns a configured remote off); read-only when the flag, the
    environment or the config says so. A malformed variable is a usage error (exit 2)."""
    url = _url_from(environ)
    if url is None:
        url = settings.url if settings else None
    if not url or not url.strip():
        return None
    read_only = read_only_flag or (settings.read_only if settings else False)
    from_environ = _read_only_from(environ)
    if from_environ is not None:
        # The environment wins over the config, never over the command line's flag.
        read_only = read_only_flag or from_environ
    timeout = _timeout_from(environ)
    if timeout is None:
        timeout = settings.timeout if settings and settings.timeout else DEFAULT_TIMEOUT
    token_env = (settings.token_env if settings else None) or DEFAULT_TOKEN_ENV
    return RemoteChoice(
        url=url.strip(),
        read_only=read_only,
        token=environ.get(token_env) or None,
        endpoint=settings.endpoint if settings else None,
        region=settings.region if settings else None,
        timeout=timeout,
        signing_key=environ.get(SIGNING_KEY_ENV) or None,
    )


def check_environment(environ: Mapping[str, str]) -> None:
    """Raise the usage error `choose` would for a malformed remote variable, whatever the
    config says. `choose` only reads the read-only flag and the timeout when a remote is
    configured, so this is the stricter of the two: a caller that does not know the config
    leaves a run this refuses to `choose`."""
    _url_from(environ)
    _read_only_from(environ)
    _timeout_from(environ)


def _url_from(environ: Mapping[str, str]) -> str | None:
    url = environ.get(REMOTE_URL_ENV)
    if url is not None and url.strip():
        problem = remote_url_problem(url.strip())
        if problem:
            raise UsageError(f"{REMOTE_URL_ENV}: {problem}")
    return url


def _read_only_from(environ: Mapping[str, str]) -> bool | None:
    raw = environ.get(READ_ONLY_ENV)
    if raw is None:
        return None
    if raw.strip().lower() not in (*_TRUE, *_FALSE):
        raise UsageError(f"{READ_ONLY_ENV}: {raw!r} is not 1/true/yes or 0/false/no")
    return raw.strip().lower() in _TRUE


def _timeout_from(environ: Mapping[str, str]) -> float | None:
    raw = environ.get(TIMEOUT_ENV)
    if not raw:
        return None
    try:
        timeout = float(raw)
    except ValueError:
        timeout = -1.0
    if not remote_timeout_fits(timeout):
        raise UsageError(f"{TIMEOUT_ENV}: {raw!r} {REMOTE_TIMEOUT_RANGE}")
    return timeout


def remote_timeout_fits(seconds: object) -> bool:
    """Whether `seconds` is a remote timeout once takes (see MAX_REMOTE_TIMEOUT)."""
    return (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and 0 < seconds <= MAX_REMOTE_TIMEOUT
    )


def remote_url_problem(url: str) -> str | None:
    """Why `url` cannot name a remote cache, or None when it can."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in REMOTE_SCHEMES:
        return (
            f"{url!r} is not a remote cache URL: use http(s)://HOST/PATH, s3://BUCKET/PREFIX "
            "or redis://HOST:PORT"
        )
    if not rest.strip("/"):
        return f"{url!r} names no host or bucket"
    return None
