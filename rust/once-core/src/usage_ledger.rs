//! A running tally of the store's size, so that the collection at the end of every run that
//! saved something need not stat every entry and blob to learn the store is under its bound:
//! 18 ms for a store of 3,500 files, most of a second for one of 100,000.
//!
//! `usage` in the store's folder holds the bytes a full count found and when (Unix seconds),
//! then one line per save since, with the bytes that save may have added:
//!
//! ```text
//! counted 123456789 1795500000
//! +4096
//! ```
//!
//! A save appends its line (one short append) under the store's shared lock; a full count
//! rewrites the file under the exclusive lock: no line is lost between the two. A save counts
//! every blob it names, also those the store held already, so the tally only overestimates,
//! which at worst makes a collection count sooner. What it cannot see (files removed or added
//! by hand, a writer of an older version) is caught by the full count, at least hourly.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::TempFile;

const FILE: &str = "usage";
/// A tally older than this is counted again, whatever it says.
const RECOUNT_AFTER: Duration = Duration::from_secs(3600);
/// Past this many saves since the count, reading the tally is no longer cheap: count again.
const MOST_LINES: usize = 100_000;

/// The store's size as the tally has it; None when it must be counted (no tally, an old or
/// long one, or one that does not parse).
pub(crate) fn estimate(root: &Path) -> Option<u64> {
    let text = fs::read_to_string(root.join(FILE)).ok()?;
    let mut lines = text.lines();
    let mut counted = lines.next()?.strip_prefix("counted ")?.split(' ');
    let mut total: u64 = counted.next()?.parse().ok()?;
    // Checked: a damaged file may date its count past the end of every clock.
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(counted.next()?.parse().ok()?))?;
    if SystemTime::now().duration_since(at).ok()? > RECOUNT_AFTER {
        return None;
    }
    for (n, line) in lines.enumerate() {
        if n >= MOST_LINES {
            return None;
        }
        total = total.checked_add(line.strip_prefix('+')?.parse().ok()?)?;
    }
    Some(total)
}

/// Add `bytes` to the tally, if there is one; best effort (a lost line is found by the next
/// full count, an hour later at most).
pub(crate) fn add(root: &Path, bytes: u64) {
    let path = root.join(FILE);
    if let Ok(mut file) = OpenOptions::new().append(true).open(path) {
        let _ = file.write_all(format!("+{bytes}\n").as_bytes());
    }
}

/// Start the tally afresh at `bytes`, counted just now.
pub(crate) fn counted(root: &Path, bytes: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let Ok((mut file, temp)) = TempFile::create(root) else {
        return;
    };
    if file
        .write_all(format!("counted {bytes} {now}\n").as_bytes())
        .is_ok()
    {
        let _ = temp.persist(&root.join(FILE));
    }
}

/// Drop the tally: the next collection counts in full.
pub(crate) fn forget(root: &Path) {
    let _ = fs::remove_file(root.join(FILE));
}
