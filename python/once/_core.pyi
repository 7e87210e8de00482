"""Type stubs for `once._core`, the Rust extension (rust/once-py). Every call that touches
files releases the GIL; `scripts/test` checks this stub against the binary with mypy's stubtest."""

from collections.abc import Callable
from typing import ClassVar, TypedDict, final, type_check_only

__all__ = [
    "KEY_FORMAT_VERSION",
    "CommandEnv",
    "CommandOutput",
    "Commands",
    "Entry",
    "FileSet",
    "GlobError",
    "Globs",
    "KeyRequest",
    "OutputStats",
    "PendingScan",
    "Remote",
    "SettleState",
    "SettledHit",
    "Snapshot",
    "Store",
    "SymlinkedOutputError",
    "UnsafePathError",
    "__version__",
    "action_key",
    "action_keys",
    "action_spec",
    "files_hashed",
    "hash_bytes",
    "hash_files",
    "load_yaml",
    "pnpm_file_slice_digests",
    "pnpm_slice_digests",
    "settled",
    "write_b3sum",
]

__version__: str
KEY_FORMAT_VERSION: int

class GlobError(ValueError):
    """A glob in a once.toml does not parse."""

class UnsafePathError(ValueError):
    """A manifest path or symlink target would leave the workspace."""

@final
class Globs:
    """Package-relative globs compiled by the one glob engine that selects a rule's inputs:
    `*` and `?` stay in a folder, `**` crosses folders, `{a,b}` and `[...]` work, and a
    trailing `/` or a plain path names everything below it."""

    def __new__(cls, patterns: list[str]) -> Globs:
        """Raises GlobError naming the first pattern that does not parse."""
    def is_match(self, path: str) -> bool: ...
    def filter(self, paths: list[str], exclude: Globs | None = None) -> list[str]:
        """The `paths` matching these globs and not `exclude`, sorted."""

def settled(mtime_ns: int, ctime_ns: int, started_ns: int) -> bool:
    """The racy-timestamp rule: whether a file with these stamps was certainly last changed
    before a read that began at `started_ns` (a margin of two clock ticks, or two seconds for
    a whole-second stamp, from a file system that keeps no finer ones)."""

class SymlinkedOutputError(ValueError):
    """A declared output is reached through a symlink, which once never writes or deletes
    through."""

def hash_bytes(data: bytes) -> str:
    """BLAKE3 of `data`, as 64 hex digits."""

def load_yaml(data: bytes) -> object:
    """The one document of a YAML stream as dicts, lists and strings, as PyYAML's base loader
    builds it (every scalar a string, the last of equal keys winning). Raises ValueError for
    anything else: not YAML, no document or several, an alias, a key that is not a scalar."""

def pnpm_file_slice_digests(path: str) -> tuple[str, dict[str, str | None] | None]:
    """The digest (BLAKE3, hex) of the pnpm-lock.yaml at `path` and `pnpm_slice_digests` of
    it, from one read that never holds the whole file. Raises OSError when it cannot be read."""

def pnpm_slice_digests(data: bytes) -> dict[str, str | None] | None:
    """The slice digest of each importer of a pnpm-lock.yaml holding `data`, by its key as the
    lockfile writes it (None for an importer whose slice cannot be told: a link to a project
    the lockfile does not list, a dependency it does not describe); None when the file cannot
    be sliced (not YAML, not one mapping, a YAML alias)."""

def hash_files(paths: list[str]) -> list[str]:
    """BLAKE3 of each file, in order; big files with mmap and several threads."""

def files_hashed() -> int:
    """How many files this process has read to hash them (inputs and outputs): a no-op run
    adds none."""

def write_b3sum(paths: list[str], write: Callable[[bytes], int]) -> None:
    """What `b3sum` prints for these paths, one line each (UTF-8), folders expanded to every
    file below them in path order: `write` is called with each chunk of lines as soon as its
    files are hashed (and with the rest, when it returns that it took only part). Stops at the
    first path that cannot be read (its OSError), once the lines before it are written; what
    `write` raises is raised as it is."""

