//! BLAKE3 hashing of bytes, files and trees, b3sum-compatible.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::directory::{rel_path, Kind};
use crate::error::IoContext;
use crate::mapped_hash;
use crate::walk;
use crate::{Error, Result};

/// Files of at least this size are memory-mapped and hashed on several threads.
///
/// blake3's own rule of thumb (docs of `Hasher::update_rayon`): on x86-64 multithreaded hashing
/// is *slower* than single-threaded below 128 KiB, because splitting the tree and waking rayon
/// workers costs more than the hashing saved. Mapping a small file also costs more than one
/// `read` (page-table setup and teardown), so both switch at the same size.
pub const MMAP_RAYON_THRESHOLD: u64 = 128 * 1024;

/// The most of a file mapped at once (see `mapped_hash`). A power of two, so every window starts
/// on a page (and on a 2 MiB boundary, for huge pages); large enough that a 2 GiB file is 64
/// maps, not thousands.
pub const MAP_WINDOW: u64 = 32 << 20;

/// A BLAKE3-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut out = Vec::with_capacity(64);
        self.push_hex(&mut out);
        // Hex digits are ASCII.
        String::from_utf8(out).unwrap_or_default()
    }
    /// Append the 64 lowercase hex digits to `out`.
    pub fn push_hex(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for byte in self.0 {
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        }
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
    let file = File::open(path).at(path)?;
    hash_open_file(file, path, None)
}

thread_local! {
    /// Each thread's read buffer, as large as the mmap threshold: a file that does not fill it
    /// is hashed from one `read`. Reused, because `Hasher::update_reader` zeroes a fresh 64 KiB
    /// stack buffer per file, which was 8 % of `once hash` over 100,000 small files (`perf`:
    /// `__memset_avx512_unaligned_erms`).
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; MMAP_RAYON_THRESHOLD as usize]);
}

/// Hash `file`, opened from `path`. `len` is its size when a stat already gave it; without it
/// the file is read first and only one that fills the buffer is stat'ed (a small file then costs
/// `open`, `read`, `read`, `close`, no `fstat`).
pub(crate) fn hash_open_file(mut file: File, path: &Path, len: Option<u64>) -> Result<Digest> {
    count_file_hashed();
    let len = match len {
        Some(len) if len >= MMAP_RAYON_THRESHOLD => len,
        _ => match READ_BUFFER
            .with(|buffer| read_and_hash(&mut file, &mut buffer.borrow_mut()))
            .at(path)?
        {
            Buffered::Hashed(digest) => return Ok(digest),
            Buffered::TooLarge(len) => len,
        },
    };
    // Outside the buffer's borrow: mapped hashing runs rayon tasks, and a task this thread picks
    // up meanwhile may hash another file with the same buffer.
    mapped_hash::hash_mapped(&file, len).at(path)
}

/// What reading a file into the buffer came to.
enum Buffered {
    Hashed(Digest),
    /// A regular file of this size, too large for the buffer: to be memory-mapped.
    TooLarge(u64),
}

/// Read `file` into `buffer` and hash it, unless it is a regular file too large for the buffer.
/// Anything else too large, such as a pipe, is hashed as it streams.
fn read_and_hash(file: &mut File, buffer: &mut [u8]) -> io::Result<Buffered> {
    let filled = read_up_to(file, buffer)?;
    if filled < buffer.len() {
        return Ok(Buffered::Hashed(hash_bytes(&buffer[..filled])));
    }
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() >= MMAP_RAYON_THRESHOLD {
        return Ok(Buffered::TooLarge(meta.len()));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(buffer);
    loop {
        let filled = read_up_to(file, buffer)?;
        hasher.update(&buffer[..filled]);
        if filled < buffer.len() {
            return Ok(Buffered::Hashed(Digest(*hasher.finalize().as_bytes())));
        }
    }
}

/// Fill `buffer` from `file`; fewer bytes only at the end of the file.
fn read_up_to(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Hash many files across the rayon pool; results in the order of `paths`.
#[must_use]
pub fn hash_files(paths: &[PathBuf]) -> Vec<Result<Digest>> {
    paths.par_iter().map(|path| hash_file(path)).collect()
}

/// What `once hash PATH...` prints: each file as given, each folder expanded to every file
/// below it (sorted, hidden files included, no ignore rules), hashed in parallel.
///
/// A folder's files are hashed as the walk finds them, each opened relative to its open
/// folder: no list of paths first, no second lookup of every path from the root.
pub fn hash_tree(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Digest)>> {
    let per_path: Vec<Vec<(PathBuf, Digest)>> = paths
        .par_iter()
        .map(|path| {
            let file = File::open(path).at(path)?;
            let meta = file.metadata().at(path)?;
            if meta.is_dir() {
                drop(file);
                hash_folder(path)
            } else {
                let len = meta.is_file().then_some(meta.len());
                Ok(vec![(path.clone(), hash_open_file(file, path, len)?)])
            }
        })
        .collect::<Result<_>>()?;
    Ok(per_path.into_iter().flatten().collect())
}

fn hash_folder(root: &Path) -> Result<Vec<(PathBuf, Digest)>> {
    walk::walk_every_file(root, |found| {
        let path = root.join(rel_path(&found.rel));
        if found.kind == Kind::Symlink {
            // Only links to regular files: not dangling ones, folders (which could loop) or
            // devices and FIFOs (which could block).
            if !matches!(found.dir.stat_file(found.name, true), Ok(Some(_))) {
                return Ok(None);
            }
        }
        let file = match found.dir.open_file(found.name) {
            Ok(file) => file,
            // Deleted since the listing: it is simply not there.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let digest = hash_open_file(file, &path, None)?;
        Ok(Some((path, digest)))
    })
}

/// All of `hashed` as `b3sum` prints it, one line each, in one buffer (written with one call:
/// echoing 100,000 lines one by one took 0.4 s).
#[must_use]
pub fn b3sum_output(hashed: &[(PathBuf, Digest)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashed.len() * 120);
    for (path, digest) in hashed {
        let name = path.to_string_lossy();
        if name.contains(['\\', '\n']) {
            out.extend_from_slice(b3sum_line(digest, path).as_bytes());
        } else {
            // The common line without a `String` of its own.
            digest.push_hex(&mut out);
            out.extend_from_slice(b"  ");
            out.extend_from_slice(name.as_bytes());
        }
        out.push(b'\n');
    }
    out
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
