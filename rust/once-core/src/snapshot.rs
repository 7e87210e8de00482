//! A run's one view of the workspace: every file's stat from one walk, digests filled on demand.
//! CONTRACT (helper fills the bodies; keep signatures):

use std::path::{Path, PathBuf};

use crate::hash::Digest;
use crate::walk::WalkedFile;
use crate::Result;

/// Indices into `Snapshot::files`, sorted; one per rule's input set.
pub type FileSet = Vec<u32>;

pub struct Snapshot {
    pub root: PathBuf,
    /// Sorted by `rel`.
    pub files: Vec<WalkedFile>,
    /// `digests[i]` is set once `files[i]` has been hashed (or found in the stat cache).
    pub digests: Vec<Option<Digest>>,
    /// Wall clock (ns since epoch) taken before the walk; the racy-mtime rule compares to it.
    pub started_ns: i64,
}

impl Snapshot {
    pub fn scan(root: &Path, skip_dirs: &[String]) -> Result<Snapshot> {
        todo!("{}{}", root.display(), skip_dirs.len())
    }
    /// The files of the package folder `package` ("" for the root; `/`-separated) that match
    /// any `include` glob and no `exclude` glob; globs are relative to the package folder
    /// (`src/**/*.rs`, `**`; a glob naming a folder such as `dist` or `dist/` means everything
    /// below it).
    pub fn select(&self, package: &str, include: &[String], exclude: &[String]) -> Result<FileSet> {
        todo!("{package}{}{}", include.len(), exclude.len())
    }
    /// Fill the digests of every file in `sets`, using `stat_cache` (a path) for unchanged files
    /// and hashing the rest in parallel; then rewrite the stat cache. Returns how many files
    /// were actually read.
    pub fn hash(&mut self, sets: &[&FileSet], stat_cache: Option<&Path>) -> Result<usize> {
        todo!("{}{:?}", sets.len(), stat_cache)
    }
    /// (rel path, digest, executable) of each file in `set`; panics-free: unhashed files are
    /// an error.
    pub fn inputs(&self, set: &FileSet) -> Result<Vec<(&str, Digest, bool)>> {
        todo!("{}", set.len())
    }
}
