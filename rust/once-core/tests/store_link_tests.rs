//! Restore modes: a clone or copy the user may edit, or read-only hard links into the store.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use once_core::store::{ActionEntry, LinkMode, Store, INLINE_MAX};

struct Fixture {
    _dirs: [tempfile::TempDir; 2],
    ws: PathBuf,
    store: Store,
    entry: ActionEntry,
}

fn outputs() -> Vec<String> {
    vec!["dist".to_owned()]
}

impl Fixture {
    /// `app/dist` with a plain file, an executable with the same bytes as another plain file
    /// (one blob, two modes), a nested file and a symlink.
    fn new() -> Fixture {
        let ws_dir = tempfile::tempdir().unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let ws = ws_dir.path().to_path_buf();
        let dist = ws.join("app/dist");
        fs::create_dir_all(dist.join("sub")).unwrap();
        fs::write(dist.join("a.txt"), big(b"alpha")).unwrap();
        fs::write(dist.join("sub/b.txt"), big(b"bee")).unwrap();
        fs::write(dist.join("same.txt"), big(b"#!/bin/sh\n")).unwrap();
        fs::write(dist.join("run.sh"), big(b"#!/bin/sh\n")).unwrap();
        fs::set_permissions(dist.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("a.txt", dist.join("link")).unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let entry = store
            .save(&"ab".repeat(32), &ws, "app", &outputs(), b"", 0, 0)
            .unwrap();
        Fixture {
            _dirs: [ws_dir, store_dir],
            ws,
            store,
            entry,
        }
    }

    fn restore(&self, link: LinkMode) {
        self.store
            .restore_with(&self.ws, "app", &outputs(), &self.entry, link)
            .unwrap();
    }

    fn matches(&self) -> bool {
        self.store
            .outputs_match(&self.ws, "app", &outputs(), &self.entry, None)
            .unwrap()
    }

    fn dist(&self, rel: &str) -> PathBuf {
        self.ws.join("app/dist").join(rel)
    }

    fn blob_of(&self, bytes: &[u8]) -> PathBuf {
        let hex = blake3::hash(bytes).to_hex();
        self.store
            .root()
            .join("cas")
            .join(&hex[..2])
            .join(hex.as_str())
    }
}

/// `text` repeated past the size of an output its entry carries: these outputs are blobs.
fn big(text: &[u8]) -> Vec<u8> {
    text.repeat(INLINE_MAX as usize / text.len() + 1)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn same_inode(a: &Path, b: &Path) -> bool {
    let (a, b) = (fs::metadata(a).unwrap(), fs::metadata(b).unwrap());
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[test]
fn copy_restore_gives_files_the_user_may_edit() {
    let fx = Fixture::new();
    fs::remove_dir_all(fx.ws.join("app/dist")).unwrap();
    fx.restore(LinkMode::Copy);
    assert!(fx.matches());
    assert_eq!(mode(&fx.dist("a.txt")), 0o644);
    assert_eq!(mode(&fx.dist("run.sh")), 0o755);
    assert!(!same_inode(&fx.dist("a.txt"), &fx.blob_of(&big(b"alpha"))));
    // Editing the restored file leaves the store intact.
    fs::write(fx.dist("a.txt"), b"edited").unwrap();
    assert_eq!(fs::read(fx.blob_of(&big(b"alpha"))).unwrap(), big(b"alpha"));
    assert!(!fx.matches());
}

#[test]
fn hardlink_restore_links_read_only_files_and_still_matches() {
    let fx = Fixture::new();
    fs::remove_dir_all(fx.ws.join("app/dist")).unwrap();
    fx.restore(LinkMode::Hardlink);
    assert!(
        fx.matches(),
        "a hard-linked restore is what the manifest says"
    );
    for rel in ["a.txt", "sub/b.txt", "same.txt"] {
        let bytes = fs::read(fx.dist(rel)).unwrap();
        assert!(same_inode(&fx.dist(rel), &fx.blob_of(&bytes)), "{rel}");
        assert_eq!(mode(&fx.dist(rel)), 0o444, "{rel}");
    }
    // The executable shares its bytes with `same.txt` but not its mode: a read-only clone.
    assert!(!same_inode(
        &fx.dist("run.sh"),
        &fx.blob_of(&big(b"#!/bin/sh\n"))
    ));
    assert_eq!(mode(&fx.dist("run.sh")), 0o555);
    assert_eq!(mode(&fx.blob_of(&big(b"#!/bin/sh\n"))), 0o444);
    assert_eq!(fs::read_link(fx.dist("link")).unwrap(), Path::new("a.txt"));
    // An edit in place is refused, so it cannot reach the store (root is not refused: read-only
    // modes do not bind it, which is why hard links are only on request).
    if !privileged(&fx.ws) {
        let err = fs::write(fx.dist("a.txt"), b"edited").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(fs::read(fx.blob_of(&big(b"alpha"))).unwrap(), big(b"alpha"));
    }
}

/// Whether this process may write a read-only file (root, or `CAP_DAC_OVERRIDE`).
fn privileged(dir: &Path) -> bool {
    let probe = dir.join("probe");
    fs::write(&probe, b"").unwrap();
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o444)).unwrap();
    let writable = fs::OpenOptions::new().write(true).open(&probe).is_ok();
    fs::remove_file(&probe).unwrap();
    writable
}

#[test]
fn restores_replace_read_only_links_and_switch_modes_both_ways() {
    let fx = Fixture::new();
    fx.restore(LinkMode::Hardlink);
    // A stale extra file among read-only links is removed by the next restore.
    fs::write(fx.dist("stale.txt"), b"old").unwrap();
    fx.restore(LinkMode::Copy);
    assert!(!fx.dist("stale.txt").exists());
    assert_eq!(mode(&fx.dist("a.txt")), 0o644);
    assert!(!same_inode(&fx.dist("a.txt"), &fx.blob_of(&big(b"alpha"))));
    assert!(fx.matches());
    fx.restore(LinkMode::Hardlink);
    assert!(fx.matches());
    // Saving again from hard-linked outputs reuses the blobs and leaves them whole.
    let again = fx
        .store
        .save(&"cd".repeat(32), &fx.ws, "app", &outputs(), b"", 0, 0)
        .unwrap();
    assert_eq!(again.outputs, fx.entry.outputs);
    assert_eq!(fs::read(fx.blob_of(&big(b"alpha"))).unwrap(), big(b"alpha"));
    assert_eq!(mode(&fx.blob_of(&big(b"alpha"))), 0o444);
}

#[test]
fn link_modes_parse_from_their_cli_names() {
    assert_eq!("copy".parse::<LinkMode>(), Ok(LinkMode::Copy));
    assert_eq!("hardlink".parse::<LinkMode>(), Ok(LinkMode::Hardlink));
    assert!("symlink".parse::<LinkMode>().is_err());
}

#[test]
fn unshare_outputs_turns_read_only_links_into_private_copies() {
    let fx = Fixture::new();
    // Nothing to do after a copy restore.
    fx.restore(LinkMode::Copy);
    assert_eq!(
        fx.store.unshare_outputs(&fx.ws, "app", &outputs()).unwrap(),
        0
    );
    fx.restore(LinkMode::Hardlink);
    let unshared = fx.store.unshare_outputs(&fx.ws, "app", &outputs()).unwrap();
    assert_eq!(unshared, 3, "a.txt, sub/b.txt and same.txt were links");
    for rel in ["a.txt", "sub/b.txt", "same.txt"] {
        let meta = fs::metadata(fx.dist(rel)).unwrap();
        assert_eq!(meta.nlink(), 1, "{rel}");
        assert_eq!(mode(&fx.dist(rel)), 0o644, "{rel}");
    }
    assert!(fx.matches(), "same bytes, same executable bits");
    // A command rewriting an output in place now leaves the store alone, root or not.
    fs::write(fx.dist("a.txt"), b"rebuilt").unwrap();
    assert_eq!(fs::read(fx.blob_of(&big(b"alpha"))).unwrap(), big(b"alpha"));
    assert_eq!(mode(&fx.blob_of(&big(b"alpha"))), 0o444);
}
