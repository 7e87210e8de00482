//! The stat cache's journal: records appended since the cache file was last written whole.
//!
//! A run that hashes a few files (one edited source) would otherwise rewrite every record to
//! change a few: 12 MB and ~35 ms for 100,000 files. It appends a block of its new records to
//! `statcache.journal` instead, while the journal holds at most an eighth as many records as
//! the file; past that, the run rewrites the whole file and removes the journal.
//!
//! Format, little endian, records encoded as in the cache file:
//!
//! ```text
//! magic "ONCEJRNL" | version u32 | checksum of the cache file it extends [32]
//! per block: snapshot_start_ns i64 | record count u32 | records | BLAKE3 of the block [32]
//! ```
//!
//! A journal for another cache file (rewritten since) or with a torn or damaged block is not
//! read at all, and the next write rewrites the whole cache: a journal only ever adds records
//! that were true when written, each trusted against its own block's snapshot start.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{encode_record, last_per_path, Reader, Record, CHECKSUM_LEN};
use crate::error::IoContext;
use crate::hash::Digest;
use crate::walk::FileStat;
use crate::Result;

const MAGIC: &[u8; 8] = b"ONCEJRNL";
const VERSION: u32 = 1;

/// A record from the journal: its path, and the snapshot start of the block that wrote it.
pub(super) struct Appended {
    pub path: Vec<u8>,
    pub record: Record,
    pub snapshot_start_ns: i64,
}

pub(super) enum Journal {
    /// No journal file: records may be appended, starting one.
    Absent,
    /// Every record of an intact journal of this cache file, sorted by path (of two records
    /// for one path, the later one), and how many records the file holds.
    Read { records: Vec<Appended>, count: u64 },
    /// A journal that cannot be extended: of another cache file, torn, or damaged.
    Unusable,
}

/// Where the journal of the cache file at `cache` lives.
fn path_of(cache: &Path) -> PathBuf {
    let mut name = cache.file_name().map(OsString::from).unwrap_or_default();
    name.push(".journal");
    cache.with_file_name(name)
}

/// The journal of the cache file at `cache`, whose stored checksum is `base`.
pub(super) fn read(cache: &Path, base: &[u8]) -> Journal {
    match fs::read(path_of(cache)) {
        Ok(bytes) => decode(&bytes, base).unwrap_or(Journal::Unusable),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Journal::Absent,
        Err(_) => Journal::Unusable,
    }
}

pub(super) fn decode(bytes: &[u8], base: &[u8]) -> Option<Journal> {
    let mut reader = Reader { rest: bytes };
    if reader.take(MAGIC.len())? != MAGIC
        || reader.u32()? != VERSION
        || reader.take(CHECKSUM_LEN)? != base
    {
        return None;
    }
    let mut records = Vec::new();
    while !reader.rest.is_empty() {
        let block = reader.rest;
        let snapshot_start_ns = reader.i64()?;
        let count = reader.u32()?;
        for _ in 0..count {
            let (path, record) = reader.record()?;
            records.push(Appended {
                path: path.to_vec(),
                record,
                snapshot_start_ns,
            });
        }
        let body = &block[..block.len() - reader.rest.len()];
        if reader.take(CHECKSUM_LEN)? != blake3::hash(body).as_bytes() {
            return None;
        }
    }
    Some(Journal::Read {
        count: records.len() as u64,
        records: last_per_path(records, |appended| &appended.path),
    })
}

/// Append one block of `records`, stamped `snapshot_start_ns`, to the journal of the cache
/// file at `cache` (checksum `base`), starting the journal when there is none. One write, so a
/// crash leaves at worst a torn last block, which makes the journal unusable, not wrong.
pub(super) fn append<'a>(
    cache: &Path,
    base: &[u8],
    snapshot_start_ns: i64,
    records: impl Iterator<Item = (&'a str, &'a FileStat, &'a Digest)>,
) -> Result<()> {
    let path = path_of(cache);
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .at(&path)?;
    let mut out = Vec::new();
    if file.metadata().at(&path)?.len() == 0 {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(base);
    }
    let block = out.len();
    out.extend_from_slice(&snapshot_start_ns.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    for (rel, stat, digest) in records {
        encode_record(&mut out, rel, stat, digest);
        count += 1;
    }
    out[block + 8..block + 12].copy_from_slice(&count.to_le_bytes());
    let checksum = blake3::hash(&out[block..]);
    out.extend_from_slice(checksum.as_bytes());
    file.write_all(&out).at(&path)
}

/// Remove the journal of the cache file at `cache`, after that file was written whole.
pub(super) fn remove(cache: &Path) {
    let _ = fs::remove_file(path_of(cache));
}
