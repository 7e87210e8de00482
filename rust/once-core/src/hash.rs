//! BLAKE3 hashing of bytes, files and trees, b3sum-compatible.

use std::cell::RefCell;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::directory::{name_arg, rel_path, Directory, Kind};
use crate::error::IoContext;
use crate::mapped_hash;
use crate::walk::{self, PARALLEL_FILES};
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

/// How many files `write_b3sum` hashes between two writes: two chunks' digests and one's lines
/// (~0.5 MB) are all it holds beyond the list of files, and a chunk waits for its slowest file
/// before the next but one starts, which at this size is rare enough not to show.
pub const B3SUM_CHUNK: usize = 4096;

/// A file `once hash` is to read: the path given as argument `arg` (`rel` empty), or a file
/// found below that folder, `rel` its `/`-separated path there followed by a NUL, so that its
/// last name is the C string `openat` takes as it is.
struct ToHash {
    arg: usize,
    rel: Box<[u8]>,
}

impl ToHash {
    /// The folder holding it, below its argument (empty: the argument itself); `None` for an
    /// argument that is itself the file.
    fn folder(&self) -> Option<&[u8]> {
        if self.rel.is_empty() {
            return None;
        }
        let slash = self.rel.iter().rposition(|&byte| byte == b'/');
        Some(&self.rel[..slash.unwrap_or(0)])
    }

    /// Its last name, with the NUL.
    fn name(&self) -> &[u8] {
        let slash = self.rel.iter().rposition(|&byte| byte == b'/');
        &self.rel[slash.map_or(0, |slash| slash + 1)..]
    }

    /// The path its line names: the argument as given, joined with `rel`.
    fn path(&self, paths: &[PathBuf]) -> PathBuf {
        match self.rel.split_last() {
            Some((_, rel)) => paths[self.arg].join(rel_path(rel)),
            None => paths[self.arg].clone(),
        }
    }
}

/// What `once hash PATH...` prints, written to `out` as it goes: each file as given, each
/// folder expanded to every file below it (sorted, hidden files included, no ignore rules).
///
/// A folder is listed first (its files' paths are what this holds at most); then the files
/// are hashed `B3SUM_CHUNK` at a time in parallel, and each chunk's lines are written while the
/// next is hashed. At the first path that cannot be read (in output order) the lines before
/// it are written and its error returned; a failed write returns `Error::Output`.
pub fn write_b3sum(paths: &[PathBuf], out: &mut (impl Write + Send)) -> Result<()> {
    let mut lines = Vec::with_capacity(B3SUM_CHUNK * 128);
    let mut pending: Vec<ToHash> = Vec::new();
    for (arg, path) in paths.iter().enumerate() {
        let found = match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => list_folder(path, arg),
            Ok(_) => Ok(vec![ToHash {
                arg,
                rel: Box::default(),
            }]),
            Err(source) => Err(Error::Io {
                path: path.clone(),
                source,
            }),
        };
        match found {
            // A folder given first keeps the walk's list: no second copy of a million entries.
            Ok(found) if pending.is_empty() => pending = found,
            Ok(found) => pending.extend(found),
            Err(err) => {
                write_chunks(paths, &pending, &mut lines, out)?;
                return Err(err);
            }
        }
        if pending.len() >= B3SUM_CHUNK {
            let whole = pending.len() - pending.len() % B3SUM_CHUNK;
            write_chunks(paths, &pending[..whole], &mut lines, out)?;
            pending.drain(..whole);
        }
    }
    write_chunks(paths, &pending, &mut lines, out)
}

/// Every file below the folder `root` (argument `arg`), in path order: regular files, and
/// symlinks to regular files only (not dangling ones, folders, which could loop, or devices
/// and FIFOs, which could block).
fn list_folder(root: &Path, arg: usize) -> Result<Vec<ToHash>> {
    walk::walk_every_file(root, |found| {
        if found.kind == Kind::Symlink
            && !matches!(found.dir.stat_file(found.name, true), Ok(Some(_)))
        {
            return Ok(None);
        }
        let mut rel = found.rel;
        rel.push(0);
        Ok(Some(ToHash {
            arg,
            rel: rel.into_boxed_slice(),
        }))
    })
}