@final
class FileSet:
    """The files one rule reads: indices into a `Snapshot`."""

    def __len__(self) -> int: ...

@final
class PendingScan:
    """A walk running on its own thread (`Snapshot.start_scan`)."""

    def wait(self) -> Snapshot:
        """The snapshot once the walk is done; only once."""

@final
class Snapshot:
    """Every file of a workspace with its stat, from one parallel walk honouring ignore files."""

    @staticmethod
    def scan(root: str, skip_dirs: list[str], tracked_cache: str | None = None) -> Snapshot:
        """The walk. Files git tracks are never ignored by `.gitignore`; what the walk learns
        of git's index is kept in `tracked_cache`, when given, for the next walk."""
    @staticmethod
    def start_scan(
        root: str, skip_dirs: list[str], stat_cache: str, tracked_cache: str | None = None
    ) -> PendingScan:
        """`scan`, then `prime` with `stat_cache`, on a thread of its own."""
    @property
    def file_count(self) -> int: ...
    def folder_links(self) -> list[tuple[str, str]]:
        """The followed links to folders inside the workspace, as (link, target) paths below
        it."""
    def select(self, package: str, include: list[str], exclude: list[str]) -> FileSet:
        """Files of `package` matching any `include` glob and no `exclude` glob."""
    def select_named(self, names: list[str]) -> FileSet:
        """The files named one of `names` (the last part of their path), wherever they lie:
        `select("", ["**/NAME", ...], [])` without matching a glob per file."""
    def select_many(self, requests: list[tuple[str, list[str], list[str]]]) -> list[FileSet]:
        """`select` for each (package, include, exclude) in one call; each distinct list of
        globs is compiled once. Raises GlobError for the first glob that does not parse."""
    def hash(self, sets: list[FileSet], stat_cache: str | None = None) -> int:
        """Digest every file of `sets`, trusting the stat cache where it may; returns files read."""
    def prime(self, stat_cache: str) -> None:
        """Fill the digests the stat cache vouches for, reading no file; a later `hash` with the
        same cache does not read it again."""
    def tree_digest(self) -> str:
        """Every file's path, executable bit and digest (where known) in one digest: equal
        trees select the same files with the same contents."""
    def paths(self, set: FileSet) -> list[str]:
        """The workspace-relative paths of `set`, in order."""
    @property
    def stat_cache_unsaved(self) -> str | None:
        """Why `hash` could not write the stat cache (a full disk), if it could not: the
        digests stand, and the next run reads those files again."""
    def changed_since_scan(self, set: FileSet) -> list[str]:
        """Paths of the inputs `set` gained, lost, or saw edited or replaced since the scan
        (its globs matched again over a new walk of its package folder), sorted."""
    def inputs(self, set: FileSet) -> list[tuple[str, str, bool]]:
        """(path, digest, executable) of each file of a hashed set."""

@final
class KeyRequest:
    """One step to key: its input files and what else its key holds; `deps` names the steps
    it depends on by label, each earlier in the same batch."""

    def __new__(
        cls,
        *,
        inputs: FileSet,
        label: str,
        cmd: str,
        cwd: str,
        platform: str,
        env_mode: str,
        env: list[tuple[str, str]],
        tools: list[tuple[str, str]],
        lockfiles: list[tuple[str, str]],
        deps: list[str],
        outputs: list[str],
        cutoff: bool,
    ) -> KeyRequest: ...
    @property
    def inputs(self) -> FileSet: ...
    @property
    def label(self) -> str: ...
    @property
    def cmd(self) -> str: ...
    @property
    def cwd(self) -> str:
        """The working folder relative to the workspace root ("" for the root)."""
    @property
    def platform(self) -> str: ...
    @property
    def env_mode(self) -> str:
        """ "strict" (the command sees only declared and passed variables) or "loose"."""
    @property
    def env(self) -> list[tuple[str, str]]: ...
    @property
    def tools(self) -> list[tuple[str, str]]: ...
    @property
    def lockfiles(self) -> list[tuple[str, str]]:
        """(lockfile path, "slice:DIGEST" or "whole:DIGEST") of each lockfile governing the
        package."""
    @property
    def deps(self) -> list[str]: ...
    @property
    def outputs(self) -> list[str]: ...
    @property
    def cutoff(self) -> bool:
        """Whether its dependents are keyed by the outputs it produced (a cached step that
        declares outputs) rather than by its key."""

