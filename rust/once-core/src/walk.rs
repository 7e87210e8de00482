//! One parallel walk of the workspace honouring `.gitignore` and `.onceignore`.
//! CONTRACT (helper fills the bodies; keep signatures):

use std::path::Path;

use crate::Result;

/// The metadata the stat cache keys on, plus the mode for the executable bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
}

impl FileStat {
    #[must_use]
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileStat {
        todo!("{meta:?}")
    }
    #[must_use]
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// A regular file found by the walk (symlinks to files are followed for their stat).
#[derive(Clone, Debug)]
pub struct WalkedFile {
    /// Path relative to the walk root, `/`-separated.
    pub rel: String,
    pub stat: FileStat,
}

/// Walk `root` in parallel. Honours `.gitignore` (also outside a git repository),
/// `.git/info/exclude`, and `.onceignore`; includes hidden files; never enters `.git` or any
/// folder named in `skip_dirs` (relative to root). Result sorted by `rel`.
pub fn walk_workspace(root: &Path, skip_dirs: &[String]) -> Result<Vec<WalkedFile>> {
    todo!("{}{}", root.display(), skip_dirs.len())
}
