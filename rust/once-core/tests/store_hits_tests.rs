//! Hits settled in bulk: one lookup pass, one settle pass, each hit ending cached, restored,
//! refused, gone or failed exactly as the one-at-a-time calls would have it.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::Fixture;
use once_core::hash::Digest;
use once_core::outputstats::OutputStats;
use once_core::store::{ActionEntry, Hit, LinkMode, OutputEntry, OutputKind, Settled, INLINE_MAX};

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `text` repeated past the size of an output its entry carries: a blob.
fn big(text: &[u8]) -> Vec<u8> {
    text.repeat(INLINE_MAX as usize / text.len() + 1)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

impl Fixture {
    /// Build `package/dist/` with `files` and save it under `key` with `log`.
    fn build(&self, key: &str, package: &str, files: &[(&str, &[u8])], log: &[u8]) -> ActionEntry {
        for (name, bytes) in files {
            write(&self.ws.join(package).join("dist").join(name), bytes);
        }
        self.store
            .save(key, &self.ws, package, &strings(&["dist"]), log, 0, 50)
            .unwrap()
    }

    fn entry_mtime(&self, key: &str) -> SystemTime {
        let path = self
            .store
            .root()
            .join("ac")
            .join(&key[..2])
            .join(format!("{key}.json"));
        fs::metadata(path).unwrap().modified().unwrap()
    }

    fn age_entry(&self, key: &str) {
        let path = self
            .store
            .root()
            .join("ac")
            .join(&key[..2])
            .join(format!("{key}.json"));
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.store.root().join("cas").join(&hex[..2]).join(hex)
    }
}

fn hit<'a>(entry: &'a ActionEntry, package: &'a str, outputs: &'a [String], wave: u32) -> Hit<'a> {
    Hit {
        entry,
        package,
        outputs,
        wave,
    }
}

