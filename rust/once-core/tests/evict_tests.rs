//! Size bound and upkeep of the store: LRU eviction that spares what a run uses, orphan and
//! leftover sweeping, clear, and verify dropping corrupt blobs and the entries naming them.
#![cfg(unix)]

mod common;

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::Fixture;
use once_core::evict::{GcOptions, Usage};
use once_core::hash::Digest;
use once_core::store::{ActionEntry, OutputEntry, OutputKind};

/// Helpers to make one entry per package with its own output.
impl Fixture {
    /// Key `kNN…`, package `pNN` with output `out.bin` of `size` bytes unique to it, plus a
    /// `shared.txt` every entry has, and a log.
    fn entry(&self, n: usize, size: usize) -> ActionEntry {
        let package = format!("p{n:02}");
        let dir = self.ws.join(&package);
        fs::create_dir_all(&dir).unwrap();
        let mut bytes = vec![b'x'; size];
        bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
        fs::write(dir.join("out.bin"), &bytes).unwrap();
        fs::write(dir.join("shared.txt"), b"same in every entry").unwrap();
        let outputs = ["out.bin".to_owned(), "shared.txt".to_owned()];
        self.store
            .save(&key(n), &self.ws, &package, &outputs, b"log", 0, 1)
            .unwrap()
    }

    fn entry_file(&self, n: usize) -> PathBuf {
        let key = key(n);
        self.store
            .root()
            .join("ac")
            .join(&key[..2])
            .join(format!("{key}.json"))
    }

    /// Pretend entry `n` was last used `ago` before now.
    fn age(&self, n: usize, ago: Duration) {
        set_mtime(&self.entry_file(n), SystemTime::now() - ago);
    }

    fn blob(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.store.root().join("cas").join(&hex[..2]).join(hex)
    }

    fn gc(&self, max_bytes: u64, protected: &[usize]) -> once_core::evict::GcReport {
        let protected: HashSet<String> = protected.iter().map(|n| key(*n)).collect();
        self.store
            .gc(&GcOptions {
                max_bytes,
                protected: &protected,
                wait: true,
                sweep: false,
                count_later: false,
            })
            .unwrap()
    }
}

fn key(n: usize) -> String {
    format!("{n:02}").repeat(32)
}

