"""The local store is not trusted blindly: blobs and entries edited, grown, copied, symlinked or
written through a hard link are misses (the step runs and its save repairs the cache), never
wrong outputs, and `once cache verify` finds them. Through a real `once` subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import Workspace

OUT = "p/dist/out.txt"
# Larger than an output its entry carries (1 KiB): these outputs are blobs of their own.
GOOD = "the good bytes." * 300 + "\n"
EVIL = "the evil bytes." * 300 + "\n"
OTHER = "other bytes here" * 300 + "\n"


def one_rule(ws: Workspace, text: str = GOOD, name: str = "p") -> None:
    ws.write(
        {
            "once.toml": '[workspace]\nmembers = ["*"]\n',
            f"{name}/once.toml": (
                "[rule.build]\n"
                f"cmd = \"{ws.marker(name)} && mkdir -p dist && printf '{text.strip()}\\\\n' "
                '> dist/out.txt"\n'
                'inputs = ["src/**"]\noutputs = ["dist"]\n'
            ),
            f"{name}/src/in.txt": f"{name}\n",
        }
    )


def blob_holding(ws: Workspace, data: bytes) -> Path:
    """The blob in the cache whose bytes are `data` (read as stored, not verified)."""
    return next(
        path
        for path in (ws.cache / "cas").glob("*/*")
        if len(path.name) == 64 and path.read_bytes() == data
    )


def write_in_place(path: Path, data: bytes) -> None:
    """Rewrite `path` in place (same inode), as an editor or `echo >>` would; the store's
    read-only mode is set aside first, as root's writes set it aside."""
    path.chmod(0o644)
    with path.open("r+b") as file:
        file.truncate(0)
        file.write(data)
    path.chmod(0o444)


def entry_file(ws: Workspace) -> Path:
    (path,) = sorted((ws.cache / "ac").glob("*/*.json"))
    return path


def build(ws: Workspace, *args: str) -> str:
    done = ws.once("run", "build", *args)
    assert done.code == 0, done.err
    assert "Traceback" not in done.err
    return done.out


def test_a_blob_edited_in_place_is_a_miss_not_the_output(ws: Workspace) -> None:
    one_rule(ws)
    build(ws)
    assert ws.ran() == ["p"]
    write_in_place(blob_holding(ws, GOOD.encode()), EVIL.encode())  # same size
    (ws.root / OUT).unlink()

    build(ws)
    assert ws.ran() == ["p"]  # the bad blob was dropped and the step ran
    assert (ws.root / OUT).read_text() == GOOD
    # Its save wrote a sound blob: the next restore is a hit with the right bytes.
    (ws.root / OUT).unlink()
    assert "cache hit (restored)" in build(ws)
    assert ws.ran() == []
    assert (ws.root / OUT).read_text() == GOOD


def test_a_grown_blob_leaves_correct_outputs_in_place(ws: Workspace) -> None:
    one_rule(ws)
    build(ws)
    ws.ran()
    blob = blob_holding(ws, GOOD.encode())
    write_in_place(blob, GOOD.encode() + b"and a tail the store added\n")
    (ws.root / ".once").joinpath("outputs").unlink(missing_ok=True)  # no stat vouches for it

    build(ws)
    assert (ws.root / OUT).read_text() == GOOD
    assert ws.ran() == []  # the outputs in place are the entry's: a hit


def test_run_force_replaces_a_corrupt_blob(ws: Workspace) -> None:
    one_rule(ws)
    build(ws)
    ws.ran()
    write_in_place(blob_holding(ws, GOOD.encode()), EVIL.encode())

    build(ws, "--force")
    assert ws.ran() == ["p"]
    assert blob_holding(ws, GOOD.encode()).is_file()
    (ws.root / OUT).unlink()
    assert "cache hit (restored)" in build(ws)
    assert (ws.root / OUT).read_text() == GOOD


def test_verify_does_not_follow_a_blob_replaced_by_a_symlink(ws: Workspace) -> None:
    one_rule(ws)
    one_rule(ws, OTHER, name="q")
    build(ws)
    ws.ran()
    blob = blob_holding(ws, GOOD.encode())
    other = blob_holding(ws, OTHER.encode())
    blob.unlink()
    blob.symlink_to(other)

    done = ws.once("cache", "verify", "--json")
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert report["corrupt_blobs"] == 1
    assert report["removed_entries"] == 1
    assert not blob.is_symlink()
    (ws.root / OUT).unlink()
    build(ws)
    assert ws.ran() == ["p"]
    assert (ws.root / OUT).read_text() == GOOD


