//! Persistent (path, device, inode, size, mtime, ctime) -> digest cache, with the racy-mtime rule.
//! CONTRACT (helper fills the bodies; keep signatures):

use std::path::Path;

use crate::hash::Digest;
use crate::walk::FileStat;
use crate::Result;

#[derive(Default)]
pub struct StatCache {}

impl StatCache {
    /// Load from `path`; a missing, truncated or corrupt file gives an empty cache (never an error).
    #[must_use]
    pub fn load(path: &Path) -> StatCache {
        todo!("{}", path.display())
    }
    /// The digest recorded for `rel` if its stat is identical and the record can be trusted:
    /// racy rule — mtime and ctime strictly older than the snapshot start of the run that
    /// recorded it.
    #[must_use]
    pub fn lookup(&self, rel: &str, stat: &FileStat) -> Option<Digest> {
        todo!("{rel}{stat:?}")
    }
    /// Atomically write (temp file + rename) the given records with `snapshot_start_ns`.
    pub fn save<'a>(
        path: &Path,
        snapshot_start_ns: i64,
        records: impl Iterator<Item = (&'a str, &'a FileStat, &'a Digest)>,
    ) -> Result<()> {
        todo!("{}{snapshot_start_ns}{}", path.display(), records.count())
    }
}