fn set_mtime(path: &Path, when: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn out_digest(entry: &ActionEntry) -> Digest {
    entry
        .outputs
        .iter()
        .find_map(|output| match &output.kind {
            OutputKind::File { digest, .. } if output.path.ends_with("out.bin") => Some(*digest),
            _ => None,
        })
        .unwrap()
}

const KB: usize = 1024;

#[test]
fn usage_counts_entries_blobs_and_temporary_files() {
    let fx = Fixture::new();
    assert_eq!(fx.store.usage().unwrap(), Usage::default());
    fx.entry(1, 10 * KB);
    fx.entry(2, 20 * KB);
    fs::write(fx.store.root().join("cas/.tmp-1-1"), b"half").unwrap();
    let usage = fx.store.usage().unwrap();
    // Two unique outputs; the small shared file and the log travel inside each entry.
    assert_eq!((usage.entries, usage.blobs, usage.temp_files), (2, 2, 1));
    assert_eq!(usage.blob_bytes, (30 * KB) as u64);
    assert_eq!(usage.temp_bytes, 4);
    assert!(usage.entry_bytes > 0);
    assert_eq!(
        usage.total_bytes(),
        usage.entry_bytes + usage.blob_bytes + 4
    );
}

#[test]
fn gc_evicts_least_recently_used_first_and_keeps_shared_blobs() {
    let fx = Fixture::new();
    let entries: Vec<ActionEntry> = (0..6).map(|n| fx.entry(n, 100 * KB)).collect();
    // Entry 0 is the oldest; but 2 was used (touched) just now, after all the others.
    for n in 0..6 {
        fx.age(n, Duration::from_secs(600 - 60 * n as u64));
    }
    assert!(fx.store.touch(&key(2)));
    assert!(!fx.store.touch(&"ff".repeat(32)));

    // Room for about three of the 100 KiB entries.
    let report = fx.gc(320 * KB as u64, &[]);
    assert!(!report.busy);
    assert_eq!(report.evicted_entries, 3);
    assert_eq!(report.removed_blobs, 3);
    assert!(report.bytes_after <= 320 * KB as u64);
    assert!(report.freed_bytes >= 300 * KB as u64);
    assert_eq!(report.bytes_before - report.freed_bytes, report.bytes_after);
    let kept: Vec<usize> = (0..6)
        .filter(|n| fx.store.lookup(&key(*n)).is_some())
        .collect();
    assert_eq!(kept, [2, 4, 5]);
    for n in [0, 1, 3] {
        assert!(!fx.blob(&out_digest(&entries[n])).exists());
        assert!(!fx.entry_file(n).exists());
    }
    // What an evicted entry shared with a kept one is still there: the kept ones are hits.
    assert_eq!(fx.store.usage().unwrap().total_bytes(), report.bytes_after);
}

#[test]
fn gc_never_evicts_protected_entries_even_over_the_bound() {
    let fx = Fixture::new();
    for n in 0..4 {
        fx.entry(n, 50 * KB);
        fx.age(n, Duration::from_secs(100 - n as u64));
    }
    // The oldest is what this run used: it stays, the rest goes.
    let report = fx.gc(0, &[0]);
    assert_eq!(report.evicted_entries, 3);
    assert!(fx.store.lookup(&key(0)).is_some());
    assert!(report.bytes_after > 0, "protected bytes remain");
    assert_eq!(fx.store.usage().unwrap().entries, 1);
}

#[test]
fn gc_under_the_bound_changes_nothing_but_stale_leftovers() {
    let fx = Fixture::new();
    fx.entry(1, 10 * KB);
    // An orphan blob (no entry names it) and two leftovers of writers, one killed long ago.
    let orphan = fx.store.put_bytes(b"nobody names me").unwrap();
    let stale = fx.store.root().join("cas/.tmp-99-1");
    let fresh = fx.store.root().join("ac/01/.tmp-99-2");
    fs::write(&stale, b"killed mid-write").unwrap();
    fs::write(&fresh, b"still writing").unwrap();
    set_mtime(&stale, SystemTime::now() - Duration::from_secs(2 * 3600));

    let report = fx.gc(u64::MAX, &[]);
    assert_eq!(
        (
            report.evicted_entries,
            report.removed_blobs,
            report.removed_temps
        ),
        (0, 0, 1)
    );
    assert!(!stale.exists());
    assert!(fresh.exists(), "a live writer's temporary file is kept");
    assert!(
        fx.store.contains(&orphan),
        "under the bound nothing is swept"
    );

    // A manual collection sweeps unreferenced blobs even under the bound.
    let report = fx
        .store
        .gc(&GcOptions {
            max_bytes: u64::MAX,
            protected: &HashSet::new(),
            wait: true,
            sweep: true,
            count_later: false,
        })
        .unwrap();
    assert_eq!((report.evicted_entries, report.removed_blobs), (0, 1));
    assert!(!fx.store.contains(&orphan));
    assert!(fx.store.lookup(&key(1)).is_some());
}

#[test]
fn gc_over_the_bound_deletes_orphans_before_any_entry() {
    let fx = Fixture::new();
    fx.entry(1, 10 * KB);
    let orphan = fx.store.put_bytes(&vec![7u8; 100 * KB]).unwrap();
    let report = fx.gc(50 * KB as u64, &[]);
    assert_eq!((report.evicted_entries, report.removed_blobs), (0, 1));
    assert!(!fx.store.contains(&orphan));
    assert!(fx.store.lookup(&key(1)).is_some());
}

#[test]
fn undecodable_entries_are_evicted_by_age_like_any_other() {
    let fx = Fixture::new();
    fx.entry(1, 10 * KB);
    let torn = fx
        .store
        .root()
        .join("ac/ab")
        .join(format!("{}.json", "ab".repeat(32)));
    fs::create_dir_all(torn.parent().unwrap()).unwrap();
    fs::write(&torn, b"{\"key\":").unwrap();
    set_mtime(&torn, SystemTime::now() - Duration::from_secs(3600));
    let report = fx.gc(1, &[1]);
    assert_eq!(report.evicted_entries, 1);
    assert!(!torn.exists());
}

/// Saves racing a collection: the collection waits for each save to write its entry, so the
/// blobs a save has written but no entry names yet are never swept from under it.
#[test]
fn concurrent_saves_never_lose_blobs_to_a_collection() {
    let fx = Arc::new(Fixture::new());
    // Packages and their outputs made up front; the threads only save.
    for n in 0..40 {
        fx.entry(n, 64 * KB);
    }
    fx.store.clear().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let fx = Arc::clone(&fx);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let report = fx
                    .store
                    .gc(&GcOptions {
                        max_bytes: u64::MAX,
                        protected: &HashSet::new(),
                        wait: true,
                        sweep: true,
                        count_later: false,
                    })
                    .unwrap();
                assert!(!report.busy);
                runs += 1;
            }
            runs
        })
    };
    let savers: Vec<_> = (0..4)
        .map(|t| {
            let fx = Arc::clone(&fx);
            std::thread::spawn(move || {
                for n in (t..40).step_by(4) {
                    let outputs = ["out.bin".to_owned(), "shared.txt".to_owned()];
                    fx.store
                        .save(&key(n), &fx.ws, &format!("p{n:02}"), &outputs, b"log", 0, 1)
                        .unwrap();
                }
            })
        })
        .collect();
    for saver in savers {
        saver.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(collector.join().unwrap() > 0);
    for n in 0..40 {
        assert!(fx.store.lookup(&key(n)).is_some(), "entry {n} lost a blob");
    }
}