def test_a_symlinked_blob_is_not_restored(ws: Workspace) -> None:
    one_rule(ws)
    one_rule(ws, OTHER, name="q")
    build(ws)
    ws.ran()
    blob = blob_holding(ws, GOOD.encode())
    blob.unlink()
    blob.symlink_to(blob_holding(ws, OTHER.encode()))
    (ws.root / OUT).unlink()

    build(ws)
    assert ws.ran() == ["p"]
    assert (ws.root / OUT).read_text() == GOOD


def test_an_entry_copied_under_another_key_is_a_miss(ws: Workspace) -> None:
    one_rule(ws)
    build(ws)
    old_file = entry_file(ws)
    old_entry = old_file.read_bytes()
    (ws.root / "p/src/in.txt").write_text("changed\n")
    one_rule(ws, "newer bytes!!!")
    (ws.root / "p/src/in.txt").write_text("changed\n")
    build(ws)
    ws.ran()
    (new_file,) = [path for path in (ws.cache / "ac").glob("*/*.json") if path != old_file]
    # The old build's entry filed under the new key, its key field rewritten to match.
    new_file.chmod(0o644)
    new_file.write_bytes(old_entry.replace(old_file.stem.encode(), new_file.stem.encode()))
    (ws.root / OUT).unlink()

    build(ws)
    assert ws.ran() == ["p"]
    assert (ws.root / OUT).read_text() == "newer bytes!!!\n"


@pytest.mark.parametrize(
    "tear",
    [
        lambda data: b"",
        lambda data: data[: len(data) // 2],
        lambda data: data[: len(data) // 2] + bytes(len(data) - len(data) // 2),
    ],
    ids=["empty", "cut short", "zeroed tail"],
)
def test_an_entry_a_power_loss_tore_is_a_miss(ws: Workspace, tear: object) -> None:
    # Entry files are renamed into place without waiting for their bytes to reach the disk
    # (store/commit.rs): after a power loss one may be empty, cut short or end in zeros. Its
    # envelope's checksum makes it a miss, the step runs, and its save repairs the entry.
    one_rule(ws, "small")  # carried in its entry: the entry is the save's only file
    build(ws)
    ws.ran()
    path = entry_file(ws)
    path.chmod(0o644)
    path.write_bytes(tear(path.read_bytes()))  # type: ignore[operator]
    (ws.root / OUT).unlink()

    build(ws)
    assert ws.ran() == ["p"]
    assert (ws.root / OUT).read_text() == "small\n"
    (ws.root / OUT).unlink()
    build(ws)
    assert ws.ran() == []
    assert (ws.root / OUT).read_text() == "small\n"


def test_an_entry_whose_file_became_a_folder_is_a_miss_and_verify_drops_it(
    ws: Workspace,
) -> None:
    one_rule(ws)
    build(ws)
    ws.ran()
    path = entry_file(ws)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"kind":"file"', b'"kind":"dir"'))
    report = json.loads(ws.once("cache", "verify", "--json").out)
    assert report["removed_entries"] == 1

    one_rule(ws)
    build(ws)
    path.write_bytes(path.read_bytes().replace(b'"kind":"file"', b'"kind":"dir"'))
    (ws.root / OUT).unlink()
    build(ws)
    assert ws.ran() == ["p", "p"]
    assert (ws.root / OUT).read_text() == GOOD


def test_an_entry_listing_a_path_twice_is_a_miss_not_a_traceback(ws: Workspace) -> None:
    one_rule(ws)
    build(ws)
    ws.ran()
    path = entry_file(ws)
    data = path.read_bytes()
    start = data.index(b'{"path":"p/dist/out.txt"')
    end = data.index(b"}", start) + 1
    path.chmod(0o644)
    path.write_bytes(data[:end] + b"," + data[start:end] + data[end:])
    (ws.root / OUT).unlink()

    for _ in range(2):
        build(ws)  # no traceback, on this run or the next
    assert ws.ran() == ["p"]
    assert (ws.root / OUT).read_text() == GOOD


def test_a_hard_linked_output_written_through_does_not_reach_another_clone(
    ws: Workspace, tmp_path: Path
) -> None:
    one_rule(ws)
    build(ws)
    ws.ran()
    (ws.root / OUT).unlink()
    assert "cache hit (restored)" in build(ws, "--link=hardlink")
    restored = ws.root / OUT
    assert restored.stat().st_nlink > 1  # shares its inode with the blob
    if os.geteuid() != 0:
        restored.chmod(0o644)  # what root need not do; the mode is the blob's too
    with restored.open("r+b") as file:
        file.write(b"THE")  # in place: the blob's bytes change with it

    clone = Workspace(tmp_path / "clone", ws.cache)
    clone.root.mkdir()
    one_rule(clone)
    done = clone.once("run", "build", "--link=hardlink")
    assert done.code == 0, done.err
    assert (clone.root / OUT).read_text() == GOOD
    assert clone.ran() == ["p"]
