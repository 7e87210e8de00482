//! The local content-addressed store: blobs by digest, action entries by key, restore of outputs.
//! CONTRACT (helper fills the bodies; keep signatures):

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hash::Digest;
use crate::Result;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OutputKind {
    File { digest: Digest, executable: bool },
    Dir,
    Symlink { target: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEntry {
    /// Relative to the workspace root, `/`-separated, never absolute, never containing `..`.
    pub path: String,
    #[serde(flatten)]
    pub kind: OutputKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEntry {
    pub key: String,
    pub outputs: Vec<OutputEntry>,
    /// The captured terminal log (stdout and stderr interleaved).
    pub log: Digest,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub created_unix: i64,
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating folders as needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        todo!("{}", root.display())
    }
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        todo!("{}", bytes.len())
    }
    /// Copy a file into the store, hashing what is copied (so the name always matches the bytes).
    pub fn put_file(&self, path: &Path) -> Result<Digest> {
        todo!("{}", path.display())
    }
    #[must_use]
    pub fn contains(&self, digest: &Digest) -> bool {
        todo!("{digest}")
    }
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        todo!("{digest}")
    }
    /// The entry for `key` if it exists, decodes, and every blob it names is present.
    #[must_use]
    pub fn lookup(&self, key: &str) -> Option<ActionEntry> {
        todo!("{key}")
    }
    /// Store the declared outputs of a successful step and its log, then write the entry
    /// atomically (blobs first, entry last, so a visible entry never names a missing blob).
    #[allow(clippy::too_many_arguments)]
    pub fn save(
        &self,
        key: &str,
        workspace: &Path,
        package: &str,
        outputs: &[String],
        log: &[u8],
        exit_code: i32,
        duration_ms: u64,
    ) -> Result<ActionEntry> {
        todo!("{key}{}{package}{}{}{exit_code}{duration_ms}", workspace.display(), outputs.len(), log.len())
    }
    /// True when what the declared outputs hold on disk now is exactly the entry's manifest.
    pub fn outputs_match(
        &self,
        workspace: &Path,
        package: &str,
        outputs: &[String],
        entry: &ActionEntry,
    ) -> Result<bool> {
        todo!("{}{package}{}{}", workspace.display(), outputs.len(), entry.key)
    }
    /// Remove what the declared outputs hold now, then recreate the manifest from blobs.
    /// Refuses (Error::Escape) any manifest path or symlink target leaving the workspace.
    pub fn restore(
        &self,
        workspace: &Path,
        package: &str,
        outputs: &[String],
        entry: &ActionEntry,
    ) -> Result<()> {
        todo!("{}{package}{}{}", workspace.display(), outputs.len(), entry.key)
    }
}