fn key(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn file_digest(entry: &ActionEntry, path: &str) -> Digest {
    entry
        .outputs
        .iter()
        .find_map(|output| match &output.kind {
            OutputKind::File { digest, .. } if output.path == path => Some(*digest),
            _ => None,
        })
        .unwrap()
}

#[test]
fn lookup_many_answers_each_key_and_refuses_incomplete_entries() {
    let fx = Fixture::new();
    // Two entries sharing one log and one output blob, a third with a blob of its own.
    let a = fx.build(&key(1), "a", &[("x.txt", &big(b"same"))], b"log\n");
    let b = fx.build(&key(2), "b", &[("x.txt", &big(b"same"))], b"log\n");
    let c = fx.build(&key(3), "c", &[("y.txt", &big(b"only c"))], b"log\n");
    let keys = vec![key(1), key(9), key(2), key(3), "../bad".to_owned()];
    let found = fx.store.lookup_many(&keys);
    assert_eq!(
        found,
        vec![
            Some(a.clone()),
            None,
            Some(b.clone()),
            Some(c.clone()),
            None
        ]
    );

    // c's own blob gone: only c is a miss; the blob a and b share gone: both are.
    fs::remove_file(fx.blob_path(&file_digest(&c, "c/dist/y.txt"))).unwrap();
    let found = fx.store.lookup_many(&keys[..4]);
    assert_eq!(found, vec![Some(a.clone()), None, Some(b), None]);
    fs::remove_file(fx.blob_path(&file_digest(&a, "a/dist/x.txt"))).unwrap();
    assert!(fx.store.lookup_many(&keys[..4]).iter().all(Option::is_none));
    // And so does lookup, one key at a time.
    assert_eq!(fx.store.lookup(&key(1)), None);
}

/// The no-op run: every hit in place is settled in one pass (no waves), and still reports
/// its log and marks its entry used.
#[test]
fn hits_all_in_place_are_cached_with_their_logs_and_marked_used() {
    let fx = Fixture::new();
    let a = fx.build(&key(1), "a", &[("x.txt", b"ex")], b"a says hi\n");
    let b = fx.build(&key(2), "b", &[("y.txt", b"why")], b"");
    fx.age_entry(&key(1));
    fx.age_entry(&key(2));
    let before = fx.entry_mtime(&key(1));
    let outputs = strings(&["dist"]);
    let hits = [hit(&a, "a", &outputs, 0), hit(&b, "b", &outputs, 1)];
    let reports = fx
        .store
        .settle_hits(&fx.ws, &hits, LinkMode::Copy, None, true);
    assert!(reports
        .iter()
        .all(|report| matches!(report.settled, Settled::Cached) && report.seconds >= 0.0));
    assert_eq!(reports[0].log.as_deref(), Some(&b"a says hi\n"[..]));
    assert_eq!(reports[1].log.as_deref(), Some(&b""[..]));
    assert!(fx.entry_mtime(&key(1)) > before);
    assert!(fx.entry_mtime(&key(2)) > before);
    assert_eq!(fs::read(fx.ws.join("b/dist/y.txt")).unwrap(), b"why");
}

#[test]
fn settle_confirms_restores_touches_and_reads_logs() {
    let fx = Fixture::new();
    let big: Vec<u8> = (0..200_000u32).flat_map(u32::to_le_bytes).collect();
    let a = fx.build(&key(1), "a", &[("x.txt", b"in place")], b"a says hi\n");
    // One file copied by read and write, one (an executable) cloned or copied whole.
    write(&fx.ws.join("b/dist/big.bin"), &big);
    fs::set_permissions(
        fx.ws.join("b/dist/big.bin"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let b = fx.build(&key(2), "b", &[("y.txt", b"small")], b"");
    fs::remove_dir_all(fx.ws.join("b/dist")).unwrap();
    write(&fx.ws.join("b/dist/stale.txt"), b"left over");
    fx.age_entry(&key(1));
    fx.age_entry(&key(2));
    let before = fx.entry_mtime(&key(1));

    let outputs = strings(&["dist"]);
    let hits = [hit(&a, "a", &outputs, 0), hit(&b, "b", &outputs, 0)];
    let reports = fx
        .store
        .settle_hits(&fx.ws, &hits, LinkMode::Copy, None, true);
    assert!(matches!(reports[0].settled, Settled::Cached));
    assert!(matches!(reports[1].settled, Settled::Restored));
    assert_eq!(reports[0].log.as_deref(), Some(&b"a says hi\n"[..]));
    assert_eq!(reports[1].log.as_deref(), Some(&b""[..]));
    assert!(reports.iter().all(|report| report.seconds >= 0.0));

    // Restored exactly: no stale file, both sizes of file, the manifest's modes.
    assert!(!fx.ws.join("b/dist/stale.txt").exists());
    assert_eq!(fs::read(fx.ws.join("b/dist/y.txt")).unwrap(), b"small");
    assert_eq!(fs::read(fx.ws.join("b/dist/big.bin")).unwrap(), big);
    assert_eq!(mode(&fx.ws.join("b/dist/y.txt")), 0o644);
    assert_eq!(mode(&fx.ws.join("b/dist/big.bin")), 0o755);
    // Both marked used now, for least-recently-used eviction.
    assert!(fx.entry_mtime(&key(1)) > before);
    assert!(fx.entry_mtime(&key(2)) > before);

    // Without logs asked for, none are read.
    let reports = fx
        .store
        .settle_hits(&fx.ws, &hits, LinkMode::Copy, None, false);
    assert!(reports
        .iter()
        .all(|report| matches!(report.settled, Settled::Cached) && report.log.is_none()));
}

#[test]
fn settle_records_outputs_so_the_next_check_reads_nothing() {
    let fx = Fixture::new();
    let a = fx.build(&key(1), "a", &[("x.txt", b"bytes")], b"");
    // Checked only once its timestamps are safely in the past: the racy rule trusts
    // nothing stamped within the file system's granularity of the check.
    std::thread::sleep(Duration::from_millis(100));
    let known = OutputStats::load(&fx.ws.join("outputs"));
    let outputs = strings(&["dist"]);
    let hits = [hit(&a, "a", &outputs, 0)];
    let first = fx
        .store
        .settle_hits(&fx.ws, &hits, LinkMode::Copy, Some(&known), false);
    assert!(matches!(first[0].settled, Settled::Cached));
    let stat = once_core::walk::FileStat::from_metadata(
        &fs::symlink_metadata(fx.ws.join("a/dist/x.txt")).unwrap(),
    );
    assert_eq!(
        known.known("a/dist/x.txt", &stat),
        Some(file_digest(&a, "a/dist/x.txt"))
    );
}

#[test]
fn a_refused_or_gone_hit_touches_nothing_and_spares_the_others() {
    let fx = Fixture::new();
    let good = fx.build(&key(1), "good", &[("x.txt", b"good")], b"");
    let mut evil = fx.build(&key(2), "evil", &[("x.txt", b"evil")], b"");
    evil.outputs.push(OutputEntry {
        path: "good/dist/x.txt".to_owned(),
        kind: OutputKind::File {
            digest: file_digest(&evil, "evil/dist/x.txt"),
            executable: false,
        },
    });
    let gone = fx.build(&key(3), "gone", &[("x.txt", &big(b"soon gone"))], b"");
    fs::remove_file(fx.blob_path(&file_digest(&gone, "gone/dist/x.txt"))).unwrap();
    for package in ["good", "evil", "gone"] {
        fs::remove_dir_all(fx.ws.join(package).join("dist")).unwrap();
    }
    write(&fx.ws.join("evil/dist/mine.txt"), b"untouched");
    fx.age_entry(&key(2));
    let before = fx.entry_mtime(&key(2));

    let outputs = strings(&["dist"]);
    let hits: Vec<Hit<'_>> = [&good, &evil, &gone]
        .into_iter()
        .zip(["good", "evil", "gone"])
        .map(|(entry, package)| Hit {
            entry,
            package,
            outputs: &outputs,
            wave: 0,
        })
        .collect();
    let reports = fx
        .store
        .settle_hits(&fx.ws, &hits, LinkMode::Copy, None, true);
    assert!(matches!(reports[0].settled, Settled::Restored));
    match &reports[1].settled {
        Settled::Refused(message) => assert!(message.contains("good/dist/x.txt"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(reports[2].settled, Settled::Gone));
    assert!(reports[1].log.is_none() && reports[2].log.is_none());
    // The refused entry touched nothing on disk and was not marked used.
    assert_eq!(fs::read(fx.ws.join("good/dist/x.txt")).unwrap(), b"good");
    assert_eq!(
        fs::read(fx.ws.join("evil/dist/mine.txt")).unwrap(),
        b"untouched"
    );
    assert_eq!(fx.entry_mtime(&key(2)), before);
}

#[test]
fn a_later_wave_is_settled_after_an_earlier_one() {
    // `outer` declares `p/dist/` whole; `inner`, a package inside it, declares a file below.
    // Restoring `outer` deletes everything under `p/dist/`: run after `inner`, it would
    // delete what `inner` restored. Waves keep the scheduler's order whatever the list's.
    let fx = Fixture::new();
    // Saved before inner's file existed, so its manifest does not hold it.
    let outer = fx.build(&key(1), "p", &[("o.txt", b"outer")], b"");
    write(&fx.ws.join("p/dist/inner/gen/i.txt"), b"inner");
    let inner_outputs = strings(&["gen/i.txt"]);
    let inner = fx
        .store
        .save(&key(2), &fx.ws, "p/dist/inner", &inner_outputs, b"", 0, 1)
        .unwrap();
    fs::remove_dir_all(fx.ws.join("p/dist")).unwrap();

    let outer_outputs = strings(&["dist"]);
    let hits = [
        hit(&inner, "p/dist/inner", &inner_outputs, 1),
        hit(&outer, "p", &outer_outputs, 0),
    ];
    let reports = fx
        .store
        .settle_hits(&fx.ws, &hits, LinkMode::Copy, None, false);
    assert!(reports
        .iter()
        .all(|report| matches!(report.settled, Settled::Restored)));
    assert_eq!(fs::read(fx.ws.join("p/dist/o.txt")).unwrap(), b"outer");
    assert_eq!(
        fs::read(fx.ws.join("p/dist/inner/gen/i.txt")).unwrap(),
        b"inner"
    );
}

#[test]
fn hardlink_hits_share_the_blob_read_only() {
    let fx = Fixture::new();
    let a = fx.build(&key(1), "a", &[("x.txt", &big(b"linked"))], b"");
    fs::remove_dir_all(fx.ws.join("a/dist")).unwrap();
    let outputs = strings(&["dist"]);
    let hits = [hit(&a, "a", &outputs, 0)];
    let reports = fx
        .store
        .settle_hits(&fx.ws, &hits, LinkMode::Hardlink, None, false);
    assert!(matches!(reports[0].settled, Settled::Restored));
    let restored = fs::metadata(fx.ws.join("a/dist/x.txt")).unwrap();
    assert_eq!(restored.permissions().mode() & 0o777, 0o444);
    assert!(restored.nlink() > 1);
    assert_eq!(
        restored.ino(),
        fs::metadata(fx.blob_path(&file_digest(&a, "a/dist/x.txt")))
            .unwrap()
            .ino()
    );
}
