//! Keeping the store bounded and sound: what it holds, least-recently-used eviction down to a
//! size bound, clearing it, and re-hashing every blob.
//!
//! Last use is the entry file's mtime (`Store::touch` on every hit, the rename on every save),
//! so finding it costs one stat per entry and a hit costs one syscall. Blobs are not touched:
//! a blob lives while an entry names it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use crate::error::{Error, IoContext};
use crate::hash::Digest;
use crate::store::{self, Store, StoreLock, AC, CAS};
use crate::usage_ledger;
use crate::Result;

/// A temporary file untouched this long belongs to a writer that died mid-write: a live writer
/// moves the mtime with every write, and no single write takes an hour.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// What the store holds, by stat alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub entries: u64,
    pub entry_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Temporary files of writers, running or killed.
    pub temp_files: u64,
    pub temp_bytes: u64,
}

impl Usage {
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.entry_bytes + self.blob_bytes + self.temp_bytes
    }
}

pub struct GcOptions<'a> {
    /// Evict until the store holds at most this many bytes.
    pub max_bytes: u64,
    /// Keys of entries never to evict: what the current run used or wrote.
    pub protected: &'a HashSet<String>,
    /// Wait for concurrent writers to finish; else give up at once (`GcReport::busy`), as the
    /// automatic collection at the end of a run does: the busy writer's own run collects later.
    pub wait: bool,
    /// Also delete blobs no entry names when the store is already under the bound (a manual
    /// `once cache gc`); the automatic one stops after the stat pass when under the bound.
    pub sweep: bool,
    /// When the tally's hour is up but it still says the store is under the bound, count
    /// nothing now and say a count is due (`GcReport::count_due`): the end of a run leaves it
    /// to a collection off its path rather than stat every file of a large store itself.
    pub count_later: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Another process was writing and `wait` was false: nothing was done.
    pub busy: bool,
    pub evicted_entries: u64,
    pub removed_blobs: u64,
    /// Leftovers of killed writers, older than `STALE_TEMP_AGE`.
    pub removed_temps: u64,
    pub freed_bytes: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Nothing was counted: the tally is old and a full count is due (see `count_later`).
    pub count_due: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Blobs whose bytes no longer hash to their name (or cannot be read), and symlinks where a
    /// blob belongs: deleted.
    pub corrupt_blobs: u64,
    pub entries: u64,
    /// Entries whose tag does not hold (edited, or filed under another key), that do not
    /// decode, name a missing or corrupt blob, hold a path or symlink that restore would
    /// refuse, or are symlinks themselves: deleted.
    pub removed_entries: u64,
}

impl Store {
    /// Count entries, blobs and temporary files, and their bytes (file sizes).
    pub fn usage(&self) -> Result<Usage> {
        Ok(tally(&scan(self.root())?))
    }

    /// Delete stale temporary files, then, when the store holds more than `max_bytes`, blobs no
    /// entry names, then least-recently-used entries (and the blobs only they named) until it
    /// holds at most `max_bytes`. Protected entries are never evicted, so the bound may stay
    /// exceeded when they alone exceed it.
    pub fn gc(&self, options: &GcOptions<'_>) -> Result<GcReport> {
        // Exclusive: between a save's first blob and its entry, nothing names those blobs.
        let Some(_lock) = StoreLock::exclusive(self.root(), options.wait)? else {
            return Ok(GcReport {
                busy: true,
                ..GcReport::default()
            });
        };
        if !options.sweep {
            // The tally says under the bound: no need to stat every file to learn it.
            let estimate = if options.count_later {
                usage_ledger::estimate_aged(self.root())
            } else {
                usage_ledger::estimate(self.root()).map(|bytes| (bytes, false))
            };
            if let Some((bytes, count_due)) = estimate {
                if bytes <= options.max_bytes {
                    return Ok(GcReport {
                        bytes_before: bytes,
                        bytes_after: bytes,
                        count_due,
                        ..GcReport::default()
                    });
                }
            }
        }
        let items = scan(self.root())?;
        let mut report = GcReport {
            bytes_before: tally(&items).total_bytes(),
            ..GcReport::default()
        };
        let mut total = report.bytes_before;

        let now = SystemTime::now();
        let stale: Vec<&Item> = items
            .iter()
            .filter(|item| {
                matches!(item.kind, Kind::Temp)
                    && now
                        .duration_since(item.mtime)
                        .is_ok_and(|age| age > STALE_TEMP_AGE)
            })
            .collect();
        let (count, bytes) = remove_all(&stale)?;
        report.removed_temps = count;
        report.freed_bytes += bytes;
        total -= stale.iter().map(|item| item.size).sum::<u64>();

        if total > options.max_bytes || options.sweep {
            let doomed = plan_eviction(&items, options, &mut total);
            // Entries first: an entry visible for a moment without its blobs is a miss, never
            // a wrong hit, but there is no reason to show one.
            let (count, bytes) = remove_all(&doomed.entries)?;
            report.evicted_entries = count;
            report.freed_bytes += bytes;
            let (count, bytes) = remove_all(&doomed.blobs)?;
            report.removed_blobs = count;
            report.freed_bytes += bytes;
        }
        report.bytes_after = total;
        usage_ledger::counted(self.root(), total);
        Ok(report)
    }

