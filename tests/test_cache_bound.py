"""The cache through `once run` as a user sees it: the size bound with LRU eviction, repair of
hits whose blobs are gone, refusal of crafted entries, and hard-link restores."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from tests.helpers import Workspace, read_entry, write_entry

KIB = 1024


def packages(ws: Workspace, count: int, size_kib: int = 100) -> None:
    """Packages p0..p{count-1}; each build writes `size_kib` KiB of random bytes to dist/."""
    files = {"once.toml": '[workspace]\nmembers = ["p*"]\n'}
    for n in range(count):
        files[f"p{n}/once.toml"] = (
            "[rule.build]\n"
            f'cmd = "{ws.marker(f"p{n}")} && mkdir -p dist && '
            f'head -c {size_kib * KIB} /dev/urandom > dist/out.bin && echo built p{n}"\n'
            'inputs = ["src/**"]\noutputs = ["dist"]\n'
        )
        files[f"p{n}/src/in.txt"] = f"package {n}\n"
    ws.write(files)


def entry_files(ws: Workspace) -> list[Path]:
    return sorted((ws.cache / "ac").glob("*/*.json"))


def blob_files(ws: Workspace) -> list[Path]:
    return sorted(path for path in (ws.cache / "cas").glob("*/*") if len(path.name) == 64)


def blob_of(ws: Workspace, path: Path) -> Path:
    """The blob a restored output came from (same bytes)."""
    data = path.read_bytes()
    return next(blob for blob in blob_files(ws) if blob.read_bytes() == data)


def privileged(tmp: Path) -> bool:
    """Whether this process may write a read-only file (root is not bound by modes)."""
    probe = tmp / "probe"
    probe.write_text("")
    probe.chmod(0o444)
    try:
        with probe.open("w"):
            return True
    except PermissionError:
        return False
    finally:
        probe.unlink()


def test_a_run_over_the_bound_evicts_the_least_recently_used(ws: Workspace) -> None:
    packages(ws, 4)
    for n in range(3):
        assert ws.once("run", f"//p{n}:build").code == 0
    # p0 is used again (a hit): now p1 is the least recently used, then p2.
    hit = ws.once("run", "//p0:build")
    assert "cache hit" in hit.out
    assert ws.ran() == ["p0", "p1", "p2"]

    # Four entries of ~100 KiB against a bound of ~2: p1 and p2 go, the hit p0 and the new p3 stay.
    done = ws.once("run", "//p3:build", env={"ONCE_CACHE_MAX_SIZE": "210K"})
    assert done.code == 0, done.err
    assert "evicted the least recently used 2 entries" in done.err
    assert ws.ran() == ["p3"]
    for n in range(4):
        assert ws.once("run", f"//p{n}:build").code == 0
    assert ws.ran() == ["p1", "p2"]


def test_entries_the_run_used_are_never_evicted(ws: Workspace) -> None:
    packages(ws, 3)
    # A bound of one byte: everything of this run is still kept, and is a hit next time.
    tiny = {"ONCE_CACHE_MAX_SIZE": "1"}
    assert ws.once("run", "build", env=tiny).code == 0
    assert sorted(ws.ran()) == ["p0", "p1", "p2"]
    again = ws.once("run", "build", env=tiny)
    assert again.code == 0
    assert "all 3 steps cached" in again.out
    assert ws.ran() == []
    # Once another run writes, the others are no longer protected.
    (ws.root / "p0/src/in.txt").write_text("changed\n")
    assert ws.once("run", "//p0:build", env=tiny).code == 0
    assert len(entry_files(ws)) == 1


def test_malformed_max_size_is_a_one_line_usage_error(ws: Workspace) -> None:
    packages(ws, 1)
    # The last two were once an OverflowError with a traceback: past 64 bits, and infinity.
    for bad in ("12X", "-1G", "G", "1.2.3M", "ten", "99999999999999999999T", "9" * 400):
        done = ws.once("run", "build", env={"ONCE_CACHE_MAX_SIZE": bad})
        assert done.code == 2, bad
        assert done.err.count("\n") == 1, done.err
        assert done.err.startswith("once: error: ONCE_CACHE_MAX_SIZE: "), done.err
        assert "Traceback" not in done.err
    assert ws.ran() == []
    assert not (ws.root / "p0/dist").exists()
    for good in ("500M", "2G", "1.5g", "10GiB", "4096", " 3 M "):
        assert ws.once("run", "build", env={"ONCE_CACHE_MAX_SIZE": good}).code == 0, good


def test_a_usage_tally_dated_past_every_clock_is_counted_again(ws: Workspace) -> None:
    """A damaged `usage` whose count is dated 2^64 - 1 seconds after 1970 (adding that to the
    epoch was a Rust panic) means the store is counted again, like any tally that is unreadable."""
    packages(ws, 2, size_kib=1)
    assert ws.once("run", "//p0:build").code == 0
    (ws.cache / "usage").write_text(f"counted 1 {2**64 - 1}\n+5\n")
    done = ws.once("run", "//p1:build")
    assert done.code == 0, done.err
    assert "panicked" not in done.err
    count, bytes_, at = (ws.cache / "usage").read_text().split("\n")[0].split(" ")
    assert count == "counted"
    assert int(bytes_) > 2 * KIB
    assert int(at) < 2**32


def test_a_hit_whose_blob_is_gone_runs_again_and_repairs_the_entry(ws: Workspace) -> None:
    packages(ws, 1, size_kib=5)  # past what an entry carries: a blob
    assert ws.once("run", "build").code == 0
    expected = (ws.root / "p0/dist/out.bin").read_bytes()
    blob_of(ws, ws.root / "p0/dist/out.bin").unlink()
    (ws.root / "p0/dist/out.bin").unlink()
    ws.ran()

    done = ws.once("run", "build")
    assert done.code == 0, done.err
    assert ws.ran() == ["p0"], "never a hit that restores nothing"
    assert "cache hit" not in done.out
    # The command made new random bytes; they are what the repaired entry now holds.
    restored = ws.root / "p0/dist/out.bin"
    assert len(restored.read_bytes()) == len(expected)
    fresh = restored.read_bytes()
    restored.unlink()
    again = ws.once("run", "build")
    assert "cache hit (restored)" in again.out
    assert ws.ran() == []
    assert restored.read_bytes() == fresh


def crafted(ws: Workspace, extra: dict[str, object]) -> Path:
    """Add `extra` to the manifest of the only entry in the cache, as a hostile writer would."""
    (path,) = entry_files(ws)
    entry = read_entry(path)
    entry["outputs"].append(extra)
    write_entry(path, entry)
    return path


def test_crafted_entries_escaping_the_workspace_are_misses_and_run(ws: Workspace) -> None:
    """Even with a tag that holds (whoever can write the cache can compute it), a manifest
    leaving the workspace is a malformed entry: a miss, the command runs, nothing escapes."""
    packages(ws, 1, size_kib=5)  # past what an entry carries: a blob to name
    outside = ws.root.parent / "outside"
    outside.mkdir()
    before = sorted(outside.iterdir())
    assert ws.once("run", "build").code == 0
    blob = blob_of(ws, ws.root / "p0/dist/out.bin").name
    cases: list[dict[str, object]] = [
        {"path": "../outside/pwned.txt", "kind": "file", "digest": blob, "executable": False},
        {
            "path": "p0/dist/../../../outside/pwned.txt",
            "kind": "file",
            "digest": blob,
            "executable": False,
        },
        {"path": "p0/dist/evil", "kind": "symlink", "target": "../../../outside"},
        {"path": "p0/dist/abs", "kind": "symlink", "target": "/etc"},
    ]
    for case in cases:
        ws.ran()
        crafted(ws, case)
        (ws.root / "p0/dist/out.bin").unlink()  # so the hit has to restore
        done = ws.once("run", "build")
        assert done.code == 0, done.err
        assert "Traceback" not in done.err
        # A miss: the command ran, nothing outside was written, nothing escaped.
        assert ws.ran() == ["p0"]
        assert sorted(outside.iterdir()) == before
        assert not (ws.root / "p0/dist/evil").exists()
        assert not (ws.root / "p0/dist/abs").is_symlink()
        # The run's save replaced the crafted entry: the next run is an ordinary hit.
        (ws.root / "p0/dist/out.bin").unlink()
        again = ws.once("run", "build")
        assert "cache hit (restored)" in again.out
        assert "refusing" not in again.err
        assert ws.ran() == []


def test_hardlink_restore_is_read_only_and_still_a_hit(ws: Workspace, tmp_path: Path) -> None:
    ws.write(
        {
            "once.toml": (
                "[rule.build]\n"
                f'cmd = "{ws.marker("b")} && mkdir -p dist && cp src/in.txt dist/a.txt && '
                'cp src/run.sh dist/run.sh && chmod +x dist/run.sh"\n'
                'inputs = ["src/**"]\noutputs = ["dist"]\n'
            ),
            # Past what an entry carries (4 KiB): blobs, which a hard-link restore links to.
            "src/in.txt": "x\n" * 3000,
            "src/run.sh": "#!/bin/sh\necho hi\n" + "#\n" * 3000,
        }
    )
    assert ws.once("run", "build").code == 0
    dist = ws.root / "dist"
    for child in dist.iterdir():
        child.unlink()
    done = ws.once("run", "build", "--link=hardlink")
    assert "cache hit (restored)" in done.out, done.out + done.err
    plain, script = dist / "a.txt", dist / "run.sh"
    assert stat.S_IMODE(plain.stat().st_mode) == 0o444
    assert plain.stat().st_ino == blob_of(ws, plain).stat().st_ino
    assert plain.stat().st_nlink == 2
    # Executables are read-only copies: a blob has one mode, shared by every link to it.
    assert stat.S_IMODE(script.stat().st_mode) == 0o555
    assert script.stat().st_nlink == 1
    # Hard-linked outputs compare equal to the entry: the next run is a hit with nothing to do.
    again = ws.once("run", "build")
    assert "cache hit (cached)" in again.out
    assert ws.ran() == ["b"]
    if not privileged(tmp_path):
        try:
            plain.write_text("edit")
        except PermissionError:
            pass
        else:
            raise AssertionError("a hard-linked output must not be writable")
    assert ws.once("cache", "verify").code == 0
    assert "0 corrupt blobs" in ws.once("cache", "verify").out
    # A plain copy restore replaces the read-only links with files the user may edit.
    plain.unlink()
    assert "restored" in ws.once("run", "build").out
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert plain.stat().st_nlink == 1


def test_copy_restore_edits_never_reach_the_cache(ws: Workspace) -> None:
    packages(ws, 1, size_kib=8)
    assert ws.once("run", "build").code == 0
    out = ws.root / "p0/dist/out.bin"
    original = out.read_bytes()
    out.unlink()
    assert "restored" in ws.once("run", "build").out
    with out.open("r+b") as handle:  # an edit in place, the way that would hurt a hard link
        handle.write(b"edited")
    assert "0 corrupt blobs" in ws.once("cache", "verify").out
    assert "restored" in ws.once("run", "build").out
    assert out.read_bytes() == original


def test_a_command_rewriting_a_hardlinked_output_never_reaches_the_store(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": (
                "[rule.build]\n"
                f'cmd = "{ws.marker("b")} && mkdir -p dist && cat src/in.txt > dist/a.txt"\n'
                'inputs = ["src/**"]\noutputs = ["dist"]\n'
            ),
            "src/in.txt": "first\n" * 1000,  # past what an entry carries: a blob to link to
        }
    )
    assert ws.once("run", "build").code == 0
    (ws.root / "dist/a.txt").unlink()
    assert "cache hit (restored)" in ws.once("run", "build", "--link=hardlink").out
    blob = blob_of(ws, ws.root / "dist/a.txt")
    # A new key whose command writes into the hard-linked file in place (as root, the
    # read-only mode would not stop it).
    (ws.root / "src/in.txt").write_text("second\n")
    assert ws.once("run", "build").code == 0
    assert (ws.root / "dist/a.txt").read_text() == "second\n"
    assert blob.read_text() == "first\n" * 1000
    verify = ws.once("cache", "verify")
    assert verify.code == 0, verify.err


def test_the_hourly_count_is_left_to_a_process_of_its_own(ws: Workspace) -> None:
    """A tally whose hour is up but under the bound: the run that saved something returns
    without statting every file of the store (seconds for a large one, which made that one
    run many times slower than the rest); a `once cache gc` started in the background counts."""
    packages(ws, 2, size_kib=1)
    assert ws.once("run", "//p0:build").code == 0
    an_hour_ago = int(time.time()) - 7200
    (ws.cache / "usage").write_text(f"counted 1 {an_hour_ago}\n+5\n")
    done = ws.once("run", "//p1:build")
    assert done.code == 0, done.err
    # Not counted by the run itself (its own count would be done by now) ...
    assert (ws.cache / "usage").read_text().startswith(f"counted 1 {an_hour_ago}\n")
    # ... but soon after, by the collection it started.
    deadline = time.monotonic() + 30
    while (ws.cache / "usage").read_text().startswith("counted 1 "):
        assert time.monotonic() < deadline, "the background count never ran"
        time.sleep(0.05)
    _, bytes_, at = (ws.cache / "usage").read_text().split("\n")[0].split(" ")
    assert int(bytes_) > 2 * KIB
    assert int(at) >= an_hour_ago + 7200 - 5
