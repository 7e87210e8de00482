//! Stat-based output checks: a hit whose outputs are in place reads no file, and no edit that
//! keeps the size (even with the old mtime put back) slips through.
//!
//! One test in its own binary: it reads the process-wide `files_hashed` counter, which tests
//! running in parallel threads would move.
#![cfg(unix)]

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use once_core::hash::files_hashed;
use once_core::outputstats::OutputStats;
use once_core::store::Store;

/// Longer than the racy rule's margin for sub-second timestamps (20 ms).
const SETTLE: Duration = Duration::from_millis(60);

fn matches(
    store: &Store,
    ws: &Path,
    entry: &once_core::store::ActionEntry,
    known: &OutputStats,
) -> bool {
    store
        .outputs_match(ws, "app", &["dist".to_owned()], entry, Some(known))
        .unwrap()
}

#[test]
fn outputs_are_checked_by_stat_and_hashed_only_when_it_changed() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ws = dirs[0].path();
    let dist = ws.join("app/dist");
    fs::create_dir_all(dist.join("sub")).unwrap();
    fs::write(dist.join("a.txt"), b"alpha").unwrap();
    fs::write(dist.join("sub/b.txt"), b"beta").unwrap();
    let store = Store::open(dirs[1].path()).unwrap();
    let entry = store
        .save(
            "ab".repeat(32).as_str(),
            ws,
            "app",
            &["dist".to_owned()],
            b"",
            0,
            1,
        )
        .unwrap();
    // The state folder is made by a run; without it nothing is kept.
    fs::create_dir(ws.join(".once")).unwrap();
    let state = ws.join(".once/outputs");
    let known = OutputStats::load(&state);

    // Written just now: racy, so hashed and not recorded; once settled, the next check
    // hashes and records them, and from then on nothing is read.
    assert!(matches(&store, ws, &entry, &known));
    sleep(SETTLE);
    assert!(matches(&store, ws, &entry, &known));
    let before = files_hashed();
    assert!(matches(&store, ws, &entry, &known));
    assert_eq!(files_hashed(), before, "settled records: no file read");

    // The records survive a save and a load (the next run).
    known.save().unwrap();
    let reloaded = OutputStats::load(&state);
    let before = files_hashed();
    assert!(matches(&store, ws, &entry, &reloaded));
    assert_eq!(files_hashed(), before);

    // A same-size rewrite with the old mtime put back: ctime moved, so it is hashed and caught.
    let path = dist.join("a.txt");
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    fs::write(&path, b"ALPHA").unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let before = files_hashed();
    assert!(!matches(&store, ws, &entry, &reloaded));
    assert_eq!(files_hashed() - before, 1, "only the changed file is read");
}