def action_keys(
    snapshot: Snapshot, requests: list[KeyRequest], store: Store | None = None
) -> list[tuple[str | None, str | None]]:
    """(key, result) of each step, given in dependency order (ValueError if a dependency is
    not earlier in the batch). A step's result is what its dependents' keys hold of it:
    `key HEX` (its key), or with `cutoff` `outputs HEX`, the `Entry.result` of what `store`
    has under its key. A key is None when a dependency's result is unknown (nothing cached
    under its key): it is keyed by `action_key` once that dependency ran."""

def action_key(
    snapshot: Snapshot, request: KeyRequest, deps: list[tuple[str, str]]
) -> tuple[str, str]:
    """The key of one step given its dependencies' (label, result) pairs, and the result it
    gives its dependents when its outputs are not compared (`key HEX`)."""

def action_spec(
    snapshot: Snapshot,
    request: KeyRequest,
    deps: list[tuple[str, str]],
    dep_outputs: dict[str, list[tuple[str, str]]] | None = None,
) -> str:
    """Everything that went into the key of `request` as JSON, given its dependencies'
    (label, result) pairs and, for `once why`, the outputs (path, digest) of those whose
    result is their outputs' digest."""

@final
class Entry:
    """A cached action: its outputs' manifest, log and exit status."""

    @property
    def key(self) -> str: ...
    @property
    def log(self) -> str: ...
    @property
    def exit_code(self) -> int: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def output_count(self) -> int: ...
    @property
    def result(self) -> str:
        """What it gives the keys of the steps that depend on it: `outputs HEX`, the digest of
        its outputs (paths, contents, executable bits, link targets; not its log)."""
    def listing(self) -> list[tuple[str, str]]:
        """Each output as (path, digest), with ` executable` after an executable's digest,
        `folder` for a folder and `-> TARGET` for a link; in path order."""

@final
class SettleState:
    """How `Store.settle_hits` settled one hit."""

    Cached: ClassVar[SettleState]
    """The outputs were in place."""
    Restored: ClassVar[SettleState]
    """The outputs were put back."""
    Refused: ClassVar[SettleState]
    """Restoring would leave the declared outputs: nothing was touched (a miss)."""
    Gone: ClassVar[SettleState]
    """A blob disappeared since the lookup, or no longer held its name (a miss)."""
    Failed: ClassVar[SettleState]
    """Another error (a miss)."""
    def __int__(self) -> int: ...

@final
class SettledHit:
    """One hit settled by `Store.settle_hits`."""

    @property
    def state(self) -> SettleState: ...
    @property
    def message(self) -> str | None:
        """Why, for `Refused` and `Failed`."""
    @property
    def log(self) -> bytes | None:
        """The replayed log, when asked for."""
    @property
    def seconds(self) -> float: ...

@final
class CommandEnv:
    """A command's whole environment, converted once and shared by every command run with it."""

    def __new__(cls, variables: list[tuple[str, str]]) -> CommandEnv:
        """The shell is the first `sh` on the `PATH` of `variables`, else `/bin/sh`."""
    @property
    def shell(self) -> str:
        """The shell commands start with."""

@final
class CommandOutput:
    """How a command ended, and its output."""

    @property
    def exit_code(self) -> int:
        """Its exit code, or minus the signal that ended it."""
    @property
    def log(self) -> bytes:
        """Its stdout and stderr, interleaved as written."""

