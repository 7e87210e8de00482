//! Small outputs and a small log travel inside their entry: no blob of their own, restored by
//! copy or by a
//! hard-link restore (as private copies), counted by verify and gc, the same result for
//! early cutoff; an entry whose inline bytes were altered is never restored; an entry of the
//! previous format (every output a blob) is still read and restored.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::Fixture;
use once_core::hash::{hash_bytes, Digest};
use once_core::store::{
    decode_entry, encode_entry, entry_json, ActionEntry, Inline, LinkMode, INLINE_MAX,
};

const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const SMALL: &[u8] = b"small output\n";
const TOOL: &[u8] = b"#!/bin/sh\necho tool\n";

fn outputs() -> Vec<String> {
    vec!["dist".to_owned()]
}

fn big() -> Vec<u8> {
    b"big ".repeat(INLINE_MAX as usize)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

impl Fixture {
    /// Package `p` with `dist/small.txt`, an executable `dist/tool.sh` (both small) and
    /// `dist/big.bin` (a blob), saved under `KEY`.
    fn build(&self) -> ActionEntry {
        let dist = self.ws.join("p/dist");
        fs::create_dir_all(&dist).unwrap();
        fs::write(dist.join("small.txt"), SMALL).unwrap();
        fs::write(dist.join("tool.sh"), TOOL).unwrap();
        fs::set_permissions(dist.join("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dist.join("big.bin"), big()).unwrap();
        self.store
            .save(KEY, &self.ws, "p", &outputs(), b"log\n", 0, 1)
            .unwrap()
    }

    fn dist(&self, name: &str) -> PathBuf {
        self.ws.join("p/dist").join(name)
    }

    fn blob(&self, bytes: &[u8]) -> PathBuf {
        let hex = hash_bytes(bytes).to_hex();
        self.store.root().join("cas").join(&hex[..2]).join(hex)
    }

    fn entry_file(&self) -> PathBuf {
        self.store
            .root()
            .join("ac")
            .join(&KEY[..2])
            .join(format!("{KEY}.json"))
    }

    /// Replace the entry file by `json`, sealed as the store seals it (its tag holds).
    fn reseal(&self, json: &[u8]) {
        let path = self.entry_file();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, encode_entry(KEY, json)).unwrap();
    }

    fn restore(&self, entry: &ActionEntry, link: LinkMode) -> once_core::Result<()> {
        fs::remove_dir_all(self.ws.join("p/dist")).unwrap();
        self.store
            .restore_with(&self.ws, "p", &outputs(), entry, link)
    }
}

fn blob_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for shard in fs::read_dir(root.join("cas")).unwrap() {
        let shard = shard.unwrap().path();
        if shard.is_dir() {
            found.extend(
                fs::read_dir(shard)
                    .unwrap()
                    .map(|file| file.unwrap().path()),
            );
        }
    }
    found
}

#[test]
fn small_outputs_travel_in_the_entry_and_come_back_by_copy_and_by_hard_link() {
    let fx = Fixture::new();
    let entry = fx.build();
    // The store holds the big output as a blob, nothing for the small ones or the log.
    assert_eq!(blob_files(fx.store.root()), vec![fx.blob(&big())]);
    assert_eq!(entry.inline.get(&hash_bytes(SMALL)), Some(SMALL));
    assert_eq!(entry.inline.get(&hash_bytes(TOOL)), Some(TOOL));
    assert_eq!(entry.inline.get(&entry.log), Some(&b"log\n"[..]));
    assert_eq!(entry.blobs().collect::<Vec<_>>(), vec![&hash_bytes(&big())]);
    assert_eq!(fx.store.read_log(&entry).unwrap(), b"log\n");
    assert_eq!(fx.store.lookup(KEY), Some(entry.clone()));
    assert_eq!(
        fx.store.lookup_many(&[KEY.to_owned()]),
        vec![Some(entry.clone())]
    );

    fx.restore(&entry, LinkMode::Copy).unwrap();
    assert_eq!(fs::read(fx.dist("small.txt")).unwrap(), SMALL);
    assert_eq!(fs::read(fx.dist("tool.sh")).unwrap(), TOOL);
    assert_eq!(
        (mode(&fx.dist("small.txt")), mode(&fx.dist("tool.sh"))),
        (0o644, 0o755)
    );

    // No blob to link to: private copies, beside a read-only link to the big output's blob;
    // only that link is made private before a command rewrites the outputs in place.
    fx.restore(&entry, LinkMode::Hardlink).unwrap();
    assert_eq!(fs::read(fx.dist("small.txt")).unwrap(), SMALL);
    assert_eq!(
        (mode(&fx.dist("small.txt")), mode(&fx.dist("tool.sh"))),
        (0o644, 0o755)
    );
    assert_eq!(fs::metadata(fx.dist("small.txt")).unwrap().nlink(), 1);
    assert_eq!(mode(&fx.dist("big.bin")), 0o444);
    assert!(fs::metadata(fx.dist("big.bin")).unwrap().nlink() > 1);
    let unshared = fx.store.unshare_outputs(&fx.ws, "p", &outputs()).unwrap();
    assert_eq!(unshared, 1);
    assert!(fx
        .store
        .outputs_match(&fx.ws, "p", &outputs(), &entry, None)
        .unwrap());

    // Early cutoff and `once why` see digests, wherever the bytes are.
    let mut as_blobs = entry.clone();
    as_blobs.inline = Inline::default();
    assert_eq!(entry.result(), as_blobs.result());
    assert_eq!(entry.listing(), as_blobs.listing());

    // Sound: verify keeps it; a collection down to nothing leaves no blob behind.
    let report = fx.store.verify().unwrap();
    assert_eq!((report.corrupt_blobs, report.removed_entries), (0, 0));
    let usage = fx.store.usage().unwrap();
    assert!(usage.entry_bytes > (SMALL.len() + TOOL.len()) as u64);
    let gc = fx
        .store
        .gc(&once_core::evict::GcOptions {
            max_bytes: 0,
            protected: &std::collections::HashSet::new(),
            wait: true,
            sweep: false,
            count_later: false,
        })
        .unwrap();
    assert_eq!((gc.evicted_entries, gc.removed_blobs), (1, 1), "{gc:?}");
    assert!(blob_files(fx.store.root()).is_empty());
}

#[test]
fn an_entry_carries_few_of_many_tiny_outputs() {
    let fx = Fixture::new();
    let dist = fx.ws.join("p/dist");
    fs::create_dir_all(&dist).unwrap();
    for n in 0..1000 {
        fs::write(dist.join(format!("{n}.txt")), n.to_string()).unwrap();
    }
    let entry = fx
        .store
        .save(KEY, &fx.ws, "p", &outputs(), b"", 0, 1)
        .unwrap();
    let carried = entry.outputs.len() - 1 - entry.output_blobs().count();
    assert!((1..64).contains(&carried), "{carried}");
    // The entry stays small however many outputs the step has: its manifest, and a page.
    let manifest = serde_json::to_vec(&entry.outputs).unwrap().len() as u64;
    let size = fs::metadata(fx.entry_file()).unwrap().len();
    assert!(size < manifest + 2 * INLINE_MAX, "{size} {manifest}");
    fs::remove_dir_all(&dist).unwrap();
    fx.store
        .restore_with(&fx.ws, "p", &outputs(), &entry, LinkMode::Copy)
        .unwrap();
    assert_eq!(fs::read(dist.join("999.txt")).unwrap(), b"999");
    assert_eq!(fs::read(dist.join("0.txt")).unwrap(), b"0");
}

#[test]
fn an_entry_whose_inline_bytes_were_altered_is_never_restored() {
    let fx = Fixture::new();
    fx.build();
    let sealed = fs::read(fx.entry_file()).unwrap();
    let json = entry_json(KEY, &sealed).unwrap().to_vec();

    // A byte flipped in the file: its tag no longer holds.
    let text = String::from_utf8(sealed.clone()).unwrap();
    let original = STANDARD.encode(SMALL);
    let altered = STANDARD.encode(b"SMALL output\n");
    let path = fx.entry_file();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, text.replace(&original, &altered)).unwrap();
    assert!(fx.store.lookup(KEY).is_none());

    // The same edit with the tag made anew (whoever can write the store can): the bytes no
    // longer hash to the digest they are filed under, and no reader takes the entry.
    let edited = String::from_utf8(json)
        .unwrap()
        .replace(&original, &altered);
    assert_ne!(edited.as_bytes(), entry_json(KEY, &sealed).unwrap());
    fx.reseal(edited.as_bytes());
    assert!(decode_entry(KEY, &fs::read(fx.entry_file()).unwrap()).is_none());
    assert!(fx.store.lookup(KEY).is_none());
    assert_eq!(fx.store.lookup_many(&[KEY.to_owned()]), vec![None]);
    assert!(serde_json::from_str::<ActionEntry>(&edited).is_err());
    let report = fx.store.verify().unwrap();
    assert_eq!(report.removed_entries, 1);
    assert!(!fx.entry_file().exists());
}