/// Hash `files` a chunk at a time, writing each chunk's lines while the next is hashed: the
/// pool does not wait for the lines to be formatted and written (a twentieth of the time over
/// 100,000 small files, on two cores), and at most two chunks are held.
fn write_chunks(
    paths: &[PathBuf],
    files: &[ToHash],
    lines: &mut Vec<u8>,
    out: &mut (impl Write + Send),
) -> Result<()> {
    let mut chunks = files.chunks(B3SUM_CHUNK);
    let Some(first) = chunks.next() else {
        return Ok(());
    };
    let mut hashed = hash_chunk(paths, first);
    for chunk in chunks {
        let (next, written) = rayon::join(
            || hash_chunk(paths, chunk),
            || write_lines(paths, hashed, lines, out),
        );
        written?;
        hashed = next;
    }
    write_lines(paths, hashed, lines, out)
}

/// A chunk's files, a run of them in one folder at a time, each run with its digests.
type Hashed<'a> = Vec<(&'a [ToHash], Vec<Result<Option<Digest>>>)>;

fn hash_chunk<'a>(paths: &[PathBuf], chunk: &'a [ToHash]) -> Hashed<'a> {
    // Files of one folder are opened relative to it, opened once: no lookup of every path
    // from the root.
    let folders: Vec<&[ToHash]> = chunk
        .chunk_by(|a, b| a.arg == b.arg && a.folder().is_some() && a.folder() == b.folder())
        .collect();
    folders
        .into_par_iter()
        .map(|files| (files, hash_in_folder(paths, files)))
        .collect()
}

/// Write the lines of `hashed` up to its first error, then return that error.
fn write_lines(
    paths: &[PathBuf],
    hashed: Hashed<'_>,
    lines: &mut Vec<u8>,
    out: &mut impl Write,
) -> Result<()> {
    lines.clear();
    let mut failed = None;
    'chunk: for (files, digests) in hashed {
        for (file, digest) in files.iter().zip(digests) {
            match digest {
                Ok(Some(digest)) => push_b3sum_line(lines, &digest, &file.path(paths)),
                Ok(None) => {}
                Err(err) => {
                    failed = Some(err);
                    break 'chunk;
                }
            }
        }
    }
    out.write_all(lines)
        .and_then(|()| out.flush())
        .map_err(Error::Output)?;
    failed.map_or(Ok(()), Err)
}

/// The digests of `files`, all given as arguments or all in one folder, in order; `None` for
/// a file deleted since the listing. Ends at the first error.
fn hash_in_folder(paths: &[PathBuf], files: &[ToHash]) -> Vec<Result<Option<Digest>>> {
    let Some(folder) = files[0].folder() else {
        return files
            .iter()
            .map(|file| hash_file(&paths[file.arg]).map(Some))
            .collect();
    };
    let root = &paths[files[0].arg];
    // The argument may be a symlink to a folder; the walk entered no link below it.
    let opened = if folder.is_empty() {
        Directory::open(root.clone(), true)
    } else {
        Directory::open(root.join(rel_path(folder)), false)
    };
    let dir = match opened {
        Ok(dir) => dir,
        // Deleted (or replaced by a file) since the listing: none of its files is there.
        Err((_, err))
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return files.iter().map(|_| Ok(None)).collect();
        }
        Err((path, source)) => return vec![Err(Error::Io { path, source })],
    };
    let hash = |file: &ToHash| -> Result<Option<Digest>> {
        let name = name_arg(file.name());
        match dir.open_file(name) {
            Ok(opened) => hash_open_file(opened, &dir.child_path(name), None).map(Some),
            // Deleted since the listing: it is simply not there.
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                path: dir.child_path(name),
                source,
            }),
        }
    };
    if files.len() < PARALLEL_FILES {
        files.iter().map(hash).collect()
    } else {
        files
            .par_iter()
            .with_min_len(PARALLEL_FILES / 2)
            .map(hash)
            .collect()
    }
}

/// Append `path`'s line as `b3sum` prints it (see `b3sum_line`), and a newline.
fn push_b3sum_line(out: &mut Vec<u8>, digest: &Digest, path: &Path) {
    let name = path.to_string_lossy();
    if name.contains(['\\', '\n']) {
        out.extend_from_slice(b3sum_line(digest, path).as_bytes());
    } else {
        // The common line without a `String` of its own.
        digest.push_hex(out);
        out.extend_from_slice(b"  ");
        out.extend_from_slice(name.as_bytes());
    }
    out.push(b'\n');
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