    /// Delete every entry and blob (and temporary file); the store's folders stay. Returns what
    /// was there. Waits for concurrent writers, and they for it.
    pub fn clear(&self) -> Result<Usage> {
        let _lock = StoreLock::exclusive(self.root(), true)?;
        let items = scan(self.root())?;
        let usage = tally(&items);
        for top in [CAS, AC] {
            let dir = self.root().join(top);
            let children: Vec<PathBuf> = match fs::read_dir(&dir) {
                Ok(children) => children
                    .map(|child| child.map(|child| child.path()))
                    .collect::<io::Result<_>>()
                    .at(&dir)?,
                Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(err) => return Err(err).at(&dir),
            };
            children.par_iter().try_for_each(|child| {
                let removed = if child.is_dir() {
                    fs::remove_dir_all(child)
                } else {
                    fs::remove_file(child)
                };
                ignore_not_found(removed).at(child)
            })?;
            fs::create_dir_all(&dir).at(&dir)?;
        }
        usage_ledger::forget(self.root());
        Ok(usage)
    }

    /// Re-hash every blob (in parallel), delete those whose bytes do not match their name, then
    /// delete every entry that does not decode, names a blob now missing, or holds a path or
    /// symlink restore would refuse. Afterwards every entry is a sound hit.
    ///
    /// Takes no lock: blobs are immutable once visible, and an entry written meanwhile is
    /// re-checked against the disk before it is judged, so running builds are not held up for
    /// as long as re-hashing a big store takes.
    pub fn verify(&self) -> Result<VerifyReport> {
        let items = scan(self.root())?;
        let blobs: Vec<&Item> = items
            .iter()
            .filter(|item| matches!(item.kind, Kind::Blob(_)))
            .collect();
        // One blob per task: most are small, and `hash_file` spreads a big one over the pool.
        let corrupt: Vec<&Item> = blobs
            .par_iter()
            .copied()
            .filter(|item| {
                let Kind::Blob(name) = &item.kind else {
                    return false;
                };
                // A symlink is never a blob: followed, it could name any file as sound.
                if item.symlink {
                    return true;
                }
                match crate::hash::hash_file(&item.path) {
                    Ok(digest) => digest != *name,
                    // Gone meanwhile (a concurrent gc or clear): nothing to judge.
                    Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                        false
                    }
                    // Unreadable: no hit can use it either.
                    Err(_) => true,
                }
            })
            .collect();
        let (corrupt_blobs, _) = remove_all(&corrupt)?;
        let corrupt: HashSet<&Path> = corrupt.iter().map(|item| item.path.as_path()).collect();
        let present: HashSet<Digest> = blobs
            .iter()
            .filter(|item| !corrupt.contains(item.path.as_path()))
            .filter_map(|item| match item.kind {
                Kind::Blob(digest) => Some(digest),
                _ => None,
            })
            .collect();

