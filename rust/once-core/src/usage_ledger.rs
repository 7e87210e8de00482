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
    parse(
        &fs::read_to_string(root.join(FILE)).ok()?,
        SystemTime::now(),
    )
}

/// The size a tally gives however old it is, with whether its hour is up; None when there is
/// none or it is long or does not parse. For a collection that can leave the full count to
/// later when the tally, even old, says the store is well under its bound.
pub(crate) fn estimate_aged(root: &Path) -> Option<(u64, bool)> {
    let (total, at) = tally(&fs::read_to_string(root.join(FILE)).ok()?)?;
    // A count dated in the future is as doubtful as an old one (`parse` refuses both).
    let aged = SystemTime::now()
        .duration_since(at)
        .map_or(true, |age| age > RECOUNT_AFTER);
    Some((total, aged))
}

/// The size a tally's `text` gives at `now`; None as for `estimate`. Never panics on any text
/// (fuzzed: `fuzz/`).
#[must_use]
pub fn parse(text: &str, now: SystemTime) -> Option<u64> {
    let (total, at) = tally(text)?;
    if now.duration_since(at).ok()? > RECOUNT_AFTER {
        return None;
    }
    Some(total)
}

/// The total a tally's `text` adds up to, and when it was counted.
fn tally(text: &str) -> Option<(u64, SystemTime)> {
    let mut lines = text.lines();
    let mut counted = lines.next()?.strip_prefix("counted ")?.split(' ');
    let mut total: u64 = counted.next()?.parse().ok()?;
    // Checked: a time past what `SystemTime` holds would panic the addition.
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(counted.next()?.parse().ok()?))?;
    for (n, line) in lines.enumerate() {
        if n >= MOST_LINES {
            return None;
        }
        total = total.checked_add(line.strip_prefix('+')?.parse().ok()?)?;
    }
    Some((total, at))
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
