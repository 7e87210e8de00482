//! BLAKE3 hashing of bytes, files and trees, b3sum-compatible.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::IoContext;
use crate::walk;
use crate::Result;

/// Files of at least this size are memory-mapped and hashed on several threads.
///
/// blake3's own rule of thumb (docs of `Hasher::update_rayon`): on x86-64 multithreaded hashing
/// is *slower* than single-threaded below 128 KiB, because splitting the tree and waking rayon
/// workers costs more than the hashing saved. Mapping a small file also costs more than one
/// `read` (page-table setup and teardown), so both switch at the same size.
pub const MMAP_RAYON_THRESHOLD: u64 = 128 * 1024;

/// A BLAKE3-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    #[must_use]
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }
    /// Parse 64 lowercase hex digits; `None` for anything else.
    #[must_use]
    pub fn from_hex(hex: &str) -> Option<Digest> {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Some(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Digest, D::Error> {
        let hex = String::deserialize(deserializer)?;
        Digest::from_hex(&hex).ok_or_else(|| D::Error::custom(format!("not a digest: {hex:?}")))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

#[must_use]
pub fn hash_bytes(bytes: &[u8]) -> Digest {
    Digest(*blake3::hash(bytes).as_bytes())
}

/// Files whose contents this process has opened to hash (inputs and outputs). Only a counter:
/// what proves that a no-op run reads metadata alone (tests read it before and after a run).
static FILES_HASHED: AtomicU64 = AtomicU64::new(0);

/// How many files this process has read to hash them (see `FILES_HASHED`).
#[must_use]
pub fn files_hashed() -> u64 {
    FILES_HASHED.load(Ordering::Relaxed)
}

/// Count one file read for its contents.
pub(crate) fn count_file_hashed() {
    FILES_HASHED.fetch_add(1, Ordering::Relaxed);
}

/// Hash one file: above a size threshold with mmap and several threads, else by reading it.
pub fn hash_file(path: &Path) -> Result<Digest> {
    count_file_hashed();
    let mut file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= MMAP_RAYON_THRESHOLD {
        // `update_mmap_rayon` opens the path itself (a map ignores the seek position of a
        // handle, so blake3 takes a path); ours is closed first so only one stays open.
        drop(file);
        hasher.update_mmap_rayon(path).at(path)?;
    } else {
        // Reads through blake3's 64 KiB stack buffer: no allocation per file, and at most a
        // few `read` calls for anything below the threshold.
        hasher.update_reader(&mut file).at(path)?;
    }
    Ok(Digest(*hasher.finalize().as_bytes()))
}

/// Hash many files across the rayon pool; results in the order of `paths`.
#[must_use]
pub fn hash_files(paths: &[PathBuf]) -> Vec<Result<Digest>> {
    paths.par_iter().map(|path| hash_file(path)).collect()
}

/// What `once hash PATH...` prints: each file as given, each folder expanded to every file
/// below it (sorted, hidden files included, no ignore rules), hashed in parallel.
pub fn hash_tree(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Digest)>> {
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        if std::fs::metadata(path).at(path)?.is_dir() {
            let mut below = walk::walk_all(path)?;
            below.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
            files.extend(below);
        } else {
            files.push(path.clone());
        }
    }
    let digests = hash_files(&files);
    files
        .into_iter()
        .zip(digests)
        .map(|(path, digest)| Ok((path, digest?)))
        .collect()
}

/// One line exactly as `b3sum` prints it, including its escaping of `\` and newlines.
#[must_use]
pub fn b3sum_line(digest: &Digest, path: &Path) -> String {
    // b3sum prints names lossily as UTF-8; a name holding `\` or a newline is escaped and the
    // line marked with a leading `\`, so `b3sum --check` can read every line back.
    let name = path.to_string_lossy();
    if name.contains(['\\', '\n']) {
        let escaped = name.replace('\\', "\\\\").replace('\n', "\\n");
        format!("\\{digest}  {escaped}")
    } else {
        format!("{digest}  {name}")
    }
}