        let entries: Vec<&Item> = items
            .iter()
            .filter(|item| matches!(item.kind, Kind::Entry(_)))
            .collect();
        let unsound: Vec<&Item> = entries
            .par_iter()
            .copied()
            .filter(|item| !self.sound(item, &present))
            .collect();
        let (removed_entries, _) = remove_all(&unsound)?;
        Ok(VerifyReport {
            blobs: blobs.len() as u64,
            blob_bytes: blobs.iter().map(|item| item.size).sum(),
            corrupt_blobs,
            entries: entries.len() as u64,
            removed_entries,
        })
    }

    fn sound(&self, item: &Item, present: &HashSet<Digest>) -> bool {
        let Kind::Entry(key) = &item.kind else {
            return true;
        };
        if item.symlink {
            return false;
        }
        let Some(entry) = store::read_entry(&item.path, key) else {
            // Gone meanwhile is not unsound; present and unsound (a bad tag, a manifest restore
            // would refuse, undecodable) is.
            return !item.path.exists();
        };
        // A blob written after the scan (a concurrent save) is on disk, not in `present`.
        let complete = entry
            .blobs()
            .all(|digest| present.contains(digest) || self.contains(digest));
        complete
    }
}

/// What the store's folders hold, one stat per file. `cas/` and `ac/` have up to 256 shard
/// folders each; the shards are read in parallel, which is what makes a cold-cache scan of a
/// big store quick (every stat is its own disk read then).
fn scan(root: &Path) -> Result<Vec<Item>> {
    let mut shards = Vec::new();
    let mut items = Vec::new();
    for top in [CAS, AC] {
        let dir = root.join(top);
        for child in read_dir_if_exists(&dir)? {
            let (path, name, meta) = child;
            if meta.is_dir() {
                shards.push((top, path));
            } else if let Some(item) = Item::classify(top, path, &name, &meta) {
                // Temporary files of `put_file` start in `cas/` itself.
                items.push(item);
            }
        }
    }
    let nested: Vec<Vec<Item>> = shards
        .par_iter()
        .map(|(top, shard)| {
            Ok(read_dir_if_exists(shard)?
                .into_iter()
                .filter_map(|(path, name, meta)| Item::classify(top, path, &name, &meta))
                .collect())
        })
        .collect::<Result<_>>()?;
    items.extend(nested.into_iter().flatten());
    Ok(items)
}

/// (path, name, lstat) of each child; nothing when the folder is gone (a concurrent clear).
fn read_dir_if_exists(dir: &Path) -> Result<Vec<(PathBuf, String, fs::Metadata)>> {
    let children = match fs::read_dir(dir) {
        Ok(children) => children,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).at(dir),
    };
    let mut out = Vec::new();
    for child in children {
        let child = child.at(dir)?;
        let path = child.path();
        let meta = match child.metadata() {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).at(&path),
        };
        // Names once does not make (not UTF-8) are left alone below.
        let name = child.file_name().into_string().unwrap_or_default();
        out.push((path, name, meta));
    }
    Ok(out)
}

fn tally(items: &[Item]) -> Usage {
    let mut usage = Usage::default();
    for item in items {
        let (count, bytes) = match item.kind {
            Kind::Entry(_) => (&mut usage.entries, &mut usage.entry_bytes),
            Kind::Blob(_) => (&mut usage.blobs, &mut usage.blob_bytes),
            Kind::Temp => (&mut usage.temp_files, &mut usage.temp_bytes),
        };
        *count += 1;
        *bytes += item.size;
    }
    usage
}

struct Doomed<'a> {
    entries: Vec<&'a Item>,
    blobs: Vec<&'a Item>,
}