@final
class Commands:
    """The commands of a run: each `sh -c CMD` in a session of its own (its own process group,
    no controlling terminal), stdin from /dev/null, stdout and stderr into one pipe; all
    stopped at once by `stop`."""

    def __new__(cls) -> Commands: ...
    def run(
        self,
        cmd: str,
        cwd: str,
        env: CommandEnv,
        live: Callable[[bytes], object] | None = None,
    ) -> CommandOutput | None:
        """Run `cmd` and read its output to the end (a child left in the background holding
        it open is waited for), the GIL released. `live` is called with the output as it
        comes, whole lines at a time (the last possibly without its newline); what it raises
        is raised at once, the output read no further (the command's next write ends it with
        SIGPIPE) and the command left for `stop`. None when `stop` came first: nothing ran.
        OSError when the command cannot start (`cwd` missing)."""
    def stop(self, grace_seconds: float) -> None:
        """TERM every running command's process group, then KILL what is left once every
        shell exited or `grace_seconds` passed. No command starts after this."""

@final
class OutputStats:
    """Stats and digests of output files as last checked, kept in the workspace state folder,
    so that a hit whose outputs are in place is confirmed from metadata alone."""

    def __new__(cls, path: str) -> OutputStats:
        """Load from `path`; a missing or damaged file gives no records."""
    def save(self) -> None:
        """Write the records (atomically) if any changed since loading."""

@final
class Store:
    """The local content-addressed store: blobs by digest, entries by action key."""

    def __new__(cls, root: str) -> Store: ...
    @property
    def root(self) -> str: ...
    def lookup(self, key: str) -> Entry | None:
        """The entry for `key` if it and every blob it names are present."""
    def lookup_many(self, keys: list[str]) -> list[Entry | None]:
        """`lookup` of every key, in parallel."""
    def settle_hits(
        self,
        workspace: str,
        hits: list[tuple[Entry, str, list[str], int]],
        link: str = "copy",
        known: OutputStats | None = None,
        read_logs: bool = False,
    ) -> list[SettledHit]:
        """Settle many hits, each (entry, package, declared outputs, wave), in one call: keep
        the outputs when they match (`outputs_match` with `known`), else restore them with
        `link`; then touch the entry and, with `read_logs`, read its log. Waves run in
        increasing order, each in parallel. One report per hit, in order."""
    def save(
        self,
        key: str,
        workspace: str,
        package: str,
        outputs: list[str],
        log: bytes,
        exit_code: int,
        duration_ms: int,
        deferred: bool = False,
    ) -> Entry:
        """Store a successful step's declared outputs and log; the entry is written last.
        `deferred`: return once they are copied and hashed, and leave flushing them and
        writing the entry to the store's threads (`finish_saves` waits for them)."""
    def finish_saves(self) -> None:
        """Wait until every deferred save is durable and its entry in place; OSError for the
        first that failed (it left no entry)."""
    def outputs_match(
        self,
        entry: Entry,
        workspace: str,
        package: str,
        outputs: list[str],
        known: OutputStats | None = None,
    ) -> bool:
        """True when the declared outputs on disk are exactly the entry's manifest. Files whose
        stat `known` vouches for are not read; the others are hashed and, when equal, recorded
        in `known`."""
    def restore(
        self,
        entry: Entry,
        workspace: str,
        package: str,
        outputs: list[str],
        link: str = "copy",
    ) -> None:
        """Remove what the declared outputs hold now, then recreate them from the store.

        `copy` clones (reflink) where the file system can, else copies; `hardlink` links files
        read-only (0o444) and clones executables read-only (0o555). A manifest path or link
        leaving the workspace raises UnsafePathError, and an output reached through a symlink
        below the package folder SymlinkedOutputError, before anything is touched; a missing
        blob raises FileNotFoundError, as does a blob whose bytes no longer hash to its name
        (it is deleted) or a symlink in its place."""
    def read_log(self, entry: Entry) -> bytes:
        """The entry's log: the bytes it carries, else its blob's, checked against its name
        (FileNotFoundError as for `restore`)."""
    @staticmethod
    def entry_json(key: str, data: bytes) -> bytes | None:
        """The JSON of the entry file bytes `data` filed under `key`, if its tag holds."""
    @staticmethod
    def seal_entry(key: str, json: bytes) -> bytes:
        """The bytes of the entry file for `key` whose JSON is `json`, tag included."""
    def unshare_outputs(self, workspace: str, package: str, outputs: list[str]) -> int:
        """Before a command runs: replace read-only hard links among its declared outputs (from a
        `hardlink` restore) with writable copies, so rewriting one in place cannot reach the
        store. The copies are made in the store, never among the outputs. Returns how many."""
    def touch(self, key: str) -> bool:
        """Mark the entry for `key` as used now (least-recently-used eviction); False if absent."""
    def usage(self) -> StoreUsage:
        """Entries, blobs and temporary files with their bytes, by stat alone."""
    def gc(
        self,
        max_bytes: int,
        protected_keys: list[str],
        *,
        wait: bool = True,
        sweep: bool = False,
        count_later: bool = False,
    ) -> GcReport:
        """Delete stale temporary files; when over `max_bytes` (or with `sweep`), blobs no entry
        names, then least-recently-used entries until under it. Never evicts `protected_keys`.
        `wait=False` returns at once with busy=True when another process is saving.
        `count_later`: when the size tally is over an hour old but under the bound, count
        nothing and report `count_due` (the caller collects off its path)."""
    def clear(self) -> StoreUsage:
        """Delete every entry, blob and temporary file, keeping the folders; returns what was."""
    def verify(self) -> VerifyReport:
        """Re-hash every blob; delete corrupt ones (and symlinks where a blob or entry belongs)
        and every entry whose tag does not hold, naming a missing or corrupt blob, not decoding,
        or holding a malformed manifest."""

