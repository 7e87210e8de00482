//! What the declared outputs held when last checked: workspace path and stat -> digest, so
//! that a cache hit whose outputs are already in place is confirmed from metadata alone.
//!
//! Without it, every hit re-hashed every output file to compare it with the entry's manifest:
//! a no-op run then read every output of the workspace. With it, a file is hashed only when its
//! stat (device, inode, size, mtime, ctime) differs from the record, or when the record could
//! not be trusted under the racy-timestamp rule (see `StatCache::insert_settled`). A same-size
//! rewrite, even one that puts the old mtime back, changes ctime, so it is hashed and caught.
//!
//! Kept in the workspace state folder (`.once/outputs`) in the stat cache's file format, loaded
//! once per run and written once at its end, only when something changed.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::hash::Digest;
use crate::statcache::{wall_clock_ns, StatCache};
use crate::walk::FileStat;
use crate::Result;

pub struct OutputStats {
    path: PathBuf,
    /// Only trusted records (`retain_trusted` on load, `insert_settled` after). Locked for a
    /// lookup or an insert at a time; callers on several threads (one per running action)
    /// share one instance.
    records: Mutex<StatCache>,
    changed: Mutex<bool>,
}

impl OutputStats {
    /// Load from `path`; a missing or damaged file gives no records (outputs are then hashed
    /// once, never trusted wrongly).
    #[must_use]
    pub fn load(path: &Path) -> OutputStats {
        let mut records = StatCache::load(path);
        let before = records.len();
        records.retain_trusted();
        OutputStats {
            path: path.to_path_buf(),
            changed: Mutex::new(records.len() != before),
            records: Mutex::new(records),
        }
    }

    /// The digest the file at workspace path `rel` had when it last showed exactly `stat`.
    #[must_use]
    pub fn known(&self, rel: &str, stat: &FileStat) -> Option<Digest> {
        self.lock().lookup_settled(rel, stat)
    }

    /// `rel` had `digest` with `stat`, a stat taken at or after `checked_ns` and before its
    /// contents were read; kept only when settled under the racy rule.
    pub fn record(&self, rel: &str, stat: &FileStat, digest: Digest, checked_ns: i64) {
        let changed = self.lock().insert_settled(rel, stat, digest, checked_ns);
        if changed {
            *self.changed.lock().unwrap_or_else(PoisonError::into_inner) = true;
        }
    }

    pub fn forget(&self, rel: &str) {
        if self.lock().remove(rel) {
            *self.changed.lock().unwrap_or_else(PoisonError::into_inner) = true;
        }
    }

    /// Write the records (atomically) if anything changed since loading.
    pub fn save(&self) -> Result<()> {
        let mut changed = self.changed.lock().unwrap_or_else(PoisonError::into_inner);
        if !*changed {
            return Ok(());
        }
        let records = self.lock();
        let owned: Vec<(&str, FileStat, &Digest)> = records.records().collect();
        // Every record is settled before its own check time, hence before now: saving with
        // now as the snapshot start keeps each trusted, and no untrusted one is in the set.
        StatCache::save(
            &self.path,
            wall_clock_ns(),
            owned
                .iter()
                .map(|(rel, stat, digest)| (*rel, stat, *digest)),
        )?;
        *changed = false;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatCache> {
        // A panic elsewhere leaves the map whole (each operation is one map call).
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
