//! The store trusts none of its files blindly: a blob edited, grown, symlinked or written
//! through a hard link, and an entry copied under another key or edited, are misses (or
//! replaced by the next save), never restored as outputs.
#![cfg(unix)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use common::Fixture;
use once_core::hash::Digest;
use once_core::store::{ActionEntry, LinkMode, INLINE_MAX};

// Larger than an output its entry carries (`INLINE_MAX`): these are blobs.
const GOOD: &[u8] = &[b'g'; INLINE_MAX as usize + 100];
const OTHER: &[u8] = &[b'o'; INLINE_MAX as usize + 100];

fn outputs() -> Vec<String> {
    vec!["dist".to_owned()]
}

impl Fixture {
    /// Package `p` whose `dist/out.txt` holds `bytes`, saved under `key`.
    fn build(&self, key: &str, bytes: &[u8]) -> ActionEntry {
        let out = self.out();
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        fs::write(&out, bytes).unwrap();
        self.store
            .save(key, &self.ws, "p", &outputs(), b"log\n", 0, 1)
            .unwrap()
    }

    fn out(&self) -> PathBuf {
        self.ws.join("p/dist/out.txt")
    }

    fn restore(&self, entry: &ActionEntry, link: LinkMode) -> once_core::Result<()> {
        self.store
            .restore_with(&self.ws, "p", &outputs(), entry, link)
    }

    fn blob(&self, bytes: &[u8]) -> PathBuf {
        let hex = Digest(*blake3::hash(bytes).as_bytes()).to_hex();
        self.store.root().join("cas").join(&hex[..2]).join(hex)
    }

    fn entry_file(&self, key: &str) -> PathBuf {
        self.store
            .root()
            .join("ac")
            .join(&key[..2])
            .join(format!("{key}.json"))
    }
}