/// Which entries and blobs to delete, lowering `total` by their sizes: unreferenced blobs
/// first (no hit is lost by deleting them), then entries from the least recently used.
fn plan_eviction<'a>(items: &'a [Item], options: &GcOptions<'_>, total: &mut u64) -> Doomed<'a> {
    let mut blobs: HashMap<Digest, (&Item, u32)> = items
        .iter()
        .filter_map(|item| match item.kind {
            Kind::Blob(digest) => Some((digest, (item, 0))),
            _ => None,
        })
        .collect();
    // Decoding is the costly part (a read and a parse per entry), so it runs in parallel and
    // only once the stat pass has shown the store over its bound.
    let mut entries: Vec<(&Item, Option<Vec<Digest>>)> = items
        .par_iter()
        .filter_map(|item| match &item.kind {
            Kind::Entry(key) => {
                let named = store::read_entry(&item.path, key).map(|entry| {
                    let mut named: Vec<Digest> = entry.blobs().copied().collect();
                    named.sort_unstable_by_key(|digest| digest.0);
                    named.dedup();
                    named
                });
                Some((item, named))
            }
            _ => None,
        })
        .collect();
    for digest in entries
        .iter()
        .filter_map(|(_, named)| named.as_ref())
        .flatten()
    {
        if let Some((_, refs)) = blobs.get_mut(digest) {
            *refs += 1;
        }
    }
    let mut doomed = Doomed {
        entries: Vec::new(),
        blobs: Vec::new(),
    };
    // An entry that does not decode (another version's, or torn) names blobs this one cannot
    // see; they count as unreferenced, and that entry, if kept, is a miss that repairs itself.
    for (item, refs) in blobs.values() {
        if *refs == 0 {
            doomed.blobs.push(*item);
            *total -= item.size;
        }
    }
    entries.sort_by(|(a, _), (b, _)| a.mtime.cmp(&b.mtime).then_with(|| a.path.cmp(&b.path)));
    for (item, named) in &entries {
        if *total <= options.max_bytes {
            break;
        }
        let Kind::Entry(key) = &item.kind else {
            continue;
        };
        if options.protected.contains(key) {
            continue;
        }
        doomed.entries.push(*item);
        *total -= item.size;
        for digest in named.iter().flatten() {
            if let Some((blob, refs)) = blobs.get_mut(digest) {
                *refs -= 1;
                if *refs == 0 {
                    doomed.blobs.push(*blob);
                    *total -= blob.size;
                }
            }
        }
    }
    doomed
}

/// Delete in parallel (each unlink is its own syscall, and on a network file system its own
/// round trip); returns how many were deleted and their bytes. Already gone is fine.
fn remove_all(items: &[&Item]) -> Result<(u64, u64)> {
    let removed: Vec<Option<u64>> = items
        .par_iter()
        .map(|item| match fs::remove_file(&item.path) {
            Ok(()) => Ok(Some(item.size)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).at(&item.path),
        })
        .collect::<Result<_>>()?;
    let sizes = removed.into_iter().flatten();
    Ok(sizes.fold((0, 0), |(count, bytes), size| (count + 1, bytes + size)))
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        result => result,
    }
}

/// One file of the store, as found by `scan`.
struct Item {
    path: PathBuf,
    kind: Kind,
    size: u64,
    mtime: SystemTime,
    /// A symlink where the store keeps only regular files: never read, only deleted.
    symlink: bool,
}

enum Kind {
    /// `ac/xx/<key>.json`.
    Entry(String),
    /// `cas/xx/<hex digest>`.
    Blob(Digest),
    /// `.tmp-<pid>-<n>` in `cas/`, `cas/xx/` or `ac/xx/`.
    Temp,
}

impl Item {
    /// `None` for anything once did not make (left alone: it may be a user's).
    fn classify(top: &str, path: PathBuf, name: &str, meta: &fs::Metadata) -> Option<Item> {
        if !meta.is_file() && !meta.is_symlink() {
            return None;
        }
        let kind = if name.starts_with(".tmp-") {
            Kind::Temp
        } else if top == CAS {
            Kind::Blob(Digest::from_hex(name).filter(|_| path_in_shard(&path, name))?)
        } else {
            Kind::Entry(name.strip_suffix(".json")?.to_owned())
        };
        Some(Item {
            path,
            kind,
            size: meta.len(),
            // Without mtimes (no such platform among ours) every entry is equally old.
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            symlink: meta.is_symlink(),
        })
    }
}

/// A blob sits in the shard named by its first two hex digits; one elsewhere is not a blob.
fn path_in_shard(path: &Path, name: &str) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|shard| shard.to_str() == name.get(..2))
}
