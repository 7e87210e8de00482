//! Persistent (path, device, inode, size, mtime, ctime) -> digest cache, with the racy-mtime rule.
//!
//! File format, little endian throughout:
//!
//! ```text
//! magic "ONCESTAT" | version u32 | snapshot_start_ns i64 | record count u64
//! per record: path length u32 | path bytes (UTF-8) | dev u64 | ino u64 | size u64
//!             | mtime_ns i64 | ctime_ns i64 | digest [32]
//! BLAKE3 of everything above [32]
//! ```
//!
//! The trailing checksum makes a torn or bit-rotten file read as empty instead of as wrong
//! digests: a lost cache only costs a re-hash, a wrong one would cost a wrong build.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::IoContext;
use crate::hash::{hash_bytes, Digest};
use crate::walk::FileStat;
use crate::Result;

const MAGIC: &[u8; 8] = b"ONCESTAT";
/// Bumped whenever the layout changes; a file of another version loads as empty.
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8;
/// dev, ino, size, mtime, ctime, digest.
const RECORD_FIXED_LEN: usize = 5 * 8 + 32;
const CHECKSUM_LEN: usize = 32;

/// How long before the snapshot start a sub-second timestamp must lie to be trusted.
///
/// Linux stamps files from its coarse clock, which lags the wall clock by up to one timer tick
/// (10 ms at `HZ=100`, the slowest common setting), and exFAT keeps 10 ms; a write just after
/// the snapshot started can therefore carry a timestamp slightly *before* it. Two ticks cover
/// both with room to spare.
const FINE_TIMESTAMP_MARGIN_NS: i64 = 20_000_000;
/// The same for a timestamp that is a whole second: it most likely comes from a file system
/// that keeps whole seconds (ext3, HFS+, many NFS and SMB mounts) or even 2 s (FAT), where
/// every write within that window leaves the timestamp unchanged.
const COARSE_TIMESTAMP_MARGIN_NS: i64 = 2_000_000_000;
const NS_PER_SEC: i64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    digest: Digest,
}

impl Record {
    fn same_file(&self, stat: &FileStat) -> bool {
        // ctime too: `tar` and `mv` can restore an old mtime on new content, but nothing can
        // set ctime back (Bazel learned this from wrong digests).
        self.dev == stat.dev
            && self.ino == stat.ino
            && self.size == stat.size
            && self.mtime_ns == stat.mtime_ns
            && self.ctime_ns == stat.ctime_ns
    }
}

#[derive(Default)]
pub struct StatCache {
    /// Wall clock when the run that wrote this cache began its walk.
    snapshot_start_ns: i64,
    records: HashMap<String, Record>,
}

impl StatCache {
    /// Load from `path`; a missing, truncated or corrupt file gives an empty cache (never an error).
    #[must_use]
    pub fn load(path: &Path) -> StatCache {
        fs::read(path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default()
    }

    /// The digest recorded for `rel` if its stat is identical and the record can be trusted:
    /// racy rule — mtime and ctime strictly older than the snapshot start of the run that
    /// recorded it.
    #[must_use]
    pub fn lookup(&self, rel: &str, stat: &FileStat) -> Option<Digest> {
        let record = self.records.get(rel)?;
        let trusted = record.same_file(stat)
            && settled_before(record.mtime_ns, self.snapshot_start_ns)
            && settled_before(record.ctime_ns, self.snapshot_start_ns);
        trusted.then_some(record.digest)
    }

    /// How many records were loaded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The digest recorded for `rel` if its stat is identical, without the racy check of
    /// `lookup`: for a cache holding only records that passed it already (`retain_trusted`
    /// after loading, `insert_settled` after that).
    #[must_use]
    pub fn lookup_settled(&self, rel: &str, stat: &FileStat) -> Option<Digest> {
        let record = self.records.get(rel)?;
        record.same_file(stat).then_some(record.digest)
    }

    /// Drop every record `lookup` would not trust, so that the ones left are trusted whatever
    /// later `snapshot_start_ns` the cache is saved with (`OutputStats` relies on it).
    pub fn retain_trusted(&mut self) {
        let start = self.snapshot_start_ns;
        self.records.retain(|_, record| {
            settled_before(record.mtime_ns, start) && settled_before(record.ctime_ns, start)
        });
    }

    /// Record `digest` for `rel` with the stat taken at or after `checked_ns` (wall clock),
    /// and before the contents were read; only when the stat is settled before `checked_ns`
    /// (the racy rule), else the record is dropped. True when recorded.
    pub fn insert_settled(
        &mut self,
        rel: &str,
        stat: &FileStat,
        digest: Digest,
        checked_ns: i64,
    ) -> bool {
        if !(settled_before(stat.mtime_ns, checked_ns) && settled_before(stat.ctime_ns, checked_ns))
        {
            self.records.remove(rel);
            return false;
        }
        let record = Record {
            dev: stat.dev,
            ino: stat.ino,
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
            digest,
        };
        self.records.insert(rel.to_owned(), record) != Some(record)
    }

    /// Forget `rel`; true when it had a record.
    pub fn remove(&mut self, rel: &str) -> bool {
        self.records.remove(rel).is_some()
    }

    /// Every record as (path, stat, digest); the stat's mode is not kept and reads as 0.
    pub fn records(&self) -> impl Iterator<Item = (&str, FileStat, &Digest)> {
        self.records.iter().map(|(rel, record)| {
            let stat = FileStat {
                dev: record.dev,
                ino: record.ino,
                size: record.size,
                mtime_ns: record.mtime_ns,
                ctime_ns: record.ctime_ns,
                mode: 0,
            };
            (rel.as_str(), stat, &record.digest)
        })
    }

    /// The snapshot start recorded with the loaded records (0 for an empty cache).
    #[must_use]
    pub fn snapshot_start_ns(&self) -> i64 {
        self.snapshot_start_ns
    }

    /// Atomically write (temp file + rename) the given records with `snapshot_start_ns`.
    pub fn save<'a>(
        path: &Path,
        snapshot_start_ns: i64,
        records: impl Iterator<Item = (&'a str, &'a FileStat, &'a Digest)>,
    ) -> Result<()> {
        let bytes = encode(snapshot_start_ns, records);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).at(parent)?;
        }
        // A unique name in the same folder, so the rename cannot cross file systems and two
        // processes saving at once each replace the file whole; the last one wins.
        let temp = temp_path(path);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|mut file| file.write_all(&bytes))
            .at(&temp)
            .and_then(|()| fs::rename(&temp, path).at(path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        // No fsync: after a power loss the checksum turns a torn file into an empty cache, and
        // an empty cache only costs one re-hash; a sync per run would cost every no-op run.
        written
    }
}