#[test]
fn an_entry_of_the_previous_format_is_read_and_restored() {
    let fx = Fixture::new();
    // As the previous version wrote it: every output file a blob, no `inline`.
    let small: Digest = fx.store.put_bytes(SMALL).unwrap();
    let log = fx.store.put_bytes(b"").unwrap();
    let json = format!(
        concat!(
            r#"{{"key":"{key}","outputs":[{{"path":"p/dist","kind":"dir"}},"#,
            r#"{{"path":"p/dist/small.txt","kind":"file","digest":"{small}","executable":false}}],"#,
            r#""log":"{log}","exit_code":0,"duration_ms":7,"created_unix":1700000000}}"#
        ),
        key = KEY,
        small = small.to_hex(),
        log = log.to_hex(),
    );
    fx.store.put_entry(KEY, json.as_bytes()).unwrap();
    let entry = fx.store.lookup(KEY).unwrap();
    assert!(entry.inline.is_empty());
    assert_eq!(entry.duration_ms, 7);
    fs::create_dir_all(fx.ws.join("p/dist")).unwrap();
    fx.restore(&entry, LinkMode::Copy).unwrap();
    assert_eq!(fs::read(fx.dist("small.txt")).unwrap(), SMALL);
    fx.restore(&entry, LinkMode::Hardlink).unwrap();
    assert_eq!(fs::read(fx.dist("small.txt")).unwrap(), SMALL);
    assert!(fs::metadata(fx.dist("small.txt")).unwrap().nlink() > 1);
    // Without its blob it is a miss, as before.
    fs::remove_file(fx.blob(SMALL)).unwrap();
    assert!(fx.store.lookup(KEY).is_none());
}