#[test]
fn gc_gives_up_at_once_when_asked_not_to_wait_for_a_busy_store() {
    let fx = Fixture::new();
    fx.entry(1, KB);
    // A save in progress in another process holds the lock shared; flock is per open file,
    // so a second open file in this process stands in for it.
    let lock = File::open(fx.store.root().join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared).unwrap();
    let report = fx
        .store
        .gc(&GcOptions {
            max_bytes: 0,
            protected: &HashSet::new(),
            wait: false,
            sweep: false,
            count_later: false,
        })
        .unwrap();
    assert!(report.busy);
    assert!(fx.store.lookup(&key(1)).is_some());
    drop(lock);
    assert!(!fx.gc(0, &[]).busy);
    assert!(fx.store.lookup(&key(1)).is_none());
}

#[test]
fn clear_empties_the_store_and_keeps_it_usable() {
    let fx = Fixture::new();
    fx.entry(1, 10 * KB);
    fx.entry(2, 10 * KB);
    fs::write(fx.store.root().join("cas/.tmp-5-5"), b"x").unwrap();
    fs::write(fx.store.root().join("runs.jsonl"), b"{}\n").unwrap();
    let removed = fx.store.clear().unwrap();
    assert_eq!((removed.entries, removed.temp_files), (2, 1));
    assert_eq!(fx.store.usage().unwrap(), Usage::default());
    assert!(fx.store.root().join("cas").is_dir());
    assert!(fx.store.root().join("ac").is_dir());
    // Only the store's own folders are emptied.
    assert!(fx.store.root().join("runs.jsonl").is_file());
    fx.entry(3, KB);
    assert!(fx.store.lookup(&key(3)).is_some());
}