/// Nanoseconds since the epoch: the reference time of the racy rule, taken before a stat.
#[must_use]
pub fn wall_clock_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
        })
}

/// Whether a file stamped `timestamp_ns` was certainly last changed before `start_ns`, given
/// that its file system may round timestamps down (see the margins above).
fn settled_before(timestamp_ns: i64, start_ns: i64) -> bool {
    let margin = if timestamp_ns.rem_euclid(NS_PER_SEC) == 0 {
        COARSE_TIMESTAMP_MARGIN_NS
    } else {
        FINE_TIMESTAMP_MARGIN_NS
    };
    timestamp_ns.saturating_add(margin) <= start_ns
}

fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

fn encode<'a>(
    snapshot_start_ns: i64,
    records: impl Iterator<Item = (&'a str, &'a FileStat, &'a Digest)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&snapshot_start_ns.to_le_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    let mut count: u64 = 0;
    for (rel, stat, digest) in records {
        out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        out.extend_from_slice(rel.as_bytes());
        out.extend_from_slice(&stat.dev.to_le_bytes());
        out.extend_from_slice(&stat.ino.to_le_bytes());
        out.extend_from_slice(&stat.size.to_le_bytes());
        out.extend_from_slice(&stat.mtime_ns.to_le_bytes());
        out.extend_from_slice(&stat.ctime_ns.to_le_bytes());
        out.extend_from_slice(&digest.0);
        count += 1;
    }
    out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    let checksum = hash_bytes(&out);
    out.extend_from_slice(&checksum.0);
    out
}

/// `None` for anything but a complete, intact file of this version.
fn decode(bytes: &[u8]) -> Option<StatCache> {
    let body_len = bytes.len().checked_sub(CHECKSUM_LEN)?;
    let (body, checksum) = bytes.split_at(body_len);
    if hash_bytes(body).0 != checksum {
        return None;
    }
    let mut reader = Reader { rest: body };
    if reader.take(MAGIC.len())? != MAGIC || reader.u32()? != FORMAT_VERSION {
        return None;
    }
    let snapshot_start_ns = reader.i64()?;
    let count = reader.u64()?;
    // Every record takes at least its fixed part, so a forged count cannot make us reserve
    // more than the file could hold.
    let plausible = usize::try_from(count)
        .ok()?
        .min(body.len() / RECORD_FIXED_LEN);
    let mut records = HashMap::with_capacity(plausible);
    for _ in 0..count {
        let path_len = reader.u32()? as usize;
        let rel = std::str::from_utf8(reader.take(path_len)?).ok()?.to_owned();
        let record = Record {
            dev: reader.u64()?,
            ino: reader.u64()?,
            size: reader.u64()?,
            mtime_ns: reader.i64()?,
            ctime_ns: reader.i64()?,
            digest: Digest(reader.take(32)?.try_into().ok()?),
        };
        records.insert(rel, record);
    }
    reader.rest.is_empty().then_some(StatCache {
        snapshot_start_ns,
        records,
    })
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}