fn key(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// Rewrite `path` in place (same inode), its read-only mode set aside as root's writes do.
fn write_in_place(path: &Path, bytes: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
}

#[test]
fn a_blob_edited_in_place_is_deleted_not_restored() {
    for (size, link) in [
        (GOOD.len(), LinkMode::Copy),
        (GOOD.len(), LinkMode::Hardlink),
        // Above the size where restore clones (or copies) rather than reads and writes.
        (200 * 1024, LinkMode::Copy),
    ] {
        let fx = Fixture::new();
        let good: Vec<u8> = GOOD.iter().copied().cycle().take(size).collect();
        let entry = fx.build(&key(1), &good);
        let mut evil = good.clone();
        evil[size / 2] ^= 0xff;
        write_in_place(&fx.blob(&good), &evil);
        fs::remove_file(fx.out()).unwrap();

        let err = fx.restore(&entry, link).unwrap_err();
        assert!(
            matches!(&err, once_core::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{err}"
        );
        assert_ne!(fs::read(fx.out()).ok(), Some(evil), "{link:?}");
        assert!(!fx.blob(&good).exists(), "the bad blob is dropped");
        assert!(fx.store.lookup(&entry.key).is_none());
    }
}

#[test]
fn a_grown_blob_leaves_correct_outputs_in_place() {
    let fx = Fixture::new();
    let entry = fx.build(&key(1), GOOD);
    write_in_place(&fx.blob(GOOD), &[GOOD, b"more"].concat());
    assert!(fx
        .store
        .outputs_match(&fx.ws, "p", &outputs(), &entry, None)
        .unwrap());
}

#[test]
fn a_save_replaces_a_blob_that_does_not_hold_its_name() {
    for evil in [&b"the evil bytes\n"[..], b"grown: the good bytes\n", b""] {
        let fx = Fixture::new();
        fx.build(&key(1), GOOD);
        write_in_place(&fx.blob(GOOD), evil);
        let entry = fx.build(&key(1), GOOD);
        assert_eq!(fs::read(fx.blob(GOOD)).unwrap(), GOOD);
        fs::remove_file(fx.out()).unwrap();
        fx.restore(&entry, LinkMode::Copy).unwrap();
        assert_eq!(fs::read(fx.out()).unwrap(), GOOD);
    }
    // The log's blob too (a log too long to travel in its entry).
    let fx = Fixture::new();
    fx.build(&key(1), GOOD);
    let log = OTHER;
    let save = || {
        fx.store
            .save(&key(1), &fx.ws, "p", &outputs(), log, 0, 1)
            .unwrap()
    };
    let entry = save();
    write_in_place(&fx.blob(log), b"LOG\n");
    save();
    assert_eq!(fx.store.read_log(&entry).unwrap(), log);
}

#[test]
fn a_blob_replaced_by_a_symlink_is_neither_restored_nor_verified() {
    let fx = Fixture::new();
    fx.build(&key(2), OTHER);
    let entry = fx.build(&key(1), GOOD);
    fs::remove_file(fx.blob(GOOD)).unwrap();
    symlink(fx.blob(OTHER), fx.blob(GOOD)).unwrap();
    fs::remove_file(fx.out()).unwrap();

    assert!(fx.store.lookup(&entry.key).is_none());
    assert!(fx.restore(&entry, LinkMode::Copy).is_err());
    assert!(fx.restore(&entry, LinkMode::Hardlink).is_err());
    assert!(!fx.out().exists());
    let report = fx.store.verify().unwrap();
    assert_eq!((report.corrupt_blobs, report.removed_entries), (1, 1));
    assert!(fs::symlink_metadata(fx.blob(GOOD)).is_err());
    assert!(fx.store.lookup(&key(2)).is_some());
}

#[test]
fn an_entry_that_is_a_symlink_is_a_miss_and_verify_drops_it() {
    let fx = Fixture::new();
    fx.build(&key(1), GOOD);
    fs::remove_file(fx.entry_file(&key(1))).unwrap();
    let elsewhere = fx.ws.join("kept-entry.json");
    fx.build(&key(2), GOOD);
    fs::rename(fx.entry_file(&key(2)), &elsewhere).unwrap();
    symlink(&elsewhere, fx.entry_file(&key(2))).unwrap();
    assert!(fx.store.lookup(&key(2)).is_none());
    assert_eq!(fx.store.verify().unwrap().removed_entries, 1);
    assert!(fs::symlink_metadata(fx.entry_file(&key(2))).is_err());
}

#[test]
fn an_entry_copied_under_another_key_is_a_miss_and_verify_drops_it() {
    let fx = Fixture::new();
    fx.build(&key(1), GOOD);
    fx.build(&key(2), OTHER);
    let copied = fs::read(fx.entry_file(&key(1))).unwrap();
    let text = String::from_utf8(copied).unwrap().replace(&key(1), &key(2));
    let path = fx.entry_file(&key(2));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, text).unwrap();

    assert!(fx.store.lookup(&key(2)).is_none());
    assert_eq!(fx.store.lookup_many(&[key(2)]), vec![None]);
    let report = fx.store.verify().unwrap();
    assert_eq!(report.removed_entries, 1);
    assert!(fx.store.lookup(&key(1)).is_some());
}

#[test]
fn an_entry_edited_is_a_miss_and_verify_drops_it() {
    let edits: [fn(&str) -> String; 3] = [
        // A file output turned into a folder.
        |text| text.replace(r#""kind":"file""#, r#""kind":"dir""#),
        // The one output listed twice.
        |text| {
            let start = text.find(r#"{"path":"p/dist/out.txt""#).unwrap();
            let end = start + text[start..].find('}').unwrap() + 1;
            format!("{},{}", &text[..end], &text[start..])
        },
        // Torn: its last bytes lost.
        |text| text[..text.len() - 3].to_owned(),
    ];
    for edit in edits {
        let fx = Fixture::new();
        fx.build(&key(1), GOOD);
        let path = fx.entry_file(&key(1));
        let text = fs::read_to_string(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, edit(&text)).unwrap();
        assert!(fx.store.lookup(&key(1)).is_none());
        assert_eq!(fx.store.verify().unwrap().removed_entries, 1);
    }
}

#[test]
fn a_hard_linked_output_written_through_reaches_no_other_restore() {
    let fx = Fixture::new();
    let entry = fx.build(&key(1), GOOD);
    fs::remove_file(fx.out()).unwrap();
    fx.restore(&entry, LinkMode::Hardlink).unwrap();
    // As root (or after a chmod, which the blob shares): the write lands in the blob.
    write_in_place(&fx.out(), b"THE good bytes\n");
    assert_eq!(fs::read(fx.blob(GOOD)).unwrap(), b"THE good bytes\n");

    // Another clone's restore, from the same store.
    let clone = Fixture::new();
    let restored = fx
        .store
        .restore_with(&clone.ws, "p", &outputs(), &entry, LinkMode::Hardlink);
    assert!(restored.is_err());
    assert_ne!(
        fs::read(clone.ws.join("p/dist/out.txt")).ok().as_deref(),
        Some(&b"THE good bytes\n"[..])
    );
    assert!(!fx.blob(GOOD).exists());
}