fn corrupt(path: &Path, bytes: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn verify_drops_corrupt_blobs_and_every_entry_naming_them() {
    let fx = Fixture::new();
    let entries: Vec<ActionEntry> = (0..5).map(|n| fx.entry(n, 10 * KB)).collect();
    // Entry 1: a flipped blob. Entry 2: a missing blob. Entry 3: torn JSON. Plus a crafted
    // entry that would write outside the workspace, and an entry filed under another key.
    corrupt(&fx.blob(&out_digest(&entries[1])), b"bit rot");
    fs::remove_file(fx.blob(&out_digest(&entries[2]))).unwrap();
    fs::write(fx.entry_file(3), b"{\"key\": ").unwrap();
    let mut escaping = entries[4].clone();
    escaping.key = key(7);
    escaping.outputs.push(OutputEntry {
        path: "p04/evil".to_owned(),
        kind: OutputKind::Symlink {
            target: "../../../etc".to_owned(),
        },
    });
    fs::create_dir_all(fx.entry_file(7).parent().unwrap()).unwrap();
    fs::write(fx.entry_file(7), serde_json::to_vec(&escaping).unwrap()).unwrap();
    let mut misfiled = entries[4].clone();
    misfiled.key = key(9);
    fs::create_dir_all(fx.entry_file(8).parent().unwrap()).unwrap();
    fs::write(fx.entry_file(8), serde_json::to_vec(&misfiled).unwrap()).unwrap();

    let report = fx.store.verify().unwrap();
    assert_eq!(report.corrupt_blobs, 1);
    assert_eq!(report.entries, 7);
    assert_eq!(report.removed_entries, 5);
    let kept: Vec<usize> = (0..10).filter(|n| fx.entry_file(*n).exists()).collect();
    assert_eq!(kept, [0, 4]);
    assert!(!fx.blob(&out_digest(&entries[1])).exists());
    for n in kept {
        assert!(fx.store.lookup(&key(n)).is_some());
    }
    // Now consistent: a second pass finds nothing (the corrupt blob is gone, nothing more).
    let again = fx.store.verify().unwrap();
    assert_eq!((again.corrupt_blobs, again.removed_entries), (0, 0));
    assert_eq!(again.blobs, report.blobs - 1);
}

/// The collection at the end of a run trusts the store's tally (`usage`) while it says the
/// store is under the bound; every save adds to it, and an old or damaged tally, a bound it
/// exceeds, or a manual collection counts every file again.
#[test]
fn a_collection_under_the_bound_takes_the_tally_and_saves_add_to_it() {
    let fx = Fixture::new();
    let tally = fx.store.root().join("usage");
    fx.entry(1, 10 * KB);
    assert!(!tally.exists(), "no tally before the first full count");
    let exact = |fx: &Fixture| fx.store.usage().unwrap().total_bytes();

    let counted = fx.gc(u64::MAX, &[]);
    assert_eq!(counted.bytes_before, exact(&fx));
    assert!(tally.is_file());

    // A save adds to the tally at least what it added to the store.
    fx.entry(2, 20 * KB);
    let told = fx.gc(u64::MAX, &[]);
    assert!(
        told.bytes_before >= exact(&fx),
        "{} < {}",
        told.bytes_before,
        exact(&fx)
    );
    assert!(told.bytes_before > counted.bytes_before);

    // Something the tally cannot see (a blob dropped in by hand) is still under the bound it
    // reports, so the collection trusts it...
    let unseen = fx.store.put_bytes(&vec![9u8; 100 * KB]).unwrap();
    let trusted = fx.gc(told.bytes_before + 1, &[]);
    assert_eq!(trusted.bytes_before, told.bytes_before);
    assert!(fx.store.contains(&unseen));
    // ...until the tally is an hour old: then every file is counted, and the orphan goes.
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    let secs = old
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    fs::write(&tally, format!("counted {} {secs}\n", told.bytes_before)).unwrap();
    let recounted = fx.gc(told.bytes_before + 1, &[]);
    assert_eq!(recounted.removed_blobs, 1);
    assert!(!fx.store.contains(&unseen));
    assert_eq!(recounted.bytes_after, exact(&fx));

    // A tally that does not parse is counted again too.
    fs::write(&tally, "counted lots\n+12\n").unwrap();
    assert_eq!(fx.gc(u64::MAX, &[]).bytes_before, exact(&fx));
    // Over the bound by the tally: counted, and evicted down to it.
    let report = fx.gc(exact(&fx) - 1, &[2]);
    assert_eq!(report.evicted_entries, 1);
    assert!(fx.store.lookup(&key(1)).is_none());

    fx.store.clear().unwrap();
    assert!(!tally.exists(), "a cleared store is counted afresh");
}
