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
//!
//! Records are sorted by path (bytes, strictly increasing), the order of the workspace walk,
//! so a run joins the file with its walk in one pass over both (`SortedStatCache`): no map of
//! 100,000 paths built per run, no allocation per record.
//!
//! A run that hashed only a few files appends their records to the file's journal instead of
//! rewriting it (`journal.rs`).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::IoContext;
use crate::hash::{hash_bytes, Digest, MMAP_RAYON_THRESHOLD};
use crate::mapped;
use crate::walk::FileStat;
use crate::Result;

mod journal;

const MAGIC: &[u8; 8] = b"ONCESTAT";
/// Bumped whenever the layout changes; a file of another version loads as empty.
/// 2: records sorted by path (version 1 files were in any order).
const FORMAT_VERSION: u32 = 2;
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
    fn from_stat(stat: &FileStat, digest: Digest) -> Record {
        Record {
            dev: stat.dev,
            ino: stat.ino,
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
            digest,
        }
    }

    /// Whether `lookup` may return this record's digest: its stat is identical and it was
    /// settled (the racy rule) before `snapshot_start_ns`, when the run that wrote it began.
    fn trusted(&self, stat: &FileStat, snapshot_start_ns: i64) -> bool {
        self.same_file(stat) && settled(self.mtime_ns, self.ctime_ns, snapshot_start_ns)
    }

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
        StatCache::from_file(&SortedStatCache::load_file(path))
    }

    /// The cache file `bytes` decoded as `load` decodes a file: anything but a complete,
    /// intact file of this version is an empty cache, never a panic (fuzzed: `fuzz/`).
    #[must_use]
    pub fn from_bytes(bytes: Vec<u8>) -> StatCache {
        StatCache::from_file(&SortedStatCache::from_bytes(bytes))
    }

    fn from_file(file: &SortedStatCache) -> StatCache {
        // Every record takes at least its fixed part, so a count that lies cannot make us
        // reserve more than the file could hold.
        let plausible = file.len().min(file.bytes.len() / RECORD_FIXED_LEN);
        let mut records = HashMap::with_capacity(plausible);
        let mut cursor = file.cursor();
        while let Some((rel, record)) = cursor.next_record() {
            let Ok(rel) = std::str::from_utf8(rel) else {
                return StatCache::default();
            };
            records.insert(rel.to_owned(), record);
        }
        if !cursor.complete() {
            return StatCache::default();
        }
        StatCache {
            snapshot_start_ns: file.snapshot_start_ns,
            records,
        }
    }

    /// The digest recorded for `rel` if its stat is identical and the record can be trusted:
    /// racy rule — mtime and ctime strictly older than the snapshot start of the run that
    /// recorded it.
    #[must_use]
    pub fn lookup(&self, rel: &str, stat: &FileStat) -> Option<Digest> {
        let record = self.records.get(rel)?;
        record
            .trusted(stat, self.snapshot_start_ns)
            .then_some(record.digest)
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
        let record = Record::from_stat(stat, digest);
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

    /// Atomically write (temp file + rename) the given records with `snapshot_start_ns`, in
    /// path order (sorted here unless they come sorted, as a walk's do; of two records for one
    /// path the last is kept).
    pub fn save<'a>(
        path: &Path,
        snapshot_start_ns: i64,
        records: impl Iterator<Item = (&'a str, &'a FileStat, &'a Digest)> + Clone,
    ) -> Result<()> {
        // The folder is the workspace's state folder, made (with its `.gitignore`) by a command
        // that runs steps; a command that only inspects (`status`, `why`, a dry run) must not
        // make it, so without it the cache is simply not kept.
        if path
            .parent()
            .is_some_and(|parent| !parent.as_os_str().is_empty() && !parent.is_dir())
        {
            return Ok(());
        }
        // A unique name in the same folder, so the rename cannot cross file systems and two
        // processes saving at once each replace the file whole; the last one wins.
        let temp = temp_path(path);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|mut file| encode(snapshot_start_ns, records, |chunk| file.write_all(chunk)))
            .at(&temp)
            .and_then(|()| fs::rename(&temp, path).at(path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        // No fsync: after a power loss the checksum turns a torn file into an empty cache, and
        // an empty cache only costs one re-hash; a sync per run would cost every no-op run.
        written
    }

    /// Append `records`, found at a snapshot started `snapshot_start_ns`, to the journal of
    /// the cache file at `path`, which `room` came from (see `journal.rs`).
    pub fn append<'a>(
        path: &Path,
        room: JournalRoom,
        snapshot_start_ns: i64,
        records: impl Iterator<Item = (&'a str, &'a FileStat, &'a Digest)>,
    ) -> Result<()> {
        journal::append(path, &room.base, snapshot_start_ns, records)
    }

    /// Remove the journal of the cache file at `path`, once that file was saved whole.
    pub fn remove_journal(path: &Path) {
        journal::remove(path);
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

/// The racy-timestamp rule, the one every stamp in `once` follows (the stat cache here, and the
/// stamps that vouch for kept plans and the validated configuration): a file whose mtime and
/// ctime are `mtime_ns` and `ctime_ns` was certainly last changed before a read that began at
/// `start_ns`, so that stat may vouch for what the read saw.
#[must_use]
pub fn settled(mtime_ns: i64, ctime_ns: i64, start_ns: i64) -> bool {
    settled_before(mtime_ns, start_ns) && settled_before(ctime_ns, start_ns)
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

/// A unique temporary name beside `path` (`NAME.PID.N.tmp`, which a later run removes when
/// its process is gone).
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

/// Encode `records` as a cache file, handing the bytes to `write` a chunk at a time: the file
/// is never whole in memory (117 MB at 1,000,000 files, on top of the snapshot it is made from).
fn encode<'a>(
    snapshot_start_ns: i64,
    records: impl Iterator<Item = (&'a str, &'a FileStat, &'a Digest)> + Clone,
    write: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    // A first pass counts them and checks their order: a walk's records come sorted and
    // unique, and collecting them to check cost 32 MB at 1,000,000 files, at a cold run's peak.
    let mut count = 0;
    let mut sorted = true;
    let mut previous: Option<&str> = None;
    for (rel, _, _) in records.clone() {
        sorted &= previous.is_none_or(|previous| previous < rel);
        previous = Some(rel);
        count += 1;
    }
    if sorted {
        return encode_sorted(snapshot_start_ns, count, records, write);
    }
    let records = last_per_path(records.collect(), |record| record.0.as_bytes());
    encode_sorted(snapshot_start_ns, records.len(), records.into_iter(), write)
}

/// `encode` of `count` records sorted by path, each path once.
fn encode_sorted<'a>(
    snapshot_start_ns: i64,
    count: usize,
    records: impl Iterator<Item = (&'a str, &'a FileStat, &'a Digest)>,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    /// Large enough for `update_rayon` to use every core on each chunk.
    const CHUNK: usize = 4 << 20;
    let mut hasher = blake3::Hasher::new();
    let mut out = Vec::with_capacity(CHUNK + (64 << 10));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&snapshot_start_ns.to_le_bytes());
    out.extend_from_slice(&(count as u64).to_le_bytes());
    for (n, (rel, stat, digest)) in records.enumerate() {
        encode_record(&mut out, rel, stat, digest);
        if out.len() >= CHUNK || n + 1 == count {
            hasher.update_rayon(&out);
            write(&out)?;
            out.clear();
        }
    }
    if !out.is_empty() {
        hasher.update_rayon(&out); // the header of a cache without records
        write(&out)?;
    }
    write(hasher.finalize().as_bytes())
}

/// `records` sorted by path, keeping of the records for one path the one given last.
fn last_per_path<T>(mut records: Vec<T>, path: impl Fn(&T) -> &[u8]) -> Vec<T> {
    // Stable, so of equal paths the one given last ends up last.
    records.sort_by(|a, b| path(a).cmp(path(b)));
    let mut kept: Vec<T> = Vec::with_capacity(records.len());
    for record in records {
        match kept.last_mut() {
            Some(last) if path(last) == path(&record) => *last = record,
            _ => kept.push(record),
        }
    }
    kept
}

/// One record as the cache file and its journal hold it.
fn encode_record(out: &mut Vec<u8>, rel: &str, stat: &FileStat, digest: &Digest) {
    out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
    out.extend_from_slice(rel.as_bytes());
    out.extend_from_slice(&stat.dev.to_le_bytes());
    out.extend_from_slice(&stat.ino.to_le_bytes());
    out.extend_from_slice(&stat.size.to_le_bytes());
    out.extend_from_slice(&stat.mtime_ns.to_le_bytes());
    out.extend_from_slice(&stat.ctime_ns.to_le_bytes());
    out.extend_from_slice(&digest.0);
}

/// A cache file's bytes: mapped when large, read when small (or when it cannot be mapped).
///
/// Read into this process, a 100,000-file cache (12 MB) costs a copy and a zeroed page per
/// 4 KiB, on the walk's thread after the walk; mapped, the kernel hands over the page cache's
/// own pages, 16 per fault. The file is only ever replaced by a rename (`save`), never changed
/// in place, so the mapped bytes stay those of the file that was opened.
enum FileBytes {
    Read(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl FileBytes {
    /// Below this, one read costs less than setting up and tearing down a map.
    const MAP_FROM: u64 = 256 << 10;

    fn read(path: &Path) -> std::io::Result<FileBytes> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        if len >= Self::MAP_FROM {
            if let Ok(map) = mapped::map(&file, 0, len) {
                return Ok(FileBytes::Mapped(map));
            }
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        Ok(FileBytes::Read(bytes))
    }
}

impl FileBytes {
    /// Give back this process's pages of `self[start..end]` (see `mapped::release`), when
    /// mapped: read once, they need not stay counted in its resident set.
    fn release(&self, start: usize, end: usize) {
        if let FileBytes::Mapped(map) = self {
            mapped::release(map, start, end.saturating_sub(start));
        }
    }
}

impl Default for FileBytes {
    fn default() -> FileBytes {
        FileBytes::Read(Vec::new())
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Read(bytes) => bytes,
            FileBytes::Mapped(map) => map,
        }
    }
}

/// How many records the journal `bytes` of the cache file whose checksum is `base` holds;
/// `None` when it is unusable (of another file, torn, damaged). Never panics (fuzzed: `fuzz/`).
#[must_use]
pub fn decode_journal(bytes: &[u8], base: &[u8]) -> Option<usize> {
    match journal::decode(bytes, base)? {
        journal::Journal::Read { records, .. } => Some(records.len()),
        journal::Journal::Absent | journal::Journal::Unusable => None,
    }
}

/// BLAKE3 of a cache file's body; on several threads for a large one (a 100,000-file cache is
/// about 12 MB).
fn checksum(body: &[u8]) -> Digest {
    if body.len() < MMAP_RAYON_THRESHOLD as usize {
        return hash_bytes(body);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(body);
    Digest(*hasher.finalize().as_bytes())
}

/// How far a pass over a mapped cache file reads before giving back the pages behind it.
/// Without it a 1,000,000-file cache (117 MB) stayed in the run's resident set, first the
/// checksum's pass and then the cursor's, beside the snapshot it fills.
const RELEASE_EVERY: usize = 2 << 20;

/// `checksum` of `bytes[..len]`, a window at a time, each window's pages given back once hashed.
fn checksum_releasing(bytes: &FileBytes, len: usize) -> Digest {
    if !matches!(bytes, FileBytes::Mapped(_)) || len <= RELEASE_EVERY {
        return checksum(&bytes[..len]);
    }
    let mut hasher = blake3::Hasher::new();
    let mut start = 0;
    while start < len {
        let end = len.min(start + RELEASE_EVERY);
        hasher.update_rayon(&bytes[start..end]);
        bytes.release(start, end);
        start = end;
    }
    Digest(*hasher.finalize().as_bytes())
}

/// A stat cache file read whole and checked, with its journal, for one merge-join with a walk
/// in path order: `Snapshot::hash` looks up each file of the walk with `cursor().lookup`,
/// which reads the file's records in place.
#[derive(Default)]
pub struct SortedStatCache {
    /// The whole file; the records lie in `bytes[HEADER_LEN..len - CHECKSUM_LEN]`.
    bytes: FileBytes,
    snapshot_start_ns: i64,
    count: u64,
    /// The journal's records, sorted by path.
    journal: Vec<journal::Appended>,
    /// Whether records may be appended to the journal, and how many it holds.
    room: Option<JournalRoom>,
}

/// Room in a stat cache's journal (see `journal.rs`): what a run needs to append its new
/// records instead of rewriting the whole cache.
#[derive(Clone, Copy, Debug)]
pub struct JournalRoom {
    base: [u8; CHECKSUM_LEN],
    base_records: u64,
    journal_records: u64,
}

impl JournalRoom {
    /// Whether `new` more records keep the journal within an eighth of the cache file.
    #[must_use]
    pub fn fits(&self, new: usize) -> bool {
        self.journal_records.saturating_add(new as u64) <= self.base_records / 8
    }
}

impl SortedStatCache {
    /// Read `path` and its journal; a missing, truncated, corrupt file or one of another
    /// version reads as empty, and an unusable journal as none.
    #[must_use]
    pub fn load(path: &Path) -> SortedStatCache {
        let mut cache = SortedStatCache::load_file(path);
        let Some(base) = cache.stored_checksum() else {
            return cache;
        };
        let journal_records = match journal::read(path, &base) {
            journal::Journal::Absent => 0,
            journal::Journal::Read { records, count } => {
                cache.journal = records;
                count
            }
            journal::Journal::Unusable => return cache,
        };
        cache.room = Some(JournalRoom {
            base,
            base_records: cache.count,
            journal_records,
        });
        cache
    }

    /// The cache file `bytes`, without a journal, as `load` decodes a file (fuzzed: `fuzz/`).
    #[must_use]
    pub fn from_bytes(bytes: Vec<u8>) -> SortedStatCache {
        SortedStatCache::decode(FileBytes::Read(bytes)).unwrap_or_default()
    }

    /// The cache file alone, without its journal.
    fn load_file(path: &Path) -> SortedStatCache {
        FileBytes::read(path)
            .ok()
            .and_then(SortedStatCache::decode)
            .unwrap_or_default()
    }

    /// The checksum the file ends with, which its journal names; None for an empty cache.
    fn stored_checksum(&self) -> Option<[u8; CHECKSUM_LEN]> {
        let start = self.bytes.len().checked_sub(CHECKSUM_LEN)?;
        self.bytes[start..].try_into().ok()
    }

    /// Room to append to the journal; None when the file or its journal is unusable, and
    /// only a whole rewrite may record new digests.
    #[must_use]
    pub fn journal_room(&self) -> Option<JournalRoom> {
        self.room
    }

    /// Whether the journal holds any record.
    #[must_use]
    pub fn has_journal(&self) -> bool {
        !self.journal.is_empty()
    }

    /// `None` for anything but a complete, intact file of this version. The records are only
    /// walked by the cursor, which stops at the first that does not parse or is out of order.
    fn decode(bytes: FileBytes) -> Option<SortedStatCache> {
        let body_len = bytes.len().checked_sub(CHECKSUM_LEN)?;
        if body_len < HEADER_LEN || checksum_releasing(&bytes, body_len).0 != bytes[body_len..] {
            return None;
        }
        let mut header = Reader {
            rest: &bytes[..body_len],
        };
        if header.take(MAGIC.len())? != MAGIC || header.u32()? != FORMAT_VERSION {
            return None;
        }
        let snapshot_start_ns = header.i64()?;
        let count = header.u64()?;
        Some(SortedStatCache {
            bytes,
            snapshot_start_ns,
            count,
            journal: Vec::new(),
            room: None,
        })
    }

    /// How many records the file says it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::try_from(self.count).unwrap_or(usize::MAX)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Wall clock when the run that wrote the file began its walk (0 for an empty cache).
    #[must_use]
    pub fn snapshot_start_ns(&self) -> i64 {
        self.snapshot_start_ns
    }

    /// A cursor at the first record.
    #[must_use]
    pub fn cursor(&self) -> Cursor<'_> {
        let records = match self.bytes.len().checked_sub(CHECKSUM_LEN) {
            Some(end) if end >= HEADER_LEN => &self.bytes[HEADER_LEN..end],
            _ => &[],
        };
        Cursor {
            rest: Reader { rest: records },
            file: &self.bytes,
            released: 0,
            remaining: self.count,
            previous: None,
            snapshot_start_ns: self.snapshot_start_ns,
            broken: false,
            journal: &self.journal,
        }
    }
}

/// Reads a `SortedStatCache`'s records in order, in place.
pub struct Cursor<'a> {
    rest: Reader<'a>,
    /// The file `rest` lies in, and the offset below which its pages were given back.
    file: &'a FileBytes,
    released: usize,
    remaining: u64,
    /// The path of the record read last: each must sort after it.
    previous: Option<&'a [u8]>,
    snapshot_start_ns: i64,
    /// A record did not parse or was out of order: the rest is not read.
    broken: bool,
    /// The journal's records not passed over yet, in path order.
    journal: &'a [journal::Appended],
}

impl<'a> Cursor<'a> {
    /// The trusted digest (see `StatCache::lookup`) recorded for `rel`, in the journal or the
    /// file (either record, if trusted, was true when written). Calls must come in strictly
    /// increasing `rel` order; records for paths before `rel` are passed over.
    pub fn lookup(&mut self, rel: &str, stat: &FileStat) -> Option<Digest> {
        let in_file = self.lookup_in_file(rel, stat);
        let ahead = self
            .journal
            .partition_point(|appended| appended.path.as_slice() < rel.as_bytes());
        self.journal = &self.journal[ahead..];
        match self.journal.first() {
            Some(appended) if appended.path == rel.as_bytes() => {
                self.journal = &self.journal[1..];
                let trusted = appended.record.trusted(stat, appended.snapshot_start_ns);
                trusted.then_some(appended.record.digest).or(in_file)
            }
            _ => in_file,
        }
    }

    fn lookup_in_file(&mut self, rel: &str, stat: &FileStat) -> Option<Digest> {
        loop {
            let next = self.peek_path()?;
            match next.cmp(rel.as_bytes()) {
                std::cmp::Ordering::Less => {
                    self.next_record()?;
                }
                std::cmp::Ordering::Equal => {
                    let (_, record) = self.next_record()?;
                    return record
                        .trusted(stat, self.snapshot_start_ns)
                        .then_some(record.digest);
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
    }

    /// Whether every record the header announced was read, each in order.
    fn complete(&self) -> bool {
        !self.broken && self.remaining == 0 && self.rest.rest.is_empty()
    }

    fn peek_path(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 || self.broken {
            return None;
        }
        let mut ahead = Reader {
            rest: self.rest.rest,
        };
        let path = ahead.u32().and_then(|len| ahead.take(len as usize));
        if path.is_none() {
            self.broken = true;
        }
        path
    }

    fn next_record(&mut self) -> Option<(&'a [u8], Record)> {
        if self.remaining == 0 || self.broken {
            return None;
        }
        let parsed = self.parse();
        match parsed {
            Some((path, _)) if self.previous.is_none_or(|previous| previous < path) => {
                self.previous = Some(path);
                self.remaining -= 1;
                self.release_behind(path);
                parsed
            }
            _ => {
                self.broken = true;
                None
            }
        }
    }

    fn parse(&mut self) -> Option<(&'a [u8], Record)> {
        self.rest.record()
    }

    /// Give back the file's pages before `last` (the path of the record just read, which
    /// `previous` keeps borrowing), a window at a time. Released pages read again (a journal
    /// lookup does not) come back from the page cache unchanged: the file is only ever
    /// replaced by a rename, never changed in place.
    fn release_behind(&mut self, last: &[u8]) {
        let offset = (last.as_ptr() as usize).saturating_sub(self.file.as_ptr() as usize);
        if offset >= self.released + RELEASE_EVERY {
            let page_start = offset - offset % 4096;
            self.file.release(self.released, page_start);
            self.released = page_start;
        }
    }
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
    /// One record (see `encode_record`): its path and the rest.
    fn record(&mut self) -> Option<(&'a [u8], Record)> {
        let path_len = self.u32()? as usize;
        let path = self.take(path_len)?;
        let record = Record {
            dev: self.u64()?,
            ino: self.u64()?,
            size: self.u64()?,
            mtime_ns: self.i64()?,
            ctime_ns: self.i64()?,
            digest: Digest(self.take(32)?.try_into().ok()?),
        };
        Some((path, record))
    }
}