#[test]
fn a_log_travels_in_the_entry_only_in_what_the_outputs_left() {
    let fx = Fixture::new();
    let dist = fx.ws.join("p/dist");
    fs::create_dir_all(&dist).unwrap();
    let most = vec![b'x'; INLINE_MAX as usize - 2 * 64 - 150];
    fs::write(dist.join("most.txt"), &most).unwrap();
    // 100 bytes fit beside it; 200 do not, and are a blob the entry names.
    let short = vec![b's'; 100];
    let long = vec![b'l'; 200];
    let carried = fx
        .store
        .save(KEY, &fx.ws, "p", &outputs(), &short, 0, 1)
        .unwrap();
    assert_eq!(carried.inline.get(&carried.log), Some(&short[..]));
    assert!(blob_files(fx.store.root()).is_empty());
    let other = "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";
    let blob = fx
        .store
        .save(other, &fx.ws, "p", &outputs(), &long, 0, 1)
        .unwrap();
    assert_eq!(blob.inline.get(&blob.log), None);
    assert_eq!(blob_files(fx.store.root()), vec![fx.blob(&long)]);
    assert_eq!(blob.blobs().collect::<Vec<_>>(), vec![&hash_bytes(&long)]);
    // Both read back through the same call, from the store's own copies of the entries.
    let (carried, blob) = (
        fx.store.lookup(KEY).unwrap(),
        fx.store.lookup(other).unwrap(),
    );
    assert_eq!(fx.store.read_log(&carried).unwrap(), short);
    assert_eq!(fx.store.read_log(&blob).unwrap(), long);
    // A step that prints nothing names the store's one empty blob, as before.
    let quiet = "7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c";
    let quiet = fx
        .store
        .save(quiet, &fx.ws, "p", &outputs(), b"", 0, 1)
        .unwrap();
    assert_eq!(quiet.inline.get(&quiet.log), None);
    assert_eq!(fx.store.read_log(&quiet).unwrap(), b"");
}