@final
class Remote:
    """A remote cache (HTTP/WebDAV, S3 or Redis) over the local store. Transfers run on a tokio
    runtime inside the extension; every method releases the GIL. A server that fails (after
    retries) switches the remote off for the rest of the run: `off_reason` says why."""

    def __new__(
        cls,
        url: str,
        *,
        read_only: bool = False,
        token: str | None = None,
        signing_key: str | None = None,
        endpoint: str | None = None,
        region: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        concurrency: int = 16,
    ) -> Remote:
        """ValueError for a URL or setting that cannot work; connects on first use only."""
    @property
    def off_reason(self) -> str | None:
        """Why the remote switched itself off for this run, or None while it is on."""
    def prefetch(self, store: Store, keys: list[str]) -> None:
        """Start fetching these keys in the background; `fetch` joins each."""
    def fetch(self, store: Store, key: str) -> tuple[str, str]:
        """(outcome, detail): "hit" (the entry and its re-hashed blobs are now in `store`),
        "miss", "unsigned", "bad-signature", "corrupt" (detail: how many blobs), "invalid"
        (detail: why) or "off"."""
    def push(self, store: Store, key: str) -> None:
        """Upload the local entry for `key` and the blobs the server lacks, in the background."""
    def finish(self) -> RemoteStats:
        """Wait for every upload; the run's transfer counters."""

@type_check_only
class RemoteStats(TypedDict):
    entries_downloaded: int
    blobs_downloaded: int
    bytes_downloaded: int
    corrupt_blobs: int
    entries_uploaded: int
    blobs_uploaded: int
    bytes_uploaded: int
    blobs_present: int

@type_check_only
class StoreUsage(TypedDict):
    entries: int
    entry_bytes: int
    blobs: int
    blob_bytes: int
    temp_files: int
    temp_bytes: int
    bytes: int

@type_check_only
class GcReport(TypedDict):
    busy: bool
    evicted_entries: int
    removed_blobs: int
    removed_temps: int
    freed_bytes: int
    bytes_before: int
    bytes_after: int
    count_due: bool

@type_check_only
class VerifyReport(TypedDict):
    blobs: int
    blob_bytes: int
    corrupt_blobs: int
    entries: int
    removed_entries: int
